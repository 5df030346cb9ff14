"""John Carter's TTM squeeze: volatility contraction (Bollinger bands inside Keltner channels), then the breakout.

Per instrument, on its own bars:

* squeeze on at t when BB_upper < KC_upper and BB_lower > KC_lower, with Bollinger(bb_n, bb_k) (SMA and
  population std) and Keltner(kc_n, kc_k) (EMA mid, bands at kc_k * ATR(kc_n)); see ``indicators``.
* histogram = LINEARREG(close - (Donchian_mid(mom_n) + SMA(close, mom_n)) / 2, mom_n): the linear regression
  value over mom_n bars of the close's distance from the mean of the Donchian midpoint and its SMA (Carter's
  momentum histogram).
* the squeeze fires at t when it was on at t-1 and is off at t.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from pydantic import Field

from strategies import indicators as ind
from strategies.base import Advice, Panel, Strategy, StrategyParams, per_symbol
from strategies.registry import register


class TTMSqueezeParams(StrategyParams):
    bb_n: int = Field(20, ge=2, description="Bollinger period (SMA and population std)")
    bb_k: float = Field(2.0, gt=0.0, description="Bollinger width in standard deviations")
    kc_n: int = Field(20, ge=1, description="Keltner period (EMA mid and Wilder ATR)")
    kc_k: float = Field(1.5, gt=0.0, description="Keltner width in ATRs")
    mom_n: int = Field(20, ge=2, description="momentum histogram period (Donchian, SMA and linear regression)")
    hist_atr_scale: float = Field(
        2.0, gt=0.0, description="strength = tanh(histogram / (hist_atr_scale * ATR)) once the squeeze is off"
    )
    full_confidence_bars: int = Field(
        10, ge=1, description="a squeeze that lasted this many bars or more fires with confidence 1"
    )
    hold_bars: int = Field(10, ge=1, description="bars over which the confidence of a fired squeeze decays to 0")
    coil_confidence: float = Field(
        0.25, ge=0.0, le=1.0, description="confidence of the flat (strength 0) advice while the squeeze is on"
    )


@njit(cache=True)
def _rule(
    on: np.ndarray,
    hist: np.ndarray,
    atr: np.ndarray,
    first: int,
    scale: float,
    full_bars: int,
    hold_bars: int,
    coil: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The documented rule, one bar after the other; ``on`` is 1.0 / 0.0, NaN while the bands warm up."""
    size = on.shape[0]
    strength = np.full(size, np.nan)
    confidence = np.zeros(size)
    in_squeeze = np.full(size, np.nan)
    since_fire = np.full(size, np.nan)
    run = 0  # bars of the current squeeze, 0 when off
    fired = -1  # bars since the last fire while off since then, -1 if none
    fire_conf = 0.0
    for t in range(size):
        if math.isnan(on[t]):
            continue
        if on[t] > 0.0:
            run += 1
            fired = -1
        else:
            if run > 0:
                fire_conf = min(1.0, run / full_bars)
                fired = 0
            elif fired >= 0:
                fired += 1
            run = 0
        in_squeeze[t] = run
        if fired >= 0:
            since_fire[t] = fired
        if t < first:
            continue
        if run > 0:
            strength[t] = 0.0
            confidence[t] = coil
            continue
        a = atr[t]
        strength[t] = math.tanh(hist[t] / (scale * a)) if a > 0.0 else 0.0
        if 0 <= fired < hold_bars:
            confidence[t] = fire_conf * (1.0 - fired / hold_bars)
    return strength, confidence, in_squeeze, since_fire


@register
class TTMSqueeze(Strategy):
    """Trade the release of a TTM squeeze in the direction of the momentum histogram.

    From the first bar where every indicator is warm (``warmup``), on each bar t:

    * squeeze on: strength 0 and confidence ``coil_confidence`` (coiling: volatility is compressed, no direction).
    * squeeze off: strength = tanh(histogram / (hist_atr_scale * ATR(kc_n))), 0 if ATR is 0; its sign is the
      direction of the histogram. confidence = c_fire * (1 - k / hold_bars) for k = 0 .. hold_bars-1 bars after
      the squeeze fired (k = 0 on the bar it fires), then 0, and 0 if no squeeze has fired since the last one
      ended; c_fire = min(1, d / full_confidence_bars), d the number of bars the fired squeeze lasted.

    Squeeze durations and fires are counted from the first bar where both bands are warm, even before warm-up.
    Rationale: squeeze_on (1/0), bars_in_squeeze (length of the current squeeze, 0 when off), bars_since_fire
    (k above; NaN while on or before any fire), histogram, atr, bb_width and kc_width (upper - lower).
    """

    name = "ttm_squeeze"
    Params = TTMSqueezeParams

    @property
    def warmup(self) -> int:
        p = self.params
        return max(p.bb_n - 1, p.kc_n, 2 * p.mom_n - 2) + 1

    def compute(self, panel: Panel) -> Advice:
        return per_symbol(panel, self._one)

    def _one(
        self, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        p = self.params
        _, bb_upper, bb_lower = ind.bollinger(close, p.bb_n, p.bb_k)
        _, kc_upper, kc_lower = ind.keltner(high, low, close, p.kc_n, p.kc_k)
        atr = ind.atr(high, low, close, p.kc_n)
        donchian_mid = ind.donchian(high, low, p.mom_n)[0]
        histogram = ind.linreg(close - (donchian_mid + ind.sma(close, p.mom_n)) / 2.0, p.mom_n)

        warm = ~(np.isnan(bb_upper) | np.isnan(kc_upper))
        on = np.full(close.shape, np.nan)
        on[warm] = ((bb_upper[warm] < kc_upper[warm]) & (bb_lower[warm] > kc_lower[warm])).astype(np.float64)
        strength, confidence, in_squeeze, since_fire = _rule(
            on,
            histogram,
            atr,
            self.warmup - 1,
            p.hist_atr_scale,
            p.full_confidence_bars,
            p.hold_bars,
            p.coil_confidence,
        )
        rationale = {
            "squeeze_on": on,
            "bars_in_squeeze": in_squeeze,
            "bars_since_fire": since_fire,
            "histogram": histogram,
            "atr": atr,
            "bb_width": bb_upper - bb_lower,
            "kc_width": kc_upper - kc_lower,
        }
        return strength, confidence, rationale
