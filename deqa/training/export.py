"""Export a ``deqa-train`` checkpoint: fold the LoRA adapter into the base weights.

The merged folder is a plain transformers model (safetensors) + processor + ``deqa_config.json``:
it loads without peft and scores with ``deqa-score --model <folder>`` like the adapter did. By
default the weights keep the dtype the run trained in (``dtype="auto"``): a float32 run is
written in float32 and scores as its checkpoint does (differences are float rounding of W + BA,
~1e-7); ``dtype="bf16"`` halves its size but moves scores in the third or fourth decimal.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["merge_checkpoint", "checkpoint_dtype"]

_DTYPE_NAMES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def checkpoint_dtype(checkpoint: str | Path, *, trust_remote_code: bool = False) -> torch.dtype:
    """The dtype a ``deqa-train`` checkpoint's weights were trained in.

    That is the ``dtype`` of the run's resolved config (``deqa_train_config.yaml``, saved in the
    output folder and every checkpoint); when it is "auto" or there is no such file (an adapter
    written by peft itself), the dtype the base model's config declares, else float32 (what
    transformers loads a config without one in).
    """
    import yaml

    from ..models.config import DeQAConfig
    from ..models.loading import _adapter_base
    from .config import RESOLVED_CONFIG_NAME

    checkpoint = Path(checkpoint)
    resolved = checkpoint / RESOLVED_CONFIG_NAME
    if resolved.is_file():
        try:
            values = yaml.safe_load(resolved.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{resolved} is not valid YAML ({err}); pass --dtype explicitly") from None
        name = values.get("dtype") if isinstance(values, dict) else None
        if name in _DTYPE_NAMES:
            return _DTYPE_NAMES[name]
    from transformers import AutoConfig

    base = _adapter_base(checkpoint, DeQAConfig.find(checkpoint))
    declared = getattr(AutoConfig.from_pretrained(base, trust_remote_code=trust_remote_code), "dtype", None)
    if isinstance(declared, str):
        declared = _DTYPE_NAMES.get(declared)
    return declared if isinstance(declared, torch.dtype) else torch.float32


def merge_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    dtype: str | torch.dtype = "auto",
    device: str = "cpu",
    trust_remote_code: bool = False,
) -> Path:
    """Merge the LoRA adapter of ``checkpoint`` into its base model and save it to ``out_dir``.

    Trained modules besides the adapter (vision tower, projector saved by peft's
    ``modules_to_save``) are part of the merged model. dtype: "auto" (default: the dtype the run
    trained in, :func:`checkpoint_dtype`), "bf16", "fp16", "fp32" or a torch dtype.
    Raises ValueError if ``checkpoint`` is not an adapter checkpoint (nothing to merge).
    """
    from dataclasses import replace

    from ..models.config import DeQAConfig
    from ..models.loading import ADAPTER_CONFIG_NAME, load_vlm

    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"checkpoint {checkpoint}: no such folder")
    if not (checkpoint / ADAPTER_CONFIG_NAME).is_file():
        raise ValueError(
            f"{checkpoint} has no {ADAPTER_CONFIG_NAME}: it is not a LoRA checkpoint, so there is "
            "nothing to merge (a full fine-tuning checkpoint already loads on its own)"
        )
    out = Path(out_dir)
    if out.resolve() == checkpoint.resolve():
        raise ValueError("the merged model must go to a new folder, not into the checkpoint itself")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        # Another model's folder (the base model, the run's output with its best adapter) would be
        # overwritten file by file, or left holding two models.
        raise ValueError(f"-o {out} exists and is not empty; the merged model goes to a new (or empty) folder")
    if dtype is None or dtype == "auto":
        # Not load_vlm's "auto" (bf16 on CUDA, fp32 on CPU): the merged weights should be the
        # ones the run trained, whatever device merges them.
        dtype = checkpoint_dtype(checkpoint, trust_remote_code=trust_remote_code)
    loaded = load_vlm(
        checkpoint, dtype=dtype, device=device, merge_adapter=True, trust_remote_code=trust_remote_code
    )
    out.mkdir(parents=True, exist_ok=True)
    loaded.model.save_pretrained(out)
    loaded.processor.save_pretrained(out)
    config = DeQAConfig.find(checkpoint) or loaded.config
    extras = dict(config.extras, merged_from=str(checkpoint.resolve()))
    replace(config, extras=extras).save(out)
    return out
