"""VaR and expected shortfall (risk/var.py, actors/var.py): closed forms, numpy on the shipped data, and
Monte Carlo reproducibility through a real local Ray."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import ray
from scipy import integrate, stats

from firm.config import load_config
from firm.data.market import load_market_data
from risk import var as V

ALPHA = 0.99
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


@pytest.fixture(scope="module")
def close() -> np.ndarray:
    """The shipped daily closes of the default config (AAPL, MSFT, IBM, GOOG, SPX, COMP), 2148 sessions."""
    return load_market_data(load_config(DEFAULT_CONFIG).data).panel.close


@pytest.fixture(scope="module")
def returns(close) -> np.ndarray:
    return V.simple_returns(close)


@pytest.fixture(scope="module")
def book() -> np.ndarray:
    """A long/short book in dollars: long the stocks, short the index trackers."""
    return np.array([300_000.0, 250_000.0, -150_000.0, 200_000.0, -400_000.0, 100_000.0])


def _quad_es(ppf, alpha: float) -> float:
    """ES as the integral of the loss quantile over the tail, numerically."""
    return integrate.quad(ppf, alpha, 1.0, limit=200)[0] / (1.0 - alpha)


# --- parametric ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("horizon", [1, 10])
def test_delta_normal_is_the_normal_loss_quantile(returns, book, horizon):
    mu, cov = V.moments(returns)
    m, s = book @ mu, math.sqrt(book @ cov @ book)
    loss = stats.norm(loc=-horizon * m, scale=math.sqrt(horizon) * s)  # sqrt-time: sd x sqrt(h), mean x h
    r = V.delta_normal(book, mu, cov, ALPHA, horizon)
    assert r.var == pytest.approx(loss.ppf(ALPHA), rel=1e-12)
    assert r.es == pytest.approx(_quad_es(loss.ppf, ALPHA), rel=1e-7)
    assert r.es > r.var > 0


def test_cornish_fisher_quantile_hand_value():
    # z = 2, S = 0.6, K = 1.2: 2 + 3*0.6/6 + 2*1.2/24 - 6*0.36/36 = 2 + 0.3 + 0.1 - 0.06
    assert V.cornish_fisher_quantile(2.0, 0.6, 1.2) == pytest.approx(2.34, abs=1e-15)
    assert V.cornish_fisher_quantile(1.7, 0.0, 0.0) == 1.7


def test_cornish_fisher_without_skew_or_kurtosis_is_delta_normal(returns, book):
    mu, cov = V.moments(returns)
    m, s = float(book @ mu), math.sqrt(book @ cov @ book)
    for alpha in (0.95, 0.99):
        cf = V.cornish_fisher_from_moments(m, s, 0.0, 0.0, alpha)
        dn = V.delta_normal(book, mu, cov, alpha)
        assert cf.var == pytest.approx(dn.var, rel=1e-12)
        assert cf.es == pytest.approx(dn.es, rel=1e-12)


def test_cornish_fisher_on_the_shipped_data(returns, book):
    pnl = returns @ book
    mean, sd, skew, kurt = V.portfolio_moments(book, returns)
    assert (skew, kurt) == pytest.approx((stats.skew(pnl), stats.kurtosis(pnl)), rel=1e-12)
    assert sd == pytest.approx(np.std(pnl, ddof=1), rel=1e-12)
    for horizon in (1, 10):
        h = horizon
        r = V.cornish_fisher(book, returns, ALPHA, horizon)
        m, s, sk, ku = mean * h, sd * math.sqrt(h), skew / math.sqrt(h), kurt / h

        def loss_quantile(u):  # the P&L's (1-u) Cornish-Fisher quantile, negated
            return -(m + s * V.cornish_fisher_quantile(stats.norm.ppf(1.0 - u), sk, ku))

        assert r.var == pytest.approx(loss_quantile(ALPHA), rel=1e-12)
        assert r.es == pytest.approx(_quad_es(loss_quantile, ALPHA), rel=1e-7)  # the closed-form tail moments
    # the real book's losses are fat-tailed: CF's 99% VaR is above the delta-normal's
    assert kurt > 1 and V.cornish_fisher(book, returns, ALPHA).var > V.delta_normal(book, *V.moments(returns)).var


def test_student_t_closed_form(returns, book):
    mu, cov = V.moments(returns)
    nu, h = 5.0, 10
    scale = cov * (nu - 2) / nu  # a t with the sample covariance
    loss = stats.t(nu, loc=-h * (book @ mu), scale=math.sqrt(h * book @ scale @ book))
    r = V.student_t(book, mu, scale, nu, ALPHA, h)
    assert r.var == pytest.approx(loss.ppf(ALPHA), rel=1e-12)
    assert r.es == pytest.approx(_quad_es(loss.ppf, ALPHA), rel=1e-7)


# --- historical --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.95, 0.99, 0.995])
def test_historical_var_is_numpy_inverted_cdf_quantile_on_the_shipped_data(returns, book, alpha):
    losses = -(returns @ book)
    assert len(losses) == 2147
    r = V.historical(book, returns, alpha)
    assert r.var == np.quantile(losses, alpha, method="inverted_cdf")
    # ES: the empirical quantile function integrated over (alpha, 1], written as weights on the order stats
    s = np.sort(losses)
    i = np.arange(1, s.size + 1)
    weights = np.clip(i / s.size - np.maximum(alpha, (i - 1) / s.size), 0.0, None)
    assert weights.sum() == pytest.approx(1 - alpha, rel=1e-12)
    assert r.es == pytest.approx(weights @ s / (1 - alpha), rel=1e-12)
    assert r.es >= r.var > 0


def test_historical_es_is_the_mean_of_the_worst_when_the_tail_is_whole(returns, book):
    r2000 = returns[:2000]
    assert 2000 * ALPHA == 1980.0  # n (1 - alpha) = 20 losses in the tail exactly
    losses = -(r2000 @ book)
    r = V.historical(book, r2000, ALPHA)
    assert r.var == np.sort(losses)[1979]
    assert r.es == pytest.approx(np.sort(losses)[-20:].mean(), rel=1e-12)


def test_historical_ten_day_losses_are_price_changes(close, returns, book):
    losses = V.historical_losses(book, returns, horizon=10)
    direct = -((close[10:] / close[:-10] - 1.0) @ book)  # no NaN in the shipped panel: every row is kept
    np.testing.assert_allclose(losses, direct, rtol=1e-9, atol=1e-6)
    assert V.historical(book, returns, ALPHA, 10).var == np.quantile(losses, ALPHA, method="inverted_cdf")


def test_tail_summaries_merge_exactly():
    x = np.random.default_rng(7).standard_t(3, 10_001)
    m = V.tail_count(x.size, ALPHA)
    parts = [V.tail_of(p, m) for p in np.array_split(x, 7)]
    assert np.array_equal(V.merge_tails(parts, m), V.tail_of(x, m))
    assert V.risk_from_tail(V.merge_tails(parts[::-1], m), x.size, ALPHA) == V.empirical(x, ALPHA)


def test_bad_inputs_are_refused(book):
    with pytest.raises(ValueError, match="alpha"):
        V.delta_normal(book, np.zeros(6), np.eye(6), 1.0)
    with pytest.raises(ValueError, match="shapes"):
        V.delta_normal(book, np.zeros(5), np.eye(6))
    with pytest.raises(ValueError, match="dist"):
        V.mc_model(book, np.zeros(6), np.eye(6), dist="cauchy")
    with pytest.raises(ValueError, match="nu"):
        V.mc_model(book, np.zeros(6), np.eye(6), dist="t")
    with pytest.raises(ValueError, match="whole number"):
        V.historical_losses(book, np.zeros((5, 6)), 2.5)


# --- Monte Carlo ---------------------------------------------------------------------------------------------


def test_kernel_draws_are_standard_normal_and_chi_square():
    nu = 5.0
    x = V.standard_draws(300_000, 3, seed=11, nu=nu, n_threads=2)
    z, w = x[:, :3], x[:, 3]
    assert stats.kstest(z.ravel(), "norm").pvalue > 1e-3
    assert stats.kstest(w, stats.chi2(nu).cdf).pvalue > 1e-3
    assert abs(z.mean()) < 5 / math.sqrt(z.size) and abs(z.var() - 1) < 5 * math.sqrt(2 / z.size)
    # no correlation between a path's coordinates, neighbouring paths, or paths of different blocks
    se = 1 / math.sqrt(len(z))
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 5 * se
    assert abs(np.corrcoef(z[:-1, 0], z[1:, 0])[0, 1]) < 5 * se
    b = V.BLOCK
    assert abs(np.corrcoef(z[:b, 0], z[b : 2 * b, 0])[0, 1]) < 5 / math.sqrt(b)
    assert abs(np.corrcoef(w, (z**2).sum(axis=1))[0, 1]) < 5 * se
    # the first paths of a seed are the same whatever the run's length or thread count
    assert np.array_equal(V.standard_draws(1000, 3, seed=11, nu=nu, n_threads=1), x[:1000])
    assert not np.array_equal(V.standard_draws(1000, 3, seed=12, nu=nu)[:, :3], z[:1000])


def test_mc_normal_within_one_percent_of_the_closed_form_at_1e6_paths(returns, book):
    mu, cov = V.moments(returns)
    exact = V.delta_normal(book, mu, cov, ALPHA, 10)
    mc = V.monte_carlo(book, mu, cov, ALPHA, n_paths=1_000_000, seed=0, horizon=10, n_threads=2)
    # standard errors at 1e6 paths: ~0.16% of VaR and ~0.17% of ES
    assert mc.var == pytest.approx(exact.var, rel=0.01)
    assert mc.es == pytest.approx(exact.es, rel=0.01)


def test_mc_student_t_within_one_percent_of_the_closed_form_at_1e6_paths(returns, book):
    mu, cov = V.moments(returns)
    nu = 5.0
    scale = cov * (nu - 2) / nu
    exact = V.student_t(book, mu, scale, nu, ALPHA)
    mc = V.monte_carlo(book, mu, scale, ALPHA, n_paths=1_000_000, seed=0, dist="t", nu=nu, n_threads=2)
    # standard errors at 1e6 paths for t_5: ~0.27% of VaR and ~0.39% of ES
    assert mc.var == pytest.approx(exact.var, rel=0.01)
    assert mc.es == pytest.approx(exact.es, rel=0.01)


def test_numpy_reference_model_agrees_with_the_closed_form(returns, book):
    mu, cov = V.moments(returns)
    n = 1 << 18  # standard errors ~0.3% (normal) and ~0.55% / ~0.8% (t_5 VaR / ES)
    for dist, nu, exact in (
        ("normal", None, V.delta_normal(book, mu, cov, ALPHA)),
        ("t", 5.0, V.student_t(book, mu, cov, 5.0, ALPHA)),
    ):
        r = V.empirical(V.mc_losses_numpy(V.mc_model(book, mu, cov, dist, nu), n, seed=3), ALPHA)
        assert r.var == pytest.approx(exact.var, rel=0.03), dist
        assert r.es == pytest.approx(exact.es, rel=0.04), dist


def test_mc_blocks_are_independent_of_how_they_are_split(returns, book):
    mu, cov = V.moments(returns)
    model = V.mc_model(book, mu, cov, "t", 4.0)
    n = 3 * V.BLOCK + 123
    whole = V.simulate_losses(model, n, 5, 0, V.n_blocks(n), n_threads=2)
    assert whole.size == n
    assert np.array_equal(V.simulate_losses(model, n, 5, 1, 4, n_threads=1), whole[V.BLOCK :])
    assert np.array_equal(V.simulate_losses(model, n, 5, 0, 1, n_threads=2), whole[: V.BLOCK])
    # a longer run extends the same paths
    assert np.array_equal(V.simulate_losses(model, 10 * V.BLOCK, 5, 0, 4)[:n], whole)
    assert V.monte_carlo(book, mu, cov, n_paths=n, seed=5, dist="t", nu=4.0, n_threads=1) == V.monte_carlo(
        book, mu, cov, n_paths=n, seed=5, dist="t", nu=4.0, n_threads=2
    )


@pytest.mark.parametrize("dist,nu", [("normal", None), ("t", 4.0)])
def test_mc_on_ray_is_bit_identical_for_1_2_and_4_tasks(ray_local, returns, book, dist, nu):
    from actors.var import monte_carlo as ray_monte_carlo

    mu, cov = V.moments(returns)
    n = 5 * V.BLOCK - 1000  # five blocks, the last one short
    local = V.monte_carlo(book, mu, cov, ALPHA, n, seed=42, dist=dist, nu=nu, horizon=10, n_threads=1)
    results = {
        (tasks, threads): ray_monte_carlo(book, mu, cov, ALPHA, n, 42, dist, nu, 10, n_tasks=tasks,
                                          threads_per_task=threads)
        for tasks, threads in ((1, 1), (2, 1), (4, 1), (2, 2))
    }
    for key, r in results.items():
        assert r == local, key  # NamedTuple equality: both floats bit for bit
    assert local.es > local.var > 0


def test_var_actor_wraps_the_pure_functions(ray_local, returns, book):
    from actors.var import VaRActor

    mu, cov = V.moments(returns)
    actor = VaRActor.remote(n_tasks=2)
    try:
        assert ray.get(actor.delta_normal.remote(book, mu, cov)) == V.delta_normal(book, mu, cov)._asdict()
        assert ray.get(actor.historical.remote(book, returns, 0.975, 5)) == V.historical(book, returns, 0.975, 5)._asdict()
        assert ray.get(actor.cornish_fisher.remote(book, returns)) == V.cornish_fisher(book, returns)._asdict()
        assert ray.get(actor.student_t.remote(book, mu, cov, 6.0)) == V.student_t(book, mu, cov, 6.0)._asdict()
        got = ray.get(actor.monte_carlo.remote(book, mu, cov, n_paths=200_000, seed=9, dist="t", nu=6.0))
        assert got == V.monte_carlo(book, mu, cov, n_paths=200_000, seed=9, dist="t", nu=6.0)._asdict()
    finally:
        ray.kill(actor)


def test_trailing_book_var_is_the_delta_normal_of_the_last_250_sessions(close):
    """The run's book VaR (the firm_book_var_dollars gauge): recomputed with pandas on the same window."""
    import pandas as pd

    positions = np.array([300, -200, 150, 0, 10, -5][: close.shape[1]], dtype=np.float64)
    stop = 1500
    got = V.trailing_book(positions, close, stop)
    frame = pd.DataFrame(close[stop - 251 : stop])
    r = frame.pct_change().iloc[1:].dropna()
    values = positions * frame.ffill().iloc[-1].to_numpy()
    mean, sd = float(values @ r.mean().to_numpy()), math.sqrt(float(values @ r.cov().to_numpy() @ values))
    z = stats.norm.ppf(0.99)
    assert got.var == pytest.approx(-mean + z * sd, rel=1e-10)
    assert got.es == pytest.approx(-mean + sd * stats.norm.pdf(z) / 0.01, rel=1e-10)
    later = close.copy()
    later[stop:] *= 3.0  # what happens after the book's session does not move its VaR
    assert V.trailing_book(positions, later, stop) == got
    assert V.trailing_book(np.zeros_like(positions), close, stop) == (0.0, 0.0)
