"""Execution algorithms: TWAP and VWAP schedules that slice a parent order into child orders.

Pure numpy, no Ray, no broker. A *schedule* is one integer child quantity per slot; the quantities sum
exactly to the parent's, every non-empty slice is a whole number of ``min_lot`` shares (except that the
odd lot ``quantity % min_lot`` rides on the last non-empty slice), and slots left empty by the rounding
are merged away (no child order). Rounding is largest remainder on whole lots: each slot gets the floor of
its ideal share, the lots left over go to the largest fractional parts, ties to the earlier slot. So the
same inputs always give the same schedule.

What a slot is:

- **Intraday data** (a ``(days, slots)`` volume matrix): one interval of the trading day (e.g. 30
  minutes); the VWAP profile is the mean over the last ``lookback`` days of each day's share of volume per
  interval (each day normalised first, so a heavy day does not dominate).
- **Daily bars** (what ``firm`` replays): one *session*. A parent order is split over the next N sessions
  and each session's child is worked in that session (in the simulated broker: at its open). The expected
  volume of a future session is the trailing average daily volume times a day-of-week factor, so its share
  of the parent is proportional to that factor (the average daily volume cancels). The factor is the mean
  volume on that weekday over the trailing ``lookback`` sessions divided by the mean over all of them. On the
  shipped bars (2004-2013), log volume against its trailing 20-session average is 0.06-0.11 lower on Mondays
  than on the other weekdays for every instrument (Monday's own t-statistic -5.6 to -10.8); the other days
  differ by less and not consistently, and month-end shows nothing consistent, so only the weekday is
  modelled (half days are not). ``seasonality="flat"`` gives equal shares (plain TWAP over sessions).

Only volume known at the decision is used: rows up to and including ``asof`` (the decision bar, whose
volume is known at its close); later rows are never read.

Child ids are ``<parent order_ref>-s<k>``, k the 1-based slot index, so two children of one parent never
share an id and a child id never equals a parent's (parent refs do not end in ``-s<digits>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from firm.events import Side

_CHILD_SUFFIX = re.compile(r"-s\d+$")


def allocate(quantity: int, weights, min_lot: int = 1) -> np.ndarray:
    """Split ``quantity`` shares over slots in proportion to ``weights``: int64 array summing to ``quantity``.

    Largest remainder on whole lots of ``min_lot`` (ties: earlier slot); the odd lot goes to the last
    non-empty slot; a quantity below one lot goes whole to the heaviest slot (ties: earlier).
    """
    quantity = int(quantity)
    min_lot = int(min_lot)
    if quantity < 0:
        raise ValueError(f"quantity must be >= 0, got {quantity}")
    if min_lot < 1:
        raise ValueError(f"min_lot must be >= 1, got {min_lot}")
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or w.size == 0:
        raise ValueError("weights must be a non-empty 1-D array")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    w = w / w.sum()
    out = np.zeros(w.size, dtype=np.int64)
    if quantity == 0:
        return out
    lots, odd = divmod(quantity, min_lot)
    if lots == 0:
        out[int(np.argmax(w))] = quantity  # argmax: first of the ties
        return out
    ideal = lots * w
    base = np.floor(ideal).astype(np.int64)
    left = lots - int(base.sum())
    if left:
        frac = ideal - base
        order = np.lexsort((np.arange(w.size), -frac))  # largest fraction first, then earlier slot
        base[order[:left]] += 1
    out = base * min_lot
    out[np.flatnonzero(out)[-1]] += odd
    return out


def twap_schedule(
    quantity: int,
    n_slices: int,
    start: datetime | None = None,
    end: datetime | None = None,
    min_lot: int = 1,
) -> "Schedule":
    """Equal slices over ``n_slices`` slots; with ``start`` and ``end``, slot k starts at
    ``start + k (end - start) / n_slices``."""
    if n_slices < 1:
        raise ValueError(f"n_slices must be >= 1, got {n_slices}")
    starts: tuple = ()
    if start is not None or end is not None:
        if start is None or end is None or not end > start:
            raise ValueError("start and end go together, with end after start")
        step = (end - start) / n_slices
        starts = tuple(start + k * step for k in range(n_slices))
    return Schedule(tuple(int(q) for q in allocate(quantity, np.ones(n_slices), min_lot)), starts)


def vwap_schedule(quantity: int, volume_profile, min_lot: int = 1, starts: tuple = ()) -> "Schedule":
    """Slices proportional to the expected share of volume per slot (``volume_profile``)."""
    q = allocate(quantity, volume_profile, min_lot)
    return Schedule(tuple(int(x) for x in q), tuple(starts))


def volume_profile(
    volumes,
    *,
    asof: int | None = None,
    lookback: int | None = None,
    dates=None,
    sessions=None,
    seasonality: str = "weekday",
) -> np.ndarray:
    """Expected share of volume per slot, from past volume only (rows ``0..asof``; default: all rows).

    ``volumes`` 2-D ``(days, intraday slots)``: the mean of each day's volume shares over the last
    ``lookback`` days (default 20) with positive volume. 1-D daily volumes with their ``dates`` and the
    future ``sessions`` the order is split over: shares proportional to each session's day-of-week factor
    over the last ``lookback`` sessions (default 252), or equal with ``seasonality="flat"``. NaN volumes
    (no bar) are ignored.
    """
    v = np.asarray(volumes, dtype=float)
    if v.ndim not in (1, 2) or v.shape[0] == 0:
        raise ValueError("volumes must be a non-empty 1-D (daily) or 2-D (days x intraday slots) array")
    stop = v.shape[0] if asof is None else int(asof) + 1
    if not 0 < stop <= v.shape[0]:
        raise ValueError(f"asof {asof} outside the {v.shape[0]} rows of volume")
    if v.ndim == 2:
        past = v[max(0, stop - (lookback or 20)) : stop]
        totals = np.nansum(past, axis=1)
        good = totals > 0
        if not good.any():
            return np.full(v.shape[1], 1.0 / v.shape[1])
        shares = np.nan_to_num(past[good]) / totals[good, None]
        profile = shares.mean(axis=0)
        return profile / profile.sum()
    if sessions is None:
        raise ValueError("daily volumes need the future sessions the order is split over (sessions=...)")
    future = pd.DatetimeIndex(sessions)
    if len(future) == 0:
        raise ValueError("sessions is empty")
    if seasonality == "flat":
        return np.full(len(future), 1.0 / len(future))
    if seasonality != "weekday":
        raise ValueError(f"seasonality must be 'weekday' or 'flat', got {seasonality!r}")
    if dates is None or len(dates) != v.shape[0]:
        raise ValueError("daily volumes need their dates (one per row) for the weekday profile")
    lo = max(0, stop - (lookback or 252))
    past = v[lo:stop]
    days = pd.DatetimeIndex(dates)[lo:stop].day_of_week.to_numpy()
    ok = np.isfinite(past) & (past > 0)
    factor = np.ones(7)
    if ok.any():
        mean = past[ok].mean()
        for wd in range(7):
            sel = ok & (days == wd)
            if sel.any():
                factor[wd] = past[sel].mean() / mean
    profile = factor[future.day_of_week.to_numpy()]
    return profile / profile.sum()


@dataclass(frozen=True)
class Schedule:
    """Child quantity per slot (0: the slot was merged away) and, when known, each slot's start."""

    quantities: tuple[int, ...]
    starts: tuple = ()

    @property
    def total(self) -> int:
        return sum(self.quantities)


@dataclass(frozen=True)
class ChildOrder:
    order_ref: str  # <parent>-s<slot>
    parent_ref: str
    slot: int  # 1-based
    symbol: str
    side: Side
    quantity: int
    not_before: datetime | None = None


@dataclass(frozen=True)
class ParentOrder:
    """The whole order a decision asks for; ``arrival_price`` is the decision's reference close."""

    order_ref: str
    symbol: str
    side: Side
    quantity: int
    arrival_price: float | None = None

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValueError(f"{self.order_ref}: quantity must be > 0")
        if _CHILD_SUFFIX.search(self.order_ref):
            raise ValueError(f"{self.order_ref}: a parent ref must not end like a child id (-s<k>)")

    def children(self, schedule: Schedule) -> list[ChildOrder]:
        """One child per non-empty slot, ids ``<order_ref>-s<k>``; the quantities must sum to the parent's."""
        if schedule.total != self.quantity:
            raise ValueError(f"{self.order_ref}: schedule sums to {schedule.total}, parent is {self.quantity}")
        return [
            ChildOrder(
                order_ref=f"{self.order_ref}-s{k + 1}",
                parent_ref=self.order_ref,
                slot=k + 1,
                symbol=self.symbol,
                side=self.side,
                quantity=q,
                not_before=schedule.starts[k] if schedule.starts else None,
            )
            for k, q in enumerate(schedule.quantities)
            if q > 0
        ]
