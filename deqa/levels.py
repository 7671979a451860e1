"""Level words, MOS rescaling, soft labels, and the score / std read back from level probabilities.

Level order, used everywhere in deqa (arrays, probability vectors, configs, outputs):
index 0..4 = bad, poor, fair, good, excellent = values 1..5 (ascending quality).

Soft labels turn a (MOS, std) pair on the level scale into a probability vector over the levels.
Every method is vectorised over records (no Python loop per label):

=============  ===============================================================================
``moment``     (default) the maximum-entropy distribution on the level values with exactly the
               given mean and, where feasible, exactly the given variance; infeasible variances
               are projected to the nearest feasible one (see :func:`moment_labels`).
``gaussian``   N(mos, std) integrated exactly over each level's interval, tails folded into the
               end levels. Valid distribution; mean and std only approximately preserved.
``deqa``       the DeQA-Score paper's official builder (pdf at the level values or interval
               mass, affine fix-up, negatives clipped, two-level fallback). Its vectors may NOT
               sum to 1; kept for comparison and compatibility.
``onehot``     Q-Align's hard label: equal-width bins on [lowest, highest] level value.
``binary``     the two adjacent levels around the MOS, exact mean (the minimum-variance label).
``histogram``  per-image rating histograms (e.g. KonIQ's c1..c5), validated and normalised.
=============  ===============================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LEVEL_WORDS",
    "LEVEL_VALUES",
    "LevelScale",
    "DEFAULT_LEVELS",
    "DEFAULT_STD",
    "DEFAULT_MID_STD",
    "SOFT_LABEL_METHODS",
    "NO_STD_POLICIES",
    "expected_score",
    "score_std",
    "level_word",
    "rescale_mos",
    "soft_labels",
    "moment_labels",
    "gaussian_labels",
    "deqa_labels",
    "onehot_labels",
    "binary_labels",
    "histogram_labels",
    "variance_bounds",
    "impute_std",
]

LEVEL_WORDS: tuple[str, ...] = ("bad", "poor", "fair", "good", "excellent")
LEVEL_VALUES = np.arange(1.0, 6.0)

# Std (on the 1-5 level scale) used by the `dataset_mean_std` policy when a data set publishes no
# per-image std at all. Human ratings on 5-point ACR scales spread by ~0.6-0.8: in the registry's
# own labels the mean std is 0.57 (KonIQ-10k, 1-5 ratings), 0.75 (KADID-10k) and 0.77 (LIVE
# Challenge, 0-100 rescaled to 1-5) — tests/test_registry.py recomputes these. 0.7 is their
# average: a label as uncertain as a typical single-stimulus rating, neither the over-confident
# two-level label nor a flat one.
DEFAULT_STD = 0.7

# The `sos` policy (the default) gives a row without std the spread the SOS hypothesis predicts
# for its MOS (Hossfeld et al., "SOS: The MOS is not enough!", QoMEX 2011): on a bounded rating
# scale ratings cannot spread past the ends, so std^2 = a (m - lo)(hi - m). A constant std
# ignores that: 0.7 at MOS 4.75 is more than a one-peaked label can hold, and the moment method
# then puts more mass on "bad" than on "poor" (19% of CSIQ's labels were two-peaked that way).
# Fitted on the data sets that publish a std (tests/test_registry.py recomputes it), the std at
# mid-scale sqrt(4a) is 0.62 (KonIQ-10k), 0.93 (KADID-10k) and 0.86 (LIVE Challenge), and the
# fit explains the stds better than their mean does (mean |error| 0.097 vs 0.160 on KADID, 0.053
# vs 0.087 on LIVE-C; KonIQ's narrow MOS range leaves the two alike, 0.050 vs 0.051). 0.8 is their mean.
DEFAULT_MID_STD = 0.8

_SOS_MAX_A = 0.25

SOFT_LABEL_METHODS = ("moment", "gaussian", "deqa", "onehot", "binary", "histogram")
NO_STD_POLICIES = ("sos", "dataset_mean_std", "binary", "error")
_NEEDS_STD = ("moment", "gaussian", "deqa")


@dataclass(frozen=True)
class LevelScale:
    """An ordered set of level words and their values (ascending quality).

    The default is deqa's fixed order: bad=1, poor=2, fair=3, good=4, excellent=5. Other words
    (e.g. another language) or values are allowed; the values must be strictly increasing.
    """

    words: tuple[str, ...] = LEVEL_WORDS
    values: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0)

    def __post_init__(self) -> None:
        words = tuple(str(w) for w in self.words)
        values = tuple(float(v) for v in self.values)
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "values", values)
        if len(words) < 2:
            raise ValueError(f"LevelScale needs at least 2 levels, got words={words!r}")
        if len(words) != len(values):
            raise ValueError(
                f"LevelScale: {len(words)} words but {len(values)} values; give one value per word"
            )
        if any(not w.strip() for w in words) or len(set(words)) != len(words):
            raise ValueError(f"LevelScale words must be non-empty and unique, got {words!r}")
        arr = np.asarray(values)
        if not np.all(np.isfinite(arr)) or np.any(np.diff(arr) <= 0):
            raise ValueError(
                f"LevelScale values must be finite and strictly increasing, got {values!r}"
            )

    @classmethod
    def from_words(cls, words: Sequence[str]) -> LevelScale:
        """Words in ascending quality order, valued 1..K."""
        return cls(tuple(words), tuple(float(i) for i in range(1, len(words) + 1)))

    @property
    def num_levels(self) -> int:
        return len(self.words)

    @property
    def array(self) -> np.ndarray:
        """The level values as a float64 array [K]."""
        return np.asarray(self.values, dtype=np.float64)

    @property
    def lo(self) -> float:
        return self.values[0]

    @property
    def hi(self) -> float:
        return self.values[-1]


DEFAULT_LEVELS = LevelScale()


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


# --------------------------------------------------------------------------------------------
# Validation helpers: every bad label names its index and value.


def _first_bad(mask: np.ndarray, arr: np.ndarray, name: str, what: str) -> None:
    bad = np.flatnonzero(mask)
    if bad.size:
        i = int(bad[0])
        more = f" ({bad.size} bad values in total, first shown)" if bad.size > 1 else ""
        raise ValueError(f"{name}[{i}] = {float(arr.flat[i])!r} {what}{more}")


def _as_1d(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or 1-D array, got shape {arr.shape}")
    return arr


def _check_range(rng, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in rng)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (lo, hi), got {rng!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} must be finite with lo < hi, got ({lo}, {hi})")
    return lo, hi


def _check_mos(mos: np.ndarray, lo: float, hi: float, name: str = "mos") -> np.ndarray:
    """Finite and inside [lo, hi]; overshoot within float noise is clipped, anything else raises."""
    _first_bad(~np.isfinite(mos), mos, name, "is not finite")
    tol = 1e-9 * (hi - lo)
    _first_bad(
        (mos < lo - tol) | (mos > hi + tol),
        mos,
        name,
        f"is outside the declared range [{lo:g}, {hi:g}]",
    )
    return np.clip(mos, lo, hi)


def _check_std(std: np.ndarray, name: str = "std") -> None:
    """NaN means 'missing' (handled by the no-std policy); negative or infinite is an error."""
    _first_bad(np.isinf(std), std, name, "is infinite")
    _first_bad(std < 0, std, name, "is negative")


# --------------------------------------------------------------------------------------------
# Rescaling


def rescale_mos(
    mos,
    std=None,
    *,
    mos_range: tuple[float, float],
    lower_better: bool = False,
    std_range: tuple[float, float] | None = None,
    target: tuple[float, float] = (1.0, 5.0),
) -> tuple[np.ndarray, np.ndarray | None]:
    """Map MOS from its declared range linearly onto ``target`` (the level scale, [1, 5]).

    mos: [N] on ``mos_range``; ``lower_better`` flips the direction (DMOS -> MOS).
    std: [N] or None, scaled by the same factor |target| / |std_range|, where ``std_range`` is
    the range the std is expressed on (default: ``mos_range``; e.g. KonIQ publishes a 0-100 MOS
    but the std of the 1-5 ratings, so its std_range is (1, 5)). NaN std = missing, kept as NaN.
    Returns (mos_norm [N], std_norm [N] or None). Raises ValueError naming the first bad index.
    """
    lo, hi = _check_range(mos_range, "mos_range")
    t_lo, t_hi = _check_range(target, "target")
    mos = _check_mos(_as_1d(mos, "mos"), lo, hi)
    frac = (hi - mos) / (hi - lo) if lower_better else (mos - lo) / (hi - lo)
    mos_norm = t_lo + (t_hi - t_lo) * frac
    if std is None:
        return mos_norm, None
    std = _as_1d(std, "std")
    if std.shape != mos.shape:
        raise ValueError(f"std has shape {std.shape} but mos has shape {mos.shape}")
    _check_std(std)
    s_lo, s_hi = _check_range(std_range, "std_range") if std_range is not None else (lo, hi)
    return mos_norm, std * (t_hi - t_lo) / (s_hi - s_lo)


# --------------------------------------------------------------------------------------------
# Soft-label methods. All take mos (and std) already on the level scale: mos [N], std [N].


def _bracket(mos: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index j of the level pair (v_j, v_j+1) around each mos and the weight w of v_j+1."""
    j = np.clip(np.searchsorted(values, mos, side="right") - 1, 0, len(values) - 2)
    w = (mos - values[j]) / (values[j + 1] - values[j])
    return j, np.clip(w, 0.0, 1.0)


def variance_bounds(mos, values=LEVEL_VALUES) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest variance any distribution on ``values`` with mean ``mos`` can have.

    Min: all mass on the two adjacent levels, (m - v_j)(v_j+1 - m) (0 on a level value).
    Max: all mass on the two end levels, (m - v_0)(v_K-1 - m). mos: [N] -> ([N], [N]).
    """
    values = np.asarray(values, dtype=np.float64)
    mos = np.asarray(mos, dtype=np.float64)
    j, _ = _bracket(mos, values)
    lo = np.clip((mos - values[j]) * (values[j + 1] - mos), 0.0, None)
    hi = np.clip((mos - values[0]) * (values[-1] - mos), 0.0, None)
    return lo, hi


def binary_labels(mos, values=LEVEL_VALUES) -> np.ndarray:
    """Two adjacent levels with exactly the given mean. mos: [N] -> [N, K]."""
    values = np.asarray(values, dtype=np.float64)
    mos = np.atleast_1d(np.asarray(mos, dtype=np.float64))
    j, w = _bracket(mos, values)
    out = np.zeros(mos.shape + (len(values),))
    rows = np.arange(mos.size)
    out.reshape(-1, len(values))[rows, j.ravel()] = 1.0 - w.ravel()
    out.reshape(-1, len(values))[rows, j.ravel() + 1] += w.ravel()
    return out


def onehot_labels(mos, values=LEVEL_VALUES) -> np.ndarray:
    """Q-Align's hard label: K equal-width bins on [v_0, v_K-1], bin i -> level i. mos: [N] -> [N, K].

    Bins are closed on the right, (lo + (i-1)w, lo + i w], with Q-Align's 1e-8 slack so that a MOS
    sitting on a bin edge up to float noise stays in the lower bin.
    """
    values = np.asarray(values, dtype=np.float64)
    mos = np.atleast_1d(np.asarray(mos, dtype=np.float64))
    k = len(values)
    width = (values[-1] - values[0]) / k
    idx = np.clip(np.ceil((mos - values[0] - 1e-8) / width).astype(np.int64), 1, k) - 1
    return np.eye(k)[idx]


def _interval_mass(
    mos: np.ndarray, std: np.ndarray, lo_edges: np.ndarray, hi_edges: np.ndarray
) -> np.ndarray:
    """P(lo < X <= hi) for X ~ N(mos, std), [N, K]; std = 0 is the point mass (0.5 on an edge)."""
    # Lazy: scipy.stats costs ~0.8 s at import and the built-in scoring path never needs it.
    from scipy.stats import norm

    m = mos[:, None]
    s = std[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (lo_edges[None] - m) / s
        b = (hi_edges[None] - m) / s
    # cdf differences lose everything in the upper tail; use survival functions there.
    upper = a > 0
    mass = np.where(upper, norm.sf(a) - norm.sf(b), norm.cdf(b) - norm.cdf(a))
    point = np.heaviside(hi_edges[None] - m, 0.5) - np.heaviside(lo_edges[None] - m, 0.5)
    return np.where(s > 0, mass, point)


def gaussian_labels(mos, std, values=LEVEL_VALUES) -> np.ndarray:
    """N(mos, std) integrated over each level's interval, tails folded into the end levels.

    The interval of level k runs between the midpoints to its neighbours (k +/- 1/2 for 1..5);
    the lowest level takes (-inf, ...] and the highest [..., +inf). std = 0 gives the point mass.
    mos, std: [N] -> [N, K]. Rows sum to 1 (up to rounding) and are non-negative.
    """
    values = np.asarray(values, dtype=np.float64)
    mids = (values[1:] + values[:-1]) / 2
    lo_edges = np.concatenate([[-np.inf], mids])
    hi_edges = np.concatenate([mids, [np.inf]])
    p = _interval_mass(
        np.atleast_1d(np.asarray(mos, np.float64)),
        np.atleast_1d(np.asarray(std, np.float64)),
        lo_edges,
        hi_edges,
    )
    p = np.clip(p, 0.0, None)
    return p / p.sum(-1, keepdims=True)


def deqa_labels(
    mos,
    std,
    values=LEVEL_VALUES,
    *,
    density: str = "pdf",
    min_std: float = 0.2,
    max_mean_error: float = 0.1,
) -> np.ndarray:
    """Re-implementation of the DeQA-Score official soft-label builder (for comparison/compat).

    1. p_k = N(v_k; mos, std) pdf (``density="pdf"``, used for KonIQ/KADID) or the mass of
       N(mos, std) on [v_k - 1/2, v_k + 1/2] without tail folding (``density="interval"``, SPAQ);
    2. affine fix-up p' = a p + b with a, b solving sum(p') = 1 and sum(v p') = mos, using the
       official 1e-9 guard in the denominator (so at mos exactly at the scale centre the map
       degenerates to the uniform vector, as in the official code);
    3. negatives clipped to 0 WITHOUT renormalising — rows may sum to more than 1;
    4. fallback to :func:`binary_labels` when std < ``min_std`` (0.2) or the clipped vector's
       mean misses mos by more than ``max_mean_error`` (0.1).

    mos, std: [N] on the level scale -> [N, K]. Vectors may not sum to 1 (by design of the
    original: ~70% of KonIQ's labels do not, see BENCHMARKS.md).
    """
    # Lazy: scipy.stats costs ~0.8 s at import and the built-in scoring path never needs it.
    from scipy.stats import norm

    values = np.asarray(values, dtype=np.float64)
    mos = np.atleast_1d(np.asarray(mos, dtype=np.float64))
    std = np.atleast_1d(np.asarray(std, dtype=np.float64))
    k = len(values)
    m, s = mos[:, None], std[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        if density == "pdf":
            p = norm.pdf(values[None], m, s)
        elif density == "interval":
            # [v_k - 1/2, v_k + 1/2] for unit-spaced levels (half the gap to each neighbour),
            # tails not folded in, exactly as the official builder.
            gaps = np.diff(values)
            half_lo = np.concatenate([[gaps[0]], gaps]) / 2
            half_hi = np.concatenate([gaps, [gaps[-1]]]) / 2
            p = _interval_mass(mos, std, values - half_lo, values + half_hi)
        else:
            raise ValueError(f"deqa density must be 'pdf' or 'interval', got {density!r}")
        total = p.sum(-1)
        first = p @ values
        centre = values.sum() / k
        alpha = (mos - centre) / (first - centre * total + 1e-9)
        beta = (1.0 - alpha * total) / k
        adjusted = np.clip(alpha[:, None] * p + beta[:, None], 0.0, None)
    error = np.abs(adjusted @ values - mos)
    fallback = (std < min_std) | ~(error <= max_mean_error)  # NaN error (std = 0) -> fallback
    return np.where(fallback[:, None], binary_labels(mos, values), adjusted)


def histogram_labels(histogram, values=LEVEL_VALUES, name: str = "histogram") -> np.ndarray:
    """Normalise per-image rating histograms (counts or fractions) [N, K] -> [N, K].

    Raises ValueError naming the first row that is non-finite, has a negative entry or sums to 0.
    """
    h = np.asarray(histogram, dtype=np.float64)
    k = len(np.asarray(values))
    if h.ndim != 2 or h.shape[1] != k:
        raise ValueError(f"{name} must have shape [N, {k}] (one column per level), got {h.shape}")
    bad_rows = [
        (~np.isfinite(h).all(1), "has a non-finite entry"),
        ((h < 0).any(1), "has a negative entry"),
        (~(h.sum(1) > 0), "sums to 0"),
    ]
    for mask, what in bad_rows:
        bad = np.flatnonzero(mask)
        if bad.size:
            i = int(bad[0])
            more = f" ({bad.size} bad rows in total, first shown)" if bad.size > 1 else ""
            raise ValueError(f"{name} row {i} = {h[i].tolist()} {what}{more}")
    return h / h.sum(1, keepdims=True)


# --------------------------------------------------------------------------------------------
# Maximum-entropy labels with two exact moments.

# Feasible variances this close to a bound (in squared units of the half-range of the scale)
# are given the bound's closed-form distribution: the interior solution would need dual
# variables of order log(1/gap), and the std error of snapping is at most sqrt(gap) ~ 3e-7
# half-ranges (6e-7 on the 1-5 scale).
_BOUNDARY_GAP = 1e-13
# Moment residual (scaled units: the scale's half-range = 1) at which a row stops; both moments
# are then made exact by _fix_moments.
_NEWTON_TOL = 1e-10
_NEWTON_MAX_ITER = 100


def _logsumexp_rows(z: np.ndarray) -> np.ndarray:
    zmax = z.max(-1)
    return zmax + np.log(np.exp(z - zmax[:, None]).sum(-1))


def _solve_maxent(mu1: np.ndarray, mu2: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched Newton on the convex dual of max-entropy with E[x] = mu1, E[x^2] = mu2.

    p_k ∝ exp(a x_k + b x_k^2); the dual f(a, b) = log Z(a, b) - a mu1 - b mu2 has gradient
    E[T] - mu and Hessian Cov(T) (T = (x, x^2)), so Newton steps with an Armijo backtracking
    line search converge globally (f is strictly convex for interior moments). Rows leave the
    active set once both moment residuals are below _NEWTON_TOL. x: [K] centred and scaled to
    [-1, 1]. Returns (probs [N, K], converged [N]).
    """
    n = mu1.shape[0]
    feats = np.stack([x, x**2])  # [2, K]
    mu = np.stack([mu1, mu2], -1)  # [N, 2]
    theta = np.zeros((n, 2))
    probs = np.full((n, len(x)), 1.0 / len(x))
    converged = np.zeros(n, dtype=bool)
    active = np.arange(n)
    for _ in range(_NEWTON_MAX_ITER):
        th, m = theta[active], mu[active]
        z = th @ feats
        lse = _logsumexp_rows(z)
        p = np.exp(z - lse[:, None])
        e1, e2 = p @ x, p @ x**2
        g = np.stack([e1 - m[:, 0], e2 - m[:, 1]], -1)
        done = np.abs(g).max(-1) < _NEWTON_TOL
        probs[active[done]] = p[done]
        converged[active[done]] = True
        keep = ~done
        if not keep.any():
            active = active[:0]
            break
        active, th, m, p, g, lse = active[keep], th[keep], m[keep], p[keep], g[keep], lse[keep]
        e1, e2 = e1[keep], e2[keep]
        # Centred covariance of (x, x^2): raw moments would cancel catastrophically near the
        # variance bounds, where the Hessian becomes nearly singular.
        d1 = x[None] - e1[:, None]
        d2 = x[None] ** 2 - e2[:, None]
        h11, h12, h22 = (p * d1 * d1).sum(-1), (p * d1 * d2).sum(-1), (p * d2 * d2).sum(-1)
        det = h11 * h22 - h12**2
        with np.errstate(divide="ignore", invalid="ignore"):
            step = (
                -np.stack([h22 * g[:, 0] - h12 * g[:, 1], h11 * g[:, 1] - h12 * g[:, 0]], -1)
                / det[:, None]
            )
        # A numerically singular Hessian gets a plain gradient step (still a descent direction).
        bad = ~np.isfinite(step).all(-1) | (det <= 1e-300)
        step[bad] = -g[bad]
        slope = (g * step).sum(-1)
        f0 = lse - (th * m).sum(-1)
        g0 = np.abs(g).max(-1)
        t = np.ones(len(active))
        pending = np.ones(len(active), dtype=bool)
        for _ in range(40):
            cand = th[pending] + t[pending, None] * step[pending]
            zc = cand @ feats
            lc = _logsumexp_rows(zc)
            f1 = lc - (cand * m[pending]).sum(-1)
            # Armijo on f drives the global phase; near the optimum f changes below its own
            # rounding, so a step that shrinks the moment residual is accepted as well.
            pc = np.exp(zc - lc[:, None])
            g1 = np.maximum(np.abs(pc @ x - m[pending, 0]), np.abs(pc @ x**2 - m[pending, 1]))
            ok = (f1 <= f0[pending] + 1e-4 * t[pending] * slope[pending]) | (
                g1 <= (1 - 1e-4 * t[pending]) * g0[pending]
            )
            idx = np.flatnonzero(pending)
            pending[idx[ok]] = False
            if not pending.any():
                break
            t[pending] *= 0.5
        theta[active] = th + t[:, None] * step
        # A row whose line search found no decrease is at the limit of float precision in f:
        # its last iterate is as good as it gets.
        if pending.any():
            stuck = active[pending]
            z = theta[stuck] @ feats
            probs[stuck] = np.exp(z - _logsumexp_rows(z)[:, None])
            active = active[~pending]
    if active.size:  # not converged within the iteration budget: keep the last iterate
        z = theta[active] @ feats
        probs[active] = np.exp(z - _logsumexp_rows(z)[:, None])
    return probs, converged


def moment_labels(mos, std, values=LEVEL_VALUES) -> np.ndarray:
    """Maximum-entropy distribution on ``values`` with mean ``mos`` and variance ``std**2``.

    The solution has the form p_k ∝ exp(a v_k + b v_k^2) (a discretised Gaussian when b < 0,
    flatter than uniform toward the ends when b > 0). A variance below the minimum for that
    mean (all mass on the two adjacent levels) or above the maximum (all mass on the two end
    levels) is projected onto the nearest bound, where the bound's two-point distribution is
    the answer; see :func:`variance_bounds`. The mean is exact to rounding (a final transfer
    between the two levels around the mean removes the solver's residual); the std is exact
    wherever feasible. mos, std: [N] on the level scale -> [N, K].
    """
    values = np.asarray(values, dtype=np.float64)
    mos = np.atleast_1d(np.asarray(mos, dtype=np.float64))
    std = np.atleast_1d(np.asarray(std, dtype=np.float64))
    n, k = mos.size, len(values)
    centre, half = (values[0] + values[-1]) / 2, (values[-1] - values[0]) / 2
    var_lo, var_hi = variance_bounds(mos, values)
    var = np.clip(std**2, var_lo, var_hi)
    scale2 = half**2
    at_lo = (var - var_lo) <= _BOUNDARY_GAP * scale2
    at_hi = ~at_lo & ((var_hi - var) <= _BOUNDARY_GAP * scale2)
    out = np.empty((n, k))
    out[at_lo] = binary_labels(mos[at_lo], values)
    # Max variance: mass only on the two end levels, weights fixed by the mean.
    w_hi = (mos[at_hi] - values[0]) / (values[-1] - values[0])
    ends = np.zeros((int(at_hi.sum()), k))
    ends[:, 0], ends[:, -1] = 1.0 - w_hi, w_hi
    out[at_hi] = ends
    inner = ~(at_lo | at_hi)
    if inner.any():
        x = (values - centre) / half
        mx = (mos[inner] - centre) / half
        probs, _ = _solve_maxent(mx, var[inner] / scale2 + mx**2, x)
        out[inner] = _fix_moments(probs, mos[inner], var[inner], values)
    return _fix_mean(out, mos, values)


def _fix_moments(probs: np.ndarray, mos: np.ndarray, var: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Remove the solver's residual in the mean and the variance (exact to rounding).

    The solver stops at a second-moment residual of ~1e-10, a std error of ~1e-9 for a usual std
    but of the order of the std itself for a tiny one (std 1e-5: variance 1e-10). A mass transfer
    d among three adjacent levels around the mean with sum(d) = 0, d . u = -p . u and
    d . u^2 = var - p . u^2 (u = level - mos) makes both moments exact; it is O(residual), so the
    entropy moves by far less than any tolerance. Skipped for a row where a probability would turn
    negative (then _fix_mean still makes the mean exact).
    """
    k = len(values)
    j, _ = _bracket(mos, values)
    first = np.clip(j - 1, 0, k - 3)
    idx = first[:, None] + np.arange(3)  # [N, 3] levels used for the transfer
    u = values[idx] - mos[:, None]
    a = np.stack([np.ones_like(u), u, u**2], 1)  # [N, 3 equations, 3 levels]
    centred = values[None, :] - mos[:, None]
    rhs = np.stack([np.zeros_like(mos), -(probs * centred).sum(-1), var - (probs * centred**2).sum(-1)], -1)
    d = np.linalg.solve(a, rhs[..., None])[..., 0]
    rows = np.arange(len(mos))[:, None]
    fixed = probs.copy()
    fixed[rows, idx] += d
    ok = (fixed >= 0).all(-1)
    return np.where(ok[:, None], fixed, probs)


def _fix_mean(probs: np.ndarray, mos: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Move the residual mean error between the two levels around the mean (exact to rounding).

    The move changes the variance by O(residual), far below any tolerance, and is skipped for a
    row where it would make a probability negative (never the case for a converged solve).
    """
    delta = mos - probs @ values
    j, _ = _bracket(mos, values)
    shift = delta / (values[j + 1] - values[j])
    rows = np.arange(len(mos))
    ok = (probs[rows, j] - shift >= 0) & (probs[rows, j + 1] + shift >= 0)
    probs = probs.copy()
    probs[rows[ok], j[ok]] -= shift[ok]
    probs[rows[ok], j[ok] + 1] += shift[ok]
    return probs


# --------------------------------------------------------------------------------------------
# Dispatcher


def impute_std(
    std,
    policy: str = "sos",
    default_std: float | None = None,
    *,
    mos=None,
    values=LEVEL_VALUES,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a no-std policy to std [N] (NaN = missing). Returns (std [N], missing mask [N]).

    ``"sos"`` fills missing entries with sqrt(a (m - lo)(hi - m)) for each row's ``mos`` m on the
    level scale [lo, hi] = [values[0], values[-1]] (the SOS hypothesis, see DEFAULT_MID_STD): ``a``
    is fitted to the present stds (mean std^2 over mean (m - lo)(hi - m), at most 0.25), or set by
    ``default_std`` (else DEFAULT_MID_STD), the std at mid-scale, when none is present.
    ``"dataset_mean_std"`` fills them with the mean of the present ones, or with ``default_std``
    (else DEFAULT_STD) when none is present; ``"binary"`` leaves them NaN (the caller gives those
    rows two-level labels); ``"error"`` raises naming the first missing index.
    """
    if policy not in NO_STD_POLICIES:
        raise ValueError(f"unknown no_std_policy {policy!r}; choose one of {NO_STD_POLICIES}")
    if default_std is not None and not (np.isfinite(default_std) and default_std >= 0):
        raise ValueError(f"default_std must be a finite non-negative number, got {default_std!r}")
    std = np.asarray(std, dtype=np.float64)
    missing = np.isnan(std)
    if not missing.any():
        return std, missing
    if policy == "error":
        _first_bad(missing, std, "std", "is missing (no_std_policy='error')")
    have = std[~missing]
    if policy == "sos":
        if mos is None:
            raise ValueError("no_std_policy 'sos' needs the MOS of every row (mos=...)")
        values, mos = np.asarray(values, dtype=np.float64), np.asarray(mos, dtype=np.float64)
        lo, hi = float(values[0]), float(values[-1])
        room = np.clip((mos - lo) * (hi - mos), 0.0, None)
        if room.shape != std.shape:
            raise ValueError(f"mos has {room.size} entries but std has {std.size}")
        fitted = have.size and room[~missing].mean() > 0
        if fitted:
            # Capped: a few rows near an end can fit any a, and above a quarter (a mid-scale std
            # of (hi - lo) / 4, 1.0 on 1-5) moment labels of some MOS turn two-peaked (measured on
            # a grid of 801 MOS: none at 0.25, 2 at 0.3; tests/test_levels.py).
            a = min(float((have**2).mean() / room[~missing].mean()), _SOS_MAX_A)
        else:  # nothing to fit (or only rows at the scale's ends, whose room is 0)
            mid = DEFAULT_MID_STD if default_std is None else float(default_std)
            a = mid**2 / ((hi - lo) / 2) ** 2
        return np.where(missing, np.sqrt(a * room), std), missing
    if policy == "dataset_mean_std":
        fill = (
            float(have.mean())
            if have.size
            else (DEFAULT_STD if default_std is None else float(default_std))
        )
        return np.where(missing, fill, std), missing
    return std, missing  # binary: rows handled by the caller


def soft_labels(
    mos,
    std=None,
    method: str = "moment",
    *,
    values=LEVEL_VALUES,
    histogram=None,
    no_std_policy: str = "sos",
    default_std: float | None = None,
    density: str = "pdf",
) -> np.ndarray:
    """Soft labels over the levels for MOS (and std) already on the level scale.

    mos: scalar or [N]; std: None, scalar or [N] (NaN entries = missing). Returns float64 [N, K]
    ([K] for a scalar mos). ``method`` is one of SOFT_LABEL_METHODS (see the module docstring).

    Missing std (``std=None`` or NaN entries) for the methods that need one is handled by
    ``no_std_policy`` (see :func:`impute_std`): ``"sos"`` (default) gives each row the std the
    SOS hypothesis predicts for its MOS, shrinking toward the scale's ends, fitted to the stds
    that are present, or with ``default_std`` (else DEFAULT_MID_STD = 0.8) at mid-scale when none
    are; ``"dataset_mean_std"`` uses the mean of the present stds, or ``default_std`` (else
    DEFAULT_STD = 0.7); ``"binary"`` gives those rows the two-level label; ``"error"`` raises.
    ``histogram`` ([N, K] counts or fractions) is required by ``method="histogram"``;
    ``density`` ("pdf" | "interval") selects the DeQA builder's variant.

    Raises ValueError naming the first offending index for NaN/inf MOS, MOS outside
    [values[0], values[-1]], negative or infinite std, and bad histogram rows.
    """
    if method not in SOFT_LABEL_METHODS:
        raise ValueError(
            f"unknown soft-label method {method!r}; choose one of {SOFT_LABEL_METHODS}"
        )
    if no_std_policy not in NO_STD_POLICIES:
        raise ValueError(
            f"unknown no_std_policy {no_std_policy!r}; choose one of {NO_STD_POLICIES}"
        )
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2 or np.any(np.diff(values) <= 0):
        raise ValueError(
            f"values must be a strictly increasing 1-D array of >= 2 levels, got {values!r}"
        )
    mos_in = _as_1d(mos, "mos")
    scalar = mos_in.ndim == 0
    mos_arr = _check_mos(np.atleast_1d(mos_in), values[0], values[-1])
    n = mos_arr.size

    if method == "histogram":
        if histogram is None:
            raise ValueError(
                "method='histogram' needs per-image rating histograms (histogram=[N, K])"
            )
        h = np.asarray(histogram, dtype=np.float64).reshape(n, -1) if scalar else histogram
        out = histogram_labels(h, values)
        if out.shape[0] != n:
            raise ValueError(f"histogram has {out.shape[0]} rows but mos has {n}")
        return out[0] if scalar else out
    if method == "onehot":
        out = onehot_labels(mos_arr, values)
        return out[0] if scalar else out
    if method == "binary":
        out = binary_labels(mos_arr, values)
        return out[0] if scalar else out

    if std is None:
        std_arr = np.full(n, np.nan)
    else:
        std_arr = np.atleast_1d(_as_1d(std, "std"))
        if std_arr.size == 1 and n > 1:
            std_arr = np.full(n, std_arr[0])
        if std_arr.shape != mos_arr.shape:
            raise ValueError(f"std has {std_arr.size} entries but mos has {n}")
        _check_std(std_arr)
    std_arr, missing = impute_std(std_arr, no_std_policy, default_std, mos=mos_arr, values=values)

    out = np.empty((n, len(values)))
    have = ~missing if no_std_policy == "binary" else np.ones(n, dtype=bool)
    if (~have).any():
        out[~have] = binary_labels(mos_arr[~have], values)
    if have.any():
        m, s = mos_arr[have], std_arr[have]
        if method == "moment":
            out[have] = moment_labels(m, s, values)
        elif method == "gaussian":
            out[have] = gaussian_labels(m, s, values)
        else:
            out[have] = deqa_labels(m, s, values, density=density)
    return out[0] if scalar else out
