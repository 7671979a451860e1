"""Light quality baselines beside the VLM path.

- :mod:`.degradation`: the multi-head degradation CNN; a trained one ships inside the package
  (``deqa/assets/default_model``) and is what ``deqa-score`` uses without ``--model``.
- :mod:`.encoder_head`: a frozen image encoder (EfficientNet-Lite, DINOv2/CLIP/SigLIP, ResNet-50)
  with a small MLP head trained on cached embeddings.

A baseline folder holds ``deqa_baseline.json`` (``"type"``: ``"degradation"`` or
``"encoder_head"``, plus the model config) and safetensors weights. Loading the built-in model
imports torch and this package only: never transformers or peft.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..scorer import Scorer

__all__ = ["load_baseline", "builtin_model_dir", "BUILTIN_MODEL_ID"]

BUILTIN_MODEL_ID = "deqa-builtin-degradation-v5"


def builtin_model_dir() -> Path:
    """Folder of the model shipped in the package (``deqa/assets/default_model``)."""
    return Path(__file__).resolve().parent.parent / "assets" / "default_model"


def load_baseline(path: str | os.PathLike | None = None, *, device: str | None = None) -> Scorer:
    """Load a baseline scorer from a folder with ``deqa_baseline.json``; ``None`` = built-in model."""
    from ..load import BASELINE_CONFIG_NAME

    folder = builtin_model_dir() if path is None else Path(path)
    cfg_path = folder / BASELINE_CONFIG_NAME
    if not cfg_path.is_file():
        if path is None:
            raise FileNotFoundError(
                f"{cfg_path}: the built-in model is missing from this installation; reinstall deqa "
                "or rebuild it with scripts/build_default_model.sh"
            )
        raise FileNotFoundError(f"{cfg_path}: not a deqa baseline folder (no {BASELINE_CONFIG_NAME})")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{cfg_path}: invalid JSON ({err})") from None
    kind = config.get("type")
    if kind == "degradation":
        from .degradation import DegradationScorer, load_degradation_model

        model = load_degradation_model(folder, config)
        model_id = config.get("model_id") or (BUILTIN_MODEL_ID if path is None else folder.name)
        return DegradationScorer(model, model_id=model_id, device=device)
    if kind == "encoder_head":
        from .encoder_head import load_encoder_head_scorer

        return load_encoder_head_scorer(folder, config, device=device)
    raise ValueError(f"{cfg_path}: unknown baseline type {kind!r}; expected 'degradation' or 'encoder_head'")
