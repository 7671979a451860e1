"""Load a VLM for DeQA training and decide what is trained: LoRA, QLoRA or all weights.

- ``lora``: the base stays frozen; LoRA adapters on the modules matching ``lora_target_modules``
  (default: the language model's attention and MLP projections).
- ``qlora``: the same on a 4-bit (nf4) base loaded through bitsandbytes. The vision tower,
  projector and LM head stay unquantised: they are skipped *by their full module path* (a bare
  ``visual`` would not stop bitsandbytes from quantising the vision blocks).
- ``full``: every weight is trained.

With ``train_vision_tower`` / ``train_projector`` (the official DeQA-Score recipe trains both),
those modules are trained fully next to the adapters; peft saves them inside the adapter
checkpoint (``modules_to_save``), so the checkpoint stays self-contained.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

from ..models.config import DeQAConfig
from ..models.quiet import peft_wrap_quietly
from .config import LoraArguments, ModelArguments

__all__ = [
    "VISION_TOWER_NAMES",
    "PROJECTOR_NAMES",
    "find_submodule",
    "build_deqa_config",
    "load_training_prompt",
    "load_training_model",
    "TrainingPrompt",
    "TrainingModel",
]

logger = logging.getLogger(__name__)

# Attribute names of the vision tower and projector across transformers' VLM families
# (Qwen2/2.5/3-VL: visual + visual.merger; LLaVA/InternVL/Gemma3: vision_tower +
# multi_modal_projector; Idefics3/SmolVLM: vision_model + connector).
VISION_TOWER_NAMES = ("visual", "vision_tower", "vision_model")
PROJECTOR_NAMES = ("multi_modal_projector", "visual.merger", "connector", "mm_projector")

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32, "auto": "auto"}


def find_submodule(model: torch.nn.Module, names: tuple[str, ...]) -> str | None:
    """Full path of the outermost module whose path ends with one of ``names`` (tried in order)."""
    paths = [n for n, _ in model.named_modules() if n]
    for name in names:
        hits = [p for p in paths if p == name or p.endswith("." + name)]
        if hits:
            return min(hits, key=len)
    return None


@dataclass
class TrainingPrompt:
    """What builds the batches, without the weights: processor, deqa config and level tokens."""

    processor: object
    deqa_config: DeQAConfig
    level_token_ids: list[int]


@dataclass
class TrainingModel:
    """The model to hand to the Trainer, plus what the checkpoints need."""

    model: torch.nn.Module
    processor: object
    deqa_config: DeQAConfig
    level_token_ids: list[int]
    vision_tower: str | None
    projector: str | None


@dataclass
class _Skeleton:
    """Module paths of the model, read from its config on the meta device (no weights)."""

    vision_tower: str | None
    projector: str | None
    non_language: list[str]  # what QLoRA must not quantise (the same rule as 4-bit scoring)
    modules: list[str]  # every module path: what lora_target_modules is matched against


@contextlib.contextmanager
def _without_zero3_init():
    """Under DeepSpeed ZeRO-3 (the Trainer's arguments register its config with transformers),
    ``from_config`` builds every model inside ``deepspeed.zero.Init``, which partitions each
    parameter as it is created: on the meta device there is nothing to copy ("Cannot copy out of
    meta tensor"). The skeleton is only read for its module names, never trained, so it is built
    as if ZeRO-3 were off; the real model (from_pretrained) still loads sharded."""
    from transformers.integrations import deepspeed as hf_deepspeed

    ref = hf_deepspeed._hf_deepspeed_config_weak_ref  # transformers' one switch for "ZeRO-3 is on"
    hf_deepspeed._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = ref


def _skeleton(model_args: ModelArguments) -> _Skeleton:
    from transformers import AutoConfig, AutoModelForImageTextToText

    from ..models.loading import non_language_modules

    config = AutoConfig.from_pretrained(
        model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code
    )
    with torch.device("meta"), _without_zero3_init():
        skeleton = AutoModelForImageTextToText.from_config(
            config, trust_remote_code=model_args.trust_remote_code
        )
    return _Skeleton(
        vision_tower=find_submodule(skeleton, VISION_TOWER_NAMES),
        projector=find_submodule(skeleton, PROJECTOR_NAMES),
        non_language=non_language_modules(skeleton),
        modules=[n for n, _ in skeleton.named_modules() if n],
    )


def _modules_to_save(lora_args: LoraArguments, skeleton: _Skeleton) -> list[str]:
    """The fully trained modules next to the adapters; a switch this model cannot honour, or a
    lora_target_modules that matches none of its modules, fails before the weights load."""
    import re

    vision, projector = skeleton.vision_tower, skeleton.projector
    # peft matches a string target_modules with re.fullmatch against full module paths.
    if not any(re.fullmatch(lora_args.lora_target_modules, name) for name in skeleton.modules):
        raise ValueError(
            f"lora_target_modules {lora_args.lora_target_modules!r} matches no module of this model; "
            "check the module names with model.named_modules()"
        )
    to_save = []
    if lora_args.train_vision_tower:
        if vision is None:
            raise ValueError(
                f"train_vision_tower: no vision tower found (looked for modules named {VISION_TOWER_NAMES})"
            )
        to_save.append(vision)
    if lora_args.train_projector and not (
        lora_args.train_vision_tower and projector and vision and projector.startswith(vision + ".")
    ):
        if projector is None:
            raise ValueError(f"train_projector: no projector found (looked for modules named {PROJECTOR_NAMES})")
        to_save.append(projector)
    return to_save


def _quantization_config(lora_args: LoraArguments, skip: list[str]):
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=lora_args.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=lora_args.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=_DTYPES[lora_args.bnb_4bit_compute_dtype],
        llm_int8_skip_modules=skip,
    )


def build_deqa_config(model_args: ModelArguments, *, label_method: str | None, extras: dict) -> DeQAConfig:
    """The deqa_config.json of the run: the base model's own (if it has one) + the arguments."""
    import os

    base = model_args.model_name_or_path
    # A local folder is recorded as an absolute path so the checkpoint scores from any cwd.
    base_id = os.path.abspath(base) if os.path.isdir(base) else base
    existing = DeQAConfig.find(base) if os.path.isdir(base) else None
    values = existing.to_dict() if existing is not None else {}
    values.pop("deqa_version", None)
    for key in ("question", "answer_prefix", "system_prompt", "level_words", "processor_kwargs"):
        value = getattr(model_args, key)
        if value is not None:
            values[key] = value
    values.update(base_model=base_id, label_method=label_method or "manifest", extras=extras)
    return DeQAConfig.from_dict(values, source="training arguments")


def load_training_prompt(
    model_args: ModelArguments, *, label_method: str | None = None, extras: dict | None = None
) -> TrainingPrompt:
    """Processor, deqa config and level tokens of the run: everything the collator needs, in a
    second or so, before the weights load (the recipe checks a batch with it first)."""
    from transformers import AutoProcessor

    from ..models.level_tokens import resolve_level_tokens
    from ..models.loading import _check_local_or_hub
    from ..models.prompt import build_prompt_text

    # A missing folder is named as such, not as the hub's "Repo id must be in the form ...".
    _check_local_or_hub(model_args.model_name_or_path, "model_name_or_path")
    processor = AutoProcessor.from_pretrained(
        model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code
    )
    deqa_config = build_deqa_config(model_args, label_method=label_method, extras=extras or {})
    level_token_ids = resolve_level_tokens(
        processor.tokenizer, deqa_config.level_words, build_prompt_text(processor, deqa_config)
    )
    return TrainingPrompt(processor, deqa_config, level_token_ids)


def load_training_model(
    model_args: ModelArguments,
    lora_args: LoraArguments,
    *,
    label_method: str | None = None,
    extras: dict | None = None,
    device_index: int | None = None,
    prompt: TrainingPrompt | None = None,
) -> TrainingModel:
    """Load the weights and apply the tuning mode (processor, deqa config and level tokens come
    from ``prompt``). Mistakes that the model's config reveals fail before the weights load.

    device_index: the GPU of this process for QLoRA (bitsandbytes places 4-bit weights at load
    time); None = CPU. prompt: from :func:`load_training_prompt` (label_method and extras are
    then its business); None loads it here.
    """
    from transformers import AutoModelForImageTextToText

    if prompt is None:
        prompt = load_training_prompt(model_args, label_method=label_method, extras=extras)
    path = model_args.model_name_or_path
    skeleton = _skeleton(model_args)
    to_save = _modules_to_save(lora_args, skeleton) if lora_args.tuning != "full" else []
    kwargs: dict = dict(
        dtype=_DTYPES[model_args.dtype],
        trust_remote_code=model_args.trust_remote_code,
    )
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    if lora_args.tuning == "qlora":
        kwargs["quantization_config"] = _quantization_config(lora_args, skeleton.non_language)
        kwargs["device_map"] = {"": device_index} if device_index is not None else "cpu"
    model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
    model.config.use_cache = False

    if lora_args.tuning == "full":
        model.requires_grad_(True)
    else:
        model = _add_adapters(model, lora_args, to_save)
    return TrainingModel(
        model=model,
        processor=prompt.processor,
        deqa_config=prompt.deqa_config,
        level_token_ids=prompt.level_token_ids,
        vision_tower=skeleton.vision_tower,
        projector=skeleton.projector,
    )


def _add_adapters(model, lora_args: LoraArguments, to_save: list[str]):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if lora_args.tuning == "qlora":
        # Casts the remaining fp32-sensitive parts (norms) and freezes the 4-bit base; gradient
        # checkpointing is switched on by the Trainer from the training arguments.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(
        r=lora_args.lora_r,
        lora_alpha=lora_args.lora_alpha,
        lora_dropout=lora_args.lora_dropout,
        target_modules=lora_args.lora_target_modules,
        modules_to_save=to_save or None,
        bias="none",
    )
    with peft_wrap_quietly():
        model = get_peft_model(model, config)
    n_lora = sum(1 for n, _ in model.named_modules() if n.endswith("lora_A"))
    if n_lora == 0:
        raise ValueError(
            f"lora_target_modules {lora_args.lora_target_modules!r} matches no module of this model; "
            "check the module names with model.named_modules()"
        )
    return model
