"""What the throughput benchmarks share: the published Qwen2.5-VL sizes, accelerator peaks for
MFU, and a one-line description of the machine for the reported numbers."""

from __future__ import annotations

import platform

import torch

__all__ = ["QWEN2_5_VL", "qwen2_5_vl_config", "PEAK_BF16_TFLOPS", "peak_tflops", "machine"]

# config.json of Qwen/Qwen2.5-VL-{3B,7B}-Instruct (published hyperparameters); token ids are left
# out: a caller with a stand-in tokenizer passes its own.
_ROPE = {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6}
_VISION = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14,
    spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
    tokens_per_second=2, hidden_act="silu",
)  # fmt: skip
QWEN2_5_VL = {
    "qwen2_5_vl_7b": dict(
        text_config=dict(
            vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
            num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000,
            rms_norm_eps=1e-6, hidden_act="silu", rope_parameters=_ROPE,
        ),
        vision_config=dict(_VISION, out_hidden_size=3584),
        tie_word_embeddings=False,
    ),
    "qwen2_5_vl_3b": dict(
        text_config=dict(
            vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
            num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=128000,
            rms_norm_eps=1e-6, hidden_act="silu", rope_parameters=_ROPE,
        ),
        vision_config=dict(_VISION, out_hidden_size=2048),
        tie_word_embeddings=True,
    ),
}  # fmt: skip


def qwen2_5_vl_config(name: str, *, text_extra: dict | None = None, **config_kwargs):
    """``Qwen2_5_VLConfig`` of a published size (``QWEN2_5_VL`` key), random-weight ready.
    ``text_extra`` adds text-config fields (e.g. the stand-in tokenizer's pad/eos ids)."""
    from transformers import Qwen2_5_VLConfig

    if name not in QWEN2_5_VL:
        raise SystemExit(f"unknown model size {name!r}; available: {', '.join(QWEN2_5_VL)}")
    preset = QWEN2_5_VL[name]
    text = dict(preset["text_config"], tie_word_embeddings=preset["tie_word_embeddings"])
    return Qwen2_5_VLConfig(
        text_config=dict(text, **(text_extra or {})),
        vision_config=preset["vision_config"],
        tie_word_embeddings=preset["tie_word_embeddings"],
        **config_kwargs,
    )


# Dense bf16 peak of common accelerators (TFLOP/s), for MFU; scripts take --peak-tflops too.
PEAK_BF16_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100": 989.4,
    "H200": 989.4,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 125.0,
}


def peak_tflops(device: torch.device, override: float | None = None) -> float | None:
    """``override``, else the dense bf16 peak of the CUDA device by name (None if unknown/CPU)."""
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS.items():  # "H100 PCIe" is listed before "H100"
        if key in name:
            return value
    return None


def machine(device: torch.device) -> str:
    """``"NVIDIA H100 80GB HBM3, torch 2.x"`` or ``"1-thread <CPU model> (x86_64), torch 2.x"``."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = "CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{torch.get_num_threads()}-thread {cpu} ({platform.machine()}), torch {torch.__version__}"
