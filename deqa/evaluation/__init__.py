"""Benchmark evaluation of any deqa scorer on IQA data sets (the library behind ``deqa-eval``).

- :mod:`.datasets`     labels of a registered data set + split + user-supplied image folder
- :mod:`.predictions`  per-image predictions as resumable JSONL
- :mod:`.distributed`  sharding across ``accelerate launch`` processes
- :mod:`.runner`       the harness: score what is missing, then metrics, CIs, gaps, plots
- :mod:`.report`       per-data-set results and the cross-data-set table (md / csv / json)
- :mod:`.plots`        scatter with the fitted logistic, score histograms
- :mod:`.references`   published numbers (deqa/data/reference_results.csv) side by side
"""

from __future__ import annotations

from .datasets import EvalSet, load_eval_set, load_image_roots
from .distributed import ProcessInfo, process_info, shard
from .predictions import Prediction, PredictionWriter, read_predictions
from .references import ReferenceResult, format_comparison, load_references
from .report import DatasetResult, format_markdown, write_tables
from .runner import (
    EvalConfig,
    EvalReport,
    evaluate_dataset,
    finalize_dataset,
    run_evaluation,
    score_missing,
)

__all__ = [
    "EvalSet",
    "load_eval_set",
    "load_image_roots",
    "ProcessInfo",
    "process_info",
    "shard",
    "Prediction",
    "PredictionWriter",
    "read_predictions",
    "ReferenceResult",
    "format_comparison",
    "load_references",
    "DatasetResult",
    "format_markdown",
    "write_tables",
    "EvalConfig",
    "EvalReport",
    "evaluate_dataset",
    "finalize_dataset",
    "run_evaluation",
    "score_missing",
]
