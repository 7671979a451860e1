"""``deqa_config.json``: what a VLM checkpoint needs to be scored the way it was trained.

Training writes this file next to every checkpoint; scoring reads it. A plain base model (no
file) gets :meth:`DeQAConfig.for_base_model` defaults, so zero-shot scoring of any VLM works.
The level order is deqa's everywhere: ascending quality, ``level_words[i]`` has value
``level_values[i]``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..levels import LEVEL_VALUES, LEVEL_WORDS

__all__ = [
    "DeQAConfig",
    "DEQA_CONFIG_NAME",
    "DEFAULT_QUESTION",
    "DEFAULT_ANSWER_PREFIX",
    "DEFAULT_ANSWER_SUFFIX",
]

DEQA_CONFIG_NAME = "deqa_config.json"
DEFAULT_QUESTION = "How would you rate the quality of this image?"
DEFAULT_ANSWER_PREFIX = "The quality of the image is"
DEFAULT_ANSWER_SUFFIX = "."


def _version() -> str:
    from .. import __version__

    return __version__


@dataclass
class DeQAConfig:
    """The ``deqa_config.json`` schema.

    The assistant answer the model is trained on (and scored at) is
    ``f"{answer_prefix} {level_word}{answer_suffix}"``: the level word follows the prefix after
    exactly one space, and the score is read from the token at that position.

    Attributes:
        level_words: the words of the levels, ascending quality (default bad ... excellent).
        level_values: the value of each level (default 1..5), strictly increasing.
        question: the user's question, after the image.
        answer_prefix: the start of the assistant's answer; scoring continues the assistant turn
            from here (it is not a new turn).
        answer_suffix: what follows the level word in training answers.
        system_prompt: a system turn to add; ``None`` keeps the chat template's own default.
        processor_kwargs: extra keyword arguments for every processor call (e.g.
            ``{"do_image_splitting": false}``); training and scoring use the same ones.
        base_model: hub id or folder of the base VLM (an adapter checkpoint is applied to it).
        label_method: how the training soft labels were made (informational).
        deqa_version: the deqa version that wrote the file.
        extras: free-form metadata (e.g. training data sets); never interpreted.
    """

    level_words: tuple[str, ...] = LEVEL_WORDS
    level_values: tuple[float, ...] = tuple(float(v) for v in LEVEL_VALUES)
    question: str = DEFAULT_QUESTION
    answer_prefix: str = DEFAULT_ANSWER_PREFIX
    answer_suffix: str = DEFAULT_ANSWER_SUFFIX
    system_prompt: str | None = None
    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    base_model: str | None = None
    label_method: str | None = None
    deqa_version: str = field(default_factory=_version)
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The kinds first: a string would be split into letters, "5" silently read as 5, NaN
        # would make every score NaN (and the JSONL output invalid JSON).
        if isinstance(self.level_words, str) or not isinstance(self.level_words, (list, tuple)):
            raise ValueError(f"level_words must be a list of words, got {self.level_words!r}")
        if isinstance(self.level_values, str) or not isinstance(self.level_values, (list, tuple)):
            raise ValueError(f"level_values must be a list of numbers, got {self.level_values!r}")
        bad = [v for v in self.level_values if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)]
        if bad:
            raise ValueError(f"level_values must be finite numbers, got {bad}")
        for name in ("question", "answer_prefix", "answer_suffix"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            raise ValueError(f"system_prompt must be a string or null, got {self.system_prompt!r}")
        self.level_words = tuple(self.level_words)
        self.level_values = tuple(float(v) for v in self.level_values)
        words, values = self.level_words, self.level_values
        if len(words) < 2:
            raise ValueError(f"level_words needs at least two words, got {list(words)}")
        if len(words) != len(values):
            raise ValueError(
                f"level_words has {len(words)} words but level_values has {len(values)} values; give one value per word"
            )
        if len(set(words)) != len(words):
            raise ValueError(f"level_words must be distinct, got {list(words)}")
        for w in words:
            if not isinstance(w, str) or not w or w != w.strip() or " " in w:
                raise ValueError(f"level word {w!r} must be one non-empty word without spaces")
        if any(b <= a for a, b in zip(values, values[1:], strict=False)):
            raise ValueError(
                f"level_values must be strictly increasing (level_words go from worst to best), got {list(values)}"
            )
        if not self.question.strip():
            raise ValueError("question must not be empty")
        if not self.answer_prefix.strip():
            raise ValueError("answer_prefix must not be empty")
        if self.answer_prefix != self.answer_prefix.rstrip():
            raise ValueError(
                f"answer_prefix {self.answer_prefix!r} ends with whitespace; drop it (the level word is joined with one space)"
            )
        if not isinstance(self.processor_kwargs, dict) or not isinstance(self.extras, dict):
            raise ValueError("processor_kwargs and extras must be JSON objects")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def for_base_model(cls, model_id: str | None) -> DeQAConfig:
        """Defaults for zero-shot scoring of a plain base VLM."""
        return cls(base_model=model_id)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<dict>") -> DeQAConfig:
        """Build from a dict; unknown keys are an error naming ``source``."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; valid keys are {sorted(known)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from None

    @classmethod
    def load(cls, path: str | Path) -> DeQAConfig:
        """Read ``deqa_config.json`` from a file or from the folder that holds it."""
        path = Path(path)
        if path.is_dir():
            path = path / DEQA_CONFIG_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such file") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def find(cls, *folders: str | Path | None) -> DeQAConfig | None:
        """The config of the first local folder that has a ``deqa_config.json``, else ``None``."""
        for folder in folders:
            if folder is not None and (Path(folder) / DEQA_CONFIG_NAME).is_file():
                return cls.load(folder)
        return None

    # -- output ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["level_words"] = list(self.level_words)
        data["level_values"] = list(self.level_values)
        return data

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/deqa_config.json`` and return its path."""
        path = Path(folder) / DEQA_CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        return path
