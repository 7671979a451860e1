"""TEMPORARY stand-in for the distribution gaps of ``deqa.metrics`` (owned by the metrics helper).

Same names and contracts as agreed for deqa/metrics.py: vectorised numpy, natural log, rows on
the last axis. Delete this file once deqa/metrics.py lands on main and import from there.
"""

from __future__ import annotations

import numpy as np
from scipy.special import rel_entr

__all__ = ["kl_divergence", "js_divergence", "gaussian_js"]


def _rows(p) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return p / p.sum(-1, keepdims=True)


def kl_divergence(p, q) -> np.ndarray:
    """KL(p || q) over the last axis; rows are normalised to sum 1 first. [..., K] -> [...]."""
    return rel_entr(_rows(p), _rows(q)).sum(-1)


def js_divergence(p, q) -> np.ndarray:
    """Jensen-Shannon divergence (natural log, in [0, ln 2]) over the last axis. [..., K] -> [...]."""
    p, q = _rows(p), _rows(q)
    m = (p + q) / 2
    return 0.5 * rel_entr(p, m).sum(-1) + 0.5 * rel_entr(q, m).sum(-1)


def _gaussian_kl(mu1, s1, mu2, s2):
    return np.log(s2 / s1) + (s1**2 + (mu1 - mu2) ** 2) / (2 * s2**2) - 0.5


def gaussian_js(mu1, s1, mu2, s2) -> np.ndarray:
    """DeQA-Score's Gaussian JS: mean KL of N(mu_i, s_i) to the moment-matched midpoint Gaussian.

    Stds are floored at 1e-8 (two point masses at the same place have gap 0).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1 = np.maximum(np.asarray(s1, np.float64), 1e-8)
    s2 = np.maximum(np.asarray(s2, np.float64), 1e-8)
    mu_m = (mu1 + mu2) / 2
    s_m = np.sqrt((s1**2 + s2**2) / 2)
    js = 0.5 * _gaussian_kl(mu1, s1, mu_m, s_m) + 0.5 * _gaussian_kl(mu2, s2, mu_m, s_m)
    return np.maximum(js, 0.0)  # >= 0 mathematically; rounding can give -1e-18
