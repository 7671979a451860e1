"""Published results of other models (``deqa/data/reference_results.csv``, package data; the
protocol and sources are in eval/README.md) and the side-by-side table that ``deqa-eval
--compare`` prints.

Every reference row names its source and the data the model was trained on: a number on a data
set the model was trained on (in-domain test split) is not comparable with one on an unseen set.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .report import DatasetResult

__all__ = [
    "REFERENCE_COLUMNS",
    "ReferenceResult",
    "default_reference_path",
    "load_references",
    "format_comparison",
]

REFERENCE_COLUMNS = (
    "model", "variant", "dataset", "split", "srcc", "plcc", "krcc",
    "plcc_protocol", "training_data", "source", "notes",
)  # fmt: skip
_REQUIRED = ("model", "dataset", "split", "training_data", "source")
_PROTOCOLS = ("logistic-4", "raw", "unspecified")


@dataclass(frozen=True)
class ReferenceResult:
    """One published (model, data set) result. ``training_data``: registry names joined by '+'
    (plus names of non-IQA sets such as 'ava', 'lsvq'). ``plcc_protocol``: 'logistic-4' (PLCC
    after the 4-parameter logistic), 'raw', or 'unspecified' when the source does not say."""

    model: str
    variant: str
    dataset: str
    split: str
    srcc: float | None
    plcc: float | None
    krcc: float | None
    plcc_protocol: str
    training_data: str
    source: str
    notes: str = ""

    @property
    def label(self) -> str:
        return f"{self.model} ({self.variant})" if self.variant else self.model

    def trained_on(self, dataset: str) -> bool:
        return dataset in self.training_data.split("+")


def default_reference_path() -> Path:
    """The reference results shipped inside the package (``deqa/data/reference_results.csv``)."""
    return Path(__file__).resolve().parents[1] / "data" / "reference_results.csv"


def _corr(text: str, column: str, where: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {column} = {text!r} is not a number") from None
    if not (math.isfinite(value) and -1.0 <= value <= 1.0):
        raise ValueError(f"{where}: {column} = {value} is not a correlation in [-1, 1]")
    return value


def load_references(
    path: str | os.PathLike | None = None,
    *,
    check_datasets: bool = True,
    extra_datasets: Iterable[str] = (),
) -> list[ReferenceResult]:
    """Parse a reference CSV; every error names the file and line. ``check_datasets`` requires the
    ``dataset`` column to hold registered names (not aliases) or one of ``extra_datasets`` (data
    sets of a user registry)."""
    path = Path(path) if path is not None else default_reference_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"reference results {path} not found; pass --references PATH (deqa ships its own as "
            f"{default_reference_path()})"
        )
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = tuple(reader.fieldnames or ())
        if header != REFERENCE_COLUMNS:
            missing = [c for c in REFERENCE_COLUMNS if c not in header]
            unknown = [c for c in header if c not in REFERENCE_COLUMNS]
            raise ValueError(
                f"{path}: header must be {','.join(REFERENCE_COLUMNS)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {unknown}" if unknown else "")
            )
        rows = list(reader)
    known: set[str] | None = None
    if check_datasets:
        from ..data.registry import list_datasets

        known = set(list_datasets()) | set(extra_datasets)
    refs = []
    for lineno, row in enumerate(rows, start=2):
        where = f"{path} line {lineno}"
        if None in row or any(v is None for v in row.values()):
            raise ValueError(f"{where}: expected {len(REFERENCE_COLUMNS)} fields")
        for col in _REQUIRED:
            if not row[col].strip():
                raise ValueError(f"{where}: {col} is empty; every reference needs it")
        if known is not None and row["dataset"] not in known:
            raise ValueError(
                f"{where}: dataset {row['dataset']!r} is not a registered data set name ({', '.join(sorted(known))})"
            )
        protocol = row["plcc_protocol"].strip() or "unspecified"
        if protocol not in _PROTOCOLS:
            raise ValueError(f"{where}: plcc_protocol {protocol!r} must be one of {_PROTOCOLS}")
        srcc, plcc = _corr(row["srcc"], "srcc", where), _corr(row["plcc"], "plcc", where)
        if srcc is None and plcc is None:
            raise ValueError(f"{where}: a reference needs srcc or plcc")
        refs.append(
            ReferenceResult(
                model=row["model"].strip(),
                variant=row["variant"].strip(),
                dataset=row["dataset"].strip(),
                split=row["split"].strip(),
                srcc=srcc,
                plcc=plcc,
                krcc=_corr(row["krcc"], "krcc", where),
                plcc_protocol=protocol,
                training_data=row["training_data"].strip(),
                source=row["source"].strip(),
                notes=row["notes"].strip(),
            )
        )
    return refs


def _f(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def format_comparison(
    results: list[DatasetResult],
    references: list[ReferenceResult],
    training_data: str | None = None,
) -> str:
    """Markdown table: per data set, this run's SRCC/PLCC (logistic) then the published rows for the
    same data set and split, each with its training data (``seen`` marks in-domain results)."""
    ours = training_data or "not recorded in the model"
    lines = [
        "| Data set | Model | Training data | SRCC | PLCC | PLCC protocol | Source |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for r in results:
        m = r.metrics
        lines.append(
            f"| {r.title} ({r.split}) | **this run: {r.model}** | {ours} | "
            f"{_f(m.srcc if m else None)} | {_f(m.plcc_fitted if m else None)} | logistic-4 | n={r.n_scored} |"
        )
        same = [x for x in references if x.dataset == r.dataset and x.split == r.split]
        for ref in sorted(same, key=lambda x: -(x.srcc if x.srcc is not None else -2.0)):
            seen = " (seen)" if ref.trained_on(r.dataset) else ""
            lines.append(
                f"| {r.title} ({r.split}) | {ref.label} | {ref.training_data}{seen} | {_f(ref.srcc)} | "
                f"{_f(ref.plcc)} | {ref.plcc_protocol} | {ref.source} |"
            )
        if not same:
            lines.append(
                f"| {r.title} ({r.split}) | no published reference for this split | | | | | |"
            )
    return "\n".join(lines) + "\n"
