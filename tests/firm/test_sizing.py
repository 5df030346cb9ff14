"""Kelly sizing against published worked examples.

Sources:
* Wikipedia, "Kelly criterion", section Example: a coin that lands heads 60% of the time, even-money
  bets: the Kelly bet is 20% of the bankroll; and the lead: "for a bet with a 70% chance to win the
  optimal wager size is 40% of available funds".
* E. O. Thorp, "The Kelly criterion in blackjack, sports betting and the stock market" (Handbook of
  Asset and Liability Management, 2006), section 2 (coin tossing): g(f) = p log(1 + f) + q log(1 - f),
  maximal at f* = p - q; at p = 0.6, g(f*) = 0.6 ln 1.2 + 0.4 ln 0.8 = 0.020136 per toss.
  Section 7.1 (continuous approximation): f* = (m - r) / s^2 and g(f*) = r + (m - r)^2 / (2 s^2);
  section 7.3 (fractional Kelly): at f = c f*, g = r + (c - c^2/2)(m - r)^2 / s^2, so half Kelly earns
  3/4 of the excess growth rate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from firm.sizing import (
    growth_continuous,
    growth_discrete,
    kelly_continuous,
    kelly_discrete,
    position_weight,
)


def test_coin_60_percent_even_money_bets_20_percent():
    assert kelly_discrete(0.6, 1.0) == pytest.approx(0.20, abs=1e-15)
    assert growth_discrete(0.2, 0.6) == pytest.approx(0.020136, abs=5e-7)
    # f* maximises g: a grid search finds the same point
    grid = np.linspace(0.0, 0.99, 9901)
    best = grid[np.argmax([growth_discrete(f, 0.6) for f in grid])]
    assert best == pytest.approx(0.2, abs=1e-4)


def test_seventy_percent_even_money_bets_40_percent():
    assert kelly_discrete(0.7, 1.0) == pytest.approx(0.40, abs=1e-15)


def test_odds_and_unfavourable_bets():
    # p - q/b: 50% at 2-to-1 bets a quarter; an unfavourable bet has f* < 0 (do not bet)
    assert kelly_discrete(0.5, 2.0) == pytest.approx(0.25)
    assert kelly_discrete(0.4, 1.0) == pytest.approx(-0.2)
    with pytest.raises(ValueError):
        kelly_discrete(1.2, 1.0)


def test_continuous_kelly_thorp_section_7():
    m, r, s = 0.11, 0.05, 0.15  # annual drift, riskless rate, volatility
    f = kelly_continuous(m, s, r)
    assert f == pytest.approx(0.06 / 0.0225)  # 2.667: levered
    assert growth_continuous(f, m, s, r) == pytest.approx(r + (m - r) ** 2 / (2 * s * s))  # 0.13
    assert growth_continuous(f, m, s, r) == pytest.approx(0.13)
    grid = np.linspace(0.0, 6.0, 60001)
    assert grid[np.argmax(growth_continuous(grid, m, s, r))] == pytest.approx(f, abs=1e-4)
    # half Kelly: 3/4 of the excess growth, half the volatility
    excess = growth_continuous(f, m, s, r) - r
    assert growth_continuous(f / 2, m, s, r) - r == pytest.approx(0.75 * excess)


def test_position_weight_caps():
    sigma = 0.02  # 2% a day, 31.7% a year
    # f* = mu / sigma^2 = 0.0004 / 0.0004 = 1; half Kelly 0.5, capped by max_weight 0.2
    assert position_weight(0.0004, sigma, kelly_fraction=0.5, max_weight=0.2) == pytest.approx(0.2)
    assert position_weight(0.0004, sigma, kelly_fraction=0.1, max_weight=0.2) == pytest.approx(0.1)
    # the vol target binds: 5% a year / 31.7% = 0.158
    w = position_weight(0.0004, sigma, kelly_fraction=0.5, max_weight=0.2, vol_target=0.05)
    assert w == pytest.approx(0.05 / (0.02 * math.sqrt(252)))
    assert abs(w) * sigma * math.sqrt(252) == pytest.approx(0.05)
    # short side, and nothing without a volatility
    assert position_weight(-0.0004, sigma, kelly_fraction=0.1, max_weight=0.2) == pytest.approx(-0.1)
    assert position_weight(0.0004, math.nan, kelly_fraction=0.5, max_weight=0.2) == 0.0
