"""deqa.metrics against hand-computed values, known curves, brute-force integrals and bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import xlogy

from deqa.metrics import (
    ConfidenceInterval,
    FitFallbackWarning,
    IQAMetrics,
    LogisticFit,
    bootstrap_ci,
    fit_logistic,
    gaussian_js,
    gaussian_kl,
    gaussian_w2,
    iqa_bootstrap_cis,
    iqa_metrics,
    js_divergence,
    kl_divergence,
    krcc,
    logistic_4,
    plcc,
    plcc_fitted,
    rmse_fitted,
    srcc,
)

LN2 = math.log(2.0)


# --------------------------------------------------------------------------- correlations
def test_srcc_of_a_known_permutation():
    # ranks differ by d = (-1, 1, -1, 1, 0): rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 24/120
    assert srcc([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8, abs=1e-12)
    assert srcc([1, 2, 3, 4, 5], [50, 40, 30, 20, 10]) == pytest.approx(-1.0, abs=1e-12)


def test_srcc_with_ties_uses_average_ranks():
    # x ranks (1.5, 1.5, 3, 4), y ranks (1, 2, 3, 4): Pearson of ranks = 4.5 / sqrt(4.5 * 5)
    assert srcc([1, 1, 2, 3], [10, 20, 30, 40]) == pytest.approx(4.5 / math.sqrt(22.5), abs=1e-12)


def test_krcc_by_counting_pairs():
    # 10 pairs; only (1,2) and (3,4) are discordant: tau = (8 - 2) / 10
    assert krcc([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.6, abs=1e-12)
    # tau-b with one tie in x: 5 concordant, 0 discordant, n0 = 6, ties_x = 1 -> 5 / sqrt(5 * 6)
    assert krcc([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(30), abs=1e-12)


def test_plcc_by_the_formula():
    # deviations (-1.5, -.5, .5, 1.5) and (-1.5, .5, -.5, 1.5): 4 / sqrt(5 * 5)
    assert plcc([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8, abs=1e-12)


# --------------------------------------------------------------------------- logistic fit
TRUE_BETAS = (4.5, 1.2, 0.3, 0.7)


def test_logistic_4_formula():
    b1, b2, b3, b4 = TRUE_BETAS
    x = np.array([0.3, 1.0, -2.0])
    expected = [(b1 - b2) / (1 + math.exp(-(v - b3) / abs(b4))) + b2 for v in x]
    np.testing.assert_allclose(logistic_4(x, *TRUE_BETAS), expected, rtol=1e-14)
    # |b4|: a negative width gives the same curve
    np.testing.assert_allclose(logistic_4(x, b1, b2, b3, -b4), expected, rtol=1e-14)
    assert logistic_4(0.3, *TRUE_BETAS) == pytest.approx((b1 + b2) / 2)


def test_logistic_jacobian_matches_finite_differences():
    from scipy.optimize import approx_fprime

    from deqa.metrics import _logistic_4_jac

    x = np.linspace(-2, 2, 9)
    for params in (TRUE_BETAS, (1.0, 3.0, -0.4, -0.6)):
        jac = _logistic_4_jac(x, *params)
        for i, xi in enumerate(x):
            num = approx_fprime(np.array(params), lambda b, xi=xi: float(logistic_4(xi, *b)), 1e-7)
            np.testing.assert_allclose(jac[i], num, atol=1e-6)


def test_logistic_fit_recovers_a_known_curve():
    x = np.linspace(-3, 3, 61)
    y = logistic_4(x, *TRUE_BETAS)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitFallbackWarning)
        fit = fit_logistic(x, y)
    assert fit.kind == "logistic" and not fit.fallback and fit.message == ""
    b1, b2, b3, b4 = fit.params
    np.testing.assert_allclose([b1, b2, b3, abs(b4)], TRUE_BETAS, rtol=1e-6, atol=1e-6)
    # the initial centre mean(x) is ~1e-16 here: with finite differences it would never move
    assert abs(x.mean()) < 1e-12
    assert plcc_fitted(x, y) == pytest.approx(1.0, abs=1e-10)
    assert rmse_fitted(x, y) == pytest.approx(0.0, abs=1e-6)
    assert plcc(x, y) < 0.99  # the raw predictions are not linear in the MOS


def test_logistic_fit_decreasing_curve_for_lower_better_predictions():
    x = np.linspace(-3, 3, 61)
    y = logistic_4(x, 1.2, 4.5, 0.3, 0.7)  # decreasing: b1 < b2
    fit = fit_logistic(x, y)
    assert fit.kind == "logistic"
    np.testing.assert_allclose(fit(x), y, atol=1e-6)
    assert plcc_fitted(x, y) == pytest.approx(1.0, abs=1e-10)
    assert plcc(x, y) < -0.9


def test_rmse_and_plcc_with_a_given_mapping_by_hand():
    line = LogisticFit("linear", (1.0, 0.0))
    # residuals (0, 0, -1): rmse = sqrt(1/3); identity mapping keeps the raw Pearson
    assert rmse_fitted([1, 2, 3], [1, 2, 4], fit=line) == pytest.approx(math.sqrt(1 / 3), abs=1e-12)
    assert plcc_fitted([1, 2, 3], [1, 2, 4], fit=line) == pytest.approx(plcc([1, 2, 3], [1, 2, 4]))


def test_fallback_to_linear_when_the_fit_does_not_converge():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([2.0, 4.0, 5.0, 9.0])
    with pytest.warns(FitFallbackWarning, match="did not converge"):
        fit = fit_logistic(x, y, maxfev=1)
    assert fit.kind == "linear" and fit.fallback and "did not converge" in fit.message
    # least squares by hand: slope = Sxy / Sxx = 11 / 5 = 2.2, intercept = 5 - 2.2 * 2.5 = -0.5
    assert fit.params == pytest.approx((2.2, -0.5))
    np.testing.assert_allclose(fit(x), 2.2 * x - 0.5)


def test_fallback_when_the_fit_is_degenerate():
    x = np.linspace(0, 1, 30)
    y = x**2
    # centre far outside the data: the curve saturates, gradients in b3/b4 vanish and the
    # optimiser can only fit a flat line through the mean -> degenerate
    with pytest.warns(FitFallbackWarning):
        fit = fit_logistic(x, y, p0=(1.0, 1.0, 1e6, 1e-3))
    assert fit.kind == "linear"
    assert plcc_fitted(x, y, fit=fit) == pytest.approx(plcc(x, y), abs=1e-12)


def test_iqa_metrics_bundles_everything():
    x = np.linspace(-3, 3, 61)
    y = logistic_4(x, *TRUE_BETAS)
    m = iqa_metrics(x, y)
    assert isinstance(m, IQAMetrics)
    assert m.n == 61
    assert m.srcc == pytest.approx(1.0) and m.krcc == pytest.approx(1.0)
    assert m.plcc == pytest.approx(plcc(x, y))
    assert m.plcc_fitted == pytest.approx(1.0, abs=1e-10)
    assert m.fit.kind == "logistic"
    d = m.to_dict()
    assert d["fit_kind"] == "logistic" and len(d["fit_params"]) == 4 and d["n"] == 61
    assert set(d) == {
        "n",
        "srcc",
        "krcc",
        "plcc",
        "plcc_fitted",
        "rmse_fitted",
        "fit_kind",
        "fit_params",
        "fit_message",
    }


@pytest.mark.parametrize(
    "pred, mos, match",
    [
        ([1, 2, 3], [1, 2], r"pred has 3 values but mos has 2"),
        ([1, float("nan"), 3], [1, 2, 3], r"pred\[1\] is nan"),
        ([1, 2, 3], [1, 2, float("inf")], r"mos\[2\] is inf"),
        ([1, 2], [1, 2], r"at least 3"),
        ([2, 2, 2, 2], [1, 2, 3, 4], r"pred is constant"),
        ([1, 2, 3, 4], [5, 5, 5, 5], r"mos is constant"),
        ([[1, 2], [3, 4]], [1, 2], r"1-D"),
    ],
)
def test_bad_input_is_named(pred, mos, match):
    for fn in (srcc, krcc, plcc, plcc_fitted, iqa_metrics, fit_logistic):
        with pytest.raises(ValueError, match=match):
            fn(pred, mos)


# --------------------------------------------------------------------------- bootstrap
@pytest.fixture(scope="module")
def noisy_pairs():
    rng = np.random.default_rng(7)
    mos = rng.uniform(1, 5, 300)
    pred = mos + rng.normal(0, 0.6, mos.size)
    return pred, mos


@pytest.mark.parametrize("metric", ["srcc", "plcc", "krcc", "plcc_fitted"])
def test_bootstrap_ci_contains_the_estimate_and_is_seeded(noisy_pairs, metric):
    pred, mos = noisy_pairs
    n = 400 if metric in ("srcc", "plcc") else 60
    ci = bootstrap_ci(pred, mos, metric, n_resamples=n, seed=3)
    assert isinstance(ci, ConfidenceInterval)
    assert ci.low < ci.estimate < ci.high
    assert ci.high - ci.low < 0.2
    assert ci.confidence == pytest.approx(0.95) and ci.n_resamples == n
    assert bootstrap_ci(pred, mos, metric, n_resamples=n, seed=3) == ci
    assert bootstrap_ci(pred, mos, metric, n_resamples=n, seed=4) != ci


def test_bootstrap_estimates_match_the_point_metrics(noisy_pairs):
    pred, mos = noisy_pairs
    cis = iqa_bootstrap_cis(pred, mos, n_resamples=50)
    assert set(cis) == {"srcc", "plcc"}
    assert cis["srcc"].estimate == pytest.approx(srcc(pred, mos))
    assert cis["plcc"].estimate == pytest.approx(plcc(pred, mos))


def test_vectorised_bootstrap_srcc_equals_the_per_resample_loop(noisy_pairs):
    # Same seed, same resamples: our vectorised rank/Pearson statistic must give the interval
    # that scipy's plain spearmanr gives one resample at a time.
    pred, mos = noisy_pairs
    ours = bootstrap_ci(pred, mos, "srcc", n_resamples=200, seed=11, batch=200)
    ref = stats.bootstrap(
        (pred, mos),
        lambda a, b: stats.spearmanr(a, b).statistic,
        n_resamples=200,
        batch=200,
        vectorized=False,
        paired=True,
        method="percentile",
        rng=np.random.default_rng(11),
    ).confidence_interval
    assert ours.low == pytest.approx(ref.low, abs=1e-12)
    assert ours.high == pytest.approx(ref.high, abs=1e-12)


def test_bootstrap_alpha_widens_the_interval(noisy_pairs):
    pred, mos = noisy_pairs
    ci90 = bootstrap_ci(pred, mos, "plcc", n_resamples=400, alpha=0.10)
    ci99 = bootstrap_ci(pred, mos, "plcc", n_resamples=400, alpha=0.01)
    assert ci99.low < ci90.low and ci99.high > ci90.high


def test_bootstrap_bad_options(noisy_pairs):
    pred, mos = noisy_pairs
    with pytest.raises(ValueError, match="unknown bootstrap metric 'rmse'"):
        bootstrap_ci(pred, mos, "rmse")
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(pred, mos, alpha=1.5)


# --------------------------------------------------------------------------- discrete gaps
def test_kl_known_value():
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_divergence([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected, abs=1e-15)
    assert kl_divergence([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == pytest.approx(0.0, abs=1e-15)


def test_kl_zero_handling():
    # p = 0 terms contribute nothing
    assert kl_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(LN2, abs=1e-15)
    # q = 0 where p > 0: floored at eps (finite), exact (inf) with eps = 0
    assert kl_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(math.log(1e12), rel=1e-12)
    assert kl_divergence([1.0, 0.0], [0.0, 1.0], eps=0.0) == np.inf


def test_js_known_values():
    assert js_divergence([1, 0, 0], [0, 0, 1]) == pytest.approx(LN2, abs=1e-15)  # disjoint
    assert js_divergence([0.1, 0.2, 0.7], [0.1, 0.2, 0.7]) == pytest.approx(0.0, abs=1e-15)
    # p = (1, 0), q = (.5, .5), m = (.75, .25)
    expected = 0.5 * (math.log(4 / 3) + 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25))
    assert js_divergence([1, 0], [0.5, 0.5]) == pytest.approx(expected, abs=1e-15)


def test_discrete_gaps_are_vectorised_over_rows_and_normalise_counts():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=(4, 3))
    q = rng.dirichlet(np.ones(5), size=(4, 3))
    js = js_divergence(p, q)
    assert js.shape == (4, 3)
    np.testing.assert_allclose(js, js_divergence(q, p), atol=1e-15)  # symmetric
    assert np.all((js >= 0) & (js <= LN2))
    np.testing.assert_allclose(js[1, 2], js_divergence(p[1, 2], q[1, 2]))
    np.testing.assert_allclose(
        kl_divergence(p, q)[2, 0], np.sum(p[2, 0] * np.log(p[2, 0] / q[2, 0]))
    )
    # counts normalise; broadcasting a single q over rows
    assert js_divergence([2, 2, 0], [0, 1, 1]) == pytest.approx(
        js_divergence([0.5, 0.5, 0], [0, 0.5, 0.5])
    )
    assert js_divergence(p[0], q[0, 0]).shape == (3,)
    # normalize=False uses the rows as given
    assert kl_divergence([2.0, 0.0], [1.0, 1.0], normalize=False) == pytest.approx(2 * math.log(2))


@pytest.mark.parametrize(
    "p, q, match",
    [
        ([0.5, -0.1, 0.6], [0.3, 0.3, 0.4], r"p\[1\] = -0.1"),
        ([0.5, 0.5], [0.3, float("nan")], r"q\[1\] = nan"),
        ([0.5, 0.5], [0.3, 0.3, 0.4], r"2 categories .* q has 3"),
        ([[0.5, 0.5], [0, 0]], [0.5, 0.5], r"p row \[1\] sums to 0"),
    ],
)
def test_discrete_gaps_bad_input(p, q, match):
    for fn in (kl_divergence, js_divergence):
        with pytest.raises(ValueError, match=match):
            fn(p, q)


# --------------------------------------------------------------------------- Gaussian gaps
def _js_brute_force(m1: float, s1: float, m2: float, s2: float) -> float:
    """JS by adaptive quadrature of the definition, split at both means and +-3/6 std."""
    p, q = stats.norm(m1, s1), stats.norm(m2, s2)

    def f(x):
        a, b = p.pdf(x), q.pdf(x)
        m = 0.5 * (a + b)
        return 0.5 * (xlogy(a, a) - xlogy(a, m)) + 0.5 * (xlogy(b, b) - xlogy(b, m))

    edges = sorted(
        {m1 + k * s1 for k in (-14, -6, -3, 0, 3, 6, 14)}
        | {m2 + k * s2 for k in (-14, -6, -3, 0, 3, 6, 14)}
    )
    return sum(
        integrate.quad(f, a, b, limit=400, epsabs=1e-14, epsrel=1e-12)[0]
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    )


@pytest.mark.parametrize(
    "case",
    [
        (0.0, 1.0, 0.3, 1.0),
        (3.0, 0.5, 3.2, 0.8),
        (1.0, 0.2, 4.0, 1.5),
        (0.0, 1.0, 0.0, 30.0),
        (2.5, 0.05, 2.6, 0.6),
        (0.0, 1.0, 9.0, 0.4),
    ],
)
def test_gaussian_js_matches_a_brute_force_integral(case):
    assert gaussian_js(*case) == pytest.approx(_js_brute_force(*case), abs=1e-9)


def test_gaussian_js_accuracy_over_a_wide_parameter_sweep():
    # Means 0-20 std apart, std ratios 1e-4 to 1e4: the accuracy gaussian_js's docstring states.
    for d in (0.0, 2.0, 20.0):
        for r in (1e-4, 0.3, 1.0, 3.0, 1e4):
            assert gaussian_js(0.0, 1.0, d, r) == pytest.approx(
                _js_brute_force(0.0, 1.0, d, r), abs=1e-10
            ), (d, r)


def test_gaussian_js_identity_symmetry_limits_and_broadcasting():
    assert gaussian_js(3.1, 0.7, 3.1, 0.7) == pytest.approx(0.0, abs=1e-12)
    assert gaussian_js(1.0, 0.3, 2.0, 0.9) == pytest.approx(
        gaussian_js(2.0, 0.9, 1.0, 0.3), abs=1e-14
    )
    # std -> 0: a point mass against a Gaussian is disjoint in measure -> ln 2, continuously
    assert gaussian_js(1.0, 0.0, 1.0, 0.5) == pytest.approx(LN2)
    assert gaussian_js(1.0, 1e-9, 1.0, 0.5) == pytest.approx(LN2, abs=1e-6)
    assert gaussian_js(1.0, 0.0, 1.0, 0.0) == 0.0 and gaussian_js(
        1.0, 0.0, 2.0, 0.0
    ) == pytest.approx(LN2)
    assert gaussian_js(0.0, 1.0, 50.0, 1.0) == pytest.approx(LN2, abs=1e-12)
    # monotone in the mean gap, bounded by ln 2
    gaps = gaussian_js(0.0, 1.0, np.linspace(0, 8, 33), 1.0)
    assert gaps.shape == (33,) and np.all(np.diff(gaps) > 0) and gaps[-1] < LN2
    out = gaussian_js(np.zeros((2, 1)), 1.0, np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 0.5]))
    assert out.shape == (2, 3)
    assert out[1, 2] == pytest.approx(gaussian_js(0.0, 1.0, 2.0, 0.5))


def test_gaussian_js_deqa_approximation():
    # Moment-matched midpoint N(d/2, 1): each KL is (d/2)^2 / 2, so the approximation is d^2 / 8.
    assert gaussian_js(0.0, 1.0, 1.0, 1.0, method="deqa") == pytest.approx(1 / 8, abs=1e-15)
    exact = gaussian_js(0.0, 1.0, 0.3, 1.0)
    approx = gaussian_js(0.0, 1.0, 0.3, 1.0, method="deqa")
    assert approx == pytest.approx(exact, rel=0.02)  # close Gaussians: agrees to leading order
    assert gaussian_js(0.0, 1.0, 6.0, 1.0, method="deqa") > LN2  # far apart: not a true JS
    assert gaussian_js(0.0, 0.0, 0.0, 1.0, method="deqa") > 1.0  # finite at std 0 (floored)
    with pytest.raises(ValueError, match="unknown method"):
        gaussian_js(0, 1, 0, 1, method="kde")


def test_gaussian_kl_and_w2_closed_forms():
    # KL(N(0,1) || N(1,2^2)) = ln 2 + (1 + 1) / 8 - 1/2
    assert gaussian_kl(0.0, 1.0, 1.0, 2.0) == pytest.approx(LN2 - 0.25, abs=1e-15)
    assert gaussian_kl(1.0, 0.5, 1.0, 0.5) == pytest.approx(0.0, abs=1e-15)
    assert gaussian_kl(0.0, 1.0, 0.0, 0.0) == np.inf and gaussian_kl(0.0, 0.0, 0.0, 0.0) == 0.0
    assert gaussian_w2(0.0, 1.0, 3.0, 5.0) == pytest.approx(5.0)


def test_gaussian_gaps_bad_input():
    with pytest.raises(ValueError, match=r"s2\[1\] = -0.5"):
        gaussian_js(0.0, 1.0, 0.0, np.array([1.0, -0.5]))
    with pytest.raises(ValueError, match=r"mu1 = nan"):
        gaussian_kl(float("nan"), 1.0, 0.0, 1.0)


def test_fallback_when_the_fit_is_a_step():
    # Weak predictions whose top four images happen to have high MOS: a logistic that jumps
    # between the 26th and 27th prediction fits better than a line, but "PLCC after the fit" then
    # scores that two-group split (a review saw raw PLCC -0.20 become 0.55 on 30 images).
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 30)
    y = rng.normal(0, 1, 30)
    y[-4:] += 3
    p0 = (y[-4:].mean(), y[:-4].mean(), (x[25] + x[26]) / 2, 1e-7)
    with pytest.warns(FitFallbackWarning, match="a step"):
        fit = fit_logistic(x, y, p0=p0)
    assert fit.kind == "linear" and "a step" in fit.message
    assert plcc_fitted(x, y, fit=fit) == pytest.approx(plcc(x, y), abs=1e-12)
    # A real curve of the same data's scale is still fitted as a logistic.
    assert fit_logistic(x, logistic_4(x, 2.0, -1.0, 0.5, 0.1), warn=False).kind == "logistic"
