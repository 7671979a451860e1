"""deqa: image quality assessment with vision-language models.

Imports are lazy on purpose: ``import deqa`` (and the built-in model's ``deqa-score`` path)
must not pull in transformers or peft, which cost seconds per process.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_scorer", "ScoreResult", "ScoreFailure", "Scorer"]


def __getattr__(name: str):
    if name == "load_scorer":
        from .load import load_scorer

        return load_scorer
    if name in ("ScoreResult", "ScoreFailure"):
        from . import results

        return getattr(results, name)
    if name == "Scorer":
        from .scorer import Scorer

        return Scorer
    raise AttributeError(f"module 'deqa' has no attribute {name!r}")
