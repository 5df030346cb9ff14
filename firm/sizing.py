"""Position sizing by the Kelly criterion: pure functions, no state.

Discrete bet (Kelly 1956; Thorp 2006, "The Kelly criterion in blackjack, sports betting and the stock
market", section 2): a bet won with probability p pays b per unit staked, lost with q = 1 - p. The
fraction of wealth that maximises the expected log growth is f* = p - q / b, and the growth rate at f
is g(f) = p ln(1 + b f) + q ln(1 - f).

Continuous (Gaussian) return (Merton 1969; Thorp 2006, section 7, "the stock market"): an investment
with expected excess return m - r and variance s^2 per period; the growth-optimal fraction is
f* = (m - r) / s^2 and the growth rate at f is g(f) = r + f (m - r) - f^2 s^2 / 2, so g(f*) = r + (m - r)^2 / (2 s^2).

The CIO bets a fraction ``kelly_fraction`` of f* (fractional Kelly: at half Kelly the growth rate is 3/4
of the maximum, the volatility half), then caps it by the position limit and by a volatility target.
"""

from __future__ import annotations

import math

TRADING_DAYS = 252


def kelly_discrete(p: float, b: float = 1.0) -> float:
    """f* = p - (1 - p) / b for a bet won with probability ``p`` at net odds ``b`` to 1 (may be < 0: do not bet)."""
    if not 0.0 <= p <= 1.0 or b <= 0:
        raise ValueError(f"need 0 <= p <= 1 and b > 0, got p={p}, b={b}")
    return p - (1.0 - p) / b


def growth_discrete(f: float, p: float, b: float = 1.0) -> float:
    """Expected log growth per bet, g(f) = p ln(1 + b f) + (1 - p) ln(1 - f), for 0 <= f < 1."""
    return p * math.log1p(b * f) + (1.0 - p) * math.log1p(-f)


def kelly_continuous(mu: float, sigma: float, r: float = 0.0) -> float:
    """f* = (mu - r) / sigma^2 for a Gaussian return with mean ``mu`` and volatility ``sigma`` per period."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    return (mu - r) / (sigma * sigma)


def growth_continuous(f: float, mu: float, sigma: float, r: float = 0.0) -> float:
    """Growth rate per period of a constant fraction ``f``: g(f) = r + f (mu - r) - f^2 sigma^2 / 2."""
    return r + f * (mu - r) - 0.5 * f * f * sigma * sigma


def position_weight(
    edge: float,
    sigma: float,
    *,
    kelly_fraction: float,
    max_weight: float,
    vol_target: float | None = None,
    periods_per_year: int = TRADING_DAYS,
) -> float:
    """Signed weight of equity to hold: ``kelly_fraction * edge / sigma^2``, capped.

    ``edge`` is the expected return and ``sigma`` the volatility of the instrument over one period.
    Caps, applied to |weight| in order: ``max_weight``; then, if ``vol_target`` is set, the position's
    annualised volatility |w| * sigma * sqrt(periods_per_year) may not exceed it.
    """
    if not sigma > 0 or edge != edge:
        return 0.0
    w = kelly_fraction * kelly_continuous(edge, sigma)
    cap = max_weight
    if vol_target:
        cap = min(cap, vol_target / (sigma * math.sqrt(periods_per_year)))
    return max(-cap, min(cap, w))
