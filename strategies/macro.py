"""Macro regime: one risk-on / risk-off view from the reference series, the same for every instrument.

The reference series reach the agent already aligned by publication time (firm/data/reference.py):
row ``t`` holds the last value public at that row's close, NaN where there is none or it is stale.
Every component below is computed from those aligned rows ``<= t`` only, and changes are taken over a
fixed number of ROWS (sessions) of the aligned series, not over distinct published values: a monthly
value repeats on every session until the next one is public, so ``x[t] - x[t - 63]`` compares what was
public now with what was public about three months ago. Near a publication day the two ends can be
one release more or less apart than the nominal span (252 sessions is a year give or take a session
or two); for a slow regime signal that is immaterial, and it keeps the computation a plain causal lag
that cannot mistake an unchanged release for a missing one.

Components, each a number in [-1, 1] (positive = risk-on), NaN when any of its inputs is missing:

    credit_level   -tanh((s - spread_neutral) / spread_scale)          s = BAA - AAA, percentage points
    credit_change  -tanh(ds / spread_change_scale)                     ds = s[t] - s[t - credit_change_n]
    inflation      -tanh(acc / cpi_accel_scale)                        acc = yoy[t] - yoy[t - cpi_accel_n],
                                                                       yoy = CORE_CPI[t] / CORE_CPI[t - cpi_yoy_n] - 1
    oil            tanh(r / oil_scale)                                 r = log(WTI[t] / WTI[t - oil_n])
    vix_level      -tanh((VIX[t] - vix_neutral) / vix_scale)
    vix_z          -tanh(z / vix_z_scale)                              z = (VIX[t] - mean) / std of the vix_z_n
                                                                       values VIX[t-vix_z_n+1 .. t], all present
                                                                       (sample std; z = 0 if std = 0)

So widening spreads, accelerating core inflation, an oil crash and a high or jumping VIX are risk-off.
Default weights: credit_level 0.15, credit_change 0.20, inflation 0.10 (mild), oil 0.15, vix_level 0.20,
vix_z 0.20 (sum 1). A component with weight 0 counts as not used.

Combination over the set A of components available at row t:

    score       = sum_A(w * c) / sum_A(w)                  in [-1, 1]
    coverage    = sum_A(w) / sum_all(w)                    the weighted share of the components available
    consistency = |sum_A(w * c)| / sum_A(w * |c|)          1 when all agree in sign, 0 when they cancel out
                                                           (0 when every available c is 0)
    confidence  = coverage * consistency

strength = score on every instrument with a valid bar (the same view for all); NaN (abstain) with
confidence 0 where the instrument has no bar or no component is available (``components_used`` = 0
in the rationale). The rationale carries each raw input, each component (NaN = not used), the
weights' coverage and consistency, the count of components used and their bitmask (bit i set when
``COMPONENTS[i]`` was used).

The agent needs no bars of its own beyond row t (warm-up 1): each component has its own warm-up in
the aligned series, with the defaults 0 rows for credit_level and vix_level, 63 for credit_change,
60 for oil, 125 for vix_z and 315 for inflation. On a panel without reference series it abstains everywhere. All
transcendental math is scalar libm (``math.*``) inside one numba loop, so results are bit-identical
across machines and prefix stable.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from numba import njit
from pydantic import Field, model_validator

from strategies.base import Advice, Panel, Strategy, StrategyParams
from strategies.registry import register

COMPONENTS: tuple[str, ...] = ("credit_level", "credit_change", "inflation", "oil", "vix_level", "vix_z")
# Raw inputs of the components, in the order the kernel returns them.
INPUTS: tuple[str, ...] = (
    "credit_spread",
    "credit_spread_change",
    "cpi_yoy",
    "cpi_yoy_change",
    "wti_log_change",
    "vix",
    "vix_z",
)


class MacroParams(StrategyParams):
    spread_neutral: float = Field(1.0, description="BAA-AAA spread (pp) that is neither risk-on nor risk-off")
    spread_scale: float = Field(0.5, gt=0.0, description="spread distance from neutral (pp) that gives tanh(1)")
    credit_change_n: int = Field(63, ge=1, description="sessions over which the spread change is taken (~3 months)")
    spread_change_scale: float = Field(0.25, gt=0.0, description="spread widening (pp) that gives -tanh(1)")
    cpi_yoy_n: int = Field(252, ge=1, description="sessions for core CPI year-over-year change (~12 months)")
    cpi_accel_n: int = Field(63, ge=1, description="sessions over which the change in the yoy rate is taken")
    cpi_accel_scale: float = Field(0.005, gt=0.0, description="yoy acceleration (fraction) that gives -tanh(1)")
    oil_n: int = Field(60, ge=1, description="sessions of the WTI log change")
    oil_scale: float = Field(0.2, gt=0.0, description="WTI log change that gives tanh(1)")
    vix_neutral: float = Field(20.0, description="VIX level that is neither risk-on nor risk-off")
    vix_scale: float = Field(10.0, gt=0.0, description="VIX distance from neutral that gives tanh(1)")
    vix_z_n: int = Field(126, ge=2, description="rolling window (sessions) of the VIX z-score")
    vix_z_scale: float = Field(2.0, gt=0.0, description="VIX z that gives -tanh(1)")
    w_credit_level: float = Field(0.15, ge=0.0)
    w_credit_change: float = Field(0.20, ge=0.0)
    w_inflation: float = Field(0.10, ge=0.0, description="small: accelerating inflation is only mildly risk-off")
    w_oil: float = Field(0.15, ge=0.0)
    w_vix_level: float = Field(0.20, ge=0.0)
    w_vix_z: float = Field(0.20, ge=0.0)

    @model_validator(mode="after")
    def _check_weights(self) -> MacroParams:
        if sum(self.weights) <= 0.0:
            raise ValueError("at least one component weight must be > 0")
        return self

    @property
    def weights(self) -> tuple[float, ...]:
        """The weights in the order of ``COMPONENTS``."""
        return tuple(getattr(self, f"w_{c}") for c in COMPONENTS)


@njit(cache=True)
def _lag(x: np.ndarray, t: int, n: int) -> float:
    return x[t - n] if t >= n else np.nan


@njit(cache=True)
def _components(
    aaa: np.ndarray,
    baa: np.ndarray,
    cpi: np.ndarray,
    wti: np.ndarray,
    vix: np.ndarray,
    p: np.ndarray,  # the float params, in the order of Macro._kernel_params
    n: np.ndarray,  # the int params: credit_change_n, cpi_yoy_n, cpi_accel_n, oil_n, vix_z_n
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the raw inputs (T, 7) and the components (T, 6), NaN where not available; rows <= t only."""
    size = aaa.shape[0]
    raw = np.full((size, 7), np.nan)
    comp = np.full((size, 6), np.nan)
    spread_neutral, spread_scale, spread_change_scale, cpi_accel_scale = p[0], p[1], p[2], p[3]
    oil_scale, vix_neutral, vix_scale, vix_z_scale = p[4], p[5], p[6], p[7]
    credit_n, yoy_n, accel_n, oil_n, z_n = n[0], n[1], n[2], n[3], n[4]
    spread = baa - aaa  # elementwise subtraction: exact, NaN where either is missing
    yoy = np.full(size, np.nan)
    for t in range(size):
        s = spread[t]
        if not math.isnan(s):
            raw[t, 0] = s
            comp[t, 0] = -math.tanh((s - spread_neutral) / spread_scale)
            ds = s - _lag(spread, t, credit_n)
            if not math.isnan(ds):
                raw[t, 1] = ds
                comp[t, 1] = -math.tanh(ds / spread_change_scale)
        base = _lag(cpi, t, yoy_n)
        if not (math.isnan(cpi[t]) or math.isnan(base)) and base != 0.0:
            yoy[t] = cpi[t] / base - 1.0
            raw[t, 2] = yoy[t]
            acc = yoy[t] - _lag(yoy, t, accel_n)
            if not math.isnan(acc):
                raw[t, 3] = acc
                comp[t, 2] = -math.tanh(acc / cpi_accel_scale)
        w0 = _lag(wti, t, oil_n)
        if wti[t] > 0.0 and w0 > 0.0:  # False for NaN
            r = math.log(wti[t] / w0)
            raw[t, 4] = r
            comp[t, 3] = math.tanh(r / oil_scale)
        v = vix[t]
        if not math.isnan(v):
            raw[t, 5] = v
            comp[t, 4] = -math.tanh((v - vix_neutral) / vix_scale)
            if t >= z_n - 1:
                total = 0.0
                for k in range(t - z_n + 1, t + 1):
                    total += vix[k]
                if not math.isnan(total):
                    mean = total / z_n
                    sq = 0.0
                    for k in range(t - z_n + 1, t + 1):
                        d = vix[k] - mean
                        sq += d * d
                    std = math.sqrt(sq / (z_n - 1))
                    z = (v - mean) / std if std > 0.0 else 0.0
                    raw[t, 6] = z
                    comp[t, 5] = -math.tanh(z / vix_z_scale)
    return raw, comp


@njit(cache=True)
def _combine(comp: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """score, coverage, consistency, count and bitmask of the components used; score NaN if none is."""
    size, k = comp.shape
    score = np.full(size, np.nan)
    coverage = np.zeros(size)
    consistency = np.zeros(size)
    count = np.zeros(size)
    mask = np.zeros(size)
    w_all = 0.0
    for i in range(k):
        w_all += w[i]
    for t in range(size):
        w_sum = 0.0
        signed = 0.0
        absolute = 0.0
        used = 0
        bits = 0
        for i in range(k):
            c = comp[t, i]
            if math.isnan(c) or w[i] == 0.0:
                continue
            w_sum += w[i]
            signed += w[i] * c
            absolute += w[i] * abs(c)
            used += 1
            bits += 1 << i
        count[t] = used
        mask[t] = bits
        if used == 0:
            continue
        score[t] = min(1.0, max(-1.0, signed / w_sum))
        coverage[t] = w_sum / w_all
        consistency[t] = abs(signed) / absolute if absolute > 0.0 else 0.0
    return score, coverage, consistency, count, mask


@register
class Macro(Strategy):
    """Risk-on / risk-off regime from credit spreads, core CPI, WTI and VIX; one view for all instruments.

    See the module docstring for the components and the combination rule.
    """

    name = "macro"
    Params = MacroParams
    required_reference: ClassVar[tuple[str, ...]] = ("AAA", "BAA", "CORE_CPI", "WTI", "VIX")

    @property
    def warmup(self) -> int:
        return 1

    def _series(self, panel: Panel, key: str) -> np.ndarray:
        values = panel.reference.get(key)
        if values is None:
            return np.full(len(panel), np.nan)
        values = np.ascontiguousarray(values, dtype=np.float64)
        if values.shape != (len(panel),):
            raise ValueError(f"reference series {key!r} has shape {values.shape}, expected ({len(panel)},)")
        return values

    def regime(self, panel: Panel) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The (T,) score and the (T,) rationale series, before the per-instrument masking."""
        p = self.params
        floats = np.array(
            [
                p.spread_neutral,
                p.spread_scale,
                p.spread_change_scale,
                p.cpi_accel_scale,
                p.oil_scale,
                p.vix_neutral,
                p.vix_scale,
                p.vix_z_scale,
            ]
        )
        ints = np.array([p.credit_change_n, p.cpi_yoy_n, p.cpi_accel_n, p.oil_n, p.vix_z_n], dtype=np.int64)
        aaa, baa, cpi, wti, vix = (self._series(panel, k) for k in self.required_reference)
        raw, comp = _components(aaa, baa, cpi, wti, vix, floats, ints)
        score, coverage, consistency, count, mask = _combine(comp, np.array(p.weights))
        series = {key: raw[:, i] for i, key in enumerate(INPUTS)}
        series.update({f"c_{key}": comp[:, i] for i, key in enumerate(COMPONENTS)})
        series.update(
            {
                "coverage": coverage,
                "consistency": consistency,
                "components_used": count,
                "components_mask": mask,
            }
        )
        return score, series

    def compute(self, panel: Panel) -> Advice:
        shape = panel.close.shape
        score, series = self.regime(panel)
        valid = panel.valid
        speak = valid & ~np.isnan(score)[:, None]
        strength = np.where(speak, score[:, None], np.nan)
        coverage, consistency = series["coverage"], series["consistency"]
        confidence = np.where(speak, (coverage * consistency)[:, None], 0.0)
        rationale = {key: np.where(valid, np.broadcast_to(v[:, None], shape), np.nan) for key, v in series.items()}
        return Advice(strength, confidence, rationale)
