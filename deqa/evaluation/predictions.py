"""Per-image predictions of an evaluation run: one JSONL file per data set, appended batch by batch.

A line is ``{"image": <name as in the label file>, "score": 1-5, "std": ..., "probs": {level:
p}, "error": null}``; a failed image has ``score: null`` and the reason in ``error``. Lines are
appended and flushed as batches finish, so an interrupted run loses at most the batch in flight:
:func:`read_predictions` drops a torn last line, and the next run scores only what is missing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jsonl import JsonlWriter, iter_jsonl
from ..results import ScoreFailure, ScoreResult

__all__ = [
    "PREDICTIONS_FILE",
    "Prediction",
    "PredictionWriter",
    "read_predictions",
    "merge_prediction_files",
]

PREDICTIONS_FILE = "predictions.jsonl"


@dataclass(frozen=True)
class Prediction:
    """One image's prediction. ``image`` is the label file's name for it (the join key)."""

    image: str
    score: float | None = None
    std: float | None = None
    probs: dict[str, float] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.score is not None

    @classmethod
    def from_result(cls, image: str, result: ScoreResult | ScoreFailure) -> Prediction:
        if isinstance(result, ScoreFailure):
            return cls(image=image, error=result.error)
        probs = None if result.probs is None else {k: float(v) for k, v in result.probs.items()}
        std = None if result.std is None else float(result.std)
        return cls(image=image, score=float(result.score), std=std, probs=probs)

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "score": self.score,
            "std": self.std,
            "probs": self.probs,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Prediction:
        if not isinstance(obj, dict) or not isinstance(obj.get("image"), str):
            raise ValueError(f"{where}: expected an object with a string 'image'")
        unknown = set(obj) - {"image", "score", "std", "probs", "error"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}")
        error = obj.get("error")
        score = _finite_or_none(obj.get("score"), "score", where)
        std = _finite_or_none(obj.get("std"), "std", where)
        probs = obj.get("probs")
        if probs is not None:
            if not isinstance(probs, dict):
                raise ValueError(f"{where}: 'probs' must be an object level -> probability")
            probs = {str(k): _finite_or_none(v, f"probs[{k!r}]", where) for k, v in probs.items()}
        if error is None and score is None:
            raise ValueError(f"{where}: a line needs a 'score' or an 'error'")
        return cls(
            image=obj["image"],
            score=score,
            std=std,
            probs=probs,
            error=None if error is None else str(error),
        )


def _finite_or_none(value: Any, name: str, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {name} must be a finite number or null, got {value!r}")
    return float(value)


def read_predictions(path: str | os.PathLike) -> dict[str, Prediction]:
    """All predictions in a JSONL file, by image; a later line for the same image wins (a retried
    failure). A torn last line is ignored (with a warning); a bad line elsewhere is an error."""
    path = Path(path)
    if not path.is_file():
        return {}
    out: dict[str, Prediction] = {}
    lines = iter_jsonl(
        path, skip_torn_tail=True, hint="delete that line (or the file) to rescore it"
    )
    for lineno, obj in lines:
        pred = Prediction.from_json(obj, f"{path} line {lineno}")
        out[pred.image] = pred
    return out


class PredictionWriter:
    """Appends predictions to a JSONL file (cutting a torn last line first), one flushed line
    per prediction."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._out = JsonlWriter(self.path)

    def write(self, predictions: Iterable[Prediction]) -> int:
        n = 0
        for pred in predictions:
            self._out.write(pred.to_json())
            n += 1
        return n

    def close(self) -> None:
        self._out.close()

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def merge_prediction_files(target: str | os.PathLike, sources: Iterable[str | os.PathLike]) -> int:
    """Append the predictions of ``sources`` (per-rank shard files) that ``target`` lacks or holds
    only as failures, then delete the sources. Returns the number of lines appended."""
    target = Path(target)
    have: Mapping[str, Prediction] = read_predictions(target)
    added = 0
    sources = [Path(s) for s in sources]
    with PredictionWriter(target) as writer:
        for src in sources:
            new = [
                p
                for p in read_predictions(src).values()
                if p.image not in have or (p.ok and not have[p.image].ok)
            ]
            added += writer.write(new)
            have = {**have, **{p.image: p for p in new}}
    for src in sources:
        src.unlink(missing_ok=True)
    return added
