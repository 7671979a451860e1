"""Level words, MOS rescaling, soft labels, and the score / std read back from level probabilities.

Level order, used everywhere in deqa (arrays, probability vectors, configs, outputs):
index 0..4 = bad, poor, fair, good, excellent = values 1..5 (ascending quality).
"""

from __future__ import annotations

import numpy as np

__all__ = ["LEVEL_WORDS", "LEVEL_VALUES", "expected_score", "score_std", "level_word"]

LEVEL_WORDS: tuple[str, ...] = ("bad", "poor", "fair", "good", "excellent")
LEVEL_VALUES = np.arange(1.0, 6.0)


def expected_score(probs, values=LEVEL_VALUES) -> np.ndarray:
    """Probability-weighted level value. probs: [..., K] -> [...]. Not renormalised."""
    probs = np.asarray(probs, dtype=np.float64)
    return probs @ np.asarray(values, dtype=np.float64)


def score_std(probs, values=LEVEL_VALUES) -> np.ndarray:
    """Standard deviation of the level value under probs ([..., K] -> [...])."""
    probs = np.asarray(probs, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    mean = probs @ values
    var = probs @ (values**2) - mean**2
    return np.sqrt(np.clip(var, 0.0, None))


def level_word(score, words=LEVEL_WORDS, values=LEVEL_VALUES) -> str:
    """The level word whose value is nearest to ``score``."""
    return words[int(np.argmin(np.abs(np.asarray(values) - float(score))))]
