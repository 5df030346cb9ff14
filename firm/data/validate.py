"""Checking raw bars: clean bars go on, bad ones are quarantined with a reason, gaps are reported.

A quarantined row never reaches the clean output; each row is reported at most once, with the first
check it fails in this order: the value checks (``nan``, ``non_positive_price``, ``high_below_low``,
``open_outside_range``, ``close_outside_range``, ``negative_volume``), then ``duplicate_timestamp``,
``out_of_order`` and ``not_a_session``. Calendar sessions inside the clean range without a clean
bar are reported as ``missing_session``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import exchange_calendars
import numpy as np
import pandas as pd
from exchange_calendars import ExchangeCalendar

from firm.data.source import COLUMNS

VALUE_REASONS: tuple[str, ...] = (
    "nan",
    "non_positive_price",
    "high_below_low",
    "open_outside_range",
    "close_outside_range",
    "negative_volume",
)
REASONS: tuple[str, ...] = (
    *VALUE_REASONS,
    "duplicate_timestamp",
    "out_of_order",
    "not_a_session",
    "missing_session",
)

DateLike = date | str | pd.Timestamp | None


@dataclass(frozen=True)
class Quarantined:
    """One reported problem: a bad raw row, or a session without a clean bar (``bar`` is then {})."""

    symbol: str
    date: str
    reason: str
    detail: str
    bar: dict[str, float | None]


@lru_cache(maxsize=None)
def get_calendar(code: str) -> ExchangeCalendar:
    """The exchange calendar ``code`` (e.g. "XNYS"), covering sessions from 1990 on.

    exchange_calendars' own pandas-deprecation warning about ``Series.values`` is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray", category=Warning)
        return exchange_calendars.get_calendar(code, start="1990-01-01")


def _iso(ts: pd.Timestamp) -> str:
    if pd.isna(ts):
        return "NaT"
    return ts.date().isoformat() if ts == ts.normalize() else ts.isoformat()


def _num(x: float) -> str:
    return f"{x:.10g}"


def _bar(row: np.ndarray) -> dict[str, float | None]:
    return {col: (float(x) if np.isfinite(x) else None) for col, x in zip(COLUMNS, row)}


def _value_detail(reason: str, row: np.ndarray, ts: pd.Timestamp) -> str:
    o, h, lo, c, v = row
    if reason == "nan":
        bad = [col for col, x in zip(COLUMNS, row) if not np.isfinite(x)]
        return "timestamp is missing" if pd.isna(ts) else f"not a finite number: {', '.join(bad)}"
    if reason == "non_positive_price":
        bad = [f"{col} {_num(x)}" for col, x in zip(COLUMNS[:4], row[:4]) if x <= 0]
        return f"price <= 0: {', '.join(bad)}"
    if reason == "high_below_low":
        return f"high {_num(h)} < low {_num(lo)}"
    if reason == "open_outside_range":
        return f"open {_num(o)} outside [low {_num(lo)}, high {_num(h)}]"
    if reason == "close_outside_range":
        return f"close {_num(c)} outside [low {_num(lo)}, high {_num(h)}]"
    return f"volume {_num(v)} < 0"


def _value_reasons(values: np.ndarray, index: pd.DatetimeIndex) -> np.ndarray:
    o, h, lo, c, v = values.T
    conditions = [
        ~np.isfinite(values).all(axis=1) | index.isna(),
        (values[:, :4] <= 0).any(axis=1),
        h < lo,
        (o < lo) | (o > h),
        (c < lo) | (c > h),
        v < 0,
    ]
    return np.select(conditions, list(VALUE_REASONS), default="")


def _in_period(index: pd.DatetimeIndex, start: DateLike, end: DateLike) -> np.ndarray:
    keep = np.ones(len(index), dtype=bool)
    day = index.normalize()
    if start is not None:
        keep &= day >= pd.Timestamp(start)
    if end is not None:
        keep &= day <= pd.Timestamp(end)
    return keep | index.isna()


def validate(
    symbol: str,
    raw: pd.DataFrame,
    calendar: ExchangeCalendar,
    start: DateLike = None,
    end: DateLike = None,
) -> tuple[pd.DataFrame, list[Quarantined]]:
    """Split ``raw`` bars of ``symbol`` into clean bars and problems.

    Rows outside [start, end] are dropped without a report. The clean frame has the source's
    columns, a strictly increasing index of ``calendar`` sessions, and no quarantined row.
    """
    missing_cols = [c for c in COLUMNS if c not in raw.columns]
    if missing_cols:
        raise ValueError(f"{symbol}: raw bars lack column(s): {', '.join(missing_cols)}")
    index = pd.DatetimeIndex(raw.index).astype("datetime64[ns]")
    keep = _in_period(index, start, end)
    index = index[keep]
    values = raw.loc[:, list(COLUMNS)].to_numpy(dtype="float64")[keep]

    reasons = _value_reasons(values, index)
    ok = reasons == ""
    reasons[ok & index.duplicated(keep=False)] = "duplicate_timestamp"
    stamps = index.asi8
    seen_max = np.maximum.accumulate(stamps)
    before = np.concatenate(([np.iinfo(np.int64).min], seen_max[:-1])) if len(stamps) else seen_max
    reasons[(reasons == "") & (stamps < before)] = "out_of_order"
    reasons[(reasons == "") & ~index.isin(calendar.sessions)] = "not_a_session"

    bad_rows = np.flatnonzero(reasons != "")
    counts = Counter(index[bad_rows[reasons[bad_rows] == "duplicate_timestamp"]])
    records = []
    for i in bad_rows:
        ts, reason = index[i], str(reasons[i])
        if reason == "duplicate_timestamp":
            detail = f"{counts[ts]} rows share this timestamp"
        elif reason == "out_of_order":
            detail = f"comes after a row dated {_iso(pd.Timestamp(before[i]))} in the source"
        elif reason == "not_a_session":
            detail = f"not a session of {calendar.name}"
        else:
            detail = _value_detail(reason, values[i], ts)
        records.append(Quarantined(symbol, _iso(ts), reason, detail, _bar(values[i])))

    clean_rows = reasons == ""
    clean = pd.DataFrame(values[clean_rows], index=index[clean_rows], columns=list(COLUMNS))
    clean.index.name = "date"
    clean = clean.sort_index()
    if len(clean):
        sessions = calendar.sessions_in_range(clean.index[0], clean.index[-1])
        for ts in sessions.difference(clean.index):
            detail = f"{calendar.name} session without a clean bar"
            records.append(Quarantined(symbol, _iso(ts), "missing_session", detail, {}))
    return clean, records


def _sort_key(q: Quarantined) -> tuple[str, str, str]:
    return (q.date, q.symbol, q.reason)


def sort_quarantine(records: Iterable[Quarantined]) -> list[Quarantined]:
    """Records in the deterministic (date, symbol, reason) order; ties keep their input order."""
    return sorted(records, key=_sort_key)


def quarantine_to_dict(record: Quarantined) -> dict[str, Any]:
    """The JSON-ready mapping of one record (keys symbol, date, reason, detail, bar)."""
    return asdict(record)


def write_quarantine(records: Iterable[Quarantined], path: str | os.PathLike[str]) -> Path:
    """Write one JSON line per record, sorted by (date, symbol, reason); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(quarantine_to_dict(r), allow_nan=False) for r in sort_quarantine(records)]
    path.write_text("".join(line + "\n" for line in lines))
    return path
