"""Reference series (indices, volatility, rates, inflation, oil) aligned to the sessions without look-ahead.

Each series is stamped with the moment its value became public, not the date it describes, and a
session sees the last value public at its close. The publication rules are deliberately
conservative (a value is never used before it could have been known):

| series | source (shipped by PyPI packages) | public from |
| --- | --- | --- |
| SPX, COMP | arch.data sp500 / nasdaq daily close | that session's close |
| VIX | arch.data.vix daily close (2014-01..2019-01) | the next session's close (CBOE closes 16:15) |
| WTI | arch.data.wti, FRED DCOILWTICO spot | the next session's close (FRED posts a day later) |
| AAA, BAA | arch.data.default, Moody's monthly average yields | the 8th day of the following month |
| CORE_CPI | arch.data.core_cpi, BLS CPILFESL index | the 20th day of the following month (BLS releases mid-month) |

A value older than its series' ``max_age`` is treated as missing (NaN), so a series that has ended
(VIX after 2019-01-03) or not yet begun (VIX before 2014) makes the agents that need it abstain.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import pandas as pd

from firm.data.validate import get_calendar


@dataclass(frozen=True)
class ReferenceSpec:
    load: Callable[[], pd.Series]  # values indexed by the date they describe
    published: str  # "close", "next_close" or "monthly:<day>"
    max_age: pd.Timedelta


def _arch(module: str, column: str) -> Callable[[], pd.Series]:
    def load() -> pd.Series:
        import importlib

        frame = importlib.import_module(f"arch.data.{module}").load()
        return frame[column].dropna().astype("float64")

    return load


REFERENCE: dict[str, ReferenceSpec] = {
    "SPX": ReferenceSpec(_arch("sp500", "Adj Close"), "close", pd.Timedelta(days=7)),
    "COMP": ReferenceSpec(_arch("nasdaq", "Adj Close"), "close", pd.Timedelta(days=7)),
    "VIX": ReferenceSpec(_arch("vix", "vix"), "next_close", pd.Timedelta(days=7)),
    "WTI": ReferenceSpec(_arch("wti", "DCOILWTICO"), "next_close", pd.Timedelta(days=7)),
    "AAA": ReferenceSpec(_arch("default", "AAA"), "monthly:8", pd.Timedelta(days=70)),
    "BAA": ReferenceSpec(_arch("default", "BAA"), "monthly:8", pd.Timedelta(days=70)),
    "CORE_CPI": ReferenceSpec(_arch("core_cpi", "CPILFESL"), "monthly:20", pd.Timedelta(days=70)),
}


@lru_cache(maxsize=None)
def _raw(name: str) -> pd.Series:
    return REFERENCE[name].load()


def publication_times(name: str, calendar_code: str = "XNYS") -> pd.Series:
    """The series' values indexed by when each became public (UTC), in order."""
    spec = REFERENCE[name]
    values = _raw(name)
    calendar = get_calendar(calendar_code)
    closes = calendar.closes
    if spec.published in ("close", "next_close"):
        # the first session on or after the date the value describes, then one more for next_close
        pos = closes.index.searchsorted(values.index)
        pos = pos + (1 if spec.published == "next_close" else 0)
        keep = pos < len(closes)
        stamps = pd.DatetimeIndex(closes.to_numpy()[pos[keep]]).tz_localize(None).tz_localize("UTC")
        return pd.Series(values.to_numpy()[keep], index=stamps)
    day = int(spec.published.split(":")[1])
    stamps = (values.index + pd.offsets.MonthBegin(1) + pd.Timedelta(days=day - 1)).tz_localize("UTC")
    return pd.Series(values.to_numpy(), index=stamps)


def align(name: str, session_closes_ns: np.ndarray, calendar_code: str = "XNYS") -> np.ndarray:
    """For each session close, the last value of ``name`` public by then; NaN if none or too old."""
    public = publication_times(name, calendar_code)
    when = public.index.as_unit("ns").asi8
    pos = np.searchsorted(when, session_closes_ns, side="right") - 1
    out = np.full(len(session_closes_ns), np.nan)
    has = pos >= 0
    out[has] = public.to_numpy()[pos[has]]
    age = np.where(has, session_closes_ns - when[np.maximum(pos, 0)], 0)
    out[age > REFERENCE[name].max_age.value] = np.nan
    return out


def load_reference(names: tuple[str, ...], session_closes_ns: np.ndarray, calendar_code: str = "XNYS") -> dict[str, np.ndarray]:
    unknown = [n for n in names if n not in REFERENCE]
    if unknown:
        raise KeyError(f"unknown reference series {', '.join(unknown)}; available: {', '.join(REFERENCE)}")
    return {name: align(name, session_closes_ns, calendar_code) for name in names}
