"""Light quality baselines beside the VLM path.

- :mod:`.degradation`: the multi-head degradation CNN; a trained one ships inside the package
  (``deqa/assets/default_model``) and is what ``deqa-score`` uses without ``--model``.
- :mod:`.encoder_head`: a frozen image encoder (EfficientNet-Lite, DINOv2/CLIP/SigLIP, ResNet-50)
  with a small MLP head trained on cached embeddings.

A baseline folder holds ``deqa_baseline.json`` (``"type"``: ``"degradation"`` or
``"encoder_head"``, plus the model config) and safetensors weights. Loading the built-in model
imports numpy and this package only: its network runs in numpy (:mod:`.degradation_numpy`) unless
a torch device is asked for, and never imports transformers or peft.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..scorer import Scorer

__all__ = ["load_baseline", "builtin_model_dir", "BUILTIN_MODEL_ID"]

BUILTIN_MODEL_ID = "deqa-builtin-degradation-v11"


def builtin_model_dir() -> Path:
    """Folder of the model shipped in the package (``deqa/assets/default_model``)."""
    return Path(__file__).resolve().parent.parent / "assets" / "default_model"


BACKENDS = ("auto", "numpy", "torch")
VIEWS = ("auto", "whole", "windows")


def _weights_tag(folder: Path) -> str:
    """``"@<digest>"`` of a trained baseline's weight files, "" for the built-in model (its id names
    its version). Every `deqa baseline train` run is called deqa-degradation (every encoder head
    deqa-encoder-head) unless told otherwise, and a folder can be retrained in place: the id in
    results must still tell two models apart, or `deqa-score -o` / `deqa-eval` would resume one
    model's file with another's scores. BLAKE2b over ~10-20 MB: ~20 ms."""
    if folder.resolve() == builtin_model_dir().resolve():
        return ""
    from ..fileio import file_digest

    digests = [file_digest(f, "blake2b", digest_size=16) for f in sorted(folder.glob("*.safetensors"))]
    if not digests:
        return ""
    return "@" + hashlib.blake2b("".join(digests).encode(), digest_size=6).hexdigest()


def load_baseline(path: str | os.PathLike | None = None, *, device: str | None = None, backend: str = "auto",
                  views: str = "auto") -> Scorer:
    """Load a baseline scorer from a folder with ``deqa_baseline.json``; ``None`` = built-in model.

    ``backend`` (degradation models only): ``"numpy"`` runs the network without torch (no
    ``import torch``: what makes the built-in model start fast), ``"torch"`` runs the torch module on
    ``device`` (faster per image on a big folder, and the only choice on a GPU); ``"auto"`` is numpy
    unless a ``device`` is named. Encoder-head models always run in torch.

    ``views`` (degradation models only): ``"whole"`` reads every image resized to the model's size;
    ``"windows"`` also reads full-resolution windows of large images for the pixel-scale heads
    (:class:`~.degradation_config.DetailViews`, with the settings of the folder's ``"views"``
    entry or the defaults); ``"auto"`` is ``"windows"`` when the folder's config has a ``"views"``
    entry (the built-in model's does), else ``"whole"``.
    """
    from ..load import BASELINE_CONFIG_NAME

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if views not in VIEWS:
        raise ValueError(f"views must be one of {', '.join(VIEWS)}, got {views!r}")
    if backend == "numpy" and device not in (None, "cpu"):
        raise ValueError(f"backend 'numpy' runs on the CPU only; device {device!r} needs backend 'torch'")

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
        from .degradation_config import DetailViews

        model_id = (config.get("model_id") or (BUILTIN_MODEL_ID if path is None else folder.name)) + _weights_tag(folder)
        detail = None
        if views == "windows" or (views == "auto" and config.get("views") is not None):
            try:
                detail = DetailViews.from_dict(config.get("views") or {})
            except (TypeError, ValueError) as err:
                raise ValueError(f"{cfg_path}: {err}") from None
        if (detail is None) != (config.get("views") is None):
            # Not the folder's own reading: the results say so, and deqa-score will not resume a
            # file of the one reading with the other.
            model_id += "+whole" if detail is None else "+windows"
        if backend == "numpy" or (backend == "auto" and device is None):
            from .degradation_numpy import NumpyDegradationScorer, load_numpy_degradation_model

            return NumpyDegradationScorer(load_numpy_degradation_model(folder, config), model_id=model_id, views=detail)
        from .degradation import DegradationScorer, load_degradation_model

        return DegradationScorer(load_degradation_model(folder, config), model_id=model_id, device=device, views=detail)
    if kind == "encoder_head":
        from .encoder_head import load_encoder_head_scorer

        if views != "auto":
            raise ValueError(f"views={views!r}: only degradation models read windows; {folder} is an encoder-head baseline")

        scorer = load_encoder_head_scorer(folder, config, device=device)
        scorer.model_id += _weights_tag(folder)
        return scorer
    raise ValueError(f"{cfg_path}: unknown baseline type {kind!r}; expected 'degradation' or 'encoder_head'")
