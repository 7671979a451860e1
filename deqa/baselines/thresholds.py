"""Turning a quality score into a decision, and choosing the thresholds from data.

A :class:`ThresholdPolicy` maps ``score_0_1`` to a label and an action, e.g. high -> publish,
medium -> publish, low -> send to review, rejected -> reject. :func:`score_distribution` gives the
numbers (min/max/mean/std and P10..P90) that ``deqa baseline calibrate`` prints for a folder, so
thresholds are set from the score distribution of one's own images rather than guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ThresholdLevel", "ThresholdPolicy", "score_distribution", "aggregate_scores", "AGGREGATIONS"]


@dataclass(frozen=True)
class ThresholdLevel:
    """Scores >= ``min_score`` (and below the next level up) get ``label`` and ``action``."""

    label: str
    min_score: float
    action: str


def _default_levels() -> list[ThresholdLevel]:
    return [
        ThresholdLevel("high", 0.75, "accept"),
        ThresholdLevel("medium", 0.5, "accept, flag for improvement"),
        ThresholdLevel("low", 0.3, "send to manual review"),
        ThresholdLevel("rejected", 0.0, "reject"),
    ]


@dataclass
class ThresholdPolicy:
    """Ordered levels, best first; the last level must start at 0 so every score gets a label.

    ``head_limits`` (degradation models): an input any of whose listed intensities reaches its
    limit gets the last level whatever its score. The overall score is a weighted mean of six
    intensities, so one ruined aspect (a black frame, heavy blur) lowers it by at most that
    head's weight and would otherwise still pass; e.g. ``{"blur": 0.6, "exposure": 0.6}``.
    """

    levels: list[ThresholdLevel] = field(default_factory=_default_levels)
    head_limits: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.levels = [lv if isinstance(lv, ThresholdLevel) else ThresholdLevel(**lv) for lv in self.levels]
        if not self.levels:
            raise ValueError("thresholds: need at least one level")
        mins = [lv.min_score for lv in self.levels]
        bad = [m for m in mins if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0.0 <= m <= 1.0]
        if bad:  # NaN fails the range test too; 4.0 is the 1-5 scale, which thresholds are not on
            raise ValueError(f"thresholds: min_score is on the 0-1 scale (score_0_1), got {bad}; "
                             "a 1-5 score s is (s - 1) / 4 there")
        if any(a <= b for a, b in zip(mins, mins[1:], strict=False)):
            raise ValueError(f"thresholds: min_score must strictly decrease from the first level to the last, got {mins}")
        if mins[-1] != 0.0:
            raise ValueError(f"thresholds: the last level ({self.levels[-1].label!r}) must have min_score 0, got {mins[-1]}")
        if len({lv.label for lv in self.levels}) != len(self.levels):
            raise ValueError("thresholds: labels must be distinct")
        self.head_limits = {str(h): float(v) for h, v in self.head_limits.items()}
        bad = {h: v for h, v in self.head_limits.items() if not 0.0 < v <= 1.0}
        if bad:
            raise ValueError(f"thresholds.head_limits: each limit must be in (0, 1] (an intensity), got {bad}")

    def check_heads(self, heads: Sequence[str] | None, model: str) -> None:
        """Raise unless every head in ``head_limits`` is one the model reports (``heads``: its
        intensity names, None for a model with none, e.g. an encoder head)."""
        unknown = sorted(set(self.head_limits) - set(heads or ()))
        if unknown:
            has = f"its heads are {list(heads)}" if heads else "it reports no per-degradation intensities"
            raise ValueError(f"thresholds.head_limits names {unknown}, which {model} does not report ({has})")

    def classify(self, score_0_1: float, details: dict[str, float] | None = None) -> ThresholdLevel:
        """The first level whose ``min_score`` the score reaches; the last level when one of
        ``details`` (the per-degradation intensities) reaches its ``head_limits`` entry."""
        if not np.isfinite(score_0_1):
            raise ValueError(f"cannot label a non-finite score {score_0_1}")
        if self.head_limits:
            missing = sorted(set(self.head_limits) - set(details or {}))
            if missing:
                raise ValueError(f"thresholds.head_limits: no intensity for {missing} to check")
            if any(details[h] >= lim for h, lim in self.head_limits.items()):
                return self.levels[-1]
        for lv in self.levels:
            if score_0_1 >= lv.min_score:
                return lv
        return self.levels[-1]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"levels": [vars(lv) for lv in self.levels]}
        if self.head_limits:
            d["head_limits"] = dict(self.head_limits)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ThresholdPolicy:
        if not d:
            return cls()
        unknown = sorted(set(d) - {"levels", "head_limits"})
        if unknown:
            raise ValueError(f"thresholds: unknown key(s) {unknown}; expected 'levels' (and optionally 'head_limits')")
        limits = d.get("head_limits") or {}
        if not isinstance(limits, dict):
            raise ValueError(f'thresholds.head_limits: expected {{"head": limit, ...}}, got {limits!r}')
        if "levels" not in d:
            return cls(head_limits=limits)
        levels = []
        for i, lv in enumerate(d["levels"]):
            extra = sorted(set(lv) - {"label", "min_score", "action"})
            if extra or not {"label", "min_score", "action"} <= set(lv):
                raise ValueError(f"thresholds.levels[{i}]: needs exactly label, min_score, action; got {sorted(lv)}")
            levels.append(ThresholdLevel(str(lv["label"]), float(lv["min_score"]), str(lv["action"])))
        return cls(levels, limits)


def score_distribution(scores: Sequence[float]) -> dict[str, float]:
    """count, min, max, mean, std (population) and the deciles P10..P90 of ``scores``."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("no scores to summarise")
    if not np.isfinite(arr).all():
        raise ValueError("scores contain NaN/Inf")
    out = {"count": int(arr.size), "min": float(arr.min()), "max": float(arr.max()),
           "mean": float(arr.mean()), "std": float(arr.std())}
    for p, v in zip(range(10, 100, 10), np.percentile(arr, list(range(10, 100, 10))), strict=True):
        out[f"p{p}"] = float(v)
    return out


def _trimmed_mean(x: np.ndarray, trim: float) -> float:
    from scipy.stats import trim_mean

    return float(trim_mean(x, trim))


AGGREGATIONS = ("mean", "median", "min", "trimmed_mean")


def aggregate_scores(scores: Sequence[float], method: str = "median", *, trim: float = 0.1) -> float:
    """One score for several of one input (video frames, tiles, crops).

    median (default) resists a few odd frames; min is the strict choice (the worst frame
    decides); trimmed_mean drops ``trim`` of each tail before averaging.
    """
    arr = np.asarray(scores, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("aggregate_scores: no scores")
    if method == "mean":
        return float(arr.mean())
    if method == "median":
        return float(np.median(arr))
    if method == "min":
        return float(arr.min())
    if method == "trimmed_mean":
        if not 0.0 <= trim < 0.5:
            raise ValueError(f"trim must be in [0, 0.5), got {trim}")
        return _trimmed_mean(arr, trim)
    raise ValueError(f"unknown aggregation {method!r}; choose one of {list(AGGREGATIONS)}")
