"""Market making on daily bars: Corwin-Schultz spreads, Avellaneda-Stoikov quotes, an order-flow inventory proxy.

Daily bars carry no quotes, so the bid-ask spread is estimated from highs and lows with the Corwin and
Schultz (2012) estimator, and the quotes a market maker would post are the closed-form Avellaneda and
Stoikov (2008) reservation price and optimal spread. The agent advises what that market maker would do.

References:
  S. A. Corwin and P. Schultz, "A Simple Way to Estimate Bid-Ask Spreads from Daily High and Low Prices",
  Journal of Finance 67(2), 2012, 719-760.
  M. Avellaneda and S. Stoikov, "High-frequency trading in a limit order book", Quantitative Finance 8(3),
  2008, 217-224.

Every transcendental function is evaluated with ``math.*`` inside sequential numba loops (no fastmath, no
numpy ufuncs on arrays): numpy's SIMD ``log``/``exp``/``tanh`` differ between CPUs, and a loop whose value at
index t depends only on rows <= t keeps batch and bar-by-bar replay bit-identical (prefix stability).
The transcendental calls sit in outer loops that contain inner summation loops, which LLVM does not
vectorize, so a vector math library (SVML) cannot swap in a different ``log``/``exp`` either.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from pydantic import Field

from strategies import indicators as ind
from strategies.base import Advice, Panel, Strategy, StrategyParams, per_symbol
from strategies.registry import register

__all__ = ["cs_two_day", "corwin_schultz", "avellaneda_stoikov", "MarketMaking", "MarketMakingParams"]

_CS_DEN = 3.0 - 2.0 * math.sqrt(2.0)  # 3 - 2*sqrt(2), Corwin-Schultz eq. (14)


@njit(cache=True)
def _cs_pair(h0: float, l0: float, c0: float, h1: float, l1: float) -> float:
    """The two-day Corwin-Schultz estimate for days (t-1, t), before flooring at 0.

    Overnight adjustment (the paper, Section II.C, and Corwin's SAS code): if day t's low is above the
    close of t-1 the price is taken to have risen overnight, and day t's high and low are both lowered by
    L_t - C_{t-1}; if day t's high is below the close of t-1, both are raised by C_{t-1} - H_t. Day t-1's
    high and low are used as they are.
    """
    if l1 > c0:
        h1 = h1 - (l1 - c0)
        l1 = c0
    elif h1 < c0:
        l1 = l1 + (c0 - h1)
        h1 = c0
    a0 = math.log(h0 / l0)
    a1 = math.log(h1 / l1)
    beta = a0 * a0 + a1 * a1
    g = math.log(max(h0, h1) / min(l0, l1))
    gamma = g * g
    alpha = (math.sqrt(2.0 * beta) - math.sqrt(beta)) / _CS_DEN - math.sqrt(gamma / _CS_DEN)
    e = math.exp(alpha)
    return 2.0 * (e - 1.0) / (1.0 + e)


@njit(cache=True)
def _cs_kernel(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(two-day estimates, their rolling mean over n after flooring at 0, log returns ln(C_t/C_{t-1}))."""
    size = close.shape[0]
    raw = np.full(size, np.nan)
    avg = np.full(size, np.nan)
    logret = np.full(size, np.nan)
    for t in range(1, size):
        raw[t] = _cs_pair(high[t - 1], low[t - 1], close[t - 1], high[t], low[t])
        logret[t] = math.log(close[t] / close[t - 1])
        if t >= n:
            total = 0.0
            for s in range(t - n + 1, t + 1):
                total += max(raw[s], 0.0)
            avg[t] = total / n
    return raw, avg, logret


@njit(cache=True)
def _avellaneda_stoikov(s: float, q: float, sigma: float, gamma: float, k: float, tau: float) -> tuple[float, float]:
    risk = gamma * sigma * sigma * tau
    return s - q * risk, risk + (2.0 / gamma) * math.log1p(gamma / k)


def _series(x: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {a.shape}")
    return a


def cs_two_day(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Two-day Corwin-Schultz spread estimates (fraction of price), not floored; index t is the pair (t-1, t).

    beta = ln(H_{t-1}/L_{t-1})^2 + ln(H_t/L_t)^2, gamma = ln(max(H_{t-1}, H_t) / min(L_{t-1}, L_t))^2,
    alpha = (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt 2) - sqrt(gamma / (3 - 2 sqrt 2)),
    S = 2 (e^alpha - 1) / (1 + e^alpha), with day t's high and low first adjusted for the overnight gap
    from the close of t-1 (see ``_cs_pair``). NaN at index 0.
    """
    high, low, close = _series(high), _series(low), _series(close)
    return _cs_kernel(high, low, close, close.shape[0] + 1)[0]


def corwin_schultz(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 20) -> np.ndarray:
    """Rolling Corwin-Schultz spread: the mean of the last n two-day estimates, each floored at 0 first.

    The paper's primary convention is to set negative two-day estimates to zero before averaging them over
    a month; here the average runs over the n pairs (t-n, t-n+1) .. (t-1, t), so the first value is at
    index n. Days with high == low are used as they are (the paper's SAS code drops them; validated bars
    never have high < low).
    """
    high, low, close = _series(high), _series(low), _series(close)
    if int(n) != n or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return _cs_kernel(high, low, close, int(n))[1]


def avellaneda_stoikov(s: float, q: float, sigma: float, gamma: float, k: float, tau: float) -> tuple[float, float]:
    """Avellaneda-Stoikov (2008) closed form: (reservation price r, optimal total spread delta).

    r = s - q gamma sigma^2 tau and delta = gamma sigma^2 tau + (2/gamma) ln(1 + gamma/k), for mid price
    s, inventory q, volatility sigma (price units per sqrt of tau's unit), risk aversion gamma > 0,
    order-arrival decay k > 0 and time to the horizon tau = T - t. The quotes are r -/+ delta/2.
    """
    if gamma <= 0 or k <= 0:
        raise ValueError(f"gamma and k must be > 0, got gamma={gamma!r}, k={k!r}")
    return _avellaneda_stoikov(float(s), float(q), float(sigma), float(gamma), float(k), float(tau))


@njit(cache=True)
def _market_making(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    cs: np.ndarray,
    sigma: np.ndarray,
    inv_n: int,
    gamma: float,
    k: float,
    tau: float,
    max_spread_vol: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    size = close.shape[0]
    flow = np.full(size, np.nan)
    inventory = np.full(size, np.nan)
    reservation = np.full(size, np.nan)
    half = np.full(size, np.nan)
    strength = np.full(size, np.nan)
    confidence = np.zeros(size)
    for t in range(size):
        if not math.isnan(cs[t]):
            # Where the close sits against the day's log mid-range, in estimated half spreads, clipped:
            # +1 = the last trade was a buy at (or through) the ask, -1 = a sell at the bid.
            u = math.log(close[t]) - 0.5 * (math.log(high[t]) + math.log(low[t]))
            h = 0.5 * cs[t]
            if h > 0.0:
                flow[t] = min(1.0, max(-1.0, u / h))
            else:
                flow[t] = 1.0 if u > 0.0 else (-1.0 if u < 0.0 else 0.0)
        if t < inv_n - 1 or math.isnan(flow[t - inv_n + 1]):
            continue
        total = 0.0
        for s in range(t - inv_n + 1, t + 1):
            total += flow[s]
        q = -total  # the market maker is the other side of the flow
        inventory[t] = q
        sig = sigma[t]
        if math.isnan(sig):
            continue
        c = close[t]
        # Avellaneda-Stoikov in price units with sigma_price = sig*c, gamma_price = gamma/c, k_price = k/c.
        r, delta = _avellaneda_stoikov(c, q, sig * c, gamma / c, k / c, tau)
        reservation[t] = r
        half[t] = 0.5 * delta
        d = (r - c) / half[t] if half[t] > 0.0 else 0.0
        if d > 1.0:
            strength[t] = math.tanh(d - 1.0)
        elif d < -1.0:
            strength[t] = -math.tanh(-d - 1.0)
        else:
            strength[t] = 0.0
        if sig > 0.0:
            confidence[t] = min(1.0, max(0.0, 1.0 - cs[t] / sig / max_spread_vol))
    return inventory, reservation, half, strength, confidence


class MarketMakingParams(StrategyParams):
    cs_n: int = Field(20, ge=1, description="two-day Corwin-Schultz estimates averaged (sessions)")
    sigma_n: int = Field(20, ge=2, description="log returns in the rolling volatility")
    inventory_n: int = Field(10, ge=1, description="sessions of order flow summed into the inventory proxy")
    gamma: float = Field(10.0, gt=0.0, description="A-S risk aversion per unit of relative price")
    k: float = Field(150.0, gt=0.0, description="A-S order-arrival decay per unit of relative price")
    horizon: float = Field(1.0, gt=0.0, description="A-S time to horizon T - t, in sessions")
    max_spread_vol: float = Field(1.0, gt=0.0, description="CS spread / daily volatility at which confidence is 0")


@register
class MarketMaking(Strategy):
    """Advise what an Avellaneda-Stoikov market maker, fed by Corwin-Schultz spreads, would do.

    Per instrument, at the close of session t (all rolling windows end at t):
      cs_spread = corwin_schultz(high, low, close, cs_n): mean of the last cs_n two-day estimates, each
                  floored at 0, with the paper's overnight adjustment (a fraction of price);
      sigma     = population std of the last sigma_n log returns ln(C_s/C_{s-1});
      inventory = q_t = -sum_{s=t-inventory_n+1..t} x_s, the inventory a market maker would carry after
                  taking the other side of recent order flow, where
                  x_s = clip((ln C_s - (ln H_s + ln L_s)/2) / (cs_spread_s/2), -1, 1)
                  (sign of the numerator where cs_spread_s = 0): a close above the day's log mid-range by
                  half the estimated spread or more counts as one buy at the ask (the market maker sold),
                  one below it as one sell at the bid (it bought); in between, a fraction. Causal: x_s uses
                  bar s and the spread estimate at s only.
      reservation_price r and half_spread h = delta/2: the Avellaneda-Stoikov closed form with s = C_t,
                  q = inventory, sigma_price = sigma*C_t, gamma_price = gamma/C_t, k_price = k/C_t and
                  T - t = horizon, i.e. r = C_t (1 - q gamma sigma^2 horizon) and
                  delta = C_t (gamma sigma^2 horizon + (2/gamma) ln(1 + gamma/k)): risk aversion and
                  arrival decay are per unit of relative price, so one set of params fits a $25 and a $400
                  stock (the defaults are A-S's example gamma = 0.1, k = 1.5 at s = 100).
    Rule, with d = (r - C_t) / h, the distance of the close from the reservation price in half spreads:
      strength = sign(d) * tanh(|d| - 1) where |d| > 1, else 0. The close below the market maker's bid
                  (d > 1) means it would buy at the market, above its ask (d < -1) that it would sell;
                  between its quotes it is flat. Because s = C_t, r - C_t = -q gamma sigma^2 horizon C_t:
                  the advice unwinds the modelled inventory, buying after sustained buyer-initiated flow
                  (the market maker is short) and selling after seller-initiated flow, more readily when
                  volatility (inventory risk) is high.
      confidence = clip(1 - (cs_spread / sigma) / max_spread_vol, 0, 1): high when the estimated spread is
                  tight relative to the daily volatility (a liquid market); 0 where sigma = 0.
    Strength is NaN (abstain) and confidence 0 until every input is warm: warmup =
    max(cs_n + inventory_n - 1, sigma_n) + 1 bars.
    """

    name = "market_making"
    Params = MarketMakingParams

    @property
    def warmup(self) -> int:
        p = self.params
        return max(p.cs_n + p.inventory_n - 1, p.sigma_n) + 1

    def compute(self, panel: Panel) -> Advice:
        return per_symbol(panel, self._one)

    def _one(
        self, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        p = self.params
        high, low, close = _series(high), _series(low), _series(close)
        _, cs, logret = _cs_kernel(high, low, close, p.cs_n)
        sigma = ind.stddev(logret, p.sigma_n)
        inventory, reservation, half, strength, confidence = _market_making(
            high, low, close, cs, sigma, p.inventory_n, p.gamma, p.k, p.horizon, p.max_spread_vol
        )
        rationale = {
            "cs_spread": cs,
            "sigma": sigma,
            "reservation_price": reservation,
            "half_spread": half,
            "inventory": inventory,
        }
        return strength, confidence, rationale
