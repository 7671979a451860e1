"""``load_scorer``: one entry point that picks the right model type for a path or hub id."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from .scorer import Scorer

__all__ = ["load_scorer", "is_baseline", "BASELINE_CONFIG_NAME"]

# A folder holding this file is a deqa baseline (encoder+head or degradation CNN).
BASELINE_CONFIG_NAME = "deqa_baseline.json"


def is_baseline(model: str | Path | None) -> bool:
    """True when ``model`` names a deqa baseline: ``None``/``"builtin"`` (the built-in model) or
    a folder holding ``deqa_baseline.json``; anything else is loaded as a VLM."""
    return model is None or model == "builtin" or (Path(model) / BASELINE_CONFIG_NAME).is_file()


# From this many images to score, a baseline with no device named runs its torch build on the GPU
# when there is one (the numpy runtime starts ~2 s sooner, without importing torch, and a GPU repays
# that within a few batches). On the CPU it stays in numpy whatever the job's size: since the numpy
# runtime splits its batches over the cores (deqa.baselines.numpy_parallel), its whole pipeline runs
# the built-in model as fast as torch's on 2 cores (27.4 vs 26.5 images/s; it was 14.8 vs 27.7 and
# torch took over from 64 images), so torch's import would not be repaid (BENCHMARKS.md,
# Baselines). Used by deqa-score and deqa-eval.
TORCH_FROM_N_IMAGES = 64


def _accelerator() -> str | None:
    """``"cuda"`` when torch can run on a GPU here, else None. A cheap probe first (the NVIDIA
    driver's /proc entry, ROCm's /dev/kfd), so a machine without a GPU never imports torch (~2 s)
    to learn that; where neither exists (e.g. not Linux), name the device (``--device cuda``)."""
    if not (os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/kfd")):
        return None
    import torch

    return "cuda" if torch.cuda.is_available() else None


def baseline_device(device: str | None, n_images: int) -> str | None:
    """The device a baseline should load on for a job of ``n_images``: ``device`` if named, else
    the GPU from :data:`TORCH_FROM_N_IMAGES` images on when there is one, else None (numpy).

    ``n_images`` is the size of the whole job (every input asked for), not what is left of it
    after a resume: the numpy and torch builds agree only to float32 rounding, so a resumed run
    must use the build the uninterrupted run would have used."""
    if device is not None or n_images < TORCH_FROM_N_IMAGES:
        return device
    return _accelerator()


def load_scorer(model: str | None = None, **kwargs) -> Scorer:
    """Load a quality scorer.

    - ``None`` or ``"builtin"``: the degradation-CNN baseline shipped inside the package
      (no download; runs in numpy without importing torch or transformers unless a device is named).
    - a folder with ``deqa_baseline.json``: a trained baseline.
    - anything else: a transformers VLM (local folder or hub id, optionally fine-tuned by deqa);
      keyword arguments go to :func:`deqa.scoring.load_vlm_scorer`.
    """
    if is_baseline(model):
        from .baselines import load_baseline

        _check_options(
            load_baseline,
            kwargs,
            "the built-in model" if model in (None, "builtin") else f"the baseline in {model}",
        )
        return load_baseline(None if model == "builtin" else model, **kwargs)
    from .scoring import load_vlm_scorer

    _check_options(load_vlm_scorer, kwargs, f"the VLM loader ({model})")
    return load_vlm_scorer(model, **kwargs)


def _check_options(loader, kwargs: dict, what: str) -> None:
    # A misspelt or inapplicable option (deqa-eval --model-arg) gets a ValueError naming it and the
    # valid ones, not a TypeError traceback from deep inside the loader.
    params = list(inspect.signature(loader).parameters.values())[1:]  # after the model/path
    valid = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"option(s) {', '.join(unknown)} not accepted by {what}; valid: {', '.join(valid)}"
        )
