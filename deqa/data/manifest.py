"""JSONL soft-label manifests: one JSON object per line, one line per image.

Fields (probability vectors in deqa's level order, bad..excellent)::

    {"image": "a.jpg", "mos": 77.38, "std": 0.527, "mos_norm": 4.10, "std_norm": 0.527,
     "probs": [0.0, 0.01, 0.22, 0.70, 0.07], "split": "train", "dataset": "koniq10k",
     "extra": {"ref_image": "..."}}

``mos``/``std`` are on the data set's own scale (std may be null), ``mos_norm``/``std_norm`` on
the level scale [1, 5] (std_norm null when the label was built without a std), ``split`` and
``dataset`` may be null, ``extra`` is optional.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..fileio import atomic_write
from ..jsonl import iter_jsonl

__all__ = ["ManifestRecord", "MANIFEST_FIELDS", "write_manifest", "read_manifest"]

MANIFEST_FIELDS = ("image", "mos", "std", "mos_norm", "std_norm", "probs", "split", "dataset")
_REQUIRED = ("image", "mos", "mos_norm", "probs")
_KNOWN = frozenset(MANIFEST_FIELDS) | {"extra"}
# A label is a probability vector. Its sum may miss 1 by a little: DeQA-Score's own labels (the
# "deqa" method, reproduced as published) sum to up to ~1.05, so only a sum off by more is an error.
PROB_TOLERANCE = 1e-9
SUM_TOLERANCE = 0.1


@dataclass
class ManifestRecord:
    """One image's labels. probs: K floats in level order (bad..excellent)."""

    image: str
    mos: float
    mos_norm: float
    probs: list[float]
    std: float | None = None
    std_norm: float | None = None
    split: str | None = None
    dataset: str | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {
            "image": self.image,
            "mos": float(self.mos),
            "std": None if self.std is None else float(self.std),
            "mos_norm": float(self.mos_norm),
            "std_norm": None if self.std_norm is None else float(self.std_norm),
            "probs": [float(p) for p in self.probs],
            "split": self.split,
            "dataset": self.dataset,
        }
        if self.extra:
            out["extra"] = self.extra
        return out


def write_manifest(path: str | Path, records: Iterable[ManifestRecord]) -> int:
    """Write records as JSONL (atomically: a temp file renamed into place). Returns the count."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"{path} is a folder; give the manifest a file name, e.g. {path / 'labels.jsonl'}"
        )
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with atomic_write(path) as f:  # a bad record raises before the target is touched
        for rec in records:
            f.write(json.dumps(rec.to_json(), ensure_ascii=False, allow_nan=False))
            f.write("\n")
            n += 1
    return n


def _number(obj: dict, key: str, where: str, nullable: bool) -> float | None:
    value = obj.get(key)
    if value is None:
        if nullable:
            return None
        raise ValueError(f"{where}: field {key!r} is null; it must be a number")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: field {key!r} = {value!r} is not a finite number")
    return float(value)


def _optional_str(obj: dict, key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{where}: field {key!r} = {value!r} must be a string or null")
    return value


def _parse(obj, where: str, num_levels: int | None) -> ManifestRecord:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        raise ValueError(
            f"{where}: missing field(s) {missing}; a manifest record needs {list(_REQUIRED)}"
        )
    unknown = sorted(set(obj) - _KNOWN)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; put custom data under 'extra'")
    image = obj["image"]
    if not isinstance(image, str) or not image:
        raise ValueError(f"{where}: field 'image' must be a non-empty string, got {image!r}")
    probs = obj["probs"]
    if not isinstance(probs, list) or not probs:
        raise ValueError(
            f"{where}: field 'probs' must be a non-empty list of numbers, got {probs!r}"
        )
    if num_levels is not None and len(probs) != num_levels:
        raise ValueError(
            f"{where}: 'probs' has {len(probs)} entries, expected {num_levels} (one per level)"
        )
    for p in probs:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p):
            raise ValueError(f"{where}: 'probs' entry {p!r} is not a finite number")
    if min(probs) < -PROB_TOLERANCE or abs(sum(probs) - 1.0) > SUM_TOLERANCE:
        raise ValueError(
            f"{where}: 'probs' {probs} is not a probability vector (entries >= 0 summing to 1; "
            f"these sum to {sum(probs):.6g})"
        )
    extra = obj.get("extra") or {}
    if not isinstance(extra, dict):
        raise ValueError(f"{where}: field 'extra' must be an object, got {type(extra).__name__}")
    # On the level scale: 1..K for K levels, and no distribution there spreads more than (K - 1) / 2.
    k = len(probs)
    mos_norm = _number(obj, "mos_norm", where, nullable=False)
    if not 1.0 - 1e-6 <= mos_norm <= k + 1e-6:
        raise ValueError(f"{where}: field 'mos_norm' = {mos_norm!r} is outside the level scale [1, {k}]")
    std_norm = _number(obj, "std_norm", where, nullable=True)
    if std_norm is not None and not 0.0 <= std_norm <= (k - 1) / 2 + 1e-6:
        raise ValueError(f"{where}: field 'std_norm' = {std_norm!r} is outside [0, {(k - 1) / 2:g}] (a std on the level scale)")
    return ManifestRecord(
        image=image,
        mos=_number(obj, "mos", where, nullable=False),
        std=_number(obj, "std", where, nullable=True),
        mos_norm=mos_norm,
        std_norm=std_norm,
        probs=[float(p) for p in probs],
        split=_optional_str(obj, "split", where),
        dataset=_optional_str(obj, "dataset", where),
        extra=extra,
    )


def read_manifest(path: str | Path, num_levels: int | None = 5) -> list[ManifestRecord]:
    """Read a JSONL manifest. ``num_levels``: expected probs length (None: any, but all equal).

    Blank lines are skipped. Raises ValueError naming the file and line for invalid JSON,
    missing/unknown fields, non-finite numbers, wrong probs length, probs that are not a
    probability vector, and mos_norm / std_norm off the level scale.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    records: list[ManifestRecord] = []
    for n, obj in iter_jsonl(path):
        where = f"{path} line {n}"
        rec = _parse(obj, where, num_levels)
        if num_levels is None and records and len(rec.probs) != len(records[0].probs):
            raise ValueError(
                f"{where}: 'probs' has {len(rec.probs)} entries but earlier records have {len(records[0].probs)}"
            )
        records.append(rec)
    return records
