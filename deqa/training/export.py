"""Export a ``deqa-train`` checkpoint: fold the LoRA adapter into the base weights.

The merged folder is a plain transformers model (safetensors) + processor + ``deqa_config.json``:
it loads without peft and scores with ``deqa-score --model <folder>`` like the adapter did
(differences are float rounding of W + BA, ~1e-6 in float32).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["merge_checkpoint"]


def merge_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    dtype: str = "bf16",
    device: str = "cpu",
    trust_remote_code: bool = False,
) -> Path:
    """Merge the LoRA adapter of ``checkpoint`` into its base model and save it to ``out_dir``.

    Trained modules besides the adapter (vision tower, projector saved by peft's
    ``modules_to_save``) are part of the merged model. dtype: "bf16", "fp16", "fp32" or "auto".
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
