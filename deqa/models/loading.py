"""Load a VLM for scoring: base model, merged checkpoint, or LoRA adapter; optionally 4/8-bit.

Everything goes through the native transformers classes (``AutoModelForImageTextToText`` +
``AutoProcessor``) and peft; nothing is vendored and ``trust_remote_code`` stays off unless the
caller asks. What can be passed as ``model``:

- a hub id or folder of a base VLM (zero-shot: default :class:`DeQAConfig`);
- a folder written by ``deqa-train`` with merged weights + ``deqa_config.json``;
- a folder written by ``deqa-train`` with a LoRA adapter (``adapter_config.json``) +
  ``deqa_config.json`` whose ``base_model`` names the base: ``--model <checkpoint>`` just works;
- a base model plus ``adapter=<folder>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import DeQAConfig

__all__ = [
    "LoadedVLM",
    "load_vlm",
    "resolve_device",
    "resolve_dtype",
    "quantization_config",
    "non_language_modules",
]

ADAPTER_CONFIG_NAME = "adapter_config.json"
# Files whose presence means a folder carries its own processor (training saves it).
_PROCESSOR_FILES = (
    "processor_config.json",
    "preprocessor_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
)


@dataclass
class LoadedVLM:
    """A model ready for inference, with what is needed to prompt it."""

    model: Any  # PreTrainedModel or peft PeftModel, eval mode
    processor: Any
    config: DeQAConfig
    model_id: str  # how results name the model
    device: torch.device
    dtype: torch.dtype


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"auto" -> the first CUDA device if there is one, else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {str(device)!r} requested but CUDA is not available; use --device cpu"
        )
    return dev


_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}  # fmt: skip


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None``/"auto" -> bf16 on CUDA (fp16 where bf16 is unsupported), fp32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(
            f"unknown dtype {dtype!r}; use one of auto, {', '.join(sorted(set(_DTYPES)))}"
        ) from None


def non_language_modules(model) -> list[str]:
    """Full module paths of everything that is not the language model (vision tower, projector,
    LM head): the modules to keep out of 4/8-bit quantisation.

    Full paths matter: bitsandbytes matches skip names against full module paths, so a bare
    ``"visual"`` does not stop ``model.visual`` from being quantised (checked on CPU with
    bitsandbytes 0.50: the 4-bit tests load the tiny models this way).
    """
    decoder = model.get_decoder()
    names = {id(m): n for n, m in model.named_modules()}
    path = names[id(decoder)].split(".")
    skip = []
    parent = model
    for depth, part in enumerate(path):
        prefix = ".".join(path[:depth])
        for name, _ in parent.named_children():
            if name != part:
                skip.append(f"{prefix}.{name}" if prefix else name)
        parent = getattr(parent, part)
    return skip


def quantization_config(
    model_name: str,
    *,
    load_in_4bit: bool = False,
    load_in_8bit: bool = False,
    compute_dtype: torch.dtype = torch.bfloat16,
    trust_remote_code: bool = False,
):
    """A ``BitsAndBytesConfig`` that quantises only the language model (nf4 + double quant for
    4-bit), or ``None`` when neither flag is set. Shared with QLoRA training."""
    if load_in_4bit and load_in_8bit:
        raise ValueError("choose one of load_in_4bit and load_in_8bit")
    if not (load_in_4bit or load_in_8bit):
        return None
    from transformers import AutoConfig, AutoModelForImageTextToText, BitsAndBytesConfig

    config = AutoConfig.from_pretrained(model_name, trust_remote_code=trust_remote_code)
    with torch.device("meta"):  # module names only: no memory, no weights
        skeleton = AutoModelForImageTextToText.from_config(
            config, trust_remote_code=trust_remote_code
        )
    skip = non_language_modules(skeleton)
    if load_in_4bit:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
            llm_int8_skip_modules=skip,
        )
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)


def _is_adapter_folder(path: str | Path | None) -> bool:
    return path is not None and (Path(path) / ADAPTER_CONFIG_NAME).is_file()


def _has_processor(path: str | Path | None) -> bool:
    return (
        path is not None
        and Path(path).is_dir()
        and any((Path(path) / f).is_file() for f in _PROCESSOR_FILES)
    )


def _check_adapter_family(adapter_dir: Path, cfg: DeQAConfig | None, model: str) -> None:
    """An adapter trained on one family applied to another loads (LoRA targets share names such as
    q_proj) and then fails deep in the forward pass, with the adapter's tokenizer on the other
    model's embeddings. Where the adapter's recorded base is a local folder, its model type must be
    the one of ``--model``."""
    recorded = _recorded_base(adapter_dir, cfg)
    if not recorded or not Path(model).is_dir():
        return
    # Absolute, or relative to the working folder or to the adapter's (peft records either).
    folder = next((p for p in (Path(recorded), adapter_dir / recorded) if p.is_dir()), None)
    if folder is None:
        return

    def kind(folder: Path) -> str | None:
        try:
            return json.loads((folder / "config.json").read_text()).get("model_type")
        except (OSError, ValueError):
            return None

    theirs, mine = kind(folder), kind(Path(model))
    if theirs and mine and theirs != mine:
        raise ValueError(f"--adapter {adapter_dir} was trained on a {theirs!r} model ({recorded}), not on a {mine!r} "
                         f"one like --model {model}; pass its base model as --model")


def _recorded_base(adapter_dir: Path, cfg: DeQAConfig | None) -> str | None:
    """The base model an adapter names: deqa_config.json's base_model, else peft's
    base_model_name_or_path (None when neither does)."""
    if cfg is not None and cfg.base_model:
        return cfg.base_model
    return json.loads((adapter_dir / ADAPTER_CONFIG_NAME).read_text()).get("base_model_name_or_path") or None


def _adapter_base(adapter_dir: Path, cfg: DeQAConfig | None) -> str:
    base = _recorded_base(adapter_dir, cfg)
    if not base:
        raise ValueError(
            f"{adapter_dir} holds a LoRA adapter but neither deqa_config.json (base_model) nor "
            "adapter_config.json (base_model_name_or_path) names its base model; pass the base as "
            "--model and the adapter folder as --adapter"
        )
    return base


def _check_local_or_hub(name: str, what: str) -> None:
    # A name that can only be a path (hub ids are "name" or "org/name") and does not exist is a
    # typo'd folder: say so, instead of the hub's "Repo id must use alphanumeric chars" error.
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{what} {name} is a file; it must be a model folder or a hub id")
        if not any((path / f).is_file() for f in ("config.json", ADAPTER_CONFIG_NAME)):
            raise ValueError(
                f"{what} {name}: the folder has no config.json (a transformers model), "
                f"{ADAPTER_CONFIG_NAME} (a LoRA checkpoint) or deqa_baseline.json (a deqa baseline)"
            )
        return
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise ValueError(
            f"{what} {name}: no such folder (a hub id looks like Qwen/Qwen2.5-VL-7B-Instruct)"
        )


def load_vlm(
    model: str | Path,
    adapter: str | Path | None = None,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    attn_implementation: str | None = None,
    load_in_4bit: bool = False,
    load_in_8bit: bool = False,
    trust_remote_code: bool = False,
    merge_adapter: bool | None = None,
) -> LoadedVLM:
    """Load a VLM (see the module docstring for what ``model`` may be) ready for scoring.

    Args:
        model: hub id or local folder (base model, merged checkpoint, or adapter checkpoint).
        adapter: a LoRA adapter folder to apply on top of ``model``.
        dtype: "auto" (bf16/fp16 on CUDA, fp32 on CPU), "bf16", "fp16", "fp32" or a torch dtype.
        device: "auto", "cpu", "cuda", "cuda:1", ...
        attn_implementation: passed to transformers ("sdpa", "flash_attention_2", "eager").
        load_in_4bit / load_in_8bit: bitsandbytes quantisation of the language model only.
        trust_remote_code: allow custom modelling code from the hub; off unless asked.
        merge_adapter: fold the LoRA weights into the base for faster inference (default: yes,
            unless the base is quantised).

    The deqa config comes from the adapter folder, then the model folder, else defaults.
    The processor comes from the checkpoint folder when it has one (training saves it), else
    from the base model.
    """
    from .quiet import peft_wrap_quietly, quiet_bitsandbytes_import

    quiet_bitsandbytes_import()  # before peft (an adapter) or 4/8-bit loading imports bitsandbytes
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = str(model)
    _check_local_or_hub(model, "model")
    adapter_dir = Path(adapter) if adapter is not None else None
    local = Path(model) if Path(model).is_dir() else None
    if adapter_dir is not None and not adapter_dir.is_dir():
        raise FileNotFoundError(f"--adapter {adapter_dir}: no such folder")
    if adapter_dir is not None and not _is_adapter_folder(adapter_dir):
        raise ValueError(
            f"--adapter {adapter_dir}: no {ADAPTER_CONFIG_NAME} there; expected a LoRA adapter folder written by deqa-train or peft"
        )
    if _is_adapter_folder(local):
        if adapter_dir is not None:
            raise ValueError(
                f"{model} is itself an adapter checkpoint; pass its base model as --model, or drop --adapter"
            )
        adapter_dir, local = local, None
        cfg = DeQAConfig.find(adapter_dir)
        base = _adapter_base(adapter_dir, cfg)
        _check_local_or_hub(base, f"base model of the adapter in {adapter_dir}:")
        model_id = _with_weights(str(adapter_dir), adapter_dir)
    else:
        base = model
        adapter_cfg = DeQAConfig.find(adapter_dir)
        if adapter_dir is not None:
            _check_adapter_family(adapter_dir, adapter_cfg, model)
        cfg = adapter_cfg or DeQAConfig.find(local)  # the adapter's config first, as find(adapter_dir, local)
        model_id = _with_weights(model, local)
        if adapter_dir is not None:
            model_id += "+" + _with_weights(str(adapter_dir), adapter_dir)
    if cfg is None:
        cfg = DeQAConfig.for_base_model(base)

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    quant = quantization_config(
        base,
        load_in_4bit=load_in_4bit,
        load_in_8bit=load_in_8bit,
        compute_dtype=torch_dtype,
        trust_remote_code=trust_remote_code,
    )
    # device_map loads the weights straight onto the device (no full CPU copy of a 7B model
    # first); quantised weights must be created on their device anyway.
    kwargs: dict[str, Any] = dict(
        dtype=torch_dtype, trust_remote_code=trust_remote_code, device_map={"": str(dev)}
    )
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if quant is not None:
        kwargs["quantization_config"] = quant
    from safetensors import SafetensorError

    try:
        net = AutoModelForImageTextToText.from_pretrained(base, **kwargs)
    except SafetensorError as err:
        raise ValueError(f"{base}: its weights are not a readable safetensors file ({err}); they are damaged or incomplete") from None
    except ValueError as err:
        if "Unrecognized configuration class" not in str(err):
            raise
        # transformers lists ~100 config classes here; say what is wrong with this one.
        from transformers import AutoConfig

        kind = AutoConfig.from_pretrained(base, trust_remote_code=trust_remote_code).model_type
        raise ValueError(f"{base} is a {kind!r} model, which transformers does not load as a vision-language model "
                         "(image-text-to-text); deqa scores with one, e.g. Qwen2/2.5/3-VL, LLaVA, Idefics3/SmolVLM, "
                         "InternVL, Gemma 3") from None
    except OSError as err:
        if Path(base).expanduser().is_dir():
            raise
        raise OSError(f"{base} is not a local folder, and the hub cannot provide it: {err}") from None
    if adapter_dir is not None:
        from peft import PeftModel

        try:
            with peft_wrap_quietly():
                net = PeftModel.from_pretrained(net, str(adapter_dir), is_trainable=False)
        except SafetensorError as err:
            raise ValueError(f"{adapter_dir}: its adapter weights are not a readable safetensors file ({err})") from None
        if merge_adapter if merge_adapter is not None else quant is None:
            net = net.merge_and_unload()
    net.eval()

    proc_source = next((p for p in (adapter_dir, local) if _has_processor(p)), base)
    processor = AutoProcessor.from_pretrained(str(proc_source), trust_remote_code=trust_remote_code)
    tok = getattr(processor, "tokenizer", processor)
    if tok.pad_token is None:
        # Batched scoring pads; the pad id never reaches the logits (attention mask, left pad).
        tok.pad_token = tok.eos_token
    commit = getattr(getattr(net, "config", None), "_commit_hash", None)
    if base == model and local is None and commit:
        # A hub model: its revision (transformers records the commit it resolved), so a file scored
        # with one revision is not resumed with the next.
        model_id = f"{model}@{commit[:12]}" + model_id[len(model):]
    model_id += "#" + _scoring_settings(cfg, torch_dtype, load_in_4bit=load_in_4bit, load_in_8bit=load_in_8bit)
    return LoadedVLM(net, processor, cfg, model_id, dev, torch_dtype)


def _scoring_settings(cfg: DeQAConfig, dtype: torch.dtype, *, load_in_4bit: bool, load_in_8bit: bool) -> str:
    """What besides the weights changes the scores: the dtype, quantisation and the prompt / level
    words and values of deqa_config.json ("float32-5c0f9e21"). Part of the id, so a file scored one
    way is not resumed another (a bf16 or 4-bit run beside fp32 rows, 1-5 beside 0-100 scores)."""
    import hashlib

    scoring = {k: v for k, v in cfg.to_dict().items() if k not in ("base_model", "label_method", "deqa_version", "extras")}
    digest = hashlib.blake2b(json.dumps(scoring, sort_keys=True).encode(), digest_size=4).hexdigest()
    quant = "-4bit" if load_in_4bit else "-8bit" if load_in_8bit else ""
    return f"{str(dtype).removeprefix('torch.')}{quant}-{digest}"


def _with_weights(name: str, folder: Path | None) -> str:
    """``name@<fingerprint of the folder's weights>``: results (deqa-score -o, deqa-eval) name the
    model by it, and a folder retrained in place, or another checkpoint under the same name, must be
    another model there, or a resumed file would mix two models' scores."""
    if folder is None:
        return name
    from ..fileio import weights_fingerprint

    tag = weights_fingerprint(folder)
    return f"{name}@{tag}" if tag else name
