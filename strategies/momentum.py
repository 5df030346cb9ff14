"""Trend following: SMA crossover, MACD histogram and rate of change, damped at RSI extremes, gated by ADX."""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from strategies import indicators as ind
from strategies.base import Advice, Panel, Strategy, StrategyParams, check_rsi_band, per_symbol
from strategies.registry import register


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num/den; 0 where den == 0 and NaN where either input is NaN."""
    out = np.full(num.shape, np.nan)
    ok = ~(np.isnan(num) | np.isnan(den))
    out[ok] = 0.0
    nz = ok & (den != 0.0)
    out[nz] = num[nz] / den[nz]
    return out


class MomentumParams(StrategyParams):
    fast: int = Field(20, ge=1, description="fast SMA period")
    slow: int = Field(50, ge=2, description="slow SMA period")
    roc_n: int = Field(20, ge=1, description="rate-of-change lookback")
    macd_fast: int = Field(12, ge=1)
    macd_slow: int = Field(26, ge=2)
    macd_signal: int = Field(9, ge=1)
    atr_n: int = Field(14, ge=1, description="ATR period used to scale MACD and ROC")
    rsi_n: int = Field(14, ge=1)
    rsi_overbought: float = Field(70.0, gt=0.0, lt=100.0, description="longs are damped above this RSI")
    rsi_oversold: float = Field(30.0, gt=0.0, lt=100.0, description="shorts are damped below this RSI")
    adx_n: int = Field(14, ge=2)
    adx_threshold: float = Field(20.0, gt=0.0, description="ADX at or below which confidence is 0")

    @model_validator(mode="after")
    def _check_order(self) -> MomentumParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be < slow ({self.slow})")
        if self.macd_fast >= self.macd_slow:
            raise ValueError(f"macd_fast ({self.macd_fast}) must be < macd_slow ({self.macd_slow})")
        check_rsi_band(self.rsi_oversold, self.rsi_overbought)
        return self


@register
class Momentum(Strategy):
    """Trend following on each instrument's own bars.

    strength = damp * (trend + macd_term + roc_term) / 3, where
      trend     = sign(SMA_fast - SMA_slow),
      macd_term = tanh(MACD_hist / ATR),
      roc_term  = tanh((ROC/100) / ((ATR/close) * sqrt(roc_n))), the n-bar return in ATR units;
    damp shrinks a long linearly from 1 at RSI = rsi_overbought to 0 at RSI = 100, and a short from 1
    at RSI = rsi_oversold to 0 at RSI = 0 (otherwise 1).
    confidence = clip((ADX - adx_threshold) / adx_threshold, 0, 1): no trend, no confidence.
    Strength is NaN (abstain) and confidence 0 until every indicator is warm.
    """

    name = "momentum"
    Params = MomentumParams

    @property
    def warmup(self) -> int:
        p = self.params
        first = max(
            p.slow - 1, p.roc_n, p.macd_slow + p.macd_signal - 2, p.atr_n, p.rsi_n, 2 * p.adx_n - 1
        )
        return first + 1

    def compute(self, panel: Panel) -> Advice:
        return per_symbol(panel, self._one)

    def _one(
        self, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        p = self.params
        sma_fast = ind.sma(close, p.fast)
        sma_slow = ind.sma(close, p.slow)
        roc = ind.roc(close, p.roc_n)
        rsi = ind.rsi(close, p.rsi_n)
        hist = ind.macd(close, p.macd_fast, p.macd_slow, p.macd_signal)[2]
        atr = ind.atr(high, low, close, p.atr_n)
        adx = ind.adx(high, low, close, p.adx_n)

        trend = np.sign(sma_fast - sma_slow)
        macd_term = ind.tanh(_ratio(hist, atr))
        roc_term = ind.tanh(_ratio(roc / 100.0, atr / close * np.sqrt(p.roc_n)))
        raw = (trend + macd_term + roc_term) / 3.0
        damp = np.ones(close.shape)
        hot = (raw > 0) & (rsi > p.rsi_overbought)
        cold = (raw < 0) & (rsi < p.rsi_oversold)
        damp[hot] = (100.0 - rsi[hot]) / (100.0 - p.rsi_overbought)
        damp[cold] = rsi[cold] / p.rsi_oversold
        strength = np.clip(raw * damp, -1.0, 1.0)
        strength[np.isnan(rsi) | np.isnan(adx)] = np.nan
        confidence = np.clip((adx - p.adx_threshold) / p.adx_threshold, 0.0, 1.0)
        confidence[np.isnan(strength)] = 0.0
        rationale = {
            "sma_fast": sma_fast,
            "sma_slow": sma_slow,
            "roc": roc,
            "rsi": rsi,
            "macd_hist": hist,
            "atr": atr,
            "adx": adx,
        }
        return strength, confidence, rationale
