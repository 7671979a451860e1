"""Per-image predictions of an evaluation run: one JSONL file per data set, appended batch by batch.

A line is ``{"image": <name as in the label file>, "score": 1-5, "std": ..., "probs": {level:
p}, "error": null}``; a failed image has ``score: null`` and the reason in ``error``. Lines are
appended and flushed as batches finish, so an interrupted run loses at most the batch in flight:
:func:`read_predictions` drops a torn last line, and the next run scores only what is missing.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..results import ScoreFailure, ScoreResult

__all__ = [
    "PREDICTIONS_FILE",
    "Prediction",
    "PredictionWriter",
    "read_predictions",
    "repair_jsonl_tail",
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


def repair_jsonl_tail(path: str | os.PathLike) -> int:
    """Cut a torn last line (no trailing newline: the process died mid-write). Returns bytes cut."""
    path = Path(path)
    if not path.is_file():
        return 0
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        # Scan back for the last newline in blocks; the torn line is at most one record long.
        pos, keep = size, 0
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            idx = block.rfind(b"\n")
            if idx >= 0:
                keep = pos + idx + 1
                break
        f.truncate(keep)
        return size - keep


def read_predictions(path: str | os.PathLike) -> dict[str, Prediction]:
    """All predictions in a JSONL file, by image; a later line for the same image wins (a retried
    failure). A torn last line is ignored (with a warning); a bad line elsewhere is an error."""
    path = Path(path)
    if not path.is_file():
        return {}
    out: dict[str, Prediction] = {}
    with path.open("r", encoding="utf-8") as f:
        lines = f.read().split("\n")
    torn = lines.pop()  # "" when the file ends with a newline
    if torn.strip():
        warnings.warn(
            f"{path}: ignoring an incomplete last line (interrupted write); it will be rescored",
            stacklevel=2,
        )
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{where}: not valid JSON ({err.msg}); delete that line (or the file) to rescore it"
            ) from None
        pred = Prediction.from_json(obj, where)
        out[pred.image] = pred
    return out


class PredictionWriter:
    """Appends predictions to a JSONL file, flushing after every :meth:`write` call."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_jsonl_tail(self.path)  # so the first new line does not glue onto a torn one
        self._f = self.path.open("a", encoding="utf-8")

    def write(self, predictions: Iterable[Prediction]) -> int:
        n = 0
        for pred in predictions:
            self._f.write(json.dumps(pred.to_json(), ensure_ascii=False) + "\n")
            n += 1
        self._f.flush()
        return n

    def close(self) -> None:
        self._f.close()

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
