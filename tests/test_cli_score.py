"""deqa-score end to end on a tiny VLM saved to a temp folder: bad inputs, formats, resume."""

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deqa.cli.score import main
from deqa.scoring import VLMScorer

ROOT = Path(__file__).resolve().parents[1]


def _jpeg_bytes(img):
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Good files of every awkward kind, bad files of every kind; returns (folder, good, bad)."""
    d = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    good = {}
    noise.save(d / "plain.jpg", quality=90)
    good["plain.jpg"] = "a normal JPEG"
    Image.fromarray((rng.integers(0, 65536, (20, 30))).astype(np.uint16)).save(d / "deep16.png")
    good["deep16.png"] = "16-bit greyscale PNG"
    noise.convert("CMYK").save(d / "cmyk.jpg")
    good["cmyk.jpg"] = "CMYK JPEG"
    rgba = noise.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(d / "alpha.png")
    good["alpha.png"] = "RGBA PNG"
    noise.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(d / "palette.gif")
    good["palette.gif"] = "palette GIF"
    Image.new("RGB", (1, 1), (10, 200, 30)).save(d / "one_pixel.png")
    good["one_pixel.png"] = "1x1 image"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° CW to display
    noise.save(d / "rotated.jpg", exif=exif.tobytes())
    good["rotated.jpg"] = "EXIF-rotated JPEG"
    noise.save(d / "ünïcødé_画像.png")
    good["ünïcødé_画像.png"] = "unicode file name"
    bad = {}
    (d / "empty.jpg").write_bytes(b"")
    bad["empty.jpg"] = "empty file"
    data = _jpeg_bytes(noise)
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    bad["truncated.jpg"] = "truncated"
    (d / "text.jpg").write_text("this is not an image\n")
    bad["text.jpg"] = "not an image"
    return d, good, bad


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_bad_input_corpus_scores_good_lists_bad_exit_2(corpus, tiny_vlm_path, tmp_path, capsys):
    folder, good, bad = corpus
    missing = str(folder / "missing.png")
    out = tmp_path / "scores.jsonl"
    rc = main(
        [
            "--model",
            str(tiny_vlm_path("qwen2_5_vl")),
            str(folder),
            missing,
            "-o",
            str(out),
            "--num-workers",
            "0",
            "-q",
        ]
    )
    assert rc == 2
    rows = {Path(r["input"]).name: r for r in _rows(out)}
    assert set(rows) == set(good) | set(bad) | {"missing.png"}
    for name in good:
        assert "error" not in rows[name], (name, rows[name])
        assert 1 <= rows[name]["score"] <= 5 and sum(rows[name]["probs"].values()) == pytest.approx(
            1, abs=1e-6
        )
    for name, reason in {**bad, "missing.png": "no such file"}.items():
        assert reason in rows[name]["error"], (name, rows[name])
    err = capsys.readouterr().err
    for name in [*bad, "missing.png"]:
        assert f"failed: {folder / name if name != 'missing.png' else missing}: " in err
    assert "4 of 12 inputs could not be scored" in err


def test_all_good_exit_0_and_table(corpus, tiny_vlm_path, capsys):
    folder, _, _ = corpus
    rc = main(
        [
            "--model",
            str(tiny_vlm_path("llava")),
            str(folder / "plain.jpg"),
            str(folder / "alpha.png"),
            "--num-workers",
            "0",
            "-q",
        ]
    )
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["input", "score", "score_0_1", "level", "std"]
    assert [line.split()[0] for line in lines[1:]] == [
        str(folder / "plain.jpg"),
        str(folder / "alpha.png"),
    ]
    assert all(1 <= float(line.split()[1]) <= 5 for line in lines[1:])


def test_json_to_stdout_and_csv_file_from_a_manifest(corpus, tiny_vlm_path, tmp_path, capsys):
    folder, _, _ = corpus
    manifest = folder / "list.csv"
    manifest.write_text("image,mos\nplain.jpg,3.1\ncmyk.jpg,2.0\n")
    model = str(tiny_vlm_path("idefics3"))
    assert (
        main(["--model", model, str(manifest), "--format", "json", "--num-workers", "0", "-q"]) == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [r["input"] for r in rows] == [str(folder / "plain.jpg"), str(folder / "cmyk.jpg")]
    out = tmp_path / "s.csv"
    assert main(["--model", model, str(manifest), "-o", str(out), "--num-workers", "0", "-q"]) == 0
    table = list(csv.DictReader(out.open()))
    assert [r["input"] for r in table] == [r["input"] for r in rows]
    assert [float(r["score"]) for r in table] == pytest.approx(
        [r["score"] for r in rows], abs=1e-12
    )


def test_interrupted_run_resumes_to_the_same_file(
    corpus, tiny_vlm_path, tmp_path, monkeypatch, capsys
):
    folder, _, _ = corpus
    model = str(tiny_vlm_path("qwen2_5_vl"))  # groups by image size: the harder case for resume
    args = [
        "--model",
        model,
        str(folder),
        str(folder / "missing.png"),
        "-b",
        "2",
        "--num-workers",
        "0",
        "-q",
    ]
    full = tmp_path / "full.jsonl"
    assert main([*args, "-o", str(full)]) == 2

    resumed = tmp_path / "resumed.jsonl"
    real_predict = VLMScorer.predict
    calls = {"n": 0}

    def interrupt_on_third_batch(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_predict(self, batch)

    monkeypatch.setattr(VLMScorer, "predict", interrupt_on_third_batch)
    assert main([*args, "-o", str(resumed)]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    partial = _rows(resumed)
    assert 0 < len(partial) < len(_rows(full))
    # A half-written row from a hard kill is repaired, not kept.
    with resumed.open("a", encoding="utf-8") as f:
        f.write('{"input": "half-writ')
    monkeypatch.setattr(VLMScorer, "predict", real_predict)
    assert main([*args, "-o", str(resumed)]) == 2
    assert f"{len(partial)} of 12 inputs already there" in capsys.readouterr().err
    assert resumed.read_bytes() == full.read_bytes()
    # Nothing left to do: a third run adds nothing and still reports the recorded failures.
    assert main([*args, "-o", str(resumed)]) == 2
    assert resumed.read_bytes() == full.read_bytes()


def test_hard_killed_run_resumes_to_the_same_file(tmp_path, capsys):
    """SIGKILL in the middle of writing a row (built-in model, real process): the resumed file is
    byte-identical to an uninterrupted run, also with names JSON writes unescaped (U+2028)."""
    rng = np.random.default_rng(1)
    names = ["a.png", "b\u2028line-separator.png", "c.png", "d.png", "e.png"]
    for name in names:
        arr = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / name)
    args = [*(str(tmp_path / n) for n in names), "-b", "2", "--num-workers", "0", "-q"]
    full = tmp_path / "full.jsonl"
    assert main([*args, "-o", str(full)]) == 0
    killed = tmp_path / "killed.jsonl"
    # Die after half of the 4th row (the 2nd of the 2nd batch) reached the file.
    proc = _run_python(
        f"""
        import json, os, signal, sys
        from deqa.jsonl import JsonlWriter
        rows = []
        def write(self, obj):
            rows.append(obj)
            line = json.dumps(obj, ensure_ascii=False) + "\\n"
            if len(rows) == 4:
                self._f.write(line[: len(line) // 2])
                self._f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            self._f.write(line)
            self._f.flush()
        JsonlWriter.write = write
        from deqa.cli.score import main
        sys.exit(main({[*args, "-o", str(killed)]!r}))
        """
    )
    assert proc.returncode == -9, proc.stderr
    text = killed.read_text(encoding="utf-8")
    assert text.count("\n") == 3 and not text.endswith("\n")  # three rows and half of one
    capsys.readouterr()
    assert main([*args, "-o", str(killed)]) == 0
    err = capsys.readouterr().err
    assert "killed.jsonl line 4: ignoring an incomplete last line" in err
    assert "3 of 5 inputs already there" in err
    assert killed.read_bytes() == full.read_bytes()


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["x.jpg", "--load-in-4bit"],
            "--load-in-4bit: VLM-only option(s), not usable with the built-in model",
        ),
        (["x.jpg", "--adapter", "a", "--dtype", "bf16"], "--adapter, --dtype: VLM-only option(s)"),
        (["x.jpg", "-o", "out.txt"], "cannot tell the format from '.txt'"),
        (["x.jpg", "-o", "out.jsonl", "--format", "table"], "table format is for the terminal"),
        (
            ["x.jpg", "--model", "m", "--load-in-4bit", "--load-in-8bit"],
            "choose one of --load-in-4bit and --load-in-8bit",
        ),
        (["nothing/*.png"], "pattern matches no files"),
        (["x.jpg", "--model", "m", "--views", "whole"], "--views whole: only degradation baselines read windows"),
        (["x.jpg", "--no-group-by-size"], "--[no-]group-by-size: VLM-only option(s)"),  # False is given too
        (["x.jpg", "-o", "."], "-o . is a folder; give a file name"),  # not "cannot tell the format"
    ],
)
def test_usage_errors_exit_1(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batch-size", "0"], "argument -b/--batch-size: must be >= 1, got 0"),
        (["--num-workers", "-1"], "argument --num-workers: must be >= 0 (0 = decode in the main process), got -1"),
        (["--max-length", "0"], "argument --max-length: must be >= 1, got 0"),
        (["--max-length", "-5"], "argument --max-length: must be >= 1, got -5"),
        (["--max-pixels", "-1"], "argument --max-pixels: must be >= 0 (0 = no limit), got -1"),
    ],
)
def test_numeric_options_out_of_range_are_argument_errors(argv, message, capsys):
    # Before any model loads: --max-length 0 used to load the VLM and then fail every image
    # (exit 2) with "the prompt is N tokens, over max_length=0".
    with pytest.raises(SystemExit) as exc:
        main(["x.jpg", "--model", "m", *argv])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert f"deqa-score: error: {message}" in err and "Traceback" not in err


def test_unloadable_model_is_a_clear_error(tmp_path, capsys):
    img = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(img)
    assert main(["--model", str(tmp_path / "no-such-model"), str(img), "-q"]) == 1
    assert "cannot load model" in capsys.readouterr().err


def _run_python(code: str) -> subprocess.CompletedProcess:
    # A bare environment, but for the BLAS settings: OPENBLAS_CORETYPE picks OpenBLAS's kernels,
    # and other kernels round float32 matmuls differently (a resumed run matches the first one
    # in the same environment, not across BLAS builds or kernel choices).
    blas = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", **blas}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_importing_the_cli_imports_no_vlm_code():
    proc = _run_python(
        """
        import sys
        import deqa.cli.score
        heavy = [m for m in ("transformers", "peft", "torch", "deqa.scoring", "deqa.models.loading") if m in sys.modules]
        assert not heavy, heavy
        """
    )
    assert proc.returncode == 0, proc.stderr


def test_baseline_path_never_imports_transformers(tmp_path):
    """The built-in model's scoring path, end to end, with a stand-in baseline module."""
    img = tmp_path / "a.png"
    Image.new("RGB", (8, 8), (200, 200, 200)).save(img)
    proc = _run_python(
        f"""
        import sys, types
        from deqa.results import ScoreResult
        from deqa.scorer import Scorer

        class Grey(Scorer):
            model_id = "stand-in"
            def predict(self, batch):
                return [ScoreResult("", 4.0, 0.75, "good", self.model_id, details={{"blur": 4.5}}) for _ in batch]

        fake = types.ModuleType("deqa.baselines")
        fake.load_baseline = lambda path, device=None: Grey()
        sys.modules["deqa.baselines"] = fake
        from deqa.cli.score import main
        rc = main([{str(img)!r}, "-q", "--num-workers", "0"])
        assert rc == 0, rc
        assert "transformers" not in sys.modules and "peft" not in sys.modules
        """
    )
    assert proc.returncode == 0, proc.stderr
    header, row = proc.stdout.splitlines()
    assert header.split() == ["input", "score", "score_0_1", "level", "blur"]
    assert row.split() == [str(img), "4.0000", "0.7500", "good", "4.5000"]


def test_max_pixels_guard_is_a_per_file_failure(corpus, tiny_vlm_path, tmp_path):
    folder, _, _ = corpus
    out = tmp_path / "s.jsonl"
    argv = ["--model", str(tiny_vlm_path("llava")), str(folder / "plain.jpg"), str(folder / "one_pixel.png")]
    assert main([*argv, "--max-pixels", "100", "-o", str(out), "--num-workers", "0", "-q"]) == 2
    rows = _rows(out)
    assert "over the limit of 100" in rows[0]["error"] and "score" in rows[1]


def test_python_api_load_scorer_picks_the_vlm(tiny_vlm_path, corpus):
    import deqa

    folder, _, _ = corpus
    scorer = deqa.load_scorer(str(tiny_vlm_path("idefics3")), dtype="fp32", device="cpu")
    assert isinstance(scorer, VLMScorer)
    (res,) = scorer.score(str(folder / "plain.jpg"))
    assert isinstance(res, deqa.ScoreResult) and res.input == str(folder / "plain.jpg")
    assert scorer.score(Image.open(folder / "alpha.png"))[0].input == "<image 0>"


def test_quiet_draws_no_progress_bar_for_a_vlm(corpus, tiny_vlm_path, capsys):
    from transformers.utils import logging as hf_logging

    folder, _, _ = corpus
    model = str(tiny_vlm_path("qwen2_5_vl"))
    hf_logging.enable_progress_bar()
    try:
        assert main(["--model", model, str(folder / "plain.jpg"), "--num-workers", "0"]) == 0
        loud = capsys.readouterr().err
        assert main(["--model", model, str(folder / "plain.jpg"), "--num-workers", "0", "-q"]) == 0
        quiet = capsys.readouterr().err
    finally:
        hf_logging.enable_progress_bar()
    assert "it/s]" in loud or "s/it]" in loud  # bars are drawn without -q (the check below can fail)
    assert "it/s]" not in quiet and "s/it]" not in quiet and "%|" not in quiet


def test_image_loading_leaves_pillows_global_settings_as_the_host_set_them(tmp_path, monkeypatch):
    """A host application's Pillow settings stay its own: load_image used to set
    LOAD_TRUNCATED_IMAGES = False for good; a truncated file is still refused meanwhile."""
    import io

    from PIL import Image, ImageFile

    from deqa.imageio import ImageLoadError, load_image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, format="JPEG")
    (tmp_path / "half.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (tmp_path / "ok.jpg").write_bytes(buf.getvalue())
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as a host application might
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(tmp_path / "half.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    pixels = Image.MAX_IMAGE_PIXELS
    assert load_image(tmp_path / "ok.jpg", max_pixels=None).size == (64, 64)
    assert Image.MAX_IMAGE_PIXELS == pixels and ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_an_image_over_pillows_own_limit_gets_deqas_message(tmp_path, monkeypatch):
    """At the default limit (Pillow's error threshold) Pillow refuses such an image while opening
    it, before deqa sees its size: it must still be deqa's per-file error with the --max-pixels hint."""
    from PIL import Image

    from deqa.imageio import ImageLoadError, load_image

    Image.new("RGB", (100, 30)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's error from 2,000 px
    with pytest.raises(ImageLoadError, match=r"big.png: image is 3,000 pixels, over the limit of 2,000 .*--max-pixels"):
        load_image(tmp_path / "big.png", max_pixels=2000)
    with pytest.raises(ImageLoadError, match=r"image is 3,000 pixels, over the limit of 1,500 .*--max-pixels"):
        load_image(tmp_path / "big.png", max_pixels=1500)  # under twice Pillow's: Pillow refuses first
    assert load_image(tmp_path / "big.png", max_pixels=None).size == (100, 30)  # off: lifted


def test_ctrl_c_with_decoding_workers_prints_one_line_not_their_tracebacks(tmp_path):
    """Ctrl-C reaches the whole process group, the forked decoding workers included: only the
    main process reports it (exit 130, "interrupted"), no worker traceback."""
    import os
    import signal
    import time

    example = ROOT / "deqa" / "assets" / "examples" / "example.jpg"
    for i in range(400):
        os.link(example, tmp_path / f"{i:03d}.jpg")
    out = tmp_path / "s.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "deqa.cli.score", str(tmp_path), "-q", "-b", "2", "--num-workers", "2", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        # A test run started in the background (nohup, CI) inherits SIGINT ignored, and Python then
        # installs no KeyboardInterrupt handler: give the child the terminal's default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while (not out.exists() or out.stat().st_size == 0) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)  # the workers are running once the first rows are written
    time.sleep(0.5)  # and then busy or waiting for work, where Ctrl-C used to make each print a traceback
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "ForkPoolWorker" not in err and "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted" in err


def test_float_images_in_0_1_keep_their_brightness():
    # "F" images in [0, 1] are read on that range, not stretched to their own min and max.
    from PIL import Image

    from deqa.imageio import to_rgb

    dark = Image.fromarray(np.linspace(0.0, 0.2, 64 * 64, dtype=np.float32).reshape(64, 64), mode="F")
    assert np.asarray(to_rgb(dark)).max() == round(0.2 * 255)
    wide = Image.fromarray(np.linspace(-3.0, 5.0, 64 * 64, dtype=np.float32).reshape(64, 64), mode="F")
    assert np.asarray(to_rgb(wide)).min() == 0 and np.asarray(to_rgb(wide)).max() == 255  # no range known: stretched


def test_a_float_image_with_nan_pixels_is_a_per_file_failure(tmp_path):
    from PIL import Image

    from deqa.imageio import ImageLoadError, load_image

    arr = np.full((16, 16), 0.5, dtype=np.float32)
    arr[0, :4] = np.nan
    Image.fromarray(arr, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(ImageLoadError, match=r"nan.tif: corrupt or unreadable image \(4 of its 256 pixels are NaN or infinite\)"):
        load_image(tmp_path / "nan.tif")


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
def test_a_file_name_that_is_not_utf8_is_scored_written_and_resumed(tmp_path, fmt, capsys):
    """An old archive's Latin-1 name reaches Python with lone surrogates; every -o format used to
    crash on it (and a resume crashed at the same row again)."""
    from deqa.outputs import read_records

    folder = tmp_path / "photos"
    folder.mkdir()
    example = ROOT / "deqa" / "assets" / "examples" / "example.jpg"
    name = os.fsdecode(b"caf\xe9.jpg")
    try:
        os.link(example, folder / name)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system does not take non-UTF-8 names")
    os.link(example, folder / "z.jpg")
    out = tmp_path / f"s.{fmt}"
    assert main([str(folder), "-o", str(out), "--num-workers", "0", "-q"]) == 0
    first = out.read_bytes()
    assert [r["input"] for r in read_records(out, fmt)] == [str(folder / name), str(folder / "z.jpg")]
    if fmt == "csv":
        assert b"caf\xe9.jpg" in first  # the name's own bytes, as the file system has them
    else:
        first.decode("utf-8")  # JSON stays UTF-8: the name is written with \\u escapes
    capsys.readouterr()
    assert main([str(folder), "-o", str(out), "--num-workers", "0", "-q"]) == 0
    assert "2 of 2 inputs already there" in capsys.readouterr().err
    assert out.read_bytes() == first


def test_file_names_may_follow_options(tmp_path, capsys):
    example = ROOT / "deqa" / "assets" / "examples" / "example.jpg"
    os.link(example, tmp_path / "a.jpg")
    os.link(example, tmp_path / "b.jpg")
    assert main([str(tmp_path / "a.jpg"), "-q", "--format", "jsonl", str(tmp_path / "b.jpg"), "--num-workers", "0"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == [str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")]


def test_a_reader_closing_stdout_stops_the_job_quietly(tmp_path):
    example = ROOT / "deqa" / "assets" / "examples" / "example.jpg"
    for i in range(4):
        os.link(example, tmp_path / f"{i}.jpg")
    proc = subprocess.Popen([sys.executable, "-m", "deqa.cli.score", str(tmp_path), "--format", "jsonl", "-q",
                             "--num-workers", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()  # `| head -0`: gone before the first row is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_a_folder_listed_in_a_manifest_is_a_per_input_failure_with_a_fitting_hint(tmp_path):
    example = ROOT / "deqa" / "assets" / "examples" / "example.jpg"
    (tmp_path / "sub").mkdir()
    os.link(example, tmp_path / "a.jpg")
    (tmp_path / "list.txt").write_text("a.jpg\nsub\n")
    out = tmp_path / "s.jsonl"
    assert main([str(tmp_path / "list.txt"), "-r", "-o", str(out), "--num-workers", "0", "-q"]) == 2
    rows = _rows(out)
    assert "score" in rows[0] and "is a directory" in rows[1]["error"] and "--recursive" not in rows[1]["error"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
def test_retry_failed_scores_the_recorded_failures_again(tmp_path, fmt, capsys):
    """Failures are skipped on resume (they are results too); --retry-failed removes their rows
    and scores them again, e.g. once a broken file is replaced."""
    from deqa.outputs import read_records

    folder = tmp_path / "photos"
    folder.mkdir()
    example = ROOT / "deqa" / "assets" / "examples" / "example.jpg"
    for name in ("a.jpg", "c.jpg"):
        os.link(example, folder / name)
    (folder / "b.jpg").write_bytes(example.read_bytes()[:500])  # truncated
    out = tmp_path / f"s.{fmt}"
    argv = [str(folder), "-o", str(out), "--num-workers", "0", "-q"]
    assert main(argv) == 2
    assert main(argv) == 2  # a plain resume keeps the failure
    assert main([*argv, "--retry-failed"]) == 2  # still broken: failed again, one row for it
    rows = read_records(out, fmt)
    assert [r["input"] for r in rows].count(str(folder / "b.jpg")) == 1
    (folder / "b.jpg").unlink()
    os.link(example, folder / "b.jpg")
    capsys.readouterr()
    assert main([*argv, "--retry-failed"]) == 0
    assert "retrying 1 failed input(s)" in capsys.readouterr().err
    rows = read_records(out, fmt)
    assert sorted(r["input"] for r in rows) == sorted(str(folder / n) for n in ("a.jpg", "b.jpg", "c.jpg"))
    assert all("score" in r and "error" not in r for r in rows)
    assert main([str(folder), "--retry-failed"]) == 1  # nothing to retry from without -o


def test_a_vlm_scored_another_way_is_another_model_for_resume(tiny_vlm_path, tmp_path, capsys):
    """The id holds the weights' fingerprint and the scoring settings: a resume with other level
    values (deqa_config.json), another dtype or 4-bit would mix two kinds of score in one file."""
    import shutil

    from deqa.models.config import DeQAConfig

    model = tmp_path / "m"
    shutil.copytree(tiny_vlm_path("qwen2_5_vl"), model)
    img = tmp_path / "a.png"
    Image.new("RGB", (32, 32), (120, 60, 30)).save(img)
    out = tmp_path / "s.jsonl"
    argv = ["--model", str(model), str(img), "-o", str(out), "--num-workers", "0", "-q"]
    assert main(argv) == 0
    assert main(argv) == 0  # the same model and settings: resumed
    DeQAConfig(level_values=(0.0, 25.0, 50.0, 75.0, 100.0)).save(model)
    capsys.readouterr()
    assert main(argv) == 1 and "holds scores from model" in capsys.readouterr().err
    (model / "deqa_config.json").unlink()
    assert main([*argv, "--dtype", "bf16"]) == 1 and "holds scores from model" in capsys.readouterr().err


def test_damaged_vlm_weights_and_an_export_into_a_used_folder_are_one_line_errors(tiny_vlm_path, tmp_path, capsys):
    import shutil

    from deqa.cli.export import main as export_main

    model = tmp_path / "m"
    shutil.copytree(tiny_vlm_path("qwen2_5_vl"), model)
    (weights,) = model.glob("*.safetensors")
    weights.write_bytes(weights.read_bytes()[:1000])
    img = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(img)
    assert main(["--model", str(model), str(img), "--num-workers", "0", "-q"]) == 1
    err = capsys.readouterr().err
    assert "not a readable safetensors file" in err and "Traceback" not in err
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "adapter_config.json").write_text("{}")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "model.safetensors").write_bytes(b"keep")
    assert export_main([str(tmp_path / "ckpt"), "--merge", "-o", str(tmp_path / "used")]) == 1
    assert "exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "used" / "model.safetensors").read_bytes() == b"keep"


def test_a_text_only_model_is_named_as_such(tmp_path, capsys):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    Qwen2ForCausalLM(Qwen2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                 intermediate_size=32, vocab_size=100)).save_pretrained(tmp_path / "lm")
    img = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(img)
    assert main(["--model", str(tmp_path / "lm"), str(img), "--num-workers", "0", "-q"]) == 1
    err = capsys.readouterr().err
    assert "is a 'qwen2' model, which transformers does not load as a vision-language model" in err
    assert "Traceback" not in err


def test_ctrl_c_while_the_model_loads_is_one_line_and_130(tmp_path, monkeypatch, capsys):
    import deqa.cli.score as score_cli

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(score_cli, "_build_scorer", interrupted)
    img = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(img)
    assert main([str(img), "-q"]) == 130
    assert "interrupted while loading the model" in capsys.readouterr().err
