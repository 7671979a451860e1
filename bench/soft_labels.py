"""Soft-label quality and speed of every method on real IQA labels (the registry's copies).

    python bench/soft_labels.py            # prints the table and updates BENCHMARKS.md
    python bench/soft_labels.py --no-write

Label views (all on the 1-5 level scale):
  koniq10k           registry scale: 0-100 MOS -> 1 + mos/25, the published std of the 1-5 ratings
  koniq10k·ratings   the raw rating statistics: MOS = sum_k k*c_k, std from the file; the only view
                     where the rating histograms c1..c5 are comparable, hence "JS to histograms"
  koniq10k·deqa      DeQA-Score's own preparation: sum_k k*c_k min-max rescaled to [1, 5] over the
                     file, std scaled by the same factor (reproduces the paper's builder numbers)
  kadid10k, livec, tid2013   registry scale (declared ranges, see deqa/data/datasets.yaml)
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import scipy

from deqa.data.labeling import MosScale, label_quality, normalize_table
from deqa.data.registry import get_dataset
from deqa.levels import LEVEL_VALUES, rescale_mos, soft_labels, variance_bounds

ROOT = Path(__file__).resolve().parents[1]
METHODS = [
    ("moment", {}),
    ("gaussian", {}),
    ("deqa", {"density": "pdf"}),
    ("deqa", {"density": "interval"}),
    ("onehot", {}),
    ("binary", {}),
    ("histogram", {}),
]
GOALS = {"mean": 1e-6, "std": 1e-3, "valid": 1.0, "hist_js": 0.0025}


def views():
    """(name, mos_norm [N], std_norm [N], histogram [N, 5] or None) for every label view."""
    out = []
    koniq = get_dataset("koniq10k")
    table = koniq.read_labels()
    m, s = normalize_table(table, MosScale.from_dataset(koniq))
    out.append(("koniq10k", m, s, None))
    ratings = table.histogram @ LEVEL_VALUES
    out.append(("koniq10k·ratings", ratings, table.std, table.histogram))
    m, s = rescale_mos(ratings, table.std, mos_range=(ratings.min(), ratings.max()))
    out.append(("koniq10k·deqa", m, s, None))
    for name in ("kadid10k", "livec", "tid2013"):
        spec = get_dataset(name)
        m, s = normalize_table(spec.read_labels(), MosScale.from_dataset(spec))
        out.append((name, m, s, None))
    return out


def time_per_10k(mos, std, method, kwargs, hist) -> float:
    """Best of 3 wall times (ms) for one soft_labels call on exactly 10,000 labels."""
    idx = np.resize(np.arange(len(mos)), 10_000)
    h = hist[idx] if hist is not None else None
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        soft_labels(mos[idx], std[idx], method, histogram=h, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return 1000 * best


def fmt(x, kind="e"):
    if x is None:
        return "–"
    if kind == "pct":
        return f"{100 * x:.1f}"
    if kind == "ms":
        return f"{x:.1f}"
    if x == 0:
        return "0"
    return "< 1e-15" if abs(x) < 1e-15 else f"{x:.2e}"  # float rounding noise, either sign


def feasibility(all_views) -> list[str]:
    """Per view: how many published stds are impossible for their mean on five levels."""
    lines = [
        "| labels | images | mean std (1-5) | std below the minimum for its mean | std above the maximum |",
        "|---|---|---|---|---|",
    ]
    for view, mos, std, _ in all_views:
        lo, hi = variance_bounds(mos)
        below = np.mean(std**2 < lo - 1e-12)
        above = np.mean(std**2 > hi + 1e-12)
        lines.append(
            f"| {view} | {len(mos)} | {std.mean():.3f} | {100 * below:.1f}% | {100 * above:.1f}% |"
        )
    return lines


def run() -> tuple[list[str], list[str], list[str]]:
    all_views = views()
    header = (
        "| labels | method | mean \\|mean err\\| | max \\|mean err\\| | mean \\|std err\\| | valid % "
        "| Gaussian JS | Gaussian JS (DeQA approx.) | JS to histograms | ms / 10k |"
    )
    lines = [header, "|" + "---|" * 10]
    checks = []
    for view, mos, std, hist in all_views:
        for method, kwargs in METHODS:
            if method == "histogram" and hist is None:
                continue
            label = method + (f" ({kwargs['density']})" if kwargs else "")
            probs = soft_labels(mos, std, method, histogram=hist, **kwargs)
            q = label_quality(probs, mos, std, hist)
            ms = time_per_10k(mos, std, method, kwargs, hist)
            lines.append(
                f"| {view} | {label} | {fmt(q.mean_abs_mean_error)} | {fmt(q.max_abs_mean_error)} | "
                f"{fmt(q.mean_abs_std_error)} | {fmt(q.valid_fraction, 'pct')} | {fmt(q.gaussian_js)} | {fmt(q.gaussian_js_deqa)} | "
                f"{fmt(q.histogram_js)} | {fmt(ms, 'ms')} |"
            )
            if view == "koniq10k·ratings" and method == "moment":
                checks = [
                    f"mean |mean error| {q.mean_abs_mean_error:.1e} (goal <= {GOALS['mean']:g}): {'met' if q.mean_abs_mean_error <= GOALS['mean'] else 'NOT met'}",
                    f"mean |std error| {q.mean_abs_std_error:.1e} (goal <= {GOALS['std']:g}): {'met' if q.mean_abs_std_error <= GOALS['std'] else 'NOT met'}",
                    f"valid {100 * q.valid_fraction:.1f}% (goal 100%): {'met' if q.valid_fraction >= GOALS['valid'] else 'NOT met'}",
                    f"JS to histograms {q.histogram_js:.2e} (goal <= {GOALS['hist_js']:g}): {'met' if q.histogram_js <= GOALS['hist_js'] else 'NOT met'}",
                    f"time per 10k labels {ms:.0f} ms (goal < 500 ms): {'met' if ms < 500 else 'NOT met'}",
                ]
    return lines, checks, feasibility(all_views)


def machine() -> str:
    return (
        f"{os.cpu_count()}-core CPU ({platform.machine()}), Python {platform.python_version()}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}"
    )


def section(lines: list[str], checks: list[str], feasible: list[str]) -> str:
    return "\n".join(
        [
            "## Soft labels",
            "",
            f"`python bench/soft_labels.py` on {machine()}.",
            "Every soft-label method on the registry's real labels, on the 1-5 level scale. Mean error",
            "uses the vector as is (not renormalised); valid = no negatives and sum 1 within 1e-6;",
            "Gaussian JS is DeQA-Score's gap, N(reconstructed mean, std) against N(MOS, std): exact",
            "(deqa.metrics.gaussian_js) and with the paper code's midpoint-Gaussian approximation; JS to",
            "histograms compares with KonIQ's real rating fractions c1..c5 (natural log throughout);",
            "ms / 10k is one vectorised call on 10,000 labels. KonIQ has three views:",
            "`koniq10k` is the registry scale (1 + mos/25, published std of the 1-5 ratings),",
            "`koniq10k·ratings` the raw rating statistics (MOS = sum k*c_k, same std), the only view where",
            "the histograms are comparable, and `koniq10k·deqa` DeQA-Score's own preparation (sum k*c_k",
            "min-max rescaled to [1, 5] over the file, std scaled alike).",
            "",
            *lines,
            "",
            "`moment` goals on KonIQ's ratings:",
            "",
            *[f"- {c}" for c in checks],
            "",
            "Reading the table:",
            "",
            "- The issue's reference numbers for the official DeQA builder (mean error ~0.007, ~70% of",
            "  vectors not summing to 1) are the `koniq10k·deqa` / `deqa (pdf)` row (not summing = 100 -",
            "  valid %); its JS to the histograms (~0.0056) is the `koniq10k·ratings` / `deqa (pdf)` row.",
            "  The one-hot mean error (~0.30) depends on the rescaling: compare the three KonIQ views.",
            "- The exact Gaussian JS is at most ln 2 = 0.693, reached by a one-hot label (std 0) against",
            "  any Gaussian. DeQA's approximation is unbounded: the same one-hot label scores ~9 (stds",
            "  floored at 1e-8), and two near-point masses at different means (TID2013's tiny stds with",
            "  `gaussian`/`onehot`) score ~1e10.",
            "- Where `moment` misses the std, the published std is impossible on five levels for its",
            "  mean (table below) and was projected onto the nearest feasible value: TID2013's stds",
            "  (pairwise-comparison MOS) are below the two-adjacent-levels minimum for almost every image,",
            "  so every exact-mean method gives it two-level labels.",
            "",
            "Published stds that no distribution on the five levels can have:",
            "",
            *feasible,
            "",
        ]
    )


def write_section(path: Path, text: str) -> None:
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## Soft labels\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(lambda _: text + "\n", old)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new.rstrip("\n") + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--no-write", action="store_true", help="print only; do not update BENCHMARKS.md"
    )
    p.add_argument(
        "--benchmarks",
        default=str(ROOT / "BENCHMARKS.md"),
        help="file whose '## Soft labels' section is updated",
    )
    args = p.parse_args(argv)
    lines, checks, feasible = run()
    print("\n".join(lines))
    print()
    print("\n".join(checks))
    print()
    print("\n".join(feasible))
    if not args.no_write:
        write_section(Path(args.benchmarks), section(lines, checks, feasible))
        print(f"\nupdated {args.benchmarks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
