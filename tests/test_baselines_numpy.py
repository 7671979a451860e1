"""The numpy runtime of the degradation CNN gives the torch module's outputs, without torch."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from deqa.baselines import builtin_model_dir, load_baseline
from deqa.baselines.degradation import (
    DegradationModelConfig,
    DegradationNet,
    DegradationScorer,
    load_degradation_model,
    save_degradation_model,
)
from deqa.baselines.degradation_numpy import NumpyDegradationScorer, load_numpy_degradation_model

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deqa" / "assets" / "examples" / "example.jpg"


def _net_with_stats(cfg: DegradationModelConfig, seed: int) -> DegradationNet:
    """A random net whose BN running statistics are far from (0, 1), so a wrong fold shows."""
    torch.manual_seed(seed)
    net = DegradationNet(cfg)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.3, 3.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def _torch_intensities(net: DegradationNet, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net.intensities(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0).numpy()


@pytest.mark.parametrize(
    ("model", "size"),
    [({}, (64, 64)),
     ({"stem_stride": 2}, (64, 80)),
     ({"stem_stride": 1, "widths": [8, 16, 16, 24]}, (48, 40)),
     # ragged sizes: the patchify stem and the floor-mode pools drop the edge as torch does
     ({"stem_stride": 4, "image_size": 70}, (70, 75)),
     ({"heads": ["blur", "watermark"], "head_hidden": [32], "se_hidden": 8, "widths": [16, 32]}, (33, 47))],
)
def test_numpy_net_matches_torch_for_every_config(tmp_path, model, size):
    cfg = DegradationModelConfig.from_dict(model)
    net = _net_with_stats(cfg, seed=len(str(model)))
    save_degradation_model(net, tmp_path)
    fast = load_numpy_degradation_model(tmp_path)
    x = np.random.default_rng(0).integers(0, 256, (3, *size, 3), dtype=np.uint8)
    ours = fast.intensities(x)
    assert ours.shape == (3, len(cfg.heads)) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, _torch_intensities(net, x), atol=2e-5)
    with torch.no_grad():
        ref = net.overall(torch.from_numpy(ours)).clamp(0, 1).numpy()
    np.testing.assert_allclose(fast.overall(ours), ref, atol=1e-6)


def test_builtin_model_scores_the_same_in_both_runtimes():
    img = Image.open(EXAMPLE).convert("RGB")
    # clean, blurred, noisy, dark: inputs that drive every head away from 0
    rng = np.random.default_rng(1)
    noisy = np.clip(np.asarray(img, dtype=np.float32) + rng.normal(0, 30, (img.height, img.width, 3)), 0, 255)
    imgs = [img, img.filter(ImageFilter.GaussianBlur(5)), Image.fromarray(noisy.astype(np.uint8)),
            Image.eval(img, lambda v: v // 4)]
    fast, slow = load_baseline(None), load_baseline(None, backend="torch")
    assert isinstance(fast, NumpyDegradationScorer) and isinstance(slow, DegradationScorer)
    a, b = fast.score(imgs), slow.score(imgs)
    for r, s in zip(a, b, strict=True):
        assert r.score == pytest.approx(s.score, abs=1e-5) and r.level == s.level and r.model == s.model
        assert r.details.keys() == s.details.keys()
        assert all(r.details[h] == pytest.approx(s.details[h], abs=1e-5) for h in r.details)
    assert a[1].details["blur"] > a[0].details["blur"] + 0.3  # the comparison is not between zeros


def test_backend_choice_and_its_errors(tmp_path):
    assert isinstance(load_baseline(None), NumpyDegradationScorer)
    assert isinstance(load_baseline(None, device="cpu"), DegradationScorer)  # a named device means torch
    assert isinstance(load_baseline(None, device="cpu", backend="numpy"), NumpyDegradationScorer)
    with pytest.raises(ValueError, match="backend must be one of"):
        load_baseline(None, backend="onnx")
    with pytest.raises(ValueError, match="CPU only"):
        load_baseline(None, device="cuda", backend="numpy")


def test_wrong_or_missing_tensors_are_named(tmp_path):
    from safetensors.numpy import load_file, save_file

    save_degradation_model(DegradationNet(DegradationModelConfig(heads=("blur",))), tmp_path)
    path = tmp_path / "model.safetensors"
    state = load_file(str(path))
    state["stages.1.0.weight"] = state["stages.1.0.weight"][:, :, :2]
    save_file(state, str(path))
    with pytest.raises(ValueError, match=r"stages\.1\.0\.weight.*shape"):
        load_numpy_degradation_model(tmp_path)
    state = load_file(str(path))
    del state["stages.1.0.weight"]
    save_file(state, str(path))
    with pytest.raises(ValueError, match=r"stages\.1\.0\.weight.*missing"):
        load_numpy_degradation_model(tmp_path)
    with pytest.raises(ValueError, match="do not match"):  # the torch loader agrees the file is broken
        load_degradation_model(tmp_path)


def test_unexpected_tensors_are_refused(tmp_path):
    from safetensors.numpy import load_file, save_file

    save_degradation_model(DegradationNet(DegradationModelConfig(heads=("blur",))), tmp_path)
    path = tmp_path / "model.safetensors"
    state = load_file(str(path))
    state["heads.noise.0.weight"] = np.zeros((256, 256), np.float32)
    save_file(state, str(path))
    with pytest.raises(ValueError, match=r"unexpected tensors \['heads\.noise\.0\.weight'\]"):
        load_numpy_degradation_model(tmp_path)


def test_builtin_model_is_the_shipped_one_and_bad_input_shape_is_refused():
    net = load_numpy_degradation_model(builtin_model_dir())
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        net.intensities(np.zeros((1, 3, 224, 224), np.uint8))


def test_deqa_score_on_the_builtin_model_never_imports_torch(tmp_path, run_fresh_python):
    """The cold-start path: CLI parse, load, decode in a worker, score, print; torch stays out."""
    (tmp_path / "a.jpg").write_bytes(EXAMPLE.read_bytes())
    Image.open(EXAMPLE).filter(ImageFilter.GaussianBlur(4)).save(tmp_path / "b.png")
    code = (
        "import sys\n"
        "from deqa.cli.score import main\n"
        f"rc = main([{str(tmp_path)!r}, '--num-workers', '1', '-q', '-o', {str(tmp_path / 'out.jsonl')!r}])\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'accelerate') if m in sys.modules]\n"
        "print('RESULT', rc, ','.join(heavy) or 'clean')\n"
    )
    assert run_fresh_python(code).strip().splitlines()[-1] == "RESULT 0 clean"
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize(("threshold", "runtime"), [(3, NumpyDegradationScorer), (2, DegradationScorer)])
def test_deqa_score_switches_to_torch_for_big_jobs(tmp_path, monkeypatch, threshold, runtime):
    """Few images: numpy (fast start); from TORCH_FROM_N_IMAGES on, with a GPU: the torch build."""
    import deqa.cli.score as score_cli
    import deqa.load

    built = []
    real = deqa.load.load_scorer

    def spy(model=None, **kwargs):
        built.append(real(model, **kwargs))
        return built[-1]

    monkeypatch.setattr(deqa.load, "load_scorer", spy)
    monkeypatch.setattr(deqa.load, "TORCH_FROM_N_IMAGES", threshold)
    # As on a machine with a GPU (torch here runs it on the CPU): big jobs get the torch build.
    monkeypatch.setattr(deqa.load, "_accelerator", lambda: "cpu")
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(EXAMPLE.read_bytes())
    out = tmp_path / "s.jsonl"
    assert score_cli.main([str(tmp_path), "--num-workers", "0", "-q", "-o", str(out)]) == 0
    assert type(built[0]) is runtime
    # Resuming counts only what is left: 0 images to go never needs torch.
    assert score_cli.main([str(tmp_path), "--num-workers", "0", "-q", "-o", str(out)]) == 0
    assert type(built[1]) is NumpyDegradationScorer


def test_baseline_device_rule(monkeypatch):
    import deqa.load
    from deqa.load import TORCH_FROM_N_IMAGES, baseline_device

    for gpu in ("cuda", None):
        monkeypatch.setattr(deqa.load, "_accelerator", lambda gpu=gpu: gpu)
        assert baseline_device(None, TORCH_FROM_N_IMAGES - 1) is None  # numpy
        assert baseline_device(None, TORCH_FROM_N_IMAGES) == gpu  # the GPU, or numpy on the CPU
        assert baseline_device("cuda:1", 0) == "cuda:1"  # a named device always wins
        assert baseline_device("cpu", 10**6) == "cpu"


def test_accelerator_probe_needs_no_torch_without_a_gpu_driver(monkeypatch):
    import deqa.load

    monkeypatch.setattr(deqa.load.os.path, "exists", lambda path: False)
    monkeypatch.setitem(sys.modules, "torch", None)  # an import of torch would now raise
    assert deqa.load._accelerator() is None


def test_numpy_scorer_batches_give_every_core_chunks(monkeypatch):
    from deqa.baselines import numpy_parallel

    monkeypatch.setattr(numpy_parallel, "_configured", 2)
    assert load_baseline(None, backend="numpy").default_batch_size == 16
    monkeypatch.setattr(numpy_parallel, "_configured", 32)
    assert load_baseline(None, backend="numpy").default_batch_size == 32 * numpy_parallel.CHUNK
