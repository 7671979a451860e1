"""Full-resolution windows for the pixel-scale heads (DetailViews): geometry, combining, both
runtimes, loading, and what they change on the shipped model."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from deqa.baselines import _weights_tag, builtin_model_dir, load_baseline
from deqa.baselines.degradation import (
    DegradationModelConfig,
    DegradationNet,
    save_degradation_model,
)
from deqa.baselines.degradation_config import DetailViews, ResizeToArray, WindowedBatch

HEADS = DegradationModelConfig().heads


def _photo(w, h, seed=0):
    return Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8))


def test_windows_geometry():
    v = DetailViews(grid=3, min_side=100)
    img = _photo(300, 200)
    a = np.asarray(img)
    wins = v.windows(img, 64)
    assert len(wins) == 9 and all(w.shape == (64, 64, 3) for w in wins)
    np.testing.assert_array_equal(wins[0], a[:64, :64])  # corner to corner, rows first
    np.testing.assert_array_equal(wins[2], a[:64, -64:])
    np.testing.assert_array_equal(wins[8], a[-64:, -64:])
    assert v.windows(_photo(300, 99), 64) == []  # short side below min_side: whole view only
    assert DetailViews(grid=3, min_side=10).windows(_photo(50, 300), 64) == []  # never smaller than the model's input


def test_combine_replaces_only_the_window_heads_of_images_with_windows():
    v = DetailViews(heads=("noise", "jpeg"))
    whole = np.full((3, len(HEADS)), 0.1, np.float32)
    windows = np.arange(5 * len(HEADS), dtype=np.float32).reshape(5, len(HEADS)) / 100
    out = v.combine(HEADS, whole, windows, np.array([2, 0, 3]))
    n, j = HEADS.index("noise"), HEADS.index("jpeg")
    assert out[0, n] == pytest.approx(windows[:2, n].mean()) and out[0, j] == pytest.approx(windows[:2, j].mean())
    assert out[2, n] == pytest.approx(windows[2:, n].mean())
    np.testing.assert_array_equal(out[1], whole[1])  # no windows: the whole view stands
    others = [i for i, h in enumerate(HEADS) if h not in ("noise", "jpeg")]
    np.testing.assert_array_equal(out[:, others], whole[:, others])
    np.testing.assert_array_equal(whole, np.float32(0.1))  # the input is not modified


def test_views_config_errors():
    with pytest.raises(ValueError, match="grid"):
        DetailViews(grid=0)
    with pytest.raises(ValueError, match="unknown key"):
        DetailViews.from_dict({"grids": 3})
    with pytest.raises(ValueError, match="not heads of the model"):
        DetailViews(heads=("grain",)).check_heads(HEADS)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("views_model")
    torch.manual_seed(0)
    net = DegradationNet(DegradationModelConfig(image_size=64))
    net.train()
    with torch.no_grad():  # non-trivial BN statistics
        net(torch.rand(4, 3, 64, 64))
    save_degradation_model(net.eval(), folder, extra={"model_id": "unit", "views": {"grid": 2, "min_side": 128}})
    return folder


def test_both_runtimes_agree_with_windows_and_small_images_are_unchanged(tiny_model):
    imgs = [_photo(300, 200, 1), _photo(90, 70, 2), _photo(256, 256, 3)]
    num = load_baseline(tiny_model)  # "auto": the folder's "views" entry
    tor = load_baseline(tiny_model, backend="torch")
    assert num.views == DetailViews(grid=2, min_side=128) == tor.views
    batch = num.make_collate()(imgs)
    assert isinstance(batch, WindowedBatch) and list(batch.counts) == [4, 0, 4] and batch.windows.shape == (8, 64, 64, 3)
    a, b = num.score(imgs), tor.score(imgs)
    for x, y in zip(a, b, strict=True):
        assert x.score == pytest.approx(y.score, abs=1e-5)
        assert all(x.details[h] == pytest.approx(y.details[h], abs=1e-5) for h in HEADS)
    whole = load_baseline(tiny_model, views="whole").score(imgs)
    assert load_baseline(tiny_model, views="whole").views is None
    unit = "unit" + _weights_tag(tiny_model)  # the name + its weights' digest
    assert whole[0].model == unit + "+whole" and a[0].model == unit  # another reading, another model id
    # The small image has no windows: the same numbers either way; the large ones differ in the
    # window heads only.
    assert whole[1].details == a[1].details and whole[1].score == a[1].score
    for h in HEADS:
        same = whole[0].details[h] == a[0].details[h]
        assert same == (h not in ("noise", "jpeg")), h


def test_load_views_option(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="views must be one of"):
        load_baseline(tiny_model, views="tiles")
    cfg = json.loads((tiny_model / "deqa_baseline.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in tiny_model.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    cfg["views"] = {"grid": 0}
    (bad / "deqa_baseline.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"deqa_baseline.json.*grid"):
        load_baseline(bad)
    del cfg["views"]
    (bad / "deqa_baseline.json").write_text(json.dumps(cfg))
    assert load_baseline(bad).views is None  # no entry: whole view unless asked
    assert load_baseline(bad, views="windows").views == DetailViews()
    unit = "unit" + _weights_tag(bad)
    assert load_baseline(bad, views="windows").model_id == unit + "+windows" and load_baseline(bad).model_id == unit


def test_collate_without_views_is_the_plain_array():
    out = ResizeToArray(64)([_photo(300, 200)])
    assert isinstance(out, np.ndarray) and out.shape == (1, 64, 64, 3)


def test_shipped_model_reads_full_resolution_noise_and_jpeg():
    """The point of the windows, on the shipped weights: noise and JPEG blocks made at the full
    resolution of a 512-px photo mostly vanish at 224 px; the windows see them."""
    import io

    from skimage import data

    assert json.loads((builtin_model_dir() / "deqa_baseline.json").read_text()).get("views") is not None
    photo = data.astronaut()
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(np.clip(photo + rng.normal(0, 20, photo.shape), 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=8)
    blocky = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    windows = load_baseline(None)
    whole = load_baseline(None, views="whole")
    wn, ww = windows.score([noisy, blocky]), whole.score([noisy, blocky])
    assert wn[0].details["noise"] > ww[0].details["noise"] + 0.2
    assert wn[1].details["jpeg"] > ww[1].details["jpeg"] + 0.2
    assert wn[0].score < ww[0].score and wn[1].score < ww[1].score


def test_card_describes_the_windows_and_their_measurement(tmp_path, tiny_model):
    from deqa.baselines.card import write_model_card

    metrics = {
        "protocol": "deqa-heldout-v3", "image_size": 64,
        "mixed": {"n": 10, "overall_srcc_vs_weighted_total": 0.95, "overall_srcc_vs_sum": 0.9,
                  "heads": {h: {"mae": 0.1, "srcc": 0.7, "roc_auc": 0.97} for h in HEADS}},
        "sweep": {h: {"srcc": 0.93, "mae": 0.05, "n": 20} for h in HEADS},
        "sweep_isolated": {h: {"srcc": 0.95, "mae": 0.04, "n": 20} for h in HEADS},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "log.jsonl").write_text(json.dumps({"epoch": 1, "val_loss": 0.3}) + "\n")
    row = {h: {"srcc_with_t": 0.8, "mean_at_t_ge_0.5": 0.2, "mean_on_clean": 0.001} for h in ("noise", "jpeg", "blur")}
    wrow = {**row, "noise": {"srcc_with_t": 0.957, "mean_at_t_ge_0.5": 0.739, "mean_on_clean": 0.01}}
    native = {"photos": 57, "short_side_px": {"min": 480, "median": 576, "max": 905}, "per_photo": 2,
              "views": {"whole": row, "windows 2x2": wrow, "windows 3x3": wrow}, "machine": "2-core CPU",
              "speed": {"photos": 24, "short_side_px_median": 661, "numpy whole": 14.63, "numpy windows": 3.98,
                        "torch whole": 19.0, "torch windows": 6.58}}
    (tmp_path / "native.json").write_text(json.dumps(native))
    card = write_model_card(tiny_model, tmp_path / "metrics.json", [tmp_path / "log.jsonl"],
                            native_path=tmp_path / "native.json").read_text()
    assert "reads 4 windows of 64 x 64 px" in card and "noise and JPEG are the mean of their window intensities" in card
    assert "| **windows 2x2** (this model) | 0.957 / 0.739 / 0.010 | 0.800 / 0.200 / 0.001 | 0.800 / 0.200 / 0.001 |" in card
    assert "numpy 14.6 -> 4.0 images/s, torch 19.0 -> 6.6 images/s (2-core CPU)" in card
    assert "| whole | 0.800 / 0.200 / 0.001 |" in card and "57 held-out photographs with a short side of 480-905 px" in card
    (tmp_path / "native.json").write_text(json.dumps({**native, "views": {}}))
    with pytest.raises(ValueError, match="no 'views' results"):
        write_model_card(tiny_model, tmp_path / "metrics.json", [tmp_path / "log.jsonl"], native_path=tmp_path / "native.json")


def test_deqa_score_views_option(tmp_path, capsys):
    from skimage import data

    from deqa.baselines import BUILTIN_MODEL_ID
    from deqa.cli.score import main

    img = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(img)
    rows = {}
    for views in (None, "whole", "windows"):
        argv = [str(img), "--format", "jsonl", "--num-workers", "0", "-q"] + ([] if views is None else ["--views", views])
        assert main(argv) == 0
        rows[views] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # The built-in model reads windows by default; --views whole is another reading and says so.
    assert rows[None]["model"] == rows["windows"]["model"] == BUILTIN_MODEL_ID
    assert rows["whole"]["model"] == BUILTIN_MODEL_ID + "+whole"
    assert rows[None]["score"] == rows["windows"]["score"] != rows["whole"]["score"]
    # And deqa-score will not resume a file of one reading with the other.
    out = tmp_path / "s.jsonl"
    assert main([str(img), "-o", str(out), "--num-workers", "0", "-q"]) == 0
    assert main([str(img), "-o", str(out), "--num-workers", "0", "-q", "--views", "whole"]) == 1
    assert "holds scores from model" in capsys.readouterr().err


def test_trained_baselines_of_one_name_but_other_weights_are_other_models(tiny_model, tmp_path, capsys):
    """The reviewer's case: every `deqa baseline train` run is called deqa-degradation (here
    'unit'), and a folder can be retrained in place; deqa-score -o must not resume one model's
    file with the other's scores."""
    import shutil

    import torch

    from deqa.baselines.degradation import load_degradation_model, save_degradation_model
    from deqa.cli.score import main as score_main

    img = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(img)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    assert _weights_tag(copy) == _weights_tag(tiny_model)  # the same weights elsewhere: the same model
    out = tmp_path / "s.jsonl"
    assert score_main([str(img), "--model", str(copy), "-o", str(out), "-q"]) == 0
    net = load_degradation_model(copy)  # retrained in place, as it were: other weights, same name
    with torch.no_grad():
        next(net.parameters()).add_(0.1)
    cfg = json.loads((copy / "deqa_baseline.json").read_text())
    save_degradation_model(net, copy, extra={k: v for k, v in cfg.items() if k in ("model_id", "views")})
    assert _weights_tag(copy) != _weights_tag(tiny_model)
    capsys.readouterr()
    assert score_main([str(img), "--model", str(copy), "-o", str(out), "-q"]) == 1
    assert "unit@" in capsys.readouterr().err
