"""Results of an evaluation: one :class:`DatasetResult` per data set, and the cross-data-set table
written as Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..metrics import ConfidenceInterval, IQAMetrics

__all__ = [
    "DatasetResult",
    "TABLE_COLUMNS",
    "GAP_KEYS",
    "format_markdown",
    "write_tables",
    "json_safe",
]

# Mean distribution gaps between the label's and the prediction's level distributions (see
# deqa.evaluation.runner.distribution_gaps).
GAP_KEYS = ("kl_gauss", "js_gauss", "js_gauss_deqa", "w2_gauss", "js_levels")

TABLE_COLUMNS = (
    "dataset", "split", "model", "n", "n_labels", "n_missing", "n_failed",
    "srcc", "srcc_low", "srcc_high", "krcc",
    "plcc_fitted", "plcc_fitted_low", "plcc_fitted_high",
    "plcc", "plcc_low", "plcc_high", "rmse_fitted", "fit",
    *GAP_KEYS, "n_gaps", "error",
)  # fmt: skip


@dataclass
class DatasetResult:
    """One model on one data set. ``metrics`` is None when there was nothing to correlate
    (``error`` says why). ``cis``: bootstrap CIs by metric name; ``gaps``: mean distribution gaps
    over the ``n_gaps`` images that have both a label std and a predicted distribution."""

    dataset: str
    title: str
    split: str
    model: str
    n_labels: int
    n_scored: int = 0
    n_missing: int = 0
    missing_examples: list[str] = field(default_factory=list)
    n_failed: int = 0
    failed_examples: list[str] = field(default_factory=list)
    metrics: IQAMetrics | None = None
    cis: dict[str, ConfidenceInterval] = field(default_factory=dict)
    gaps: dict[str, float] = field(default_factory=dict)
    n_gaps: int = 0
    predictions: str | None = None
    plots: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.metrics is not None

    def row(self) -> dict[str, Any]:
        """Flat row of the results table (keys = TABLE_COLUMNS)."""
        m = self.metrics
        row: dict[str, Any] = {k: None for k in TABLE_COLUMNS}
        row.update(
            dataset=self.dataset, split=self.split, model=self.model, n=self.n_scored,
            n_labels=self.n_labels, n_missing=self.n_missing, n_failed=self.n_failed,
            n_gaps=self.n_gaps, error=self.error,
        )  # fmt: skip
        if m is not None:
            row.update(
                srcc=m.srcc, krcc=m.krcc, plcc_fitted=m.plcc_fitted, plcc=m.plcc,
                rmse_fitted=m.rmse_fitted, fit=m.fit.kind,
            )  # fmt: skip
        for name, ci in self.cis.items():
            row[f"{name}_low"], row[f"{name}_high"] = ci.low, ci.high
        row.update({k: v for k, v in self.gaps.items() if k in GAP_KEYS})
        return row

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "title": self.title,
            "split": self.split,
            "model": self.model,
            "n_labels": self.n_labels,
            "n_scored": self.n_scored,
            "n_missing": self.n_missing,
            "missing_examples": list(self.missing_examples),
            "n_failed": self.n_failed,
            "failed_examples": list(self.failed_examples),
            "metrics": None if self.metrics is None else self.metrics.to_dict(),
            "ci": {k: v.to_dict() for k, v in self.cis.items()},
            "gaps": dict(self.gaps),
            "n_gaps": self.n_gaps,
            "predictions": self.predictions,
            "plots": dict(self.plots),
            "error": self.error,
        }


def _num(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


def _with_ci(r: DatasetResult, value: float | None, name: str) -> str:
    ci = r.cis.get(name)
    if ci is None:
        return _num(value)
    return f"{_num(value)} [{_num(ci.low, 3)}, {_num(ci.high, 3)}]"


def format_markdown(results: list[DatasetResult], confidence: float | None = None) -> str:
    """The cross-data-set table in Markdown. PLCC is labelled: after the logistic fit, and raw."""
    conf = f"{round(100 * confidence)}% CI" if confidence else "CI"
    ci = f" [{conf}]" if any(r.cis for r in results) else ""  # none with --bootstrap 0
    lines = [
        f"| Data set | Split | N | SRCC{ci} | PLCC, logistic{ci} | KRCC | PLCC, raw | RMSE (1-5) | JS, Gauss | Missing | Failed |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.metrics is None:
            lines.append(
                f"| {r.title} | {r.split} | {r.n_scored} | not evaluated: {r.error} | | | | | | {r.n_missing} | {r.n_failed} |"
            )
            continue
        m = r.metrics
        fit = "" if m.fit.kind == "logistic" else " (linear fit)"
        lines.append(
            f"| {r.title} | {r.split} | {r.n_scored} | {_with_ci(r, m.srcc, 'srcc')} | "
            f"{_with_ci(r, m.plcc_fitted, 'plcc_fitted')}{fit} | {_num(m.krcc)} | {_num(m.plcc)} | "
            f"{_num(m.rmse_fitted)} | {_num(r.gaps.get('js_gauss'))} | {r.n_missing} | {r.n_failed} |"
        )
    return "\n".join(lines) + "\n"


def _csv_text(results: list[DatasetResult]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(TABLE_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow({k: ("" if v is None else v) for k, v in r.row().items()})
    return buf.getvalue()


def write_tables(
    results: list[DatasetResult],
    out_dir: str | os.PathLike,
    meta: dict[str, Any] | None = None,
    confidence: float | None = None,
) -> dict[str, Path]:
    """Write results.md / results.csv / results.json into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "results.md", "csv": out / "results.csv", "json": out / "results.json"}
    header = ""
    if meta and meta.get("model_id"):
        header = f"# deqa-eval: {meta['model_id']}\n\n"
    paths["md"].write_text(header + format_markdown(results, confidence), encoding="utf-8")
    paths["csv"].write_text(_csv_text(results), encoding="utf-8")
    payload = {"meta": meta or {}, "datasets": [r.to_dict() for r in results]}
    paths["json"].write_text(json.dumps(json_safe(payload), indent=2) + "\n", encoding="utf-8")
    return paths


def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats replaced by None (strict JSON has no NaN/Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
