"""``deqa-eval`` with real deqa models through the one command: a tiny random VLM zero-shot (no
deqa_config.json), the same VLM as a deqa checkpoint (deqa_config.json with its training data), and
the built-in baseline."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from eval_helpers import make_blur_dataset

from deqa.baselines import BUILTIN_MODEL_ID
from deqa.cli import eval as eval_cli
from deqa.evaluation import read_predictions
from deqa.levels import LEVEL_WORDS
from deqa.models.config import DeQAConfig

REGISTRY = """\
blurmini:
  title: Blur mini
  labels: labels.csv
  image_column: image
  score_column: mos
  mos_range: [0, 100]
  std_column: std
  split_column: split
"""


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini-models")
    images, _ = make_blur_dataset(root, n_crops=2)
    (root / "datasets.yaml").write_text(REGISTRY)
    refs = root / "refs.csv"
    refs.write_text(
        "model,variant,dataset,split,srcc,plcc,krcc,plcc_protocol,training_data,source,notes\n"
        "PeerNet,,blurmini,test,0.900,0.910,,logistic-4,blurmini,https://example.org/peer,\n"
    )
    return {"images": images, "registry": root / "datasets.yaml", "refs": refs}


def _run(mini, model, out, *extra):
    argv = [
        "--model", str(model), "--registry", str(mini["registry"]), "--datasets", "blurmini",
        "--image-root", str(mini["images"]), "--output", str(out), "--bootstrap", "50",
        "--num-workers", "0", "--no-progress", "--batch-size", "4", *extra,
    ]  # fmt: skip
    return eval_cli.main(argv)


@pytest.fixture(scope="module")
def zero_shot(mini, tiny_vlm_path, tmp_path_factory):
    """One deqa-eval run of a tiny random Qwen2.5-VL, as a base VLM (no deqa_config.json)."""
    out = tmp_path_factory.mktemp("zero-shot")
    rc = _run(
        mini, tiny_vlm_path("qwen2_5_vl"), out, "--compare", "--references", str(mini["refs"])
    )
    return rc, out


def test_tiny_vlm_zero_shot_end_to_end(zero_shot):
    rc, out = zero_shot
    assert rc == 0
    text = (out / "compare.md").read_text()
    preds = read_predictions(out / "blurmini" / "predictions.jsonl")
    assert len(preds) == 8  # the 8 test images of the 2-crop series
    for p in preds.values():
        assert list(p.probs) == list(LEVEL_WORDS) and sum(p.probs.values()) == pytest.approx(1.0)
        expected = sum(v * k for k, v in zip(range(1, 6), p.probs.values(), strict=True))
        assert p.score == pytest.approx(expected) and p.std > 0
    (row,) = list(csv.DictReader((out / "results.csv").open()))
    assert row["n"] == "8" and row["n_gaps"] == "8"
    for key in ("srcc", "plcc", "js_gauss", "js_levels", "kl_gauss"):
        assert np.isfinite(float(row[key])), key
    assert (out / "blurmini" / "scatter.png").is_file() and (
        out / "blurmini" / "histogram.png"
    ).is_file()
    assert (
        "not recorded in the model" in text
        and "| PeerNet | blurmini (seen) | 0.900 | 0.910 |" in text
    )
    assert json.loads((out / "run.json").read_text())["model_id"]


def test_deqa_checkpoint_states_its_training_data(mini, tiny_vlm_path, zero_shot, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_vlm_path("qwen2_5_vl"), ckpt)
    DeQAConfig(
        extras={"train_manifests": ["/data/koniq_train.jsonl", "/data/spaq_train.jsonl"]}
    ).save(ckpt)
    out = tmp_path / "out"
    assert (
        _run(mini, ckpt, out, "--compare", "--references", str(mini["refs"]), "--bootstrap", "0")
        == 0
    )
    text = capsys.readouterr().out
    assert "| manifests: koniq_train.jsonl, spaq_train.jsonl |" in text
    meta = json.loads((out / "run.json").read_text())
    assert meta["training_data"] == "manifests: koniq_train.jsonl, spaq_train.jsonl"
    # Same weights, same default prompt: the checkpoint scores exactly like the zero-shot run.
    a = read_predictions(out / "blurmini" / "predictions.jsonl")
    b = read_predictions(zero_shot[1] / "blurmini" / "predictions.jsonl")
    assert {k: v.score for k, v in a.items()} == pytest.approx(
        {k: v.score for k, v in b.items()}, abs=1e-6
    )


def test_builtin_baseline_end_to_end_without_transformers(tmp_path):
    """No --model: the built-in degradation CNN, through the same command, in a fresh process that
    must not import transformers or peft (the built-in path stays light)."""
    root = tmp_path / "data"
    images, _ = make_blur_dataset(root, n_crops=3, size=224)  # the built-in model works at 224 px
    (root / "datasets.yaml").write_text(REGISTRY)
    out = tmp_path / "out"
    argv = [
        "--registry", str(root / "datasets.yaml"), "--datasets", "blurmini", "--split", "all",
        "--image-root", str(images), "--output", str(out), "--bootstrap", "100",
        "--num-workers", "0", "--no-progress",
    ]  # fmt: skip
    code = (
        "import sys\n"
        "from deqa.cli.eval import main\n"
        f"rc = main({argv!r})\n"
        "heavy = sorted(m for m in ('transformers', 'peft') if m in sys.modules)\n"
        "print('RC', rc, 'HEAVY', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RC 0 HEAVY []" in proc.stdout
    meta = json.loads((out / "run.json").read_text())
    assert meta["model"] is None and meta["model_id"] == BUILTIN_MODEL_ID
    preds = read_predictions(out / "blurmini" / "predictions.jsonl")
    assert len(preds) == 18 and all(
        p.std is None and p.probs is None and 1 <= p.score <= 5 for p in preds.values()
    )
    (row,) = list(csv.DictReader((out / "results.csv").open()))
    # A scalar model: correlations and CIs, no distribution gaps.
    assert row["n"] == "18" and row["n_gaps"] == "0" and row["js_gauss"] == ""
    # The built-in model sees blur: sharp crops above their blurred versions, a high SRCC overall
    # (0.94 when this test was written; the blur series is the MOS order).
    assert float(row["srcc"]) > 0.8
    # Per crop: sigma 2 and sigma 4.5 both score below the sharp crop (blur is one of six heads, its
    # weight 0.21 caps its effect at 0.83 points; the v2 model measured 0.2-0.3 and 0.55-0.7 here).
    for c in range(3):
        sharp = preds[f"c{c}_b0.png"].score
        assert sharp > preds[f"c{c}_b3.png"].score + 0.1
        assert sharp > preds[f"c{c}_b5.png"].score + 0.4
    assert (out / "blurmini" / "scatter.png").is_file()


def test_a_checkpoint_retrained_in_place_is_another_model(mini, tiny_vlm_path, tmp_path, capsys):
    """Same folder, new weights: its id carries the weights' fingerprint, so the rerun is refused
    instead of reporting the old weights' predictions as the new model's."""
    from safetensors.torch import load_file, save_file

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_vlm_path("qwen2_5_vl"), ckpt)
    out = tmp_path / "out"
    assert _run(mini, ckpt, out, "--bootstrap", "0") == 0
    assert _run(mini, ckpt, out, "--bootstrap", "0") == 0  # same weights: resumed
    (weights,) = ckpt.glob("*.safetensors")
    state = load_file(weights)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name] + 0.01
    save_file(state, weights, metadata={"format": "pt"})
    capsys.readouterr()
    assert _run(mini, ckpt, out, "--bootstrap", "0") == 1
    assert "holds predictions of another model (model_id" in capsys.readouterr().err


def test_a_run_that_scored_nothing_does_not_lock_the_output(tmp_path, capsys):
    root = tmp_path / "data"
    images, _ = make_blur_dataset(root, n_crops=2, size=224)
    (root / "datasets.yaml").write_text(REGISTRY)
    out = tmp_path / "out"
    argv = ["--registry", str(root / "datasets.yaml"), "--datasets", "blurmini", "--output", str(out),
            "--bootstrap", "0", "--num-workers", "0", "--no-progress"]  # fmt: skip
    capsys.readouterr()
    assert eval_cli.main([*argv, "--image-root", str(root)]) == 1  # the wrong folder: nothing found
    said = capsys.readouterr()
    first = sorted(p.name for p in images.iterdir())[0]
    assert "blurmini: none of its" in said.out + said.err and "--image-root must be the folder that holds" in said.out + said.err
    assert (out / "blurmini" / "missing.txt").read_text().splitlines()[0] == first  # every missing one, listed
    assert eval_cli.main([*argv, "--image-root", str(images)]) == 0
    assert not (out / "blurmini" / "missing.txt").exists()  # none missing now: the stale list is gone
