"""Pre-trade risk limits and the risk state of a bar, as pure functions of the book and the data.

Everything here is a function of its arguments: the risk validator (``firm/validation.py``) calls
them on its own projection of the book and on market data up to the bar, so a verdict or an alert
is the same whatever the batch size.

Static limits (``check_order``), each applied only to an order that makes its measure grow:
position weight, sector gross weight, gross and net leverage, concentration (largest position's
share of gross once the book is at least ``concentration_min_gross`` of equity).

State rules (``Gate``): what the bar's risk state forbids on top of the static limits. The
kill switch, the drawdown stop and tiers, the daily-loss halt and crash protection each block
orders that increase risk, never orders that reduce it.

Drawdown tiers (``drawdown_tier``): the highest tier whose ``at`` the book's drawdown has reached.
``reduce_size`` scales the position limit by ``scale`` (risk rejects what exceeds the scaled limit;
the CIO sizes down by calling ``size_scale`` on its own book's drawdown), ``stop_new_entries``
rejects every order that increases risk, ``flatten`` trips the kill switch, which flattens the book.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
from numba import njit

TierAction = Literal["reduce_size", "stop_new_entries", "flatten"]
TIER_RANK = {"reduce_size": 0, "stop_new_entries": 1, "flatten": 2}


@dataclass(frozen=True)
class Tier:
    at: float  # drawdown from peak equity at which the tier applies
    action: TierAction
    scale: float = 1.0  # reduce_size: the position limit is multiplied by this


@dataclass(frozen=True)
class Limits:
    max_position_weight: float
    max_gross_exposure: float
    max_net_exposure: float
    max_drawdown: float
    sector_of: tuple[int, ...] = ()  # column -> sector index; empty: no sector limit
    sector_names: tuple[str, ...] = ()
    max_sector_weight: float = math.inf
    max_concentration: float = 1.0
    concentration_min_gross: float = 0.5
    drawdown_tiers: tuple[Tier, ...] = ()


@dataclass(frozen=True)
class Check:
    approved: bool
    rule: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Gate:
    """What the bar's risk state forbids beyond the static limits (built by the risk validator).

    ``blocked``: (rule, reason) pairs, each rejecting every order that increases risk, checked in
    order (the first one is the verdict). ``blocked_columns``: column -> (rule, reason) for one
    instrument. ``size_scale`` multiplies the position limit (``scale_rule`` names why).
    """

    blocked: tuple[tuple[str, str], ...] = ()
    blocked_columns: dict[int, tuple[str, str]] = field(default_factory=dict)
    size_scale: float = 1.0
    scale_rule: str = ""


OPEN = Gate()


def check_order(
    limits: Limits,
    equity: float,
    drawdown: float,
    values: list[float],
    column: int,
    quantity: int,
    price: float,
    held: int,
    gate: Gate = OPEN,
) -> Check:
    """Verdict on buying (``quantity`` > 0) or selling ``quantity`` of ``column`` at ``price``.

    ``values`` are the signed position values of every column (including orders already approved
    in this bar); ``held`` is the column's position plus working orders. An order that only reduces
    exposure always passes: limits stop risk from growing, never from shrinking.
    """
    before = values[column]
    after = (held + quantity) * price
    grows = abs(after) > abs(before) + 1e-9
    if not grows:
        return Check(True)
    if equity <= 0:
        return Check(False, "equity", f"equity {equity:,.2f} is not positive")
    if gate.blocked:
        rule, reason = gate.blocked[0]
        return Check(False, rule, reason)
    if drawdown >= limits.max_drawdown:
        return Check(
            False, "max_drawdown", f"drawdown {drawdown:.2%} >= stop {limits.max_drawdown:.2%}: only reducing orders"
        )
    if column in gate.blocked_columns:
        rule, reason = gate.blocked_columns[column]
        return Check(False, rule, reason)
    weight = abs(after) / equity
    if weight > limits.max_position_weight:
        return Check(
            False, "max_position_weight", f"position {weight:.2%} of equity > limit {limits.max_position_weight:.2%}"
        )
    scaled = limits.max_position_weight * gate.size_scale
    if weight > scaled:
        return Check(
            False,
            gate.scale_rule or "drawdown_tier",
            f"position {weight:.2%} of equity > limit {limits.max_position_weight:.2%} x {gate.size_scale:g} "
            f"= {scaled:.2%} ({gate.scale_rule or 'reduced size'})",
        )
    if limits.sector_of:
        sector = limits.sector_of[column]
        members = [i for i, s in enumerate(limits.sector_of) if s == sector]
        sector_before = sum(abs(values[i]) for i in members)
        sector_after = sector_before - abs(before) + abs(after)
        if sector_after / equity > limits.max_sector_weight and sector_after > sector_before:
            name = limits.sector_names[sector] if limits.sector_names else str(sector)
            return Check(
                False,
                "max_sector_weight",
                f"sector {name} gross {sector_after / equity:.2%} of equity > limit {limits.max_sector_weight:.2%}",
            )
    gross_before = sum(abs(v) for v in values)
    gross_after = gross_before - abs(before) + abs(after)
    gross = gross_after / equity
    if gross > limits.max_gross_exposure and gross_after > gross_before:
        return Check(False, "max_gross_exposure", f"gross {gross:.2%} > limit {limits.max_gross_exposure:.2%}")
    net_before = sum(values)
    net = (net_before - before + after) / equity
    if abs(net) > limits.max_net_exposure and abs(net * equity) > abs(net_before):
        return Check(False, "max_net_exposure", f"net {net:+.2%} beyond limit {limits.max_net_exposure:.2%}")
    share = concentration(values, column, after)
    if gross >= limits.concentration_min_gross and share > limits.max_concentration:
        return Check(
            False,
            "max_concentration",
            f"{share:.2%} of gross in one position > limit {limits.max_concentration:.2%} "
            f"(book at {gross:.2%} gross >= {limits.concentration_min_gross:.2%})",
        )
    return Check(True)


def concentration(values: Sequence[float], column: int, after: float) -> float:
    """Share of gross exposure held in ``column`` once its value is ``after`` (0 for an empty book).

    Only the growing column's share can rise (every other share falls as gross grows), so it is the
    one the limit checks."""
    gross = sum(abs(v) for i, v in enumerate(values) if i != column) + abs(after)
    return 0.0 if gross <= 0 else abs(after) / gross


def drawdown_tier(drawdown: float, tiers: Sequence[Tier]) -> Tier | None:
    """The most severe tier the drawdown has reached (tiers sorted by ``at``), or None."""
    reached = None
    for tier in tiers:
        if drawdown >= tier.at and (reached is None or TIER_RANK[tier.action] >= TIER_RANK[reached.action]):
            reached = tier
    return reached


def size_scale(drawdown: float, tiers: Sequence[Tier]) -> float:
    """Factor to apply to position sizes at this drawdown: the smallest ``scale`` of the
    ``reduce_size`` tiers reached (1.0 when none is); 0.0 once a ``stop_new_entries`` or ``flatten``
    tier is reached. Meant for the CIO's sizing, so that it does not propose what risk rejects."""
    scale = 1.0
    for tier in tiers:
        if drawdown >= tier.at:
            scale = min(scale, tier.scale if tier.action == "reduce_size" else 0.0)
    return scale


def daily_loss(prev_equity: float, equity: float) -> float:
    """Loss since the previous close as a share of that close's equity (negative for a gain)."""
    return 0.0 if prev_equity <= 0 else 1.0 - equity / prev_equity


def move_sigmas(prices: np.ndarray, window: int, lookback: int) -> np.ndarray:
    """Velocity of the last ``window`` bars in units of the volatility before them.

    ``prices``: the last ``lookback + window + 1`` rows (one column per series), positive. The move
    is the log return over the last ``window`` bars; sigma is the sample standard deviation of the
    ``lookback`` one-bar log returns before the window, scaled by sqrt(window). Returns
    (move, z) stacked as a (2, m) array; z is NaN where sigma is zero or a price is missing.
    """
    assert prices.shape[0] == lookback + window + 1, prices.shape
    logp = np.log(prices)
    returns = logp[1 : lookback + 1] - logp[:lookback]
    sigma = returns.std(axis=0, ddof=1) * math.sqrt(window)
    move = logp[-1] - logp[-1 - window]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sigma > 1e-12, move / sigma, np.nan)
    return np.vstack([move, z])


def correlation_shift(returns: np.ndarray, short: int) -> tuple[float, int]:
    """Mean absolute change of the pairwise correlations of the last ``short`` rows of ``returns``
    against the rows before them (the longer history); returns (distance, pairs used).

    Pairs where either window has a missing return or no variance are left out; NaN if no pair is left.
    """
    recent, history = returns[-short:], returns[:-short]
    ok = np.isfinite(recent).all(axis=0) & np.isfinite(history).all(axis=0)
    ok &= (recent.std(axis=0) > 0) & (history.std(axis=0) > 0)
    cols = np.flatnonzero(ok)
    if cols.size < 2:
        return math.nan, 0
    a = np.corrcoef(recent[:, cols], rowvar=False)
    b = np.corrcoef(history[:, cols], rowvar=False)
    iu = np.triu_indices(cols.size, 1)
    return float(np.mean(np.abs(a[iu] - b[iu]))), int(iu[0].size)


# --- the same two measures as sequential numba loops, for the risk validator's per-bar path ---------
# One bar at a time on the log prices already known, every logarithm taken once when the bar arrives
# (``math.log``), no numpy reductions whose summation order could depend on an array's shape: a bar's
# value is the same bits whichever batch brought it. Checked against the numpy versions above.


@njit(cache=True)
def velocity_at(logp: np.ndarray, g: int, window: int, lookback: int) -> tuple[np.ndarray, np.ndarray]:
    """``move_sigmas`` at row ``g`` of ``logp`` (log prices, one column per series), rows
    ``g - lookback - window .. g``; returns (move, z), z NaN where sigma is zero or data is missing."""
    m = logp.shape[1]
    move = np.empty(m)
    z = np.empty(m)
    s = g - window - lookback
    for j in range(m):
        mean = 0.0
        for i in range(s + 1, s + lookback + 1):
            mean += logp[i, j] - logp[i - 1, j]
        mean /= lookback
        var = 0.0
        for i in range(s + 1, s + lookback + 1):
            d = logp[i, j] - logp[i - 1, j] - mean
            var += d * d
        sigma = math.sqrt(var / (lookback - 1)) * math.sqrt(window)
        mv = logp[g, j] - logp[g - window, j]
        move[j] = mv
        z[j] = mv / sigma if sigma > 1e-12 else np.nan
    return move, z


@njit(cache=True)
def correlation_shift_at(logp: np.ndarray, g: int, short: int, long: int) -> float:
    """``correlation_shift`` of the one-bar log returns ending at row ``g``: the last ``short`` against
    the ``long`` before them (rows ``g - short - long .. g`` of ``logp``)."""
    m = logp.shape[1]
    first = g - short - long + 1  # first return row: logp[first] - logp[first - 1]
    split = g - short + 1
    mean_r = np.zeros(m)
    mean_h = np.zeros(m)
    ok = np.ones(m, dtype=np.bool_)
    for j in range(m):
        for i in range(first, g + 1):
            r = logp[i, j] - logp[i - 1, j]
            if not math.isfinite(r):
                ok[j] = False
            if i >= split:
                mean_r[j] += r
            else:
                mean_h[j] += r
        mean_r[j] /= short
        mean_h[j] /= long
    var_r = np.zeros(m)
    var_h = np.zeros(m)
    for j in range(m):
        if not ok[j]:
            continue
        for i in range(first, g + 1):
            r = logp[i, j] - logp[i - 1, j]
            if i >= split:
                var_r[j] += (r - mean_r[j]) ** 2
            else:
                var_h[j] += (r - mean_h[j]) ** 2
        if var_r[j] <= 0.0 or var_h[j] <= 0.0:
            ok[j] = False
    total = 0.0
    pairs = 0
    for a in range(m):
        if not ok[a]:
            continue
        for b in range(a + 1, m):
            if not ok[b]:
                continue
            cr = 0.0
            ch = 0.0
            for i in range(first, g + 1):
                ra = logp[i, a] - logp[i - 1, a]
                rb = logp[i, b] - logp[i - 1, b]
                if i >= split:
                    cr += (ra - mean_r[a]) * (rb - mean_r[b])
                else:
                    ch += (ra - mean_h[a]) * (rb - mean_h[b])
            corr_r = cr / math.sqrt(var_r[a] * var_r[b])
            corr_h = ch / math.sqrt(var_h[a] * var_h[b])
            total += abs(corr_r - corr_h)
            pairs += 1
    return total / pairs if pairs else np.nan
