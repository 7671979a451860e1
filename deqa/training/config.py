"""Typed arguments of ``deqa-train``: model / data / LoRA / training, read from YAML + CLI overrides.

One flat YAML file (TRL style) holds the fields of all four dataclasses; every key must belong to
exactly one of them. Overrides come after it on the command line as ``key=value``,
``--key value``, ``--key=value`` or, for list fields, ``--key v1 v2`` / ``key=[v1,v2]``::

    deqa-train --config configs/train/tiny_cpu.yaml learning_rate=1e-4 --max_steps 20

Values are converted by the same ``transformers.HfArgumentParser`` that builds the dataclasses, so
``learning_rate: 2e-5`` (a *string* for YAML 1.1) becomes a float, and a typo such as
``lerning_rate`` fails naming the key, the file and the closest valid key.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml
from transformers import HfArgumentParser, TrainingArguments

__all__ = [
    "ConfigError",
    "ModelArguments",
    "DataArguments",
    "LoraArguments",
    "DeQATrainingArguments",
    "TrainConfig",
    "DEFAULT_LORA_TARGETS",
    "RESOLVED_CONFIG_NAME",
    "load_train_config",
    "parse_overrides",
    "save_resolved_config",
]

RESOLVED_CONFIG_NAME = "deqa_train_config.yaml"

# Only the language model's attention and MLP projections: the vision tower and projector are
# trained fully (or frozen) by their own switches, never half-adapted by a name that happens to
# match (Qwen's vision blocks also have `mlp.down_proj`). `text_model` covers Idefics3/SmolVLM.
DEFAULT_LORA_TARGETS = (
    r".*(language_model|text_model)\.layers\.\d+\."
    r"(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"
)


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the key/file and the fix."""


@dataclass
class ModelArguments:
    """Which VLM to fine-tune and how to load it."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Hub id or local folder of a native transformers VLM."}
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(
        default="bfloat16", metadata={"help": "Dtype of the loaded (non-quantised) weights."}
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "e.g. sdpa, flash_attention_2, eager (None: transformers' choice)."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run model code from the hub repo (off unless you trust it)."}
    )
    question: str | None = field(
        default=None, metadata={"help": "User question (None: deqa's default, as in DeQA-Score)."}
    )
    answer_prefix: str | None = field(
        default=None, metadata={"help": "Start of the answer before the level word (None: deqa's default)."}
    )
    system_prompt: str | None = field(
        default=None, metadata={"help": "System turn (None: the chat template's own default)."}
    )
    level_words: list[str] | None = field(
        default=None,
        metadata={"help": "Five level words, worst to best (None: bad poor fair good excellent)."},
    )
    processor_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "Extra processor arguments for every batch, e.g. {max_pixels: 200704} for Qwen2.5-VL "
            "at 448x448; saved in deqa_config.json so scoring uses the same."
        },
    )

    def __post_init__(self) -> None:
        if not self.model_name_or_path:
            raise ConfigError(
                "model_name_or_path is required: set it in the YAML or pass model_name_or_path=<hub id or folder>"
            )
        if isinstance(self.processor_kwargs, str):
            try:
                self.processor_kwargs = yaml.safe_load(self.processor_kwargs)
            except yaml.YAMLError as err:
                raise ConfigError(f"processor_kwargs is not a YAML/JSON mapping: {err}") from None
        if self.processor_kwargs is not None and not isinstance(self.processor_kwargs, dict):
            raise ConfigError(f"processor_kwargs must be a mapping, got {self.processor_kwargs!r}")
        if self.level_words is not None and len(self.level_words) != 5:
            raise ConfigError(
                f"level_words needs 5 words (the manifests' soft labels have 5 levels), got {self.level_words}"
            )


@dataclass
class DataArguments:
    """Training / validation manifests (``deqa-labels`` JSONL) and how to mix and pair them."""

    train_manifests: list[str] = field(
        default_factory=list, metadata={"help": "One or more deqa-labels manifests (JSONL)."}
    )
    image_roots: list[str] | None = field(
        default=None,
        metadata={"help": "Image folder per manifest (or one for all); relative image paths resolve against it."},
    )
    dataset_weights: list[float] | None = field(
        default=None,
        metadata={"help": "Per-manifest sampling multiplier per epoch (1 = each image once, 2 = twice, 0.5 = half)."},
    )
    train_split: str | None = field(
        default="train", metadata={"help": "Manifest rows with this split are trained on (None: all rows)."}
    )
    eval_manifest: str | None = field(default=None, metadata={"help": "Validation manifest (JSONL)."})
    eval_image_root: str | None = field(default=None, metadata={"help": "Image folder of the validation manifest."})
    eval_split: str | None = field(
        default="test", metadata={"help": "Validation rows with this split (None: all rows)."}
    )
    eval_max_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on the first N validation rows only (None: all)."}
    )
    label_method: str | None = field(
        default=None,
        metadata={
            "help": "None: the manifest's soft labels; a deqa.levels.soft_labels method "
            "(moment, gaussian, deqa, onehot, binary) recomputes them from mos_norm / std_norm."
        },
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "Longest tokenised sequence; a longer one is an error (image tokens are never cut)."},
    )

    def __post_init__(self) -> None:
        if not self.train_manifests:
            raise ConfigError("train_manifests is required: a list of deqa-labels JSONL manifests")
        n = len(self.train_manifests)
        if self.image_roots is not None and len(self.image_roots) not in (1, n):
            raise ConfigError(
                f"image_roots has {len(self.image_roots)} entries for {n} train_manifests: "
                "give one root per manifest, or a single root for all"
            )
        if self.dataset_weights is not None:
            if len(self.dataset_weights) != n:
                raise ConfigError(
                    f"dataset_weights has {len(self.dataset_weights)} entries for {n} train_manifests"
                )
            bad = [w for w in self.dataset_weights if not (math.isfinite(w) and w > 0)]
            if bad:
                raise ConfigError(f"dataset_weights must be finite and > 0, got {bad}")
        if self.eval_max_samples is not None and self.eval_max_samples <= 0:
            raise ConfigError(f"eval_max_samples must be > 0, got {self.eval_max_samples}")
        if self.max_length is not None and self.max_length <= 0:
            raise ConfigError(f"max_length must be > 0, got {self.max_length}")

    def image_root_for(self, index: int) -> str | None:
        """The image root of train_manifests[index]."""
        if self.image_roots is None:
            return None
        return self.image_roots[0] if len(self.image_roots) == 1 else self.image_roots[index]


@dataclass
class LoraArguments:
    """What is trained: LoRA / QLoRA adapters or all weights; plus the vision tower and projector."""

    tuning: Literal["lora", "qlora", "full"] = field(
        default="lora",
        metadata={"help": "lora: adapters on a frozen base; qlora: adapters on a 4-bit nf4 base; full: all weights."},
    )
    lora_r: int = field(default=128, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=256, metadata={"help": "LoRA alpha (scale = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: str = field(
        default=DEFAULT_LORA_TARGETS,
        metadata={"help": "Regex over full module names (default: the language model's projections)."},
    )
    train_vision_tower: bool = field(
        default=False, metadata={"help": "Train the vision tower fully (the official DeQA recipe does)."}
    )
    train_projector: bool = field(
        default=False, metadata={"help": "Train the vision-language projector fully (official recipe: yes)."}
    )
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = field(default="nf4", metadata={"help": "QLoRA quant type."})
    bnb_4bit_use_double_quant: bool = field(default=True, metadata={"help": "QLoRA double quantisation."})
    bnb_4bit_compute_dtype: Literal["bfloat16", "float16", "float32"] = field(
        default="bfloat16", metadata={"help": "QLoRA compute dtype."}
    )

    def __post_init__(self) -> None:
        if self.lora_r <= 0 or self.lora_alpha <= 0:
            raise ConfigError(f"lora_r and lora_alpha must be > 0, got {self.lora_r}, {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        import re

        try:
            re.compile(self.lora_target_modules)
        except re.error as err:
            raise ConfigError(f"lora_target_modules is not a valid regex: {err}") from None


# What the validation loop reports (DeQATrainer: compute_quality_metrics, the loss and its terms),
# the names metric_for_best_model may take (with or without transformers' "eval_" prefix).
EVAL_METRICS = frozenset({"srcc", "krcc", "plcc", "plcc_fitted", "mae", "rmse", "loss", "loss_ce", "loss_kl", "loss_fidelity"})
LOWER_IS_BETTER = frozenset({"mae", "rmse", "loss", "loss_ce", "loss_kl", "loss_fidelity"})


@dataclass
class DeQATrainingArguments(TrainingArguments):
    """transformers.TrainingArguments + the DeQA loss weights.

    Defaults that differ from TrainingArguments: ``remove_unused_columns=False`` (the collator
    builds the batch), ``report_to="tensorboard"``, ``metric_for_best_model="srcc"``,
    ``ddp_find_unused_parameters=False``. ``per_device_train_batch_size`` counts *pairs*: each holds two
    images of the same data set for the fidelity loss.
    """

    ce_weight: float = field(default=0.05, metadata={"help": "Weight of the answer next-token CE."})
    kl_weight: float = field(default=0.05, metadata={"help": "Weight of the KL on the level tokens."})
    fidelity_weight: float = field(default=1.0, metadata={"help": "Weight of the pairwise fidelity loss."})
    kl_softmax: Literal["full", "closed"] = field(
        default="full",
        metadata={"help": "KL over the full-vocabulary softmax (official) or the 5 level logits only."},
    )
    fidelity_std: float | None = field(
        default=1.0,
        metadata={"help": "Fixed predicted std in the fidelity loss (official: 1); None = predicted std."},
    )
    ce_include_level_token: bool = field(
        default=False, metadata={"help": "Also train the level token with CE on the argmax level."}
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the collator's columns."})
    report_to: str | None = field(default="tensorboard", metadata={"help": "Logging integration."})
    metric_for_best_model: str | None = field(
        default="srcc", metadata={"help": "Validation metric that picks the best checkpoint."}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "Every trainable weight is used in each step: skip DDP's extra graph walk."},
    )

    def __post_init__(self) -> None:
        if self.label_smoothing_factor:
            raise ConfigError("label_smoothing_factor has no effect: deqa's loss (CE + KL to the soft labels + fidelity) "
                              "replaces the Trainer's, and the soft labels are the smoothing; leave it at 0")
        metric = self.metric_for_best_model
        if metric is not None:
            name = metric.removeprefix("eval_")
            if name not in EVAL_METRICS:
                raise ConfigError(
                    f"metric_for_best_model {metric!r} is not a validation metric; choose one of "
                    f"{', '.join(sorted(EVAL_METRICS))} (known before training starts, not at its first evaluation)"
                )
        given_direction = self.greater_is_better
        super().__post_init__()
        if metric is not None and given_direction is None and metric.removeprefix("eval_") in LOWER_IS_BETTER:
            # transformers guesses "greater is better" unless the name ends in "loss": for an
            # error (mae, rmse) that would keep the worst checkpoint.
            self.greater_is_better = False
        self._check_counts()
        for name in ("ce_weight", "kl_weight", "fidelity_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be finite and >= 0, got {value}")
        if self.ce_weight + self.kl_weight + self.fidelity_weight == 0:
            raise ConfigError("ce_weight, kl_weight and fidelity_weight are all 0: nothing to train")
        if self.fidelity_std is not None and not self.fidelity_std > 0:
            raise ConfigError(f"fidelity_std must be > 0 or null, got {self.fidelity_std}")
        if self.remove_unused_columns:
            raise ConfigError(
                "remove_unused_columns must be false: the DeQA collator's batch keys (level positions, "
                "soft labels, pairs) are not model.forward arguments"
            )

    def _check_counts(self) -> None:
        # Values TrainingArguments accepts but that fail only after the model has loaded (the
        # DataLoader, the optimizer, numpy's seeding) or silently train nothing.
        minimums = {
            "per_device_train_batch_size": 1,
            "per_device_eval_batch_size": 1,
            "gradient_accumulation_steps": 1,
            "eval_accumulation_steps": 1,
            "dataloader_num_workers": 0,
            "seed": 0,
            "data_seed": 0,
            "logging_steps": 0,
            "eval_steps": 0,
            "save_steps": 0,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if value is not None and value < minimum:
                raise ConfigError(f"{name} must be >= {minimum}, got {value}")
        for name in ("learning_rate", "weight_decay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be finite and >= 0, got {value}")
        if self.max_steps <= 0 and not self.num_train_epochs > 0:
            raise ConfigError(
                f"max_steps={self.max_steps} means 'train num_train_epochs epochs', but num_train_epochs is "
                f"{self.num_train_epochs}: set max_steps or num_train_epochs > 0"
            )


_SECTIONS = (ModelArguments, DataArguments, LoraArguments, DeQATrainingArguments)


@dataclass
class TrainConfig:
    """The four argument groups of one run, with the checks that need more than one of them."""

    model: ModelArguments
    data: DataArguments
    lora: LoraArguments
    training: DeQATrainingArguments
    source: str = "<dict>"

    def __post_init__(self) -> None:
        t = self.training
        evaluates = str(getattr(t.eval_strategy, "value", t.eval_strategy)) != "no"
        if evaluates and self.data.eval_manifest is None:
            raise ConfigError(
                f"{self.source}: eval_strategy={_value(t.eval_strategy)!r} needs eval_manifest "
                "(or set eval_strategy: 'no')"
            )
        if t.load_best_model_at_end and not evaluates:
            raise ConfigError(f"{self.source}: load_best_model_at_end needs eval_strategy 'steps' or 'epoch'")
        if self.lora.tuning == "full" and (self.lora.train_vision_tower or self.lora.train_projector):
            raise ConfigError(
                f"{self.source}: tuning='full' already trains every weight; "
                "drop train_vision_tower/train_projector or use tuning='lora'"
            )
        if t.bf16 and self.model.dtype == "float16":
            raise ConfigError(f"{self.source}: bf16=true with dtype=float16; use dtype: bfloat16")

    def to_flat_dict(self) -> dict[str, Any]:
        """Every field of the four groups in one flat mapping (the YAML layout)."""
        flat: dict[str, Any] = {}
        for part in (self.model, self.data, self.lora):
            flat.update(asdict(part))
        training = self.training.to_dict()
        for f in fields(DeQATrainingArguments):
            # Tokens (hub_token, ...) are secrets: never written next to a checkpoint. Deprecated
            # aliases are left out: reloaded beside the new name, one of the two would be ignored.
            if f.init and not f.name.endswith("_token") and f.name in training and f.name not in DEPRECATED_ALIASES:
                flat[f.name] = training[f.name]
        return flat


# transformers' deprecated names and what they stand for: a layer (values, the YAML file, the
# command line) that uses the old name sets the new one, so a later layer's old name still wins
# over an earlier layer's new one (gradient_checkpointing=true over a saved config's
# activation_checkpointing: false).
DEPRECATED_ALIASES = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


def _unalias(layer: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in layer.items() if k not in DEPRECATED_ALIASES}
    for old, new in DEPRECATED_ALIASES.items():
        if old in layer and new not in layer:
            out[new] = layer[old]
    return out


def _value(x: Any) -> Any:
    return getattr(x, "value", x)


# --------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------
def _parser() -> HfArgumentParser:
    parser = HfArgumentParser(_SECTIONS, allow_abbrev=False, add_help=False)

    def _error(message: str) -> None:  # argparse would print and sys.exit(2)
        raise ConfigError(message)

    parser.error = _error  # type: ignore[method-assign]
    for action in parser._actions:
        # Only keys that are actually given should come back from parse_known_args.
        action.required = False
        action.default = argparse.SUPPRESS
    return parser


def _field_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for section in _SECTIONS:
        for f in fields(section):
            if f.init:
                if f.name in names:  # a key must map to exactly one group
                    raise RuntimeError(f"field {f.name!r} is in both {names[f.name]} and {section.__name__}")
                names[f.name] = section.__name__
    return names


def _unknown_key(key: str, where: str, known: dict[str, str]) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=3)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return ConfigError(f"unknown key {key!r} in {where}{hint}; valid keys are the fields of "
                       "ModelArguments, DataArguments, LoraArguments and DeQATrainingArguments")


def parse_overrides(tokens: list[str]) -> list[str]:
    """Normalise ``key=value`` / ``--key value`` / ``--key=value`` tokens to argparse argv.

    ``key=[a,b]`` becomes ``--key a b``; ``key=null`` is kept as the string "null" and turned
    into None by :func:`load_train_config`.
    """
    argv: list[str] = []
    for token in tokens:
        if token.startswith("--"):
            argv.extend(token.split("=", 1) if "=" in token else [token])
        elif "=" in token and not _expects_value(argv):
            key, value = token.split("=", 1)
            argv.append(f"--{key}")
            stripped = value.strip()
            if stripped.startswith("[") and stripped.endswith("]"):
                items = yaml.safe_load(stripped) or []
                argv.extend(str(v) for v in items)
            elif stripped.startswith("{") and stripped.endswith("}"):
                # A mapping in YAML's flow style ({use_reentrant: false}) as in the config files;
                # transformers reads dict-valued arguments as JSON.
                try:
                    mapping = yaml.safe_load(stripped)
                except yaml.YAMLError as err:
                    raise ConfigError(f"override {token!r}: not a mapping ({err.problem})") from None
                argv.append(json.dumps(mapping))
            else:
                argv.append(value)
        else:
            argv.append(token)
    return argv


def _expects_value(argv: list[str]) -> bool:
    # "--question what=is this" : a token right after a bare --key is its value, even with '='.
    return bool(argv) and argv[-1].startswith("--") and "=" not in argv[-1]


def _split_nulls(argv: list[str]) -> tuple[list[str], dict[str, None]]:
    """Take ``--key null`` out of argv: it means None (as ``key: null`` does in YAML), which
    argparse cannot express for a typed field."""
    rest: list[str] = []
    nulls: dict[str, None] = {}
    i = 0
    while i < len(argv):
        if argv[i].startswith("--") and i + 1 < len(argv) and argv[i + 1] == "null":
            nulls[argv[i][2:].replace("-", "_")] = None
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    return rest, nulls


def _convert_yaml_values(raw: dict[str, Any], source: str, parser: HfArgumentParser) -> dict[str, Any]:
    """Convert YAML strings to the field's type with the field's argparse converter."""
    out = dict(raw)
    actions = {a.dest: a for a in parser._actions}
    for key, value in raw.items():
        action = actions.get(key)
        if action is None or value is None:
            continue
        # The shape first: a string where a list belongs would be iterated character by character
        # ("manifest not found: /"), a list where one value belongs fails deep inside a check.
        if action.nargs == "+" and not isinstance(value, list):
            raise ConfigError(f"{source}: key {key!r} takes a list, e.g. {key}: [{value}]; got {type(value).__name__} {value!r}")
        if action.nargs != "+" and isinstance(value, list) and action.type in (int, float):  # (report_to takes either)
            raise ConfigError(f"{source}: key {key!r} takes one value, got the list {value!r}")
        if isinstance(value, bool) and action.choices and value not in action.choices:
            raise ConfigError(
                f"{source}: key {key!r}: YAML reads an unquoted yes/no/on/off as {value}; quote the value "
                f"(one of {', '.join(map(str, action.choices))}), e.g. {key}: '{'yes' if value else 'no'}'"
            )
        if action.type is None or action.type is str:
            continue
        try:
            if isinstance(value, str):
                out[key] = action.type(value)
            elif isinstance(value, list) and action.nargs == "+":
                out[key] = [action.type(v) if isinstance(v, str) else v for v in value]
        except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
            raise ConfigError(f"{source}: key {key!r}: cannot convert {value!r} ({err})") from None
    return out


class ConfigWarning(UserWarning):
    """A config key that is set but has no effect in this run."""


def _warn_ignored(merged: dict[str, Any]) -> None:
    """Keys given (in the file or on the command line) that this run's tuning never reads: say so,
    rather than let "tuning=full bnb_4bit_quant_type=fp4" look like full fine-tuning in 4-bit."""
    import warnings

    defaults = {f.name: f.default for f in fields(LoraArguments)}
    tuning = _value(merged.get("tuning") or defaults["tuning"])

    def set_to_other_than_default(key: str) -> bool:  # a resolved config lists every key, mostly at its default
        return key in defaults and _value(merged[key]) != defaults[key]

    ignored = []
    if tuning != "qlora":
        ignored += [k for k in merged if k.startswith("bnb_4bit_") and set_to_other_than_default(k)]
    if tuning == "full":
        ignored += [k for k in merged if k.startswith("lora_") and set_to_other_than_default(k)]
    if ignored:
        why = ("full fine-tuning trains every weight, without LoRA or 4-bit" if tuning == "full"
               else "4-bit applies to tuning=qlora only")
        warnings.warn(f"{', '.join(sorted(ignored))} set but unused with tuning={tuning} ({why})", ConfigWarning, stacklevel=3)


def load_train_config(
    path: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    *,
    values: dict[str, Any] | None = None,
) -> TrainConfig:
    """Read a flat YAML config, apply CLI overrides, validate; returns a :class:`TrainConfig`.

    ``values`` (a flat dict, for programmatic use) is the lowest layer, then the YAML file, then
    ``overrides`` (command-line tokens). Unknown keys fail naming the key and where it came from.
    """
    known = _field_names()
    parser = _parser()
    merged: dict[str, Any] = _unalias(dict(values or {}))
    source = "<values>"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"cannot read config {path}: {err.strerror}") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must be a mapping of key: value, got {type(raw).__name__}")
        for key in raw:
            if key not in known:
                raise _unknown_key(str(key), str(path), known)
        merged.update(_unalias(raw))
    for key in merged:
        if key not in known:
            raise _unknown_key(str(key), source, known)
    merged = _convert_yaml_values(merged, source, parser)

    if overrides:
        argv, nulls = _split_nulls(parse_overrides(overrides))
        for key in nulls:
            if key not in known:
                raise _unknown_key(key, "the command-line overrides", known)
        ns, rest = parser.parse_known_args(argv)
        if rest:
            bad = next((t for t in rest if t.startswith("--")), rest[0])
            raise _unknown_key(bad.lstrip("-"), "the command-line overrides", known)
        merged.update(_unalias(vars(ns)))
        merged.update(_unalias(nulls))

    _warn_ignored(merged)
    where = f"{source} with the command-line overrides" if overrides else source
    try:
        model, data, lora, training = parser.parse_dict(merged)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None
    return TrainConfig(model=model, data=data, lora=lora, training=training, source=source)


def save_resolved_config(config: TrainConfig, output_dir: str | os.PathLike) -> Path:
    """Write the fully resolved config as flat YAML; :func:`load_train_config` reads it back."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESOLVED_CONFIG_NAME
    header = f"# deqa-train resolved config (from {config.source}); reload with deqa-train --config {path.name}\n"
    body = yaml.safe_dump(_plain(config.to_flat_dict()), sort_keys=False, allow_unicode=True)
    path.write_text(header + body, encoding="utf-8")
    return path


def _plain(value: Any) -> Any:
    """YAML-safe copy: enums to values, tuples to lists, other objects to strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    value = _value(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
