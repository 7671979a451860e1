"""From a label table to soft labels: rescale to the level scale, build, measure, export.

``build_labels(table, scale, method)`` validates every row (errors name the file and line),
rescales MOS/std onto the level scale, applies the no-std policy and builds the soft labels;
the resulting :class:`LabelSet` turns into manifest records and :class:`LabelQuality` stats.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from ..levels import DEFAULT_LEVELS, LevelScale, impute_std, rescale_mos, soft_labels
from ..metrics import gaussian_js, js_divergence
from .formats import LabelTable
from .manifest import ManifestRecord

__all__ = [
    "MosScale",
    "LabelSet",
    "LabelQuality",
    "build_labels",
    "label_quality",
    "normalize_table",
]

# A vector is "valid" when it is a probability distribution to this tolerance.
_VALID_TOL = 1e-6


@dataclass(frozen=True)
class MosScale:
    """How a data set's scores map onto the level scale.

    mos_range: declared [lo, hi] of the score; lower_better: DMOS-style direction;
    std_range: the scale the std is on when it differs from mos_range; ignore_std: treat the
    file's std as absent (the no-std policy then applies).
    """

    mos_range: tuple[float, float]
    lower_better: bool = False
    std_range: tuple[float, float] | None = None
    ignore_std: bool = False
    # Where the range was declared, for the error that tells how to fix a score outside it.
    source: str = "--mos-range"

    def __post_init__(self) -> None:
        lo, hi = self.mos_range
        if not (np.isfinite([lo, hi]).all() and lo < hi):
            raise ValueError(f"score range [{lo:g}, {hi:g}] ({self.source}): LO must be below HI "
                             "(for DMOS, where lower is better, keep LO < HI and set lower_better / --lower-better)")
        if self.std_range is not None:
            lo, hi = self.std_range
            if not (np.isfinite([lo, hi]).all() and lo < hi):
                raise ValueError(f"std scale [{lo:g}, {hi:g}] (--std-scale LO:HI, or std_range in the registry): "
                                 "LO must be below HI")

    @classmethod
    def from_dataset(cls, spec) -> MosScale:
        """The scale of a registered :class:`~deqa.data.registry.DatasetSpec`."""
        return cls(spec.mos_range, spec.lower_better, spec.std_range, ignore_std=not spec.has_std,
                   source=f"mos_range of data set {spec.name!r} in the registry")

    @classmethod
    def observed(cls, table: LabelTable, lower_better: bool = False, std_range=None) -> MosScale:
        """Min-max of the table's own scores (DeQA-Score's per-data-set convention)."""
        finite = table.mos[np.isfinite(table.mos)]
        if finite.size == 0 or finite.min() == finite.max():
            raise ValueError(
                f"{table.path}: cannot use the observed range, scores are constant or missing"
            )
        return cls((float(finite.min()), float(finite.max())), lower_better, std_range)


def _raise_row(table: LabelTable, mask: np.ndarray, message: str, values=None) -> None:
    """Raise for the first masked row, naming file, line and image; ``{value}`` in the message
    is replaced by ``values[i]``."""
    bad = np.flatnonzero(mask)
    if bad.size:
        i = int(bad[0])
        more = f" ({bad.size} such rows, first shown)" if bad.size > 1 else ""
        text = message.format(value=float(values[i])) if values is not None else message
        raise ValueError(f"{table.where(i)}: {text}{more}")


def _std_from_raw(table: LabelTable) -> np.ndarray:
    """Level-scale std of a file with gt_score_norm but no std_norm, from its raw std.

    DeQA-Score's gt_score_norm is an affine (min-max) map of gt_score, so the raw std maps by
    the same slope: it is read off the rows themselves and used when the map fits every row to
    0.01 of a level (rounded files). Otherwise (a warning says so), or without a raw std, the std
    stays missing (NaN) and the no-std policy applies.
    """
    n = len(table)
    missing = np.full(n, np.nan)
    if table.std is None or not np.isfinite(table.std).any():
        return missing
    raw, norm = table.mos, table.mos_norm
    ok = np.isfinite(raw) & np.isfinite(norm)
    if ok.sum() < 2 or np.ptp(raw[ok]) == 0:
        return missing
    slope, offset = np.polyfit(raw[ok], norm[ok], 1)
    residual = float(np.abs(slope * raw[ok] + offset - norm[ok]).max())
    # Up to 0.01 of a level: files round gt_score_norm (to 3 or 2 decimals); a map that is not
    # affine misses by far more.
    if residual > 0.01:
        warnings.warn(
            f"{table.path}: its std is not used (no std_norm, and gt_score -> gt_score_norm is not an affine "
            f"map: off by up to {residual:.3g}); rows get the no-std policy's std",
            stacklevel=2,
        )
        return missing
    return table.std * abs(slope)


def _raise_duplicates(table: LabelTable) -> None:
    """One label row per image: a second row would give one image two targets."""
    first: dict[str, int] = {}
    for i, name in enumerate(table.images):
        j = first.setdefault(os.path.normpath(name), i)  # "./a.jpg" is "a.jpg"
        if j != i:
            loc = table.locations[j] if j < len(table.locations) else f"row {j}"
            raise ValueError(
                f"{table.where(i)}: the image already has a label row ({loc}); keep one row per image "
                "(e.g. merge the ratings), or select one split (--split)"
            )


def normalize_table(
    table: LabelTable, scale: MosScale | None, levels: LevelScale = DEFAULT_LEVELS
) -> tuple[np.ndarray, np.ndarray]:
    """(mos_norm [N], std_norm [N]) on the level scale; std_norm NaN where no std is given.

    ``scale`` None uses the file's own level-scale values (DeQA-Score JSON's gt_score_norm /
    std_norm; a raw std without std_norm is mapped by the file's own gt_score -> gt_score_norm
    map when that is affine) and fails if the file has none. Errors name the file, line and image.
    """
    target = (levels.lo, levels.hi)
    n = len(table)
    if scale is None:
        if table.mos_norm is None:
            raise ValueError(
                f"{table.path}: the score scale is unknown; give a registered data set (--dataset) "
                "or the declared range of the scores (--mos-range LO HI)"
            )
        m = table.mos_norm
        _raise_row(table, ~np.isfinite(m), "gt_score_norm = {value!r} is not finite", m)
        lo, hi = target
        _raise_row(
            table,
            (m < lo - 1e-9) | (m > hi + 1e-9),
            "gt_score_norm = {value!r} is outside " + f"[{lo:g}, {hi:g}]",
            m,
        )
        std_norm = table.std_norm if table.std_norm is not None else _std_from_raw(table)
        _raise_row(
            table,
            np.isinf(std_norm) | (std_norm < 0),
            "std_norm = {value!r} is negative or infinite",
            std_norm,
        )
        return np.clip(table.mos_norm, lo, hi), std_norm.astype(np.float64)

    lo, hi = scale.mos_range
    tol = 1e-9 * (hi - lo)
    mos = table.mos
    _raise_row(table, ~np.isfinite(mos), "score = {value!r} is not finite", mos)
    _raise_row(
        table,
        (mos < lo - tol) | (mos > hi + tol),
        "score = {value!r} is outside the declared range "
        + f"[{lo:g}, {hi:g}]; fix the row or the range ({scale.source})",
        mos,
    )
    std = None if (scale.ignore_std or table.std is None) else table.std
    if std is not None:
        _raise_row(table, np.isinf(std), "std = {value!r} is infinite", std)
        _raise_row(table, std < 0, "std = {value!r} is negative", std)
    mos_norm, std_norm = rescale_mos(
        table.mos,
        std,
        mos_range=scale.mos_range,
        lower_better=scale.lower_better,
        std_range=scale.std_range,
        target=target,
    )
    return mos_norm, std_norm if std_norm is not None else np.full(n, np.nan)


@dataclass
class LabelQuality:
    """How well soft labels reproduce their targets (level scale).

    Mean error: |sum_k v_k p_k - mos_norm| (p not renormalised, as a model's target would be).
    Std error: |reconstructed std - std_norm| with the std taken as sqrt(sum_k p_k (v_k - mean)^2)
    (DeQA-Score's convention); only rows with a given std. valid: finite, no negatives, sum 1
    within 1e-6. gaussian_js: the exact JS between N(reconstructed mean, std) and
    N(mos_norm, std_norm); gaussian_js_deqa: the same gap with DeQA-Score's midpoint-Gaussian
    approximation (unbounded). histogram_js: discrete JS (rows normalised) to rating histograms.
    All means over rows, natural log.
    """

    n: int
    mean_abs_mean_error: float
    max_abs_mean_error: float
    mean_abs_std_error: float | None
    valid_fraction: float
    gaussian_js: float | None
    gaussian_js_deqa: float | None
    histogram_js: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def label_quality(
    probs, mos_norm, std_norm=None, histogram=None, values=DEFAULT_LEVELS.values
) -> LabelQuality:
    """Quality statistics of soft labels probs [N, K] against their mos_norm [N] and std_norm [N].

    std_norm entries that are NaN (or std_norm None) are left out of the std-based statistics;
    histogram [N, K] (optional) gives the JS to real rating histograms.
    """
    p = np.asarray(probs, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    mos_norm = np.asarray(mos_norm, dtype=np.float64)
    mean = p @ v
    recon_std = np.sqrt(np.clip((p * (v[None] - mean[:, None]) ** 2).sum(-1), 0.0, None))
    err = np.abs(mean - mos_norm)
    valid = np.isfinite(p).all(-1) & (p >= 0).all(-1) & (np.abs(p.sum(-1) - 1) <= _VALID_TOL)
    std_err = gjs = gjs_deqa = hjs = None
    if std_norm is not None:
        s = np.asarray(std_norm, dtype=np.float64)
        have = np.isfinite(s)
        if have.any():
            std_err = float(np.abs(recon_std[have] - s[have]).mean())
            args = (mos_norm[have], s[have], mean[have], recon_std[have])
            gjs = float(np.mean(gaussian_js(*args)))
            gjs_deqa = float(np.mean(gaussian_js(*args, method="deqa")))
    if histogram is not None:
        hjs = float(np.mean(js_divergence(p, np.asarray(histogram, dtype=np.float64))))
    return LabelQuality(
        n=len(p),
        mean_abs_mean_error=float(err.mean()) if len(p) else 0.0,
        max_abs_mean_error=float(err.max()) if len(p) else 0.0,
        mean_abs_std_error=std_err,
        valid_fraction=float(valid.mean()) if len(p) else 1.0,
        gaussian_js=gjs,
        gaussian_js_deqa=gjs_deqa,
        histogram_js=hjs,
    )


@dataclass
class LabelSet:
    """Soft labels for a table: mos_norm/std_norm [N] (std NaN = not given), std_used [N] (the
    std the label was built with; NaN = none), std_imputed [N] bool, probs [N, K]."""

    table: LabelTable
    method: str
    levels: LevelScale
    mos_norm: np.ndarray
    std_norm: np.ndarray
    std_used: np.ndarray
    std_imputed: np.ndarray
    probs: np.ndarray

    def quality(self, histogram=None) -> LabelQuality:
        """Stats against the given mos/std (and ``histogram`` if passed)."""
        return label_quality(
            self.probs, self.mos_norm, self.std_norm, histogram, self.levels.values
        )

    def records(self, dataset: str | None = None, keep_extra: bool = True) -> list[ManifestRecord]:
        """Manifest records in table order. ``std_norm`` is the std the label was built with."""
        t = self.table
        std_raw = t.std if t.std is not None else np.full(len(t), np.nan)
        out = []
        for i in range(len(t)):
            extra = (
                {k: v[i] for k, v in t.extra.items() if v[i] not in ("", None)}
                if keep_extra
                else {}
            )
            if self.std_imputed[i]:
                extra["std_imputed"] = True
            out.append(
                ManifestRecord(
                    image=t.images[i],
                    mos=float(t.mos[i]),
                    std=None if np.isnan(std_raw[i]) else float(std_raw[i]),
                    mos_norm=float(self.mos_norm[i]),
                    std_norm=None if np.isnan(self.std_used[i]) else float(self.std_used[i]),
                    probs=self.probs[i].tolist(),
                    split=t.split[i] if t.split is not None else None,
                    dataset=dataset,
                    extra=extra,
                )
            )
        return out


def build_labels(
    table: LabelTable,
    scale: MosScale | None,
    method: str = "moment",
    *,
    levels: LevelScale = DEFAULT_LEVELS,
    no_std_policy: str = "sos",
    default_std: float | None = None,
    density: str = "pdf",
) -> LabelSet:
    """Validate, rescale and build soft labels for every row of ``table``.

    ``scale`` None: use the file's level-scale values (DeQA-Score JSON). ``method="histogram"``
    needs a table with rating histograms. See :func:`deqa.levels.soft_labels` for the rest.
    """
    _raise_duplicates(table)
    mos_norm, std_norm = normalize_table(table, scale, levels)
    values = levels.array
    if method == "histogram":
        if table.histogram is None:
            raise ValueError(
                f"{table.path}: method 'histogram' needs rating-histogram columns (e.g. c1..c5); this file has none"
            )
        hist = table.histogram
        if hist.shape[1] != levels.num_levels:
            raise ValueError(
                f"{table.path}: histograms have {hist.shape[1]} columns but there are {levels.num_levels} levels"
            )
        _raise_row(table, ~np.isfinite(hist).all(1), "rating histogram has a non-finite entry")
        _raise_row(table, (hist < 0).any(1), "rating histogram has a negative entry")
        _raise_row(table, ~(hist.sum(1) > 0), "rating histogram sums to 0")
        probs = soft_labels(mos_norm, None, "histogram", values=values, histogram=hist)
        return LabelSet(
            table,
            method,
            levels,
            mos_norm,
            std_norm,
            std_norm.copy(),
            np.zeros(len(table), bool),
            probs,
        )
    if method in ("moment", "gaussian", "deqa"):
        if no_std_policy == "error":
            _raise_row(
                table,
                np.isnan(std_norm),
                f"no std given and no_std_policy is 'error' (method {method!r} needs one)",
            )
        std_used, missing = impute_std(std_norm, no_std_policy, default_std, mos=mos_norm, values=values)
        imputed = missing & np.isfinite(std_used)
    else:
        std_used, imputed = std_norm.copy(), np.zeros(len(table), bool)
    probs = soft_labels(
        mos_norm,
        std_used,
        method,
        values=values,
        no_std_policy=no_std_policy,
        default_std=default_std,
        density=density,
    )
    return LabelSet(table, method, levels, mos_norm, std_norm, std_used, imputed, probs)
