"""The market-making strategy: Corwin-Schultz spreads, Avellaneda-Stoikov quotes, the inventory proxy and rule.

The contract every strategy honours (ranges, prefix stability, no look-ahead, gaps) is in test_contract.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from strategies import registry
from strategies.base import Advice, Panel
from strategies.market_making import MarketMaking, avellaneda_stoikov, corwin_schultz, cs_two_day

RATIONALE = {"cs_spread", "sigma", "reservation_price", "half_spread", "inventory"}
_DAY = 86_400_000_000_000


def _paper_two_day(h0: float, l0: float, c0: float, h1: float, l1: float) -> float:
    """Corwin and Schultz (2012), eqs. (14), (18)-(20), with the overnight adjustment of Section II.C, as written."""
    if l1 > c0:  # the price rose overnight: lower day t's high and low by the overnight change
        gap = l1 - c0
        h1, l1 = h1 - gap, l1 - gap
    elif h1 < c0:  # the price fell overnight: raise them by it
        gap = c0 - h1
        h1, l1 = h1 + gap, l1 + gap
    beta = math.log(h0 / l0) ** 2 + math.log(h1 / l1) ** 2
    gamma = math.log(max(h0, h1) / min(l0, l1)) ** 2
    c = 3 - 2 * math.sqrt(2)
    alpha = (math.sqrt(2 * beta) - math.sqrt(beta)) / c - math.sqrt(gamma / c)
    return 2 * (math.exp(alpha) - 1) / (1 + math.exp(alpha))


def _paper_rolling(high, low, close, n: int) -> tuple[list[float], list[float]]:
    two_day = [math.nan] + [
        _paper_two_day(high[t - 1], low[t - 1], close[t - 1], high[t], low[t]) for t in range(1, len(close))
    ]
    floored = [max(s, 0.0) for s in two_day]
    rolling = [math.nan] * len(close)
    for t in range(n, len(close)):
        rolling[t] = sum(floored[t - n + 1 : t + 1]) / n
    return two_day, rolling


def _panel(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> Panel:
    cols = [np.asarray(a, dtype=np.float64).reshape(-1, 1) for a in (close, high, low, close)]
    ts = np.arange(len(close), dtype=np.int64) * _DAY
    return Panel(ts, ("X",), *cols, np.ones_like(cols[0]))


@pytest.fixture(scope="module")
def full(panel: Panel) -> Advice:
    return MarketMaking().compute(panel)


def test_registry_finds_market_making() -> None:
    assert registry.get("market_making") is MarketMaking
    strategy = registry.create("market_making", {"gamma": 5, "inventory_n": 3})
    assert isinstance(strategy, MarketMaking) and strategy.params.gamma == 5.0 and strategy.params.inventory_n == 3


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"cs_n": 0}, "cs_n"),
        ({"sigma_n": 1}, "sigma_n"),
        ({"inventory_n": 0}, "inventory_n"),
        ({"gamma": 0}, "gamma"),
        ({"k": -1.0}, "k"),
        ({"horizon": 0}, "horizon"),
        ({"max_spread_vol": 0}, "max_spread_vol"),
        ({"gamma": "high"}, "gamma"),
        ({"spread_n": 20}, "spread_n"),
    ],
)
def test_bad_params_raise_validation_error(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MarketMaking(params)


@pytest.mark.parametrize(
    ("params", "warmup"),
    [
        ({}, 30),
        ({"sigma_n": 50}, 51),
        ({"cs_n": 5, "inventory_n": 3}, 21),
        ({"cs_n": 1, "inventory_n": 1, "sigma_n": 2}, 3),
    ],
)
def test_abstains_exactly_during_warmup(panel: Panel, params: dict, warmup: int, assert_warmup) -> None:
    strategy = MarketMaking(params)
    assert strategy.warmup == warmup
    assert_warmup(strategy.compute(panel), warmup)


def test_corwin_schultz_matches_a_transcription_of_the_paper_on_aapl(aapl: dict[str, np.ndarray]) -> None:
    h, lo, c = aapl["high"], aapl["low"], aapl["close"]
    two_day, rolling = _paper_rolling(h.tolist(), lo.tolist(), c.tolist(), 20)
    np.testing.assert_allclose(cs_two_day(h, lo, c), two_day, rtol=1e-12, atol=0)
    np.testing.assert_allclose(corwin_schultz(h, lo, c, 20), rolling, rtol=1e-12, atol=0)
    np.testing.assert_allclose(corwin_schultz(h, lo, c, 1), np.maximum(two_day, 0.0), rtol=1e-12, atol=0)
    # The data exercise every branch: gaps up and down (overnight adjustment) and negative two-day estimates.
    assert (lo[1:] > c[:-1]).sum() > 50 and (h[1:] < c[:-1]).sum() > 50
    raw = np.asarray(two_day[1:])
    assert 0.2 < (raw < 0).mean() < 0.6
    with pytest.raises(ValueError, match="n must be"):
        corwin_schultz(h, lo, c, 0)


@pytest.mark.parametrize("spread", [0.0005, 0.004, 0.02, 0.1, 0.5])
def test_corwin_schultz_returns_a_constant_spread_without_volatility(spread: float) -> None:
    """The paper's sanity case: the true value never moves, highs are asks and lows are bids, so S comes back."""
    value = 37.5
    n = 60
    high = np.full(n, value * (1 + spread / 2))
    low = np.full(n, value * (1 - spread / 2))
    close = np.where(np.arange(n) % 2 == 0, high, low)  # trades alternate at the ask and the bid
    np.testing.assert_allclose(cs_two_day(high, low, close)[1:], spread, rtol=1e-12)
    np.testing.assert_allclose(corwin_schultz(high, low, close, 20)[20:], spread, rtol=1e-12)

    advice = MarketMaking().compute(_panel(high, low, close))
    r = advice.rationale
    np.testing.assert_allclose(r["cs_spread"][20:, 0], spread, rtol=1e-12)
    warm = slice(MarketMaking().warmup - 1, None)
    assert (r["sigma"][warm] > 0).all()  # bid-ask bounce is all the volatility there is
    # Trades alternate sides, so over an even window the modelled inventory is flat and so is the advice.
    np.testing.assert_allclose(r["inventory"][warm], 0.0, atol=1e-12)
    assert (advice.strength[warm] == 0).all()


def test_overnight_adjustment_shifts_the_second_day_by_the_gap() -> None:
    """A gap up (down) is removed from day t's high and low before the two-day estimate, as the paper does."""
    h0, l0, c0 = 101.0, 99.0, 100.0
    for h1, l1, shifted in [(112.0, 110.0, (102.0, 100.0)), (90.0, 88.0, (100.0, 98.0)), (100.5, 99.5, None)]:
        got = cs_two_day(np.array([h0, h1]), np.array([l0, l1]), np.array([c0, (h1 + l1) / 2]))[1]
        h1s, l1s = shifted if shifted else (h1, l1)
        # Without a gap the adjustment does nothing; with one, the estimate is that of the shifted day.
        assert got == pytest.approx(_paper_two_day(h0, l0, c0, h1s, l1s), rel=1e-12)
        assert got == pytest.approx(_paper_two_day(h0, l0, c0, h1, l1), rel=1e-12)
    # Unadjusted, the 10% gap would count as range and drive the estimate far below zero.
    unadjusted = _paper_two_day(h0, l0, 111.0, 112.0, 110.0)  # a prior close inside day t's range: no adjustment
    assert unadjusted < -0.05 < cs_two_day(np.array([h0, 112.0]), np.array([l0, 110.0]), np.array([c0, 111.0]))[1]


@pytest.mark.parametrize("q", [-3.0, -0.5, 0.0, 1.0, 4.0])
def test_avellaneda_stoikov_closed_form(q: float) -> None:
    # The paper's numerical example: s = 100, sigma = 2, gamma = 0.1, k = 1.5, T - t = 1.
    r, delta = avellaneda_stoikov(100.0, q, 2.0, 0.1, 1.5, 1.0)
    assert r == pytest.approx(100.0 - q * 0.1 * 4.0 * 1.0, rel=1e-15)
    assert delta == pytest.approx(0.1 * 4.0 + 20.0 * math.log(1 + 0.1 / 1.5), rel=1e-14)
    assert delta == pytest.approx(0.4 + 1.2908, abs=1e-4)  # inventory-risk term + liquidity term
    # Half-way to the horizon the inventory term halves; the liquidity term does not depend on it.
    r_half, delta_half = avellaneda_stoikov(100.0, q, 2.0, 0.1, 1.5, 0.5)
    assert 100.0 - r_half == pytest.approx((100.0 - r) / 2, abs=1e-13)
    assert delta - delta_half == pytest.approx(0.2, rel=1e-12)


def test_avellaneda_stoikov_limits_and_inputs() -> None:
    # Risk neutrality (gamma -> 0): no skew, and the spread tends to 2/k.
    r, delta = avellaneda_stoikov(50.0, 7.0, 1.0, 1e-9, 4.0, 1.0)
    assert r == pytest.approx(50.0, abs=1e-7) and delta == pytest.approx(0.5, rel=1e-8)
    r, delta = avellaneda_stoikov(50.0, 2.0, 0.0, 3.0, 4.0, 1.0)  # no volatility: no inventory risk
    assert r == 50.0 and delta == pytest.approx((2 / 3) * math.log(1 + 3 / 4), rel=1e-15)
    for gamma, k in [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0)]:
        with pytest.raises(ValueError, match="gamma and k"):
            avellaneda_stoikov(100.0, 0.0, 1.0, gamma, k, 1.0)


def test_rationale_and_the_span_of_advice(full: Advice) -> None:
    assert set(full.rationale) == RATIONALE
    s = full.strength[~np.isnan(full.strength)]
    assert s.min() < -0.9 and s.max() > 0.9 and (s == 0).mean() > 0.3
    assert (full.confidence == 0).any() and full.confidence.max() > 0.8


def test_strength_and_confidence_follow_the_documented_rule(panel: Panel, full: Advice) -> None:
    p = MarketMaking().params
    r = full.rationale
    warm = slice(MarketMaking().warmup - 1, None)
    for j in range(len(panel.symbols)):
        h, lo, c = panel.high[:, j], panel.low[:, j], panel.close[:, j]
        cs = corwin_schultz(h, lo, c, p.cs_n)
        np.testing.assert_array_equal(r["cs_spread"][:, j], cs)
        logret = np.full(c.shape, np.nan)
        logret[1:] = np.log(c[1:] / c[:-1])
        sigma = np.full(c.shape, np.nan)
        for t in range(p.sigma_n, len(c)):
            sigma[t] = logret[t - p.sigma_n + 1 : t + 1].std()
        np.testing.assert_allclose(r["sigma"][:, j], sigma, rtol=1e-12, equal_nan=True)
        u = np.log(c) - (np.log(h) + np.log(lo)) / 2
        x = np.where(cs > 0, np.clip(u / (cs / 2), -1, 1), np.sign(u))
        q = -np.convolve(x, np.ones(p.inventory_n), "full")[: len(c)]
        q[: p.cs_n + p.inventory_n - 1] = np.nan
        np.testing.assert_allclose(r["inventory"][:, j], q, rtol=1e-12, atol=1e-12, equal_nan=True)

    c = panel.close[warm]
    q, sigma, cs = r["inventory"][warm], r["sigma"][warm], r["cs_spread"][warm]
    risk = p.gamma * sigma**2 * p.horizon
    reservation = c * (1 - q * risk)
    half = c * (risk + 2 / p.gamma * np.log(1 + p.gamma / p.k)) / 2
    np.testing.assert_allclose(r["reservation_price"][warm], reservation, rtol=1e-12)
    np.testing.assert_allclose(r["half_spread"][warm], half, rtol=1e-12)
    j, t = 0, 1000  # one cell through the closed form itself, in price units
    rr, delta = avellaneda_stoikov(c[t, j], q[t, j], sigma[t, j] * c[t, j], p.gamma / c[t, j], p.k / c[t, j], p.horizon)
    assert r["reservation_price"][warm][t, j] == rr and r["half_spread"][warm][t, j] == delta / 2

    d = (r["reservation_price"][warm] - c) / r["half_spread"][warm]
    expected = np.where(np.abs(d) > 1, np.sign(d) * np.tanh(np.abs(d) - 1), 0.0)
    np.testing.assert_allclose(full.strength[warm], expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(full.confidence[warm], np.clip(1 - cs / sigma / p.max_spread_vol, 0, 1), rtol=1e-12)
    # Every branch occurs: buy below the bid, sell above the ask, flat between the quotes.
    assert (d > 1).any() and (d < -1).any() and (np.abs(d) <= 1).any()
    assert (full.strength[warm][d > 1] > 0).all() and (full.strength[warm][d < -1] < 0).all()
    # The market maker buys back what buyers took from it (q < 0) and sells what sellers gave it.
    assert (np.sign(d[np.abs(d) > 1]) == -np.sign(q[np.abs(d) > 1])).all()


@pytest.mark.parametrize(("at", "side"), [("high", 1.0), ("low", -1.0)])
def test_inventory_proxy_follows_one_sided_flow(at: str, side: float) -> None:
    """Closes pinned at the day's high (buyers lifting the ask) leave the market maker short, so it buys; at the
    low (sellers hitting the bid) it is long and sells."""
    rng = np.random.default_rng(5)
    n = 300
    value = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    high, low = value * 1.01, value * 0.99
    close = high if at == "high" else low
    advice = MarketMaking().compute(_panel(high, low, close))
    warm = slice(MarketMaking().warmup - 1, None)
    q = advice.rationale["inventory"][warm, 0]
    assert (np.sign(q) == -side).all() and (np.abs(q) > 5).all()
    assert (np.sign(advice.rationale["reservation_price"][warm, 0] - close[warm]) == side).all()
    s = advice.strength[warm, 0]
    assert (s * side >= 0).all() and (s * side > 0.5).mean() > 0.5

