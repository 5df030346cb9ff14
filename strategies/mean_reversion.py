"""Mean reversion: fade Bollinger z-score extremes, strengthened at RSI extremes, gated by the OU half-life."""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from strategies import indicators as ind
from strategies.base import Advice, Panel, Strategy, StrategyParams, check_rsi_band, per_symbol
from strategies.registry import register


class MeanReversionParams(StrategyParams):
    bb_n: int = Field(20, ge=2, description="Bollinger window (SMA and population std)")
    entry_z: float = Field(1.5, ge=0.0, description="|z| above which a position is advised")
    full_z: float = Field(3.0, gt=0.0, description="|z| at which strength reaches 1 (before the RSI boost)")
    rsi_n: int = Field(14, ge=1)
    rsi_oversold: float = Field(30.0, gt=0.0, lt=100.0)
    rsi_overbought: float = Field(70.0, gt=0.0, lt=100.0)
    rsi_boost: float = Field(1.5, ge=1.0, description="strength multiplier when RSI confirms the extreme")
    ou_n: int = Field(60, ge=3, description="window of the rolling OU half-life regression")
    max_half_life: float = Field(30.0, gt=0.0, description="half-life (bars) above which the strategy stays flat")

    @model_validator(mode="after")
    def _check_order(self) -> MeanReversionParams:
        if self.entry_z >= self.full_z:
            raise ValueError(f"entry_z ({self.entry_z}) must be < full_z ({self.full_z})")
        check_rsi_band(self.rsi_oversold, self.rsi_overbought)
        return self


@register
class MeanReversion(Strategy):
    """Fade stretched prices on each instrument's own bars.

    z = (close - SMA(bb_n)) / std(bb_n) (population std; z = 0 on a flat window). Where |z| > entry_z,
    strength = -sign(z) * min(1, |z|/full_z * b), b = rsi_boost if RSI confirms (RSI < rsi_oversold for a
    long, > rsi_overbought for a short) else 1; otherwise strength = 0.
    OU filter: where the rolling half-life of close is not finite or exceeds max_half_life, strength = 0
    and confidence = 0 (neutral, not an abstention); elsewhere confidence = 1 - half_life/max_half_life.
    Strength is NaN (abstain) and confidence 0 until every indicator is warm.
    """

    name = "mean_reversion"
    Params = MeanReversionParams

    @property
    def warmup(self) -> int:
        p = self.params
        return max(p.bb_n - 1, p.rsi_n, p.ou_n) + 1

    def compute(self, panel: Panel) -> Advice:
        return per_symbol(panel, self._one)

    def _one(
        self, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        p = self.params
        mid = ind.sma(close, p.bb_n)
        std = ind.stddev(close, p.bb_n)
        rsi = ind.rsi(close, p.rsi_n)
        half_life = ind.ou_half_life(close, p.ou_n)

        z = np.full(close.shape, np.nan)
        ok = ~np.isnan(std)
        z[ok] = 0.0
        spread = ok & (std > 0.0)
        z[spread] = (close[spread] - mid[spread]) / std[spread]

        boost = np.where(((z < 0) & (rsi < p.rsi_oversold)) | ((z > 0) & (rsi > p.rsi_overbought)), p.rsi_boost, 1.0)
        magnitude = np.minimum(1.0, np.abs(z) / p.full_z * boost)
        strength = np.where(np.abs(z) > p.entry_z, -np.sign(z) * magnitude, 0.0)
        confidence = np.clip(1.0 - half_life / p.max_half_life, 0.0, 1.0)
        reverting = np.isfinite(half_life) & (half_life <= p.max_half_life)
        strength[~reverting] = 0.0
        confidence[~reverting] = 0.0

        warm = ~(np.isnan(z) | np.isnan(rsi) | np.isnan(half_life))
        strength[~warm] = np.nan
        confidence[~warm] = 0.0
        rationale = {"z": z, "bb_mid": mid, "bb_std": std, "rsi": rsi, "half_life": half_life}
        return strength, confidence, rationale
