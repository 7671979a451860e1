"""deqa.levels: level scale, MOS rescaling and every soft-label method.

Hand-computed values use math.erf / math.exp directly (independent of scipy and of the code
under test); properties are checked with hypothesis over the whole level range.
"""

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from deqa.levels import (
    DEFAULT_LEVELS,
    DEFAULT_MID_STD,
    DEFAULT_STD,
    LEVEL_VALUES,
    LEVEL_WORDS,
    LevelScale,
    binary_labels,
    deqa_labels,
    expected_score,
    gaussian_labels,
    histogram_labels,
    impute_std,
    level_word,
    moment_labels,
    onehot_labels,
    rescale_mos,
    score_std,
    soft_labels,
    variance_bounds,
)

V = LEVEL_VALUES


def phi(x, m=0.0, s=1.0):  # normal pdf
    return math.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))


def Phi(x):  # normal cdf
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def official_fixup(m, p):
    """The official affine map, by hand: a, b solve a*sum(p) + 5b = 1, a*sum(k p_k) + 15b = m."""
    A = sum(p)
    B = sum(k * pk for k, pk in enumerate(p, start=1))
    a = (m - 3) / (B - 3 * A + 1e-9)
    b = (1 - a * A) / 5
    return [max(a * pk + b, 0.0) for pk in p]


def entropy(p):
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


# ---------------------------------------------------------------------------------------------
# Level scale, expected score


def test_default_levels_are_the_documented_order():
    assert DEFAULT_LEVELS.words == LEVEL_WORDS == ("bad", "poor", "fair", "good", "excellent")
    assert DEFAULT_LEVELS.values == (1.0, 2.0, 3.0, 4.0, 5.0)
    np.testing.assert_array_equal(DEFAULT_LEVELS.array, LEVEL_VALUES)
    assert (DEFAULT_LEVELS.lo, DEFAULT_LEVELS.hi, DEFAULT_LEVELS.num_levels) == (1.0, 5.0, 5)


def test_level_scale_from_words_and_validation():
    scale = LevelScale.from_words(["low", "mid", "high"])
    assert scale.values == (1.0, 2.0, 3.0)
    with pytest.raises(ValueError, match="one value per word"):
        LevelScale(("a", "b"), (1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="strictly increasing"):
        LevelScale(("a", "b", "c"), (1.0, 3.0, 2.0))
    with pytest.raises(ValueError, match="unique"):
        LevelScale(("a", "a"), (1.0, 2.0))
    with pytest.raises(ValueError, match="at least 2"):
        LevelScale(("a",), (1.0,))


def test_expected_score_std_and_level_word():
    p = np.array([[0.0, 0.5, 0.5, 0.0, 0.0], [0.2] * 5])
    np.testing.assert_allclose(expected_score(p), [2.5, 3.0])
    np.testing.assert_allclose(score_std(p), [0.5, math.sqrt(2.0)])
    assert level_word(4.4) == "good" and level_word(4.6) == "excellent" and level_word(1.0) == "bad"


# ---------------------------------------------------------------------------------------------
# rescale_mos


def test_rescale_mos_hand_values():
    m, s = rescale_mos([0.0, 50.0, 100.0], [25.0, 0.0, np.nan], mos_range=(0, 100))
    np.testing.assert_allclose(m, [1.0, 3.0, 5.0])
    np.testing.assert_allclose(s, [1.0, 0.0, np.nan])  # NaN std = missing, kept


def test_rescale_mos_lower_better_and_std_range():
    m, _ = rescale_mos([0.0, 0.25, 1.0], mos_range=(0, 1), lower_better=True)
    np.testing.assert_allclose(m, [5.0, 4.0, 1.0])
    # KonIQ: 0-100 MOS but the std of the 1-5 ratings -> the std is not rescaled.
    m, s = rescale_mos([75.0], [0.5], mos_range=(0, 100), std_range=(1, 5))
    np.testing.assert_allclose([m[0], s[0]], [4.0, 0.5])
    # TID2013-like 0-9 scale: factor 4/9.
    _, s = rescale_mos([4.5], [0.9], mos_range=(0, 9))
    np.testing.assert_allclose(s, [0.4])


def test_rescale_mos_clips_float_noise_but_rejects_real_overshoot():
    m, _ = rescale_mos([100.0 + 1e-12], mos_range=(0, 100))
    assert m[0] == 5.0
    with pytest.raises(
        ValueError, match=r"mos\[1\] = 100.5 is outside the declared range \[0, 100\]"
    ):
        rescale_mos([3.0, 100.5], mos_range=(0, 100))


@pytest.mark.parametrize(
    "mos, std, kw, pattern",
    [
        ([1.0, float("nan")], None, {}, r"mos\[1\] = nan is not finite"),
        ([float("inf")], None, {}, r"mos\[0\] = inf is not finite"),
        ([1.0, 2.0], [0.1, -0.2], {}, r"std\[1\] = -0.2 is negative"),
        ([1.0], [float("inf")], {}, r"std\[0\] = inf is infinite"),
        ([1.0], [0.1, 0.2], {}, "shape"),
        ([1.0], None, {"mos_range": (5, 1)}, "lo < hi"),
        ([1.0], None, {"mos_range": (0, float("nan"))}, "lo < hi"),
        ([[1.0]], None, {}, "1-D"),
    ],
)
def test_rescale_mos_bad_input_names_index(mos, std, kw, pattern):
    kw = {"mos_range": (0, 5), **kw}
    with pytest.raises(ValueError, match=pattern):
        rescale_mos(mos, std, **kw)


def test_rescale_mos_counts_all_bad_values():
    with pytest.raises(ValueError, match=r"mos\[0\].*3 bad values in total"):
        rescale_mos([-1.0, 2.0, -2.0, -3.0], mos_range=(0, 5))


# ---------------------------------------------------------------------------------------------
# Hand-computed values of each method


def test_variance_bounds_hand_values():
    lo, hi = variance_bounds([1.0, 2.0, 3.5, 5.0])
    np.testing.assert_allclose(lo, [0.0, 0.0, 0.25, 0.0])
    np.testing.assert_allclose(hi, [0.0, 3.0, 3.75, 0.0])


def test_binary_labels_hand_values():
    p = binary_labels([2.25, 1.0, 5.0, 3.0])
    np.testing.assert_allclose(p[0], [0, 0.75, 0.25, 0, 0])
    np.testing.assert_allclose(p[1], [1, 0, 0, 0, 0])
    np.testing.assert_allclose(p[2], [0, 0, 0, 0, 1])
    np.testing.assert_allclose(p[3], [0, 0, 1, 0, 0])


@pytest.mark.parametrize(
    "mos, level",
    [
        (1.0, 1),
        (1.8, 1),
        (1.8 + 1e-9, 1),
        (1.81, 2),
        (2.6, 2),
        (3.0, 3),
        (4.2, 4),
        (4.21, 5),
        (5.0, 5),
    ],
)
def test_onehot_uses_qalign_equal_width_bins(mos, level):
    # Bins of width 0.8 on [1, 5], closed on the right: (1, 1.8] -> bad, (1.8, 2.6] -> poor, ...
    p = onehot_labels([mos])[0]
    assert p.tolist() == [1.0 if k == level else 0.0 for k in range(1, 6)]


def test_gaussian_labels_hand_values():
    p = gaussian_labels([3.0], [1.0])[0]
    centre = Phi(0.5) - Phi(-0.5)
    side = Phi(-0.5) - Phi(-1.5)
    tail = Phi(-1.5)  # folded into the end level
    np.testing.assert_allclose(p, [tail, side, centre, side, tail], atol=1e-12)
    # Asymmetric: mos 4.2, std 0.5 -> interval (3.5, 4.5] for 'good', (4.5, inf) folded into 'excellent'.
    p = gaussian_labels([4.2], [0.5])[0]
    np.testing.assert_allclose(p[3], Phi(0.6) - Phi(-1.4), atol=1e-12)
    np.testing.assert_allclose(p[4], 1 - Phi(0.6), atol=1e-12)


def test_gaussian_labels_zero_std_is_the_point_mass():
    p = gaussian_labels([3.2, 2.5, 1.0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(p[0], [0, 0, 1, 0, 0])
    np.testing.assert_allclose(p[1], [0, 0.5, 0.5, 0, 0])  # on an edge: half each side
    np.testing.assert_allclose(p[2], [1, 0, 0, 0, 0])


def test_gaussian_labels_upper_tail_keeps_precision():
    # Far in the upper tail cdf differences would round to 0; survival functions keep them.
    p = gaussian_labels([1.0], [0.05])[0]
    assert p[1] > 0 and np.isclose(p[1], 1 - Phi(10.0) - (1 - Phi(30.0)), rtol=1e-6)


def test_deqa_labels_hand_values_pdf():
    # mos 4, std 1: p_k = pdf(k; 4, 1), then p' = a p + b with a, b solving sum = 1, mean = 4.
    expected = official_fixup(4.0, [phi(k, 4, 1) for k in range(1, 6)])
    assert expected[0] == 0.0  # clipped...
    assert abs(sum(expected) - 1) > 0.02  # ...and NOT renormalised, like the official builder
    np.testing.assert_allclose(deqa_labels([4.0], [1.0])[0], expected, atol=1e-12)


def test_deqa_labels_interval_density_hand_values():
    m, s = 2.4, 0.8
    p = [Phi((k + 0.5 - m) / s) - Phi((k - 0.5 - m) / s) for k in range(1, 6)]  # no tail folding
    expected = official_fixup(m, p)
    np.testing.assert_allclose(deqa_labels([m], [s], density="interval")[0], expected, atol=1e-12)


def test_deqa_labels_centre_quirk_of_the_official_map():
    # At mos exactly 3 the official denominator is 0 + 1e-9, a = 0: the vector is uniform.
    np.testing.assert_allclose(deqa_labels([3.0], [0.5])[0], [0.2] * 5)


def test_deqa_labels_fallbacks_to_two_levels():
    # std < 0.2 -> binary label.
    np.testing.assert_allclose(deqa_labels([2.3], [0.1])[0], [0, 0.7, 0.3, 0, 0])
    # mos 1.2, std 1: the clipped vector's mean misses by > 0.1 (computed by hand below).
    clipped = official_fixup(1.2, [phi(k, 1.2, 1) for k in range(1, 6)])
    assert abs(sum(k * c for k, c in enumerate(clipped, start=1)) - 1.2) > 0.1
    np.testing.assert_allclose(deqa_labels([1.2], [1.0])[0], [0.8, 0.2, 0, 0, 0])
    # std 0 (pdf undefined) falls back too.
    np.testing.assert_allclose(deqa_labels([4.5], [0.0])[0], [0, 0, 0, 0.5, 0.5])


def test_moment_labels_hand_values():
    # Uniform has mean 3 and variance 2: the max-entropy answer is the uniform vector.
    np.testing.assert_allclose(moment_labels([3.0], [math.sqrt(2)])[0], [0.2] * 5, atol=1e-12)

    # Symmetric case: p_k ∝ exp(b (k-3)^2) with b solving var = 1 (1-D root, found independently).
    def var(b):
        w = np.exp(b * (V - 3) ** 2)
        return float((w * (V - 3) ** 2).sum() / w.sum())

    b = brentq(lambda t: var(t) - 1.0, -20, 20)
    w = np.exp(b * (V - 3) ** 2)
    np.testing.assert_allclose(moment_labels([3.0], [1.0])[0], w / w.sum(), atol=1e-10)


def test_moment_labels_bounds_and_ends():
    p = moment_labels([3.0, 3.5, 3.5, 3.0, 2.0, 1.0, 5.0], [0.0, 0.0, 0.5, 2.0, 1e6, 0.7, 0.7])
    np.testing.assert_allclose(p[0], [0, 0, 1, 0, 0])  # zero std on a level: one-hot
    np.testing.assert_allclose(p[1], [0, 0, 0.5, 0.5, 0])  # below the min variance: adjacent pair
    np.testing.assert_allclose(p[2], [0, 0, 0.5, 0.5, 0])  # exactly the min variance (0.25)
    np.testing.assert_allclose(p[3], [0.5, 0, 0, 0, 0.5])  # exactly the max variance (4)
    np.testing.assert_allclose(p[4], [0.75, 0, 0, 0, 0.25])  # huge std: projected to the max
    np.testing.assert_allclose(p[5], [1, 0, 0, 0, 0])  # range ends: only one distribution exists
    np.testing.assert_allclose(p[6], [0, 0, 0, 0, 1])


def test_moment_labels_general_level_values():
    values = np.array([0.0, 1.0, 3.0, 7.0])  # unequal spacing
    mos, std = np.array([0.5, 2.0, 5.0]), np.array([0.6, 1.5, 2.0])
    p = moment_labels(mos, std, values)
    np.testing.assert_allclose(p @ values, mos, atol=1e-12)
    np.testing.assert_allclose(score_std(p, values), std, atol=1e-8)


def test_histogram_labels_normalise_and_validate():
    p = histogram_labels([[0, 1, 3, 0, 0], [0.1, 0.2, 0.3, 0.2, 0.2]])
    np.testing.assert_allclose(p[0], [0, 0.25, 0.75, 0, 0])
    np.testing.assert_allclose(p[1].sum(), 1.0)
    with pytest.raises(
        ValueError, match=r"histogram row 1 = \[0.0, -1.0, 2.0, 0.0, 0.0\] has a negative entry"
    ):
        histogram_labels([[1, 0, 0, 0, 0], [0, -1, 2, 0, 0]])
    with pytest.raises(ValueError, match="histogram row 0 .* sums to 0"):
        histogram_labels([[0, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match="non-finite"):
        histogram_labels([[np.nan, 1, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"shape \[N, 5\]"):
        histogram_labels([[1, 2, 3]])


# ---------------------------------------------------------------------------------------------
# Properties of the moment method (the default)

mos_st = st.floats(min_value=1.0, max_value=5.0, allow_nan=False)
std_st = st.one_of(
    st.floats(min_value=0.0, max_value=3.0, allow_nan=False),
    st.floats(min_value=0.0, max_value=1e-6, allow_nan=False),  # tiny
    st.floats(min_value=3.0, max_value=1e9, allow_nan=False),  # huge
)


def test_moment_exact_on_a_log_uniform_std_grid():
    """Seeded sweep of the whole std range, 30% of means on a level value (where a tiny std is
    hardest): both moments exact wherever the std is feasible."""
    rng = np.random.default_rng(0)
    n = 20000
    mos = np.where(rng.random(n) < 0.3, rng.integers(1, 6, n).astype(float), rng.uniform(1, 5, n))
    std = np.exp(rng.uniform(np.log(1e-9), np.log(1e9), n))
    std[rng.random(n) < 0.05] = 0.0
    p = moment_labels(mos, std)
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(p @ V, mos, atol=1e-9)
    lo, hi = variance_bounds(mos)
    np.testing.assert_allclose(score_std(p), np.sqrt(np.clip(std**2, lo, hi)), atol=1e-6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(mos_st, std_st), min_size=1, max_size=40))
@example([(2.0, 1e-05)])  # a tiny std on a level value: the solver's residual was 1/3 of the std
@example([(3.0, 3e-06)])  # once inside the snapping gap (std error 3e-6)
def test_moment_valid_exact_mean_and_feasible_std(rows):
    mos = np.array([r[0] for r in rows])
    std = np.array([r[1] for r in rows])
    p = moment_labels(mos, std)
    assert p.shape == (len(rows), 5) and p.dtype == np.float64
    assert np.isfinite(p).all() and (p >= 0).all()
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(p @ V, mos, atol=1e-9)
    lo, hi = variance_bounds(mos)
    target = np.sqrt(np.clip(std**2, lo, hi))  # exact where feasible, nearest bound otherwise
    np.testing.assert_allclose(score_std(p), target, atol=1e-6)


@settings(max_examples=200, deadline=None)
@given(mos_st, st.floats(min_value=0.05, max_value=2.0), st.integers(0, 2**32 - 1))
def test_moment_is_the_maximum_entropy_solution(m, s, seed):
    lo, hi = variance_bounds([m])
    p = moment_labels([m], [s])[0]
    if not (lo[0] + 1e-6 < s**2 < hi[0] - 1e-6):
        return  # on a bound the distribution is unique (two-point), nothing to compare
    # Directions that keep sum, mean and second moment: the null space of [1, v, v^2].
    basis = np.linalg.svd(np.stack([np.ones(5), V, V**2]))[2][3:]
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=2) @ basis
    step = 1e-3 * min(1.0, float(p.min() / np.abs(direction).max()))
    q = p + step * direction
    if (q < 0).any():
        return
    assert entropy(p) >= entropy(q) - 1e-12


@settings(max_examples=150, deadline=None)
@given(
    st.floats(min_value=2.2, max_value=3.8),
    st.floats(min_value=2.2, max_value=3.8),
    st.floats(min_value=0.6, max_value=1.7),
)
def test_moment_stochastic_dominance_in_the_central_region(m1, m2, s):
    # With a fixed std, a higher MOS gives a label that first-order dominates the lower one here.
    if m1 > m2:
        m1, m2 = m2, m1
    p = moment_labels([m1, m2], [s, s])
    cdf = np.cumsum(p, -1)[:, :-1]
    assert (cdf[1] <= cdf[0] + 1e-9).all()


def test_moment_stochastic_dominance_fails_near_the_ends():
    # Documented limit: at fixed variance, moving the mean off the low end pulls mass in from
    # the far tail, so P(score <= 4) rises between mos 1.10 and 1.50 (std 0.5).
    p = moment_labels([1.1, 1.5], [0.5, 0.5])
    assert np.cumsum(p, -1)[1, 3] > np.cumsum(p, -1)[0, 3]


@settings(max_examples=100, deadline=None)
@given(st.lists(mos_st, min_size=2, max_size=30), st.floats(min_value=0.0, max_value=3.0))
def test_expected_score_is_monotone_in_mos_for_exact_methods(mos, s):
    mos = np.sort(np.array(mos))
    for method in ("moment", "binary"):
        e = expected_score(soft_labels(mos, np.full(len(mos), s), method))
        assert (np.diff(e) >= -1e-9).all()


@pytest.mark.parametrize("method", ["moment", "gaussian", "deqa", "onehot", "binary"])
@pytest.mark.parametrize("std", [0.0, 1e-12, 1e-6, 1e6, 1e12])
def test_every_method_is_stable_at_range_ends_and_extreme_std(method, std):
    mos = np.array([1.0, 1.0 + 1e-12, 3.0, 5.0 - 1e-12, 5.0])
    p = soft_labels(mos, np.full(5, std), method)
    assert np.isfinite(p).all() and (p >= 0).all()
    if method != "deqa":
        np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-12)
    if method in ("moment", "binary"):
        np.testing.assert_allclose(p @ V, mos, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# Dispatcher: policies and bad input


def test_soft_labels_scalar_and_shapes():
    p = soft_labels(3.5, 0.7)
    assert p.shape == (5,)
    np.testing.assert_allclose(p @ V, 3.5)
    assert soft_labels([2.0, 3.0], [0.5, 0.5]).shape == (2, 5)


def test_no_std_policy_dataset_mean_std():
    mos = np.array([2.0, 3.0, 4.0])
    pol = {"no_std_policy": "dataset_mean_std"}
    p = soft_labels(mos, [0.4, np.nan, 0.8], "moment", **pol)  # NaN -> mean of the others (0.6)
    np.testing.assert_allclose(p[1], moment_labels([3.0], [0.6])[0])
    p = soft_labels(mos, None, "gaussian", **pol)  # no std at all -> DEFAULT_STD
    np.testing.assert_allclose(p, gaussian_labels(mos, np.full(3, DEFAULT_STD)))
    p = soft_labels(mos, None, "moment", default_std=0.3, **pol)
    np.testing.assert_allclose(score_std(p), [0.3, 0.3, 0.3], atol=1e-8)


def test_no_std_policy_sos_is_the_default():
    # Fitted to the rows that have a std: a = mean(std^2) / mean((m-1)(5-m)) = 0.4 / 3.
    p = soft_labels([2.0, 3.0, 4.0], [0.4, np.nan, 0.8], "moment")
    np.testing.assert_allclose(score_std(p), [0.4, np.sqrt(0.4 / 3 * 4), 0.8], atol=1e-8)
    # None has one: DEFAULT_MID_STD at mid-scale (or default_std), shrinking to 0 at the ends.
    mos = np.array([1.0, 2.0, 3.0, 4.75, 5.0])
    room = (mos - 1) * (5 - mos)
    filled, _ = impute_std(np.full(5, np.nan), "sos", mos=mos)
    np.testing.assert_allclose(filled, DEFAULT_MID_STD * np.sqrt(room / 4))
    # the labels carry it where a label can (at 4.75 the least spread one is 0.433, levels 4 and 5)
    lo, _ = variance_bounds(mos)
    np.testing.assert_allclose(score_std(soft_labels(mos, None, "moment")), np.sqrt(np.maximum(filled**2, lo)), atol=1e-8)
    filled, _ = impute_std(np.full(5, np.nan), "sos", 0.3, mos=mos)
    np.testing.assert_allclose(filled, 0.3 * np.sqrt(room / 4))
    # Other level values: the same law on their own range.
    filled, missing = impute_std([np.nan], "sos", mos=[2.0], values=[0.0, 1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(filled, DEFAULT_MID_STD * np.sqrt(2.0 * 2.0 / 4))
    assert missing.all()
    with pytest.raises(ValueError, match="needs the MOS"):
        impute_std([np.nan], "sos")


def _two_peaked(p: np.ndarray) -> np.ndarray:
    """Rows with an interior dip: a level less likely than levels on both sides of it."""
    left = np.maximum.accumulate(p, axis=1)
    right = np.maximum.accumulate(p[:, ::-1], axis=1)[:, ::-1]
    return (np.minimum(left, right) - p > 1e-9).any(1)


def test_sos_imputation_keeps_labels_one_peaked_where_a_constant_std_does_not():
    # The reviewer's case: no std in the file, MOS near the top of the scale.
    mos = np.linspace(1.0, 5.0, 401)
    constant = soft_labels(mos, None, "moment", no_std_policy="dataset_mean_std")
    assert _two_peaked(constant).sum() > 0 and _two_peaked(constant[mos == 4.75]).all()
    assert not _two_peaked(soft_labels(mos, None, "moment")).any()


def test_sos_fit_is_capped_so_a_few_rows_cannot_make_labels_two_peaked():
    # One published std near the top of the scale (MOS 4.96, std 0.32) would fit a = 1.6 alone.
    mos = np.array([4.96, 3.0, 2.2, 4.0])
    filled, _ = impute_std([0.32, np.nan, np.nan, np.nan], "sos", mos=mos)
    np.testing.assert_allclose(filled[1:], np.sqrt(0.25 * (mos[1:] - 1) * (5 - mos[1:])))
    # (row 0 keeps its published std, itself more than a one-peaked label at 4.96 can hold)
    assert not _two_peaked(soft_labels(mos, [0.32, np.nan, np.nan, np.nan], "moment")[1:]).any()
    # the bound: at a = 0.25 no MOS on a fine grid is two-peaked, above it some are
    grid = np.linspace(1.0, 5.0, 801)
    room = (grid - 1) * (5 - grid)
    assert not _two_peaked(soft_labels(grid, np.sqrt(0.25 * room), "moment")).any()
    assert _two_peaked(soft_labels(grid, np.sqrt(0.3 * room), "moment")).sum() == 2


def test_no_std_policy_binary_and_error():
    p = soft_labels([2.5, 3.0], [np.nan, 0.5], "moment", no_std_policy="binary")
    np.testing.assert_allclose(p[0], [0, 0.5, 0.5, 0, 0])
    np.testing.assert_allclose(p[1], moment_labels([3.0], [0.5])[0])
    with pytest.raises(ValueError, match=r"std\[1\] = nan is missing"):
        soft_labels([2.5, 3.0], [0.5, np.nan], "moment", no_std_policy="error")


def test_impute_std_validates_its_arguments():
    filled, missing = impute_std([np.nan, 1.0, 2.0], "dataset_mean_std")
    np.testing.assert_allclose(filled, [1.5, 1.0, 2.0])
    assert missing.tolist() == [True, False, False]
    with pytest.raises(ValueError, match="no_std_policy"):
        impute_std([1.0], "zero")
    with pytest.raises(ValueError, match="default_std"):
        impute_std([np.nan], default_std=-1.0)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"mos": [3.0, np.nan]}, r"mos\[1\] = nan is not finite"),
        ({"mos": [3.0, 5.5]}, r"mos\[1\] = 5.5 is outside the declared range \[1, 5\]"),
        ({"mos": [0.0]}, r"mos\[0\] = 0.0 is outside"),
        ({"mos": [3.0], "std": [-0.1]}, r"std\[0\] = -0.1 is negative"),
        ({"mos": [3.0], "std": [np.inf]}, r"std\[0\] = inf is infinite"),
        ({"mos": [3.0, 3.0], "std": [0.1, 0.1, 0.1]}, "3 entries but mos has 2"),
        ({"mos": [3.0], "method": "uniform"}, "unknown soft-label method 'uniform'"),
        ({"mos": [3.0], "no_std_policy": "zero"}, "unknown no_std_policy"),
        ({"mos": [3.0], "method": "histogram"}, "needs per-image rating histograms"),
        ({"mos": [3.0], "method": "deqa", "std": [0.5], "density": "cdf"}, "density must be"),
        ({"mos": [3.0], "values": [1, 3, 2]}, "strictly increasing"),
    ],
)
def test_soft_labels_bad_input(kwargs, pattern):
    kwargs = {"std": [0.5] * len(kwargs["mos"]), **kwargs}
    with pytest.raises(ValueError, match=pattern):
        soft_labels(**kwargs)


def test_soft_labels_histogram_method():
    hist = np.array([[0, 2, 6, 2, 0], [1, 0, 0, 0, 1]])
    p = soft_labels([3.0, 3.0], None, "histogram", histogram=hist)
    np.testing.assert_allclose(p, [[0, 0.2, 0.6, 0.2, 0], [0.5, 0, 0, 0, 0.5]])
    with pytest.raises(ValueError, match="histogram row 1"):
        soft_labels([3.0, 3.0], None, "histogram", histogram=[[1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match="3 rows but mos has 2"):
        soft_labels([3.0, 3.0], None, "histogram", histogram=np.ones((3, 5)))


def test_ten_thousand_labels_in_one_call_match_per_row_calls():
    # Vectorisation must not couple rows: batch result == row-by-row result.
    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, 10_000)
    std = rng.uniform(0.0, 1.5, 10_000)
    batch = soft_labels(mos, std)
    idx = rng.choice(10_000, 20, replace=False)
    for i in idx:
        np.testing.assert_allclose(batch[i], soft_labels(mos[i], std[i]), atol=1e-9)
