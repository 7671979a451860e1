"""Typed per-image results shared by every deqa scorer (VLM and baselines)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ScoreResult", "ScoreFailure"]


@dataclass
class ScoreResult:
    """One image's quality prediction.

    ``score`` is on the 1-5 level scale (bad=1 ... excellent=5); ``score_0_1`` is the same
    number mapped linearly to [0, 1]. ``probs`` (level word -> probability, in level order) and
    ``std`` (standard deviation of that level distribution) exist for models that predict a
    distribution over levels (the VLM path); scalar models (some baselines) leave them ``None``.
    ``details`` carries model-specific extras, e.g. per-degradation scores of the CNN baseline.
    """

    input: str
    score: float
    score_0_1: float
    level: str
    model: str
    std: float | None = None
    probs: dict[str, float] | None = None
    details: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ScoreFailure:
    """An input that could not be scored, with a reason a user can act on."""

    input: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
