"""Trading-session effects: turn of the week and month, half days and holidays, from the exchange calendar.

The exchange calendar is published in advance, so at the close of session t it is legitimate to know
what the NEXT session will be (the first of a month, a half day, the first after a holiday, ...). What
such a session has earned in the past is estimated on each instrument from its own bars only.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import exchange_calendars
import numpy as np
import pandas as pd
from numba import njit
from pydantic import Field, field_validator, model_validator

from strategies.base import Advice, Panel, Strategy, StrategyParams
from strategies.registry import register

# The calendar effects a session can have, in the order of the columns of ``SessionCalendar.flags``.
EFFECTS: tuple[str, ...] = (
    "month_first",  # first session of its calendar month
    "month_last",  # last session of its calendar month
    "week_first",  # first session of its Monday-to-Sunday week
    "week_last",  # last session of its week
    "half_day",  # the exchange closes early
    "pre_holiday",  # a weekday without a session follows it (before the next session)
    "post_holiday",  # a weekday without a session precedes it (after the previous session)
)
_NS_PER_DAY = 86_400_000_000_000


@dataclass(frozen=True)
class SessionCalendar:
    """Every session of an exchange calendar, with its close and its calendar effects."""

    code: str
    labels: np.ndarray  # (S,) int64 ns: the session dates (midnight UTC), increasing
    closes: np.ndarray  # (S,) int64 ns: the session closes (UTC)
    flags: np.ndarray  # (S, len(EFFECTS)) bool: the effects of each session

    def session_index(self, ts: np.ndarray) -> np.ndarray:
        """The calendar index of each timestamp, a session close (as in firm's panels) or a session date.

        Raises ValueError for a timestamp that is neither: the calendar features would be meaningless.
        """
        ts = np.asarray(ts, dtype=np.int64)
        idx = np.searchsorted(self.closes, ts, side="left")
        ok = idx < len(self.closes)
        at = np.minimum(idx, len(self.closes) - 1)
        ok &= (self.closes[at] == ts) | (self.labels[at] == ts)
        if not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            stamp = pd.Timestamp(int(ts[bad]), unit="ns", tz="UTC")
            raise ValueError(
                f"row {bad}: {stamp} is neither the close nor the date of a {self.code} session "
                f"({pd.Timestamp(int(self.labels[0])).date()} .. {pd.Timestamp(int(self.labels[-1])).date()})"
            )
        return idx.astype(np.int64)

    def next_flags(self, idx: np.ndarray) -> np.ndarray:
        """The effects of the session after each session index (all False after the calendar's last session)."""
        out = np.zeros((len(idx), len(EFFECTS)), dtype=bool)
        has_next = idx + 1 < len(self.labels)
        out[has_next] = self.flags[idx[has_next] + 1]
        return out


@lru_cache(maxsize=None)
def session_calendar(code: str) -> SessionCalendar:
    """The sessions of ``code`` from 1990 on and their effects; built once per process and code."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray", category=Warning)
        cal = exchange_calendars.get_calendar(code, start="1990-01-01")
    sessions = pd.DatetimeIndex(cal.sessions).as_unit("ns")
    labels = sessions.asi8.astype(np.int64)
    closes = pd.DatetimeIndex(cal.closes).tz_convert("UTC").as_unit("ns").asi8.astype(np.int64)
    days = labels // _NS_PER_DAY  # days since 1970-01-01, a Thursday
    week = (days + 3) // 7  # Monday-based week number
    month = sessions.year.to_numpy() * 12 + sessions.month.to_numpy()
    day_dates = days.astype("datetime64[D]")
    weekdays_between = np.busday_count(day_dates[:-1] + 1, day_dates[1:])  # weekdays strictly between

    size = len(labels)
    flags = np.zeros((size, len(EFFECTS)), dtype=bool)
    first = np.ones(size, dtype=bool)  # vs the previous session; the very first counts as a first
    last = np.ones(size, dtype=bool)
    closed_before = np.zeros(size, dtype=bool)
    closed_after = np.zeros(size, dtype=bool)
    closed_before[1:] = weekdays_between > 0
    closed_after[:-1] = weekdays_between > 0
    for col, period in (("month", month), ("week", week)):
        f, la = first.copy(), last.copy()
        f[1:] = period[1:] != period[:-1]
        la[:-1] = period[:-1] != period[1:]
        la[-1] = False  # unknown: the calendar ends here
        flags[:, EFFECTS.index(f"{col}_first")] = f
        flags[:, EFFECTS.index(f"{col}_last")] = la
    flags[:, EFFECTS.index("half_day")] = sessions.isin(pd.DatetimeIndex(cal.early_closes).as_unit("ns"))
    flags[:, EFFECTS.index("pre_holiday")] = closed_after
    flags[:, EFFECTS.index("post_holiday")] = closed_before
    labels.flags.writeable = closes.flags.writeable = flags.flags.writeable = False
    return SessionCalendar(code, labels, closes, flags)


class SessionParams(StrategyParams):
    calendar: str = Field("XNYS", description="exchange_calendars code of the sessions in panel.ts")
    lookback: int = Field(250, ge=2, description="sessions in the trailing mean and volatility of session returns")
    gap_n: int = Field(60, ge=2, description="sessions in the rolling regression of intraday move on overnight gap")
    max_occurrences: int = Field(36, ge=1, description="past occurrences of an effect averaged (the most recent)")
    min_occurrences: int = Field(5, ge=1, description="occurrences an effect needs before it is used")
    prior_n: float = Field(20.0, gt=0.0, description="k in confidence n/(n+k)")

    @field_validator("calendar")
    @classmethod
    def _check_calendar(cls, code: str) -> str:
        if code not in exchange_calendars.get_calendar_names():
            raise ValueError(f"unknown exchange calendar {code!r} (an exchange_calendars code such as 'XNYS')")
        return code

    @model_validator(mode="after")
    def _check_occurrences(self) -> SessionParams:
        if self.min_occurrences > self.max_occurrences:
            raise ValueError(
                f"min_occurrences ({self.min_occurrences}) must be <= max_occurrences ({self.max_occurrences})"
            )
        return self


@njit(cache=True)
def _one(
    open_: np.ndarray,
    close: np.ndarray,
    sess: np.ndarray,
    own: np.ndarray,
    nxt: np.ndarray,
    lookback: int,
    gap_n: int,
    max_occ: int,
    min_occ: int,
    prior_n: float,
    first_speaking: int,
) -> tuple[np.ndarray, ...]:
    """One instrument's valid bars in order; see ``Session`` for the definitions. Row i uses rows <= i only."""
    n = close.shape[0]
    n_eff = own.shape[1]
    ret = np.full(n, np.nan)
    gap = np.full(n, np.nan)
    intraday = np.empty(n)
    base = np.full(n, np.nan)
    vol = np.full(n, np.nan)
    gap_beta = np.full(n, np.nan)
    mu = np.full((n, n_eff), np.nan)
    count = np.zeros((n, n_eff))
    expected = np.full(n, np.nan)
    strength = np.full(n, np.nan)
    confidence = np.zeros(n)
    ring = np.zeros((n_eff, max_occ))  # the last max_occ excess returns of each effect, oldest overwritten
    seen = np.zeros(n_eff, dtype=np.int64)
    for i in range(n):
        intraday[i] = close[i] / open_[i] - 1.0
        if i >= 1:
            ret[i] = close[i] / close[i - 1] - 1.0
            gap[i] = open_[i] / close[i - 1] - 1.0
        if i >= lookback:
            total = 0.0
            for s in range(i - lookback + 1, i + 1):
                total += ret[s]
            m = total / lookback
            sq = 0.0
            for s in range(i - lookback + 1, i + 1):
                d = ret[s] - m
                sq += d * d
            base[i] = m
            vol[i] = math.sqrt(sq / lookback)
        if i >= gap_n:
            sgi = 0.0
            sgg = 0.0
            for s in range(i - gap_n + 1, i + 1):
                sgi += gap[s] * intraday[s]
                sgg += gap[s] * gap[s]
            gap_beta[i] = sgi / sgg if sgg > 0.0 else 0.0
        # An occurrence: session i has the effect, follows its predecessor directly, and a baseline
        # from before it exists. Its outcome is the excess of its return over that baseline.
        if i >= 1 and sess[i] == sess[i - 1] + 1 and not math.isnan(base[i - 1]):
            x = ret[i] - base[i - 1]
            for e in range(n_eff):
                if own[i, e]:
                    ring[e, seen[e] % max_occ] = x
                    seen[e] += 1
        for e in range(n_eff):
            k = min(seen[e], max_occ)
            count[i, e] = k
            if k > 0:
                total = 0.0
                for q in range(seen[e] - k, seen[e]):  # oldest to newest
                    total += ring[e, q % max_occ]
                mu[i, e] = total / k
        if i < first_speaking:
            continue
        weight = 0.0
        weighted = 0.0
        best = 0.0
        for e in range(n_eff):
            if nxt[i, e] and count[i, e] >= min_occ:
                c = count[i, e] / (count[i, e] + prior_n)
                weight += c
                weighted += c * mu[i, e]
                best = max(best, c)
        if weight > 0.0:
            expected[i] = weighted / weight
            confidence[i] = best
            strength[i] = math.tanh(expected[i] / vol[i]) if vol[i] > 0.0 else 0.0
        else:
            expected[i] = 0.0
            strength[i] = 0.0
    return strength, confidence, expected, ret, gap, intraday, gap_beta, base, vol, mu, count


@register
class Session(Strategy):
    """Calendar effects of the next session, priced by each instrument's own history.

    Session effects (``EFFECTS``, from the exchange calendar): first/last session of the month and of
    the week, half day, before a holiday, after a holiday (a holiday is a weekday without a session).
    On each instrument's valid bars, ret_t = close_t/close_{t-1} - 1; base_t and vol_t are the mean and
    population std of the last ``lookback`` returns (rows <= t).

    Rule, at the close of session t, about the next calendar session N:
      1. For each effect e, mu_e = mean over the last ``max_occurrences`` sessions u <= t with effect e
         (that directly follow a session with a bar) of the excess return ret_u - base_{u-1}; n_e = their
         count. Row t's own return is known at its close; the next session's is never used.
      2. Over the effects E of N with n_e >= ``min_occurrences``, c_e = n_e/(n_e + prior_n),
         expected = sum(c_e mu_e)/sum(c_e), strength = tanh(expected/vol_t) (0 when vol_t = 0),
         confidence = max c_e.
      3. No such effect: strength = 0, confidence = 0, expected = 0 (neutral, not an abstention).
    Strength is NaN (abstain) and confidence 0 on each instrument's first ``warmup - 1`` bars.

    Rationale, besides expected/base/vol and mu_<e>, n_<e>, next_<e> (1.0 if N has e): the overnight
    gap open_t/close_{t-1} - 1, the intraday move close_t/open_t - 1, and gap_beta = sum(gap*intraday)
    / sum(gap^2) over the last ``gap_n`` bars (the slope of intraday on gap through the origin: < 0 the
    instrument fades its gaps, > 0 it continues them; 0 without gaps). These describe, they do not vote.

    ``panel.ts`` must hold session closes (UTC) or session dates of ``calendar``.
    """

    name = "session"
    Params = SessionParams

    @property
    def warmup(self) -> int:
        p = self.params
        return max(p.lookback, p.gap_n) + 1

    def compute(self, panel: Panel) -> Advice:
        p = self.params
        cal = session_calendar(p.calendar)
        shape = panel.close.shape
        strength = np.full(shape, np.nan)
        confidence = np.zeros(shape)
        names = ["expected", "base", "vol", "ret", "gap", "intraday", "gap_beta"]
        names += [f"{kind}_{e}" for kind in ("mu", "n", "next") for e in EFFECTS]
        rationale = {key: np.full(shape, np.nan) for key in names}
        if len(panel) == 0:
            return Advice(strength, confidence, rationale)
        sess = cal.session_index(panel.ts)
        own = cal.flags[sess]
        nxt = cal.next_flags(sess)
        for j in range(shape[1]):
            rows = np.flatnonzero(~np.isnan(panel.close[:, j]))
            if rows.size == 0:
                continue
            s, c, exp, ret, gap, intra, beta, base, vol, mu, count = _one(
                np.ascontiguousarray(panel.open[rows, j], dtype=np.float64),
                np.ascontiguousarray(panel.close[rows, j], dtype=np.float64),
                sess[rows],
                np.ascontiguousarray(own[rows]),
                np.ascontiguousarray(nxt[rows]),
                p.lookback,
                p.gap_n,
                p.max_occurrences,
                p.min_occurrences,
                float(p.prior_n),
                self.warmup - 1,
            )
            strength[rows, j] = s
            confidence[rows, j] = c
            for key, values in (
                ("expected", exp),
                ("base", base),
                ("vol", vol),
                ("ret", ret),
                ("gap", gap),
                ("intraday", intra),
                ("gap_beta", beta),
            ):
                rationale[key][rows, j] = values
            for e, effect in enumerate(EFFECTS):
                rationale[f"mu_{effect}"][rows, j] = mu[:, e]
                rationale[f"n_{effect}"][rows, j] = count[:, e]
                rationale[f"next_{effect}"][rows, j] = nxt[rows, e]
        return Advice(strength, confidence, rationale)
