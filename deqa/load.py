"""``load_scorer``: one entry point that picks the right model type for a path or hub id."""

from __future__ import annotations

from pathlib import Path

from .scorer import Scorer

__all__ = ["load_scorer", "is_baseline", "BASELINE_CONFIG_NAME"]

# A folder holding this file is a deqa baseline (encoder+head or degradation CNN).
BASELINE_CONFIG_NAME = "deqa_baseline.json"


def is_baseline(model: str | Path | None) -> bool:
    """True when ``model`` names a deqa baseline: ``None``/``"builtin"`` (the built-in model) or
    a folder holding ``deqa_baseline.json``; anything else is loaded as a VLM."""
    return model is None or model == "builtin" or (Path(model) / BASELINE_CONFIG_NAME).is_file()


def load_scorer(model: str | None = None, **kwargs) -> Scorer:
    """Load a quality scorer.

    - ``None`` or ``"builtin"``: the degradation-CNN baseline shipped inside the package
      (no download, no transformers import).
    - a folder with ``deqa_baseline.json``: a trained baseline.
    - anything else: a transformers VLM (local folder or hub id, optionally fine-tuned by deqa);
      keyword arguments go to :func:`deqa.scoring.load_vlm_scorer`.
    """
    if is_baseline(model):
        from .baselines import load_baseline

        return load_baseline(None if model == "builtin" else model, **kwargs)
    from .scoring import load_vlm_scorer

    return load_vlm_scorer(model, **kwargs)
