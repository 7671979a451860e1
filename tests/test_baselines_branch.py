"""Encoder branch of the degradation model: config, torch/numpy parity, save/load, training on cached features."""

import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

from deqa.baselines import load_baseline
from deqa.baselines.branch_train import (
    BranchTrainConfig,
    branch_features,
    choose_mix,
    fit_head,
    train_branch,
    trunk_id,
)
from deqa.baselines.degradation import (
    DegradationModelConfig,
    DegradationNet,
    load_degradation_model,
    save_degradation_model,
)
from deqa.baselines.degradation_config import BRANCH_WEIGHTS_NAME, EncoderBranchConfig, mix_logits
from deqa.baselines.degradation_numpy import (
    NumpyBranchedDegradationNet,
    NumpyDegradationScorer,
    load_numpy_degradation_model,
)
from deqa.baselines.encoder_branch import (
    BranchedDegradationNet,
    EncoderBranch,
    branch_head,
    imagenet_trunk_state,
)
from deqa.baselines.synth import SynthConfig, render_dataset

HEADS = DegradationModelConfig().heads


def _branched(image_size=64, taps=(-1, 0, 2, 4, 7, 10, 14, 15), seed=0, mix=0.5):
    torch.manual_seed(seed)
    cfg = DegradationModelConfig(image_size=image_size)
    bcfg = EncoderBranchConfig(taps=taps, mix={h: mix for h in cfg.heads})
    branch = EncoderBranch(bcfg, len(cfg.heads), image_size)
    branch.trunk.load_state_dict(imagenet_trunk_state(bcfg))
    with torch.no_grad():  # non-trivial standardisation so that a mix-up between the two runtimes shows
        branch.feat_mean.uniform_(-0.1, 0.1)
        branch.feat_std.uniform_(0.5, 2.0)
    return BranchedDegradationNet(DegradationNet(cfg), branch).eval()


def _images(n, size, seed=0):
    return (np.random.default_rng(seed).random((n, size, size, 3)) * 255).astype(np.uint8)


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="taps"):
        EncoderBranchConfig(taps=(0, 16))
    with pytest.raises(ValueError, match="taps"):
        EncoderBranchConfig(taps=(2, 2))
    with pytest.raises(ValueError, match="only 'efficientnet-lite0'"):
        EncoderBranchConfig(encoder="efficientnet-lite2")
    with pytest.raises(ValueError, match=r"mix weights must be in \[0, 1\]"):
        EncoderBranchConfig(mix={"blur": 1.5})
    with pytest.raises(ValueError, match="unknown key"):
        EncoderBranchConfig.from_dict({"tap": [0]})
    with pytest.raises(ValueError, match="mix names"):
        EncoderBranchConfig(mix={"blur": 0.5}).check_heads(HEADS)
    np.testing.assert_allclose(mix_logits(np.array([[2.0, -2.0]]), np.array([[0.0, 2.0]]), np.array([0.25, 1.0])), [[1.5, 2.0]])


def test_trunk_is_frozen_and_stays_in_eval_mode():
    model = _branched()
    model.train()
    assert not model.branch.trunk.training and model.branch.head.training
    assert not any(p.requires_grad for p in model.branch.trunk.parameters())
    assert all(p.requires_grad for p in model.branch.head.parameters())
    # The tap layout: mean and std of each tap's channels (stem 32, block 0 16, ... block 15 320).
    assert model.branch.dim == 2 * (32 + 16 + 24 + 40 + 80 + 112 + 192 + 320)


@pytest.mark.parametrize(("size", "taps"), [(64, (-1, 0, 2, 4, 7, 10, 14, 15)), (96, (2, 7)), (224, (-1, 15))])
def test_numpy_runtime_matches_torch(tmp_path, size, taps):
    model = _branched(size, taps)
    save_degradation_model(model, tmp_path, extra={"model_id": "unit"})
    fast = load_numpy_degradation_model(tmp_path)
    slow = load_degradation_model(tmp_path)
    assert isinstance(fast, NumpyBranchedDegradationNet) and isinstance(slow, BranchedDegradationNet)
    x = _images(3, size)
    with torch.no_grad():
        xt = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
        f_t, p_t = slow.branch.features(xt).numpy(), slow.intensities(xt).numpy()
    f_n, p_n = fast.branch.features(x), fast.intensities(x)
    assert f_n.shape == f_t.shape == (3, slow.branch.dim)
    np.testing.assert_allclose(f_n, f_t, rtol=1e-4, atol=1e-4 * np.abs(f_t).max())
    np.testing.assert_allclose(p_n, p_t, atol=2e-5)
    # The blend is real: the CNN alone gives other intensities.
    with torch.no_grad():
        assert np.abs(slow.cnn.intensities(xt).numpy() - p_t).max() > 1e-3


def test_save_reload_identical_trunk_float16_and_size(tmp_path):
    model = _branched()
    save_degradation_model(model, tmp_path, extra={"model_id": "unit"})
    cfg = json.loads((tmp_path / "deqa_baseline.json").read_text())
    assert cfg["branch"]["mix"] == {h: 0.5 for h in HEADS}
    from safetensors.torch import load_file

    stored = load_file(str(tmp_path / BRANCH_WEIGHTS_NAME))
    assert stored["trunk._conv_stem.weight"].dtype == torch.float16 and stored["head.0.weight"].dtype == torch.float32
    again = load_degradation_model(tmp_path)
    assert torch.equal(again.branch.trunk._conv_stem.weight, stored["trunk._conv_stem.weight"].float())
    with torch.no_grad():
        x = torch.rand(2, 3, 64, 64)
        first = again.intensities(x)
        again.train()  # BN/dropout mix-ups must not change what the scorer computes
        scorer = load_baseline(tmp_path, backend="torch")
        scorer.model.train()
        assert torch.allclose(scorer.model.eval().intensities(x), first)
    # The CNN alone loads for a warm start, and a CNN-only save removes a stale branch file.
    cnn = load_degradation_model(tmp_path, cnn_only=True)
    assert isinstance(cnn, DegradationNet)
    save_degradation_model(cnn, tmp_path)
    assert not (tmp_path / BRANCH_WEIGHTS_NAME).exists()
    assert isinstance(load_numpy_degradation_model(tmp_path), type(load_numpy_degradation_model(tmp_path)))
    assert "branch" not in json.loads((tmp_path / "deqa_baseline.json").read_text())


def test_load_errors_name_the_tensor_or_file(tmp_path):
    model = _branched()
    save_degradation_model(model, tmp_path)
    from safetensors.torch import load_file, save_file

    path = tmp_path / BRANCH_WEIGHTS_NAME
    state = load_file(str(path))
    partial = {k: v for k, v in state.items() if k != "trunk._blocks.3._bn1.running_var"}
    save_file(partial, str(path))
    with pytest.raises(ValueError, match=r"_blocks\.3\._bn1\.running_var"):
        load_numpy_degradation_model(tmp_path)
    with pytest.raises(ValueError, match=r"_blocks\.3\._bn1\.running_var"):
        load_degradation_model(tmp_path)
    save_file({**state, "trunk._conv_head.weight": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="_conv_head"):
        load_numpy_degradation_model(tmp_path)
    with pytest.raises(ValueError, match="_conv_head"):
        load_degradation_model(tmp_path)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=BRANCH_WEIGHTS_NAME):
        load_numpy_degradation_model(tmp_path)
    with pytest.raises(FileNotFoundError, match=BRANCH_WEIGHTS_NAME):
        load_degradation_model(tmp_path)
    save_degradation_model(model, tmp_path)
    cfg = json.loads((tmp_path / "deqa_baseline.json").read_text())
    del cfg["branch"]["mix"]["blur"]
    (tmp_path / "deqa_baseline.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="mix names"):
        load_baseline(tmp_path)


def test_choose_mix_picks_the_better_model_per_head():
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 1, (400, 2)).astype(np.float32)
    logit = np.log(y / (1 - y))
    good = logit + rng.normal(0, 0.1, y.shape)
    bad = rng.normal(0, 2, y.shape)
    # head a: the CNN is right, the branch is noise; head b the other way round
    cnn = np.stack([good[:, 0], bad[:, 1]], 1).astype(np.float32)
    branch = np.stack([bad[:, 0], good[:, 1]], 1).astype(np.float32)
    mix, info = choose_mix(cnn, branch, y, ("a", "b"))
    assert mix["a"] <= 0.1 and mix["b"] >= 0.9
    assert info["a"]["by"] == info["b"]["by"] == "bce"
    # A model that ranks perfectly but is badly calibrated (logits x 6) loses on BCE to a calibrated,
    # noisier one; graded on a sweep set (the goal's SRCC), the ranking wins.
    sharp = np.stack([6 * logit[:, 0], bad[:, 1]], 1).astype(np.float32)
    calibrated = np.stack([logit[:, 0] + rng.normal(0, 0.6, len(y)), good[:, 1]], 1).astype(np.float32)
    by_bce, _ = choose_mix(sharp, calibrated, y, ("a", "b"))
    assert by_bce["a"] >= 0.5
    by_srcc, info = choose_mix(sharp, calibrated, y, ("a", "b"), sweeps={"a": [(sharp, calibrated, y)]})
    assert by_srcc["a"] == 0.0 and info["a"]["by"] == "srcc" and info["a"]["value"] == pytest.approx(1.0)
    assert by_srcc["b"] == by_bce["b"] and info["b"]["by"] == "bce"


def test_fit_head_learns_and_keeps_the_best_epoch():
    # Two heads whose targets are sigmoids of linear features: learnable, so validation loss must fall.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 12, generator=g)
    y = torch.sigmoid(x[:, :2] * 2.0)
    cfg = BranchTrainConfig(cnn="-", train_data=["-"], val_data="-", out_dir="-", epochs=8, batch_size=64,
                            warmup_steps=5, branch={"head_hidden": [32], "dropout": 0.1})
    torch.manual_seed(0)
    head = branch_head(cfg.branch_config(), 12, 2)
    w = torch.tensor([1.0, 1.5])
    best, log = fit_head(head, head, (x[:500], y[:500]), (x[500:], y[500:]), w, cfg)
    assert [r["epoch"] for r in log] == list(range(1, 9))
    assert best == pytest.approx(min(r["val_loss"] for r in log), abs=1e-5) and best < log[0]["val_loss"] - 0.01
    assert not head.training  # eval mode: dropout off, so the loss below is the kept epoch's
    from deqa.baselines.degradation_train import head_loss

    with torch.no_grad():
        assert head_loss(head(x[500:]), y[500:], w).item() == pytest.approx(best, abs=1e-6)
    # Validation targets that contradict training: the loss rises as the head learns, so the first
    # epoch is the best one and its weights, not the last epoch's, are what the head holds after.
    torch.manual_seed(0)
    head = branch_head(cfg.branch_config(), 12, 2)
    best, log = fit_head(head, head, (x[:500], y[:500]), (x[500:], 1 - y[500:]), w, cfg)
    assert log[0]["best"] and not any(r["best"] for r in log[1:]) and log[-1]["val_loss"] > best + 0.01
    with torch.no_grad():
        assert head_loss(head(x[500:]), 1 - y[500:], w).item() == pytest.approx(best, abs=1e-6)


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("branch_synth")
    from skimage import data

    photo = root / "coffee.png"
    Image.fromarray(data.coffee()).resize((150, 100)).save(photo)
    cfg = SynthConfig(size=64)
    train = render_dataset([photo], root / "train", 96, cfg, seed=1, progress=False)
    val = render_dataset([photo], root / "val", 32, cfg, seed=2, progress=False)
    render_dataset([photo], root / "val_sweep_blur", 24, SynthConfig(size=64, sweep="blur"), seed=3, progress=False)
    cnn = DegradationNet(DegradationModelConfig(image_size=64))
    save_degradation_model(cnn, root / "cnn", extra={"model_id": "unit-cnn"})
    return train, val, root / "cnn"


def test_branch_training_out_dir_rules(tiny_sets, tmp_path):
    """--out: new, or this same run again; not another run's output nor the CNN itself; a run
    refused by a check leaves no folder behind."""
    train, val, cnn_dir = tiny_sets
    cfg = BranchTrainConfig(cnn=str(cnn_dir), train_data=[str(train)], val_data=str(val), out_dir=str(tmp_path / "m"),
                            epochs=1, batch_size=32, warmup_steps=0, num_threads=1)
    train_branch(cfg, progress=False)
    first = (tmp_path / "m" / "branch.safetensors").read_bytes()
    train_branch(cfg, progress=False)  # the same run again: allowed, and deterministic
    assert (tmp_path / "m" / "branch.safetensors").read_bytes() == first
    with pytest.raises(ValueError, match=r"holds another branch-train run \(settings that differ: epochs\)"):
        train_branch(BranchTrainConfig(**{**cfg.__dict__, "epochs": 2}), progress=False)
    with pytest.raises(ValueError, match="is the --cnn folder"):
        train_branch(BranchTrainConfig(**{**cfg.__dict__, "out_dir": str(cnn_dir)}), progress=False)
    with pytest.raises(ValueError, match="loss_weights names"):
        train_branch(BranchTrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "new"), "loss_weights": {"x": 1.0}}),
                     progress=False)
    assert not (tmp_path / "new").exists()


def test_branch_training_refuses_sets_of_other_watermark_labels(tiny_sets, tmp_path, monkeypatch):
    """A CNN trained on ink-matched watermarks gets a branch and blend from ink-matched sets only
    (and the other way round), refused before any trunk feature is computed."""
    import deqa.baselines.branch_train as bt

    train, val, cnn_dir = tiny_sets
    cnn4 = tmp_path / "cnn4"
    save_degradation_model(load_degradation_model(cnn_dir), cnn4, extra={"model_id": "unit-cnn", "watermark_ink": True})
    monkeypatch.setattr(bt, "branch_features", lambda *a, **k: pytest.fail("features computed before the check"))
    cfg = BranchTrainConfig(cnn=str(cnn4), train_data=[str(train)], val_data=str(val), out_dir=str(tmp_path / "m"),
                            val_sweeps=[str(train.parent / "val_sweep_blur")], epochs=1, num_threads=1)
    with pytest.raises(ValueError, match=r"val_sweep_blur: rendered without --watermark-ink but the model was trained with it"):
        train_branch(cfg, progress=False)
    with pytest.raises(ValueError, match=r"train: rendered without --watermark-ink but the model was trained with it"):
        train_branch(BranchTrainConfig(**{**cfg.__dict__, "val_sweeps": []}), progress=False)
    # The other way round, with the odd set last: a v3 CNN, v3 training data, a v4 validation set.
    val4 = render_dataset([train.parent / "coffee.png"], tmp_path / "val4", 8, SynthConfig(size=64, watermark_ink=True),
                          seed=2, progress=False)
    with pytest.raises(ValueError, match=r"val4: rendered with --watermark-ink but the model was trained without it"):
        train_branch(BranchTrainConfig(**{**cfg.__dict__, "cnn": str(cnn_dir), "val_sweeps": [], "val_data": str(val4)}),
                     progress=False)


def test_branch_training_end_to_end_and_feature_cache(tiny_sets, tmp_path, monkeypatch):
    train, val, cnn_dir = tiny_sets
    cfg = BranchTrainConfig(cnn=str(cnn_dir), train_data=[str(train)], val_data=str(val), out_dir=str(tmp_path / "m"),
                            val_sweeps=[str(train.parent / "val_sweep_blur")],
                            epochs=6, batch_size=32, warmup_steps=0, num_threads=1, branch={"taps": [-1, 2, 4]})
    summary = train_branch(cfg, progress=False)
    assert summary["mix_choice"]["blur"]["by"] == "srcc" and summary["mix_choice"]["noise"]["by"] == "bce"
    log = [json.loads(x) for x in (tmp_path / "m" / "branch_train_log.jsonl").read_text().splitlines()]
    assert len(log) == 7 and log[-1]["mix"] == summary["mix"]
    assert min(r["val_loss"] for r in log[:-1]) < log[0]["val_loss"] or log[-2]["train_loss"] < log[0]["train_loss"]
    assert set(summary["mix"]) == set(HEADS) and all(0.0 <= m <= 1.0 for m in summary["mix"].values())
    model = load_degradation_model(tmp_path / "m")
    assert isinstance(model, BranchedDegradationNet)
    # Only the head trained: the trunk is ImageNet's (as stored, float16) and the CNN is the one given.
    ref = imagenet_trunk_state(model.branch.cfg)
    for k, v in model.branch.trunk.state_dict().items():
        if v.is_floating_point():
            assert torch.equal(v, ref[k].half().float()), k
    cnn = load_degradation_model(cnn_dir)
    assert all(torch.equal(a, b) for a, b in zip(cnn.state_dict().values(), model.cnn.state_dict().values(), strict=True))
    assert json.loads((tmp_path / "m" / "deqa_baseline.json").read_text())["model_id"] == "unit-cnn"
    scorer = load_baseline(tmp_path / "m")
    assert isinstance(scorer, NumpyDegradationScorer)
    r = scorer.score([Image.fromarray(_images(1, 80)[0])])[0]
    assert 1.0 <= r.score <= 5.0 and set(r.details) == set(HEADS)
    # Second run: the features come from the cache, the trunk never runs.
    def no_trunk(*a, **k):
        raise AssertionError("trunk ran although the features are cached")

    monkeypatch.setattr(EncoderBranch, "features", no_trunk)
    again = train_branch(BranchTrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "m2")}), progress=False)
    assert again["n_train"] == 96


def test_feature_cache_resumes_after_interruption(tiny_sets):
    train, _, _ = tiny_sets
    branch = _branched(taps=(0, 2)).branch
    full = branch_features(branch, train, batch_size=16, chunk=32, progress=False).copy()
    tid = trunk_id(branch)  # the set folder also holds the cache of other tests' trunks
    (train / "branch_features" / f"{tid}.done").write_text("32")  # as if stopped after the first chunk
    arr = np.load(train / "branch_features" / f"{tid}.npy", mmap_mode="r+")
    arr[:32] = 7.0  # a marker: the rows already done must be kept, not recomputed
    arr[32:] = 0.0
    arr.flush()
    again = branch_features(branch, train, batch_size=16, chunk=32, progress=False)
    assert (again[:32] == 7.0).all()
    np.testing.assert_allclose(again[32:], full[32:], rtol=1e-6, atol=1e-6)


def test_feature_cache_follows_the_images(tiny_sets, tmp_path):
    """A set rendered again with other pixels gets its features recomputed; the same bytes keep them."""
    import shutil

    train, _, _ = tiny_sets
    data = tmp_path / "copy"
    shutil.copytree(train, data, ignore=shutil.ignore_patterns("branch_features"))
    branch = _branched(taps=(0,)).branch
    first = branch_features(branch, data, batch_size=16, progress=False).copy()
    imgs = np.load(data / "images.npy", mmap_mode="r+")
    imgs[0] = 255 - imgs[0]  # as a re-render that changed one image would
    imgs.flush()
    del imgs
    changed = branch_features(branch, data, batch_size=16, progress=False)
    assert not np.allclose(changed[0], first[0]) and np.allclose(changed[1:], first[1:], atol=1e-6)
    # Unchanged images: the cache is read back, the trunk never runs.
    marker = np.load(data / "branch_features" / f"{trunk_id(branch)}.npy", mmap_mode="r+")
    marker[:] = 3.0
    marker.flush()
    assert (branch_features(branch, data, batch_size=16, progress=False) == 3.0).all()


def test_a_re_rendered_set_stopped_in_its_first_chunk_is_not_read_as_finished(tiny_sets, tmp_path, monkeypatch):
    """A finished cache, the set rendered again, the new features stopped inside their first
    chunk: the next call must compute them, not read the old set's "all done" count (it returned
    rows of zeros)."""
    import shutil

    train, _, _ = tiny_sets
    data = tmp_path / "copy"
    shutil.copytree(train, data, ignore=shutil.ignore_patterns("branch_features"))
    branch = _branched(taps=(0,)).branch
    branch_features(branch, data, batch_size=16, chunk=32, progress=False)
    imgs = np.load(data / "images.npy", mmap_mode="r+")
    imgs[:] = 255 - imgs[:]  # rendered again, every image other
    imgs.flush()
    del imgs
    real = branch.features
    calls = []

    def stop_after_one_batch(x):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(x)

    monkeypatch.setattr(branch, "features", stop_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        branch_features(branch, data, batch_size=16, chunk=32, progress=False)
    monkeypatch.setattr(branch, "features", real)
    again = branch_features(branch, data, batch_size=16, chunk=32, progress=False)
    fresh = tmp_path / "fresh"
    shutil.copytree(data, fresh, ignore=shutil.ignore_patterns("branch_features"))
    np.testing.assert_allclose(again, branch_features(branch, fresh, batch_size=16, progress=False), atol=1e-6)
    assert np.abs(again).sum(axis=1).min() > 0  # no row of zeros


def test_feature_cache_trusts_the_stamp_only_for_an_unchanged_file(tiny_sets, tmp_path, monkeypatch):
    """The images' digest is not re-read while size and mtime match a stamp taken well after the
    last write; a touched file, or a stamp taken right after a write, is hashed again."""
    import os
    import shutil

    from deqa.baselines import branch_train

    train, _, _ = tiny_sets
    data = tmp_path / "copy"
    shutil.copytree(train, data, ignore=shutil.ignore_patterns("branch_features"))
    images = data / "images.npy"
    old = images.stat().st_mtime_ns - 60 * 10**9
    os.utime(images, ns=(old, old))
    branch = _branched(taps=(0,)).branch
    hashed = []
    real = branch_train.images_digest
    monkeypatch.setattr(branch_train, "images_digest", lambda p: hashed.append(p) or real(p))
    first = branch_features(branch, data, batch_size=16, progress=False).copy()
    assert len(hashed) == 1
    np.testing.assert_array_equal(branch_features(branch, data, batch_size=16, progress=False), first)
    assert len(hashed) == 1  # stat unchanged: the stamp's digest is used
    os.utime(images, ns=(old + 10**9, old + 10**9))  # the same bytes, written again
    np.testing.assert_array_equal(branch_features(branch, data, batch_size=16, progress=False), first)
    assert len(hashed) == 2  # hashed again, found equal, cache kept
    # A write in the last 2 s may share the stamp's clock tick: never trusted.
    now = time.time_ns()
    os.utime(images, ns=(now, now))
    branch_features(branch, data, batch_size=16, progress=False)
    branch_features(branch, data, batch_size=16, progress=False)
    assert len(hashed) == 4


def test_branch_config_errors(tiny_sets, tmp_path):
    train, val, cnn_dir = tiny_sets
    base = {"cnn": str(cnn_dir), "train_data": [str(train)], "val_data": str(val), "out_dir": str(tmp_path)}
    with pytest.raises(ValueError, match="unknown key"):
        BranchTrainConfig.from_dict({**base, "epoch": 3})
    with pytest.raises(ValueError, match="'mix' is chosen on the validation set"):
        BranchTrainConfig.from_dict({**base, "branch": {"mix": {"blur": 1.0}}})
    with pytest.raises(ValueError, match="taps"):
        BranchTrainConfig.from_dict({**base, "branch": {"taps": [99]}})
    with pytest.raises(ValueError, match="loss_weights"):
        train_branch(BranchTrainConfig.from_dict({**base, "loss_weights": {"sharpness": 2.0}}), progress=False)
    with pytest.raises(ValueError, match="not a sweep set"):
        train_branch(BranchTrainConfig.from_dict({**base, "epochs": 1, "val_sweeps": [str(val)]}), progress=False)
    from deqa.cli.baseline import main

    with pytest.raises(SystemExit, match="branch-train: .*unknown key"):
        main(["branch-train", "--cnn", str(cnn_dir), "--train-data", str(train), "--val-data", str(val),
              "--out", str(tmp_path / "x"), "--config", '{"epoch": 3}'])


def test_model_card_describes_the_branch(tiny_sets, tmp_path):
    from deqa.baselines.card import write_model_card

    train, val, cnn_dir = tiny_sets
    out = tmp_path / "m"
    train_branch(BranchTrainConfig(cnn=str(cnn_dir), train_data=[str(train)], val_data=str(val), out_dir=str(out),
                                   epochs=2, batch_size=32, warmup_steps=0, num_threads=1, branch={"taps": [-1, 2]}),
                 progress=False)
    metrics = {"protocol": "deqa-heldout-v3", "image_size": 64,
               "mixed": {"n": 4, "overall_srcc_vs_weighted_total": 0.5, "overall_srcc_vs_sum": 0.5,
                         "heads": {h: {"mae": 0.1, "srcc": 0.5} for h in HEADS}}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    log = out / "branch_train_log.jsonl"
    mix = json.loads(log.read_text().splitlines()[-1])["mix"]
    # The CNN taken as it was (no CNN round in this build): lineage + branch log are enough.
    card = write_model_card(out, tmp_path / "metrics.json", [], lineage="the unit CNN", branch_log=log).read_text()
    assert "- CNN: taken unchanged from an earlier build (the unit CNN)" in card
    assert "**Encoder branch**: a frozen efficientnet-lite0 trunk" in card
    assert "stem (32), block 2 (24)" in card and "112 features" in card
    assert ", ".join(f"{h} {mix[h]:.2f}" for h in HEADS) in card
    assert "- Encoder branch: the trunk's pooled features" in card and "2 epochs on 96 crops" in card
    assert "- Training set: 96 random crops" in card
    assert "- The CNN was trained by an earlier build (the unit CNN)" in card
    assert "Encoder branch data" not in card  # one training set: nothing more to say
    assert "share per head was chosen on validation data: by the lowest validation BCE for colour_cast (" in card
    with pytest.raises(ValueError, match="at least one training round"):
        write_model_card(out, tmp_path / "metrics.json", [], branch_log=log)
    # A mistyped branch log is an error naming it, not a card without the branch's training lines.
    with pytest.raises(ValueError, match="branch log .*nope.jsonl is not a file"):
        write_model_card(out, tmp_path / "metrics.json", [], lineage="the unit CNN", branch_log=tmp_path / "nope.jsonl")


def test_numpy_depthwise_matches_torch():
    from deqa.baselines.effnet_numpy import NumpyEffNetTrunk

    rng = np.random.default_rng(0)
    for k, s in ((3, 1), (5, 2)):
        x = rng.random((5, 13, 12, 8), dtype=np.float32)
        w, b = rng.random((k, k, 8), dtype=np.float32), rng.random(8, dtype=np.float32)
        one = NumpyEffNetTrunk._depthwise(x, w, b, s)
        # against torch's depthwise conv with TensorFlow "same" padding
        pad_h, pad_w = max((-(-13 // s) - 1) * s + k - 13, 0), max((-(-12 // s) - 1) * s + k - 12, 0)
        xt = torch.nn.functional.pad(torch.from_numpy(x).permute(0, 3, 1, 2), [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        ref = torch.nn.functional.conv2d(xt, torch.from_numpy(w).permute(2, 0, 1)[:, None], torch.from_numpy(b), stride=s, groups=8)
        np.testing.assert_allclose(one, ref.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-5)
