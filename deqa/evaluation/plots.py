"""Per-data-set plots of an evaluation: predicted score vs MOS with the fitted logistic, and the
score histograms. Matplotlib's object API with the Agg canvas: no pyplot state, no display."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..metrics import IQAMetrics

__all__ = ["plot_scatter", "plot_histogram"]


def _figure(width: float = 5.0, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def plot_scatter(pred, mos, metrics: IQAMetrics, path: str | os.PathLike, title: str) -> Path:
    """Predicted score (x) vs MOS on [1, 5] (y), the fitted mapping as a line, metrics in the legend."""
    pred = np.asarray(pred, dtype=np.float64)
    mos = np.asarray(mos, dtype=np.float64)
    fig = _figure()
    ax = fig.add_subplot()
    size = float(np.clip(4000.0 / max(pred.size, 1), 3.0, 20.0))  # big dots for few points
    ax.scatter(
        pred,
        mos,
        s=size,
        alpha=0.5,
        linewidths=0,
        color="tab:blue",
        label=f"images (n={metrics.n})",
    )
    grid = np.linspace(pred.min(), pred.max(), 256)
    label = (
        "4-parameter logistic fit"
        if metrics.fit.kind == "logistic"
        else "linear fit (logistic failed)"
    )
    ax.plot(grid, metrics.fit(grid), color="tab:red", lw=2, label=label)
    ax.set_xlabel("predicted score")
    ax.set_ylabel("MOS (rescaled to 1-5)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    text = f"SRCC {metrics.srcc:.3f}\nPLCC {metrics.plcc_fitted:.3f} (fitted)\nPLCC {metrics.plcc:.3f} (raw)"
    ax.text(
        0.02,
        0.98,
        text,
        transform=ax.transAxes,
        va="top",
        ha="left",
        fontsize=8,
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8},
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_histogram(pred, mos, path: str | os.PathLike, title: str, bins: int = 40) -> Path:
    """Histograms of the predicted scores and of the MOS (both on the 1-5 level scale)."""
    pred = np.asarray(pred, dtype=np.float64)
    mos = np.asarray(mos, dtype=np.float64)
    lo = min(1.0, float(pred.min()), float(mos.min()))
    hi = max(5.0, float(pred.max()), float(mos.max()))
    edges = np.linspace(lo, hi, bins + 1)
    fig = _figure()
    ax = fig.add_subplot()
    ax.hist(mos, bins=edges, alpha=0.5, color="tab:gray", label=f"MOS (n={mos.size})")
    ax.hist(pred, bins=edges, alpha=0.6, color="tab:blue", label=f"predicted (n={pred.size})")
    ax.set_xlabel("score (1-5)")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
