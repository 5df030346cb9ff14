"""Index spread: relative value between the NASDAQ Composite and the S&P 500 (log-price pair trade).

The two legs are instruments of the panel (by default the sample source's ``COMP`` and ``SPX``, traded as
index trackers) and the agent advises only on those two columns: every other column abstains (NaN),
and if either leg is not in ``panel.symbols`` the agent abstains everywhere. The legs are read from the
panel's bars, not from ``panel.reference`` (which carries the same closes for agents that only look at
the indices): a signal needs a column to be advised on.

Every logarithm is ``math.log`` inside a sequential numba loop (no fastmath, no numpy ufuncs on arrays):
numpy's SIMD ``log`` may differ between CPUs in the last bit. All window sums are summed afresh in index
order, so the value at row t depends only on rows <= t and is the same for any prefix (bit for bit).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from numba import njit
from pydantic import Field, model_validator

from strategies.base import Advice, Panel, Strategy, StrategyParams
from strategies.registry import register

__all__ = ["IndexSpread", "IndexSpreadParams", "pair_model"]

RATIONALE = ("beta", "alpha", "spread", "z", "beta_cv", "position")


@njit(cache=True)
def _pair(
    a: np.ndarray,
    b: np.ndarray,
    hedge_n: int,
    z_n: int,
    entry_z: float,
    exit_z: float,
    full_z: float,
    max_beta_cv: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rule of :class:`IndexSpread` on gap-free closes ``a`` (leg A) and ``b`` (leg B).

    Returns (beta, alpha, spread, z, beta_cv, position, strength of A, confidence), NaN (position and
    strength) or 0 (confidence) during warm-up.
    """
    size = a.shape[0]
    la = np.empty(size)
    lb = np.empty(size)
    beta = np.full(size, np.nan)
    alpha = np.full(size, np.nan)
    spread = np.full(size, np.nan)
    z = np.full(size, np.nan)
    beta_cv = np.full(size, np.nan)
    position = np.full(size, np.nan)
    strength = np.full(size, np.nan)
    confidence = np.zeros(size)
    first = hedge_n + z_n - 2  # first row with a z-score
    pos = 0.0
    for t in range(size):
        # Scalar libm calls in a loop that also holds the window sums below: never vectorised.
        la[t] = math.log(a[t])
        lb[t] = math.log(b[t])
        if t < hedge_n - 1:
            continue

        # OLS with intercept of la on lb over rows t-hedge_n+1 .. t, centred sums.
        sx = 0.0
        sy = 0.0
        for s in range(t - hedge_n + 1, t + 1):
            sx += lb[s]
            sy += la[s]
        mx = sx / hedge_n
        my = sy / hedge_n
        sxx = 0.0
        sxy = 0.0
        for s in range(t - hedge_n + 1, t + 1):
            dx = lb[s] - mx
            sxx += dx * dx
            sxy += dx * (la[s] - my)
        bt = sxy / sxx if sxx > 0.0 else 0.0
        at = my - bt * mx
        beta[t] = bt
        alpha[t] = at
        spread[t] = la[t] - bt * lb[t] - at
        if t < first:
            continue

        # z-score of the spread and dispersion of beta over rows t-z_n+1 .. t (population std).
        ss = 0.0
        sb = 0.0
        for s in range(t - z_n + 1, t + 1):
            ss += spread[s]
            sb += beta[s]
        ms = ss / z_n
        mb = sb / z_n
        vs = 0.0
        vb = 0.0
        for s in range(t - z_n + 1, t + 1):
            d = spread[s] - ms
            vs += d * d
            e = beta[s] - mb
            vb += e * e
        sd = math.sqrt(vs / z_n)
        zt = (spread[t] - ms) / sd if sd > 0.0 else 0.0
        z[t] = zt
        cv = math.sqrt(vb / z_n) / abs(bt) if bt != 0.0 else math.inf
        beta_cv[t] = cv
        confidence[t] = min(1.0, max(0.0, 1.0 - cv / max_beta_cv))

        # Entry/exit hysteresis, flat at the first warm row.
        if zt < -entry_z:
            pos = 1.0
        elif zt > entry_z:
            pos = -1.0
        elif pos > 0.0 and zt >= -exit_z:
            pos = 0.0
        elif pos < 0.0 and zt <= exit_z:
            pos = 0.0
        position[t] = pos
        strength[t] = pos * min(1.0, abs(zt) / full_z)
    return beta, alpha, spread, z, beta_cv, position, strength, confidence


def _series(x: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {a.shape}")
    return a


class IndexSpreadParams(StrategyParams):
    leg_a: str = Field("COMP", min_length=1, description="leg bought when the spread is cheap (z < -entry_z)")
    leg_b: str = Field("SPX", min_length=1, description="hedge leg, the regressor; always advised opposite to leg_a")
    hedge_window: int = Field(120, ge=3, description="pair rows in the rolling OLS of log A on log B")
    z_window: int = Field(60, ge=2, description="spreads in the z-score, and betas in the stability measure")
    entry_z: float = Field(2.0, gt=0.0, description="|z| beyond which a position is advised")
    exit_z: float = Field(0.5, ge=0.0, description="a position is held until z is back within +/- exit_z")
    full_z: float = Field(3.0, gt=0.0, description="|z| at which strength reaches 1")
    max_beta_cv: float = Field(0.25, gt=0.0, description="std(beta)/|beta| at which confidence reaches 0")

    @model_validator(mode="after")
    def _check(self) -> IndexSpreadParams:
        if self.leg_a == self.leg_b:
            raise ValueError(f"leg_a and leg_b must differ, both are {self.leg_a!r}")
        if self.exit_z >= self.entry_z:
            raise ValueError(f"exit_z ({self.exit_z}) must be < entry_z ({self.entry_z})")
        if self.entry_z > self.full_z:
            raise ValueError(f"entry_z ({self.entry_z}) must be <= full_z ({self.full_z})")
        return self


def pair_model(a: np.ndarray, b: np.ndarray, params: IndexSpreadParams | None = None) -> dict[str, np.ndarray]:
    """The pair model on two gap-free close series: beta, alpha, spread, z, beta_cv, position, strength
    (of leg A) and confidence, 1-D each (see :class:`IndexSpread` for the rule)."""
    p = params or IndexSpreadParams()
    a, b = _series(a), _series(b)
    if a.shape != b.shape:
        raise ValueError(f"legs differ in length: {a.shape} vs {b.shape}")
    out = _pair(a, b, p.hedge_window, p.z_window, p.entry_z, p.exit_z, p.full_z, p.max_beta_cv)
    return dict(zip((*RATIONALE, "strength", "confidence"), out))


@register
class IndexSpread(Strategy):
    """Relative value of leg A (default COMP) against leg B (default SPX) on their log closes.

    On the pair's rows (rows where both legs have a bar; gaps are skipped, windows count pair rows),
    with a = ln close_A and b = ln close_B:
      beta_t, alpha_t = OLS with intercept of a on b over the last hedge_window pair rows (rows <= t):
        beta = sum((b-mean b)(a-mean a)) / sum((b-mean b)^2), alpha = mean a - beta * mean b
        (beta = 0 on a window where b is constant);
      spread_t = a_t - beta_t * b_t - alpha_t   (the window's last residual);
      z_t = (spread_t - mean) / std of spread over the last z_window pair rows (population std; 0 if std = 0);
      beta_cv_t = std of beta over the last z_window pair rows / |beta_t|  (inf if beta_t = 0);
      position_t = +1 (long A / short B) once z < -entry_z, -1 once z > entry_z; a long is held while
        z < -exit_z and a short while z > exit_z, then flat (0); flat at the first warm row;
      strength_A = position * min(1, |z| / full_z),  strength_B = -strength_A  (equal size, opposite sides);
      confidence (both legs) = clip(1 - beta_cv / max_beta_cv, 0, 1): an unstable hedge ratio, no confidence.
    Rationale (the pair's, on both leg columns): beta, alpha, spread, z, beta_cv, and position (+1 = long
    that column, -1 = short, 0 = flat). Strength is NaN (abstain) and confidence 0 on every other column,
    on rows where a leg has no bar, during the first warmup - 1 pair rows, and everywhere if a leg is not
    in the panel.
    """

    name = "index_spread"
    Params = IndexSpreadParams
    # The panel columns this strategy needs with its default params (leg_a, leg_b); it speaks only for them.
    required_symbols: ClassVar[tuple[str, ...]] = ("COMP", "SPX")

    @property
    def warmup(self) -> int:
        p = self.params
        return p.hedge_window + p.z_window - 1

    def compute(self, panel: Panel) -> Advice:
        p = self.params
        shape = panel.close.shape
        strength = np.full(shape, np.nan)
        confidence = np.zeros(shape)
        rationale = {key: np.full(shape, np.nan) for key in RATIONALE}
        if p.leg_a not in panel.symbols or p.leg_b not in panel.symbols:
            return Advice(strength, confidence, rationale)
        ja, jb = panel.symbols.index(p.leg_a), panel.symbols.index(p.leg_b)
        rows = np.flatnonzero(~np.isnan(panel.close[:, ja]) & ~np.isnan(panel.close[:, jb]))
        if rows.size == 0:
            return Advice(strength, confidence, rationale)
        m = pair_model(panel.close[rows, ja], panel.close[rows, jb], p)
        strength[rows, ja] = m["strength"]
        strength[rows, jb] = -m["strength"] + 0.0  # + 0.0: flat is +0.0 on both legs, not -0.0
        confidence[rows, ja] = confidence[rows, jb] = m["confidence"]
        for key in RATIONALE:
            rationale[key][rows, ja] = m[key]
            rationale[key][rows, jb] = m[key]
        rationale["position"][rows, jb] = -m["position"] + 0.0
        return Advice(strength, confidence, rationale)
