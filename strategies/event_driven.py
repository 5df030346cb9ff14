"""Scheduled macro events: de-risking before them, drift after them, from a sourced calendar file.

The calendar (``configs/macro_events.csv`` by default; its header names the source of every kind) lists
FOMC decisions and, where sourced, CPI and Employment Situation releases, each with its date, its time
(US Eastern) and whether it was scheduled. The dates of scheduled events are public long in advance, so at
the close of session t the agent may know the next scheduled one; an unscheduled event is used only once
its reaction has been seen.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import exchange_calendars
import numpy as np
import pandas as pd
from numba import njit
from pydantic import Field, field_validator

from strategies.base import Advice, Panel, Strategy, StrategyParams
from strategies.registry import register
from strategies.session import session_calendar

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CALENDAR = "configs/macro_events.csv"
KINDS: tuple[str, ...] = ("FOMC", "CPI", "NFP")
KIND_CODES = {kind: float(i + 1) for i, kind in enumerate(KINDS)}  # rationale codes: 1 FOMC, 2 CPI, 3 NFP
COLUMNS = ("date", "time_et", "kind", "scheduled", "source", "note")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_COVERAGE = re.compile(r"^#\s*coverage:\s*(\S+)\s+(\S+)\s+(\S+)\s*$")


class CalendarError(ValueError):
    """A calendar file that breaks a rule; the message names the file, the line and the rule."""


@dataclass(frozen=True)
class Event:
    line: int
    date: pd.Timestamp  # the day (naive)
    time_et: str  # "" when not sourced
    kind: str
    scheduled: bool
    source: str
    note: str

    @property
    def public_utc_ns(self) -> int:
        """When the event was public, ns UTC: date + time in US Eastern (00:00 when the time is not given)."""
        hhmm = self.time_et or "00:00"
        stamp = pd.Timestamp(f"{self.date.date()} {hhmm}").tz_localize("America/New_York")
        return int(stamp.tz_convert("UTC").value)


@dataclass(frozen=True)
class MacroCalendar:
    path: Path
    events: tuple[Event, ...]
    coverage: dict[str, tuple[pd.Timestamp, pd.Timestamp]]  # kind -> (first, last day covered)


def load_calendar(path: str | Path) -> MacroCalendar:
    """Parse and validate a calendar file; raises CalendarError naming the file, the line and the rule."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CalendarError(f"{path}: cannot read the event calendar: {exc}") from None

    def fail(line: int, rule: str) -> CalendarError:
        return CalendarError(f"{path}:{line}: {rule}")

    def day(value: str, line: int, what: str) -> pd.Timestamp:
        if not _DATE.match(value):
            raise fail(line, f"{what} {value!r} is not a date YYYY-MM-DD")
        try:
            return pd.Timestamp(value)
        except ValueError:
            raise fail(line, f"{what} {value!r} is not a calendar date") from None

    coverage: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = {}
    body: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if re.match(r"^#\s*coverage:", stripped):
                m = _COVERAGE.match(stripped)
                if not m:
                    raise fail(number, "a coverage line is '# coverage: KIND YYYY-MM-DD YYYY-MM-DD'")
                kind, first, last = m.groups()
                if kind not in KINDS:
                    raise fail(number, f"unknown kind {kind!r} in coverage (one of {', '.join(KINDS)})")
                if kind in coverage:
                    raise fail(number, f"a second coverage line for {kind}")
                lo, hi = day(first, number, "coverage start"), day(last, number, "coverage end")
                if hi < lo:
                    raise fail(number, f"coverage of {kind} ends ({last}) before it starts ({first})")
                coverage[kind] = (lo, hi)
            continue
        body.append((number, raw))
    if not body:
        raise CalendarError(f"{path}: no header line ({','.join(COLUMNS)})")
    header_line, header = body[0]
    if tuple(c.strip() for c in header.split(",")) != COLUMNS:
        raise fail(header_line, f"the header must be {','.join(COLUMNS)}, not {header.strip()!r}")

    events: list[Event] = []
    seen: dict[tuple[pd.Timestamp, str], int] = {}
    for number, raw in body[1:]:
        fields = next(csv.reader([raw]))
        if len(fields) != len(COLUMNS):
            raise fail(number, f"{len(fields)} fields, expected {len(COLUMNS)} ({','.join(COLUMNS)})")
        date_s, time_s, kind, sched_s, source, note = (f.strip() for f in fields)
        date = day(date_s, number, "date")
        if time_s and not _TIME.match(time_s):
            raise fail(number, f"time_et {time_s!r} is not HH:MM (24 h) or empty")
        if kind not in KINDS:
            raise fail(number, f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
        if sched_s not in ("true", "false"):
            raise fail(number, f"scheduled {sched_s!r} must be true or false")
        if not source:
            raise fail(number, "source is empty: every event names where its date comes from")
        if kind not in coverage:
            raise fail(number, f"no '# coverage: {kind} START END' line for this {kind} event")
        lo, hi = coverage[kind]
        if not lo <= date <= hi:
            raise fail(number, f"{kind} {date_s} is outside its coverage {lo.date()} .. {hi.date()}")
        key = (date, kind)
        if key in seen:
            raise fail(number, f"duplicate {kind} event on {date_s} (first on line {seen[key]})")
        seen[key] = number
        events.append(Event(number, date, time_s, kind, sched_s == "true", source, note))
    events.sort(key=lambda e: (e.date, e.kind))
    return MacroCalendar(path, tuple(events), coverage)


class EventDrivenParams(StrategyParams):
    calendar_path: str = Field(
        DEFAULT_CALENDAR, min_length=1, description="event calendar CSV; a relative path is from the repository root"
    )
    calendar: str = Field("XNYS", description="exchange_calendars code of the sessions in panel.ts")
    kinds: tuple[str, ...] = Field(("FOMC",), min_length=1, description="event kinds used (FOMC, CPI, NFP)")
    weight_fomc: float = Field(1.0, ge=0.0, le=1.0, description="weight of an FOMC decision")
    weight_cpi: float = Field(0.6, ge=0.0, le=1.0, description="weight of a CPI release")
    weight_nfp: float = Field(0.6, ge=0.0, le=1.0, description="weight of an Employment Situation release")
    pre_days: int = Field(3, ge=0, le=20, description="sessions before a scheduled event that de-risk (0: off)")
    pre_scale: float = Field(0.3, ge=0.0, le=1.0, description="largest de-risking strength (the session before)")
    post_days: int = Field(5, ge=0, le=60, description="sessions, the event's included, that follow its reaction")
    post_scale: float = Field(0.6, ge=0.0, le=1.0, description="largest drift strength")
    post_decay: float = Field(0.7, gt=0.0, le=1.0, description="drift factor per session after the event")
    vol_n: int = Field(60, ge=2, le=1000, description="returns in the volatility the event return is scaled by")
    z_scale: float = Field(2.0, gt=0.0, description="s in tanh(z/s) of the event-session return z")

    @field_validator("calendar")
    @classmethod
    def _check_calendar(cls, code: str) -> str:
        if code not in exchange_calendars.get_calendar_names():
            raise ValueError(f"unknown exchange calendar {code!r} (an exchange_calendars code such as 'XNYS')")
        return code

    @field_validator("kinds")
    @classmethod
    def _check_kinds(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown event kinds {unknown} (use {', '.join(KINDS)})")
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"event kinds {list(kinds)} repeat a kind")
        return kinds

    def weight(self, kind: str) -> float:
        return {"FOMC": self.weight_fomc, "CPI": self.weight_cpi, "NFP": self.weight_nfp}[kind]


@dataclass(frozen=True)
class _SessionEvents:
    """The calendar mapped onto exchange sessions, one entry per session of the exchange calendar."""

    pre: np.ndarray  # (S,) de-risking closeness weight at the close of each session (0 outside windows)
    next_gap: np.ndarray  # (S,) sessions to the next scheduled event (NaN: none known)
    next_kind: np.ndarray  # (S,) its kind code
    last: np.ndarray  # (S,) int64: session of the latest event reacted to by that session's close (-1: none)
    weight: np.ndarray  # (S,) weight of the events of each session (0: no event)
    kind: np.ndarray  # (S,) kind code of the heaviest event of each session (NaN: none)
    scheduled: np.ndarray  # (S,) 1.0 if an event of the session was scheduled, 0.0 if not, NaN: none
    speaks: np.ndarray  # (S,) bool: the calendar covers the session's windows


@njit(cache=True)
def _one(
    close: np.ndarray,
    sess: np.ndarray,
    speaks: np.ndarray,
    pre_w: np.ndarray,
    last: np.ndarray,
    weight: np.ndarray,
    vol_n: int,
    pre_scale: float,
    post_days: int,
    post_scale: float,
    post_decay: float,
    z_scale: float,
) -> tuple[np.ndarray, ...]:
    """One instrument's valid bars in order; see ``EventDriven``. Row i uses bars <= i only."""
    n = close.shape[0]
    ret = np.full(n, np.nan)
    vol = np.full(n, np.nan)
    ev_ret = np.full(n, np.nan)
    ev_z = np.full(n, np.nan)
    age = np.full(n, np.nan)
    pre = np.full(n, np.nan)
    post = np.full(n, np.nan)
    strength = np.full(n, np.nan)
    confidence = np.zeros(n)
    seen_s = -1  # session of the latest event whose reaction this instrument has a bar for
    seen_r = np.nan
    seen_z = np.nan
    for i in range(n):
        if i >= 1:
            ret[i] = close[i] / close[i - 1] - 1.0
        if i >= vol_n:
            total = 0.0
            for s in range(i - vol_n + 1, i + 1):
                total += ret[s]
            m = total / vol_n
            sq = 0.0
            for s in range(i - vol_n + 1, i + 1):
                d = ret[s] - m
                sq += d * d
            vol[i] = math.sqrt(sq / vol_n)
        s_i = sess[i]
        if i >= 1 and weight[s_i] > 0.0:  # an event's reaction is in this bar's close
            seen_s = s_i
            seen_r = ret[i]
            v = vol[i - 1]  # volatility before the event
            seen_z = seen_r / v if v > 0.0 else np.nan
        lst = last[s_i]
        if lst >= 0:
            age[i] = s_i - lst
            if seen_s == lst:
                ev_ret[i] = seen_r
                ev_z[i] = seen_z
        if i < vol_n or not speaks[s_i]:
            continue
        pre[i] = -pre_scale * pre_w[s_i] if pre_w[s_i] > 0.0 else 0.0
        post[i] = 0.0
        c_post = 0.0
        if lst >= 0 and s_i - lst < post_days and not math.isnan(ev_z[i]):
            fade = weight[lst] * post_decay ** (s_i - lst)
            post[i] = post_scale * fade * math.tanh(ev_z[i] / z_scale)
            c_post = fade
        strength[i] = min(1.0, max(-1.0, pre[i] + post[i]))
        confidence[i] = min(1.0, max(pre_w[s_i], c_post))
    return strength, confidence, ret, vol, ev_ret, ev_z, age, pre, post


@register
class EventDriven(Strategy):
    """De-risking before scheduled macro events and drift after their reaction, per instrument.

    Events (``kinds`` of the calendar file, FOMC by default; weights w_k = ``weight_<kind>``) are mapped to the
    exchange session whose close first follows their public time (date + ``time_et`` in US Eastern; a missing
    time counts as the start of the day): an 08:30 release or a 14:15 statement on a session day reacts in that
    session's close; a release on a day without a session (a holiday) reacts in the next session. At the close
    of session t (calendar index s):

      1. Pre-event de-risking, from SCHEDULED events only (their dates are public in advance; an unscheduled
         move cannot be anticipated): over the scheduled events reacting in sessions s+k, 1 <= k <= P
         (P = ``pre_days``), closeness = max w_k (P + 1 - k)/P, and pre = -``pre_scale`` x closeness (the
         session right before an FOMC decision: -pre_scale). The event-risk premium is documented by Savor &
         Wilson (2013, JFQA) and Ai & Bansal (2018, Econometrica); note that Lucca & Moench (2015, JF) find
         equities DRIFT UP in the 24 hours before scheduled FOMC statements, so for FOMC this leg is a
         variance-reduction choice, not a return forecast: set ``weight_fomc`` or ``pre_scale`` to 0 to drop it.
      2. Post-event drift, from every event (scheduled or not) once its reaction is in a close: e = the latest
         session <= s with an event, a = s - e its age in sessions. On each instrument's valid bars, ret is the
         close-to-close return, vol_i the population std of the last ``vol_n`` returns up to bar i, and the
         event's z = ret_e / vol_{e-1} (the instrument's bar at session e against the volatility before it;
         no bar at session e: no drift). For a < ``post_days``:
         post = ``post_scale`` x w x ``post_decay``^a x tanh(z / ``z_scale``), following the sign and size of
         the event-session move (post-announcement drift: Bernanke & Kuttner 2005, JF, on the equity response
         to FOMC surprises; Brusa, Savor & Wilson 2020, RFS, on the persistence of announcement returns).
      3. strength = clip(pre + post, -1, 1); confidence = min(1, max(closeness, w x post_decay^a in the drift
         window)): 0 away from events, so a neutral 0 does not dilute the other agents in the CIO's blend.

    Abstains (NaN strength, confidence 0) on each instrument's first ``vol_n`` bars (volatility warm-up, so
    warmup = vol_n + 1) and on sessions whose windows the calendar does not cover: a session speaks only if the
    ``post_days`` sessions up to it start on or after, and the ``pre_days`` sessions after it end on or before,
    the coverage of every kind used (the file's ``# coverage:`` lines), so the agent never mistakes a span the
    file does not cover for a span without events. A kind without coverage in the file is an error.

    Rationale (per row and instrument, NaN where the instrument has no bar): sessions_to_next_event and
    next_event_kind (1 FOMC, 2 CPI, 3 NFP) of the next scheduled event known at the close (NaN beyond the
    coverage), sessions_since_event, last_event_kind, last_event_scheduled (1/0), last_event_return and
    last_event_z (NaN when the instrument had no bar at it), vol, ret, pre, post.

    ``panel.ts`` must hold session closes (UTC) or session dates of ``calendar``.
    """

    name = "event_driven"
    Params = EventDrivenParams

    def __init__(self, params: StrategyParams | dict | None = None):
        super().__init__(params)
        p = self.params
        path = Path(p.calendar_path)
        if not path.is_absolute():
            path = REPO_ROOT / path
        self.macro_calendar = load_calendar(path)
        missing = [k for k in p.kinds if k not in self.macro_calendar.coverage]
        if missing:
            raise CalendarError(
                f"{path}: no coverage line for event kinds {missing}; this file covers "
                f"{sorted(self.macro_calendar.coverage) or 'no kind'} (set kinds to those, or add sourced dates)"
            )
        self._sessions = self._map_sessions()

    @property
    def warmup(self) -> int:
        return self.params.vol_n + 1

    def _map_sessions(self) -> _SessionEvents:
        p = self.params
        cal = session_calendar(p.calendar)
        size = len(cal.labels)
        weight = np.zeros(size)
        kind = np.full(size, np.nan)
        scheduled = np.full(size, np.nan)
        sched_w = np.zeros(size)
        sched_kind = np.full(size, np.nan)
        for ev in self.macro_calendar.events:
            if ev.kind not in p.kinds:
                continue
            s = int(np.searchsorted(cal.closes, ev.public_utc_ns, side="right"))  # first close after it
            if s >= size:
                raise CalendarError(
                    f"{self.macro_calendar.path}:{ev.line}: {ev.date.date()} is after the last {p.calendar} session"
                )
            w = p.weight(ev.kind)
            if math.isnan(kind[s]) or w > weight[s]:
                weight[s], kind[s] = w, KIND_CODES[ev.kind]
            scheduled[s] = max(0.0 if math.isnan(scheduled[s]) else scheduled[s], float(ev.scheduled))
            if ev.scheduled and (math.isnan(sched_kind[s]) or w > sched_w[s]):
                sched_w[s], sched_kind[s] = w, KIND_CODES[ev.kind]
        has_event = ~np.isnan(kind)
        last = np.where(has_event, np.arange(size), -1)
        last = np.maximum.accumulate(last).astype(np.int64)
        # next scheduled event strictly after each session
        sched_idx = np.flatnonzero(~np.isnan(sched_kind))
        pos = np.searchsorted(sched_idx, np.arange(size), side="right")
        has_next = pos < sched_idx.size
        nxt = np.zeros(size, dtype=np.int64)
        nxt[has_next] = sched_idx[pos[has_next]]
        next_gap = np.where(has_next, nxt - np.arange(size), np.nan)
        next_kind = np.where(has_next, sched_kind[nxt], np.nan)
        pre = np.zeros(size)
        for k in range(1, p.pre_days + 1):
            ahead = np.zeros(size)
            ahead[: size - k] = sched_w[k:]
            pre = np.maximum(pre, ahead * (p.pre_days + 1 - k) / p.pre_days)
        # coverage: the sessions [s - post_days + 1, s + pre_days] lie in the span every used kind covers
        labels = cal.labels
        first = max(self.macro_calendar.coverage[k][0] for k in p.kinds)
        last_day = min(self.macro_calendar.coverage[k][1] for k in p.kinds)
        lo = int(np.searchsorted(labels, first.value, side="left"))  # first session on/after the start
        hi = int(np.searchsorted(labels, last_day.value, side="right")) - 1  # last session on/before the end
        speaks = np.zeros(size, dtype=bool)
        start, stop = lo + max(p.post_days - 1, 0), hi - p.pre_days
        if stop >= start:
            speaks[start : stop + 1] = True
        inside = np.zeros(size, dtype=bool)
        if hi >= lo:
            inside[lo : hi + 1] = True
        next_gap[~inside] = np.nan
        next_kind[~inside] = np.nan
        # the next scheduled event must itself lie in the coverage to be known
        beyond = ~np.isnan(next_gap) & (np.arange(size) + np.nan_to_num(next_gap) > hi)
        next_gap[beyond] = np.nan
        next_kind[beyond] = np.nan
        return _SessionEvents(pre, next_gap, next_kind, last, weight, kind, scheduled, speaks)

    def compute(self, panel: Panel) -> Advice:
        p = self.params
        ev = self._sessions
        shape = panel.close.shape
        strength = np.full(shape, np.nan)
        confidence = np.zeros(shape)
        names = (
            "sessions_to_next_event",
            "next_event_kind",
            "sessions_since_event",
            "last_event_kind",
            "last_event_scheduled",
            "last_event_return",
            "last_event_z",
            "vol",
            "ret",
            "pre",
            "post",
        )
        rationale = {key: np.full(shape, np.nan) for key in names}
        if len(panel) == 0:
            return Advice(strength, confidence, rationale)
        sess = session_calendar(p.calendar).session_index(panel.ts)
        for j in range(shape[1]):
            rows = np.flatnonzero(~np.isnan(panel.close[:, j]))
            if rows.size == 0:
                continue
            s_rows = sess[rows]
            s, c, ret, vol, ev_ret, ev_z, age, pre, post = _one(
                np.ascontiguousarray(panel.close[rows, j], dtype=np.float64),
                s_rows,
                ev.speaks,
                ev.pre,
                ev.last,
                ev.weight,
                p.vol_n,
                float(p.pre_scale),
                p.post_days,
                float(p.post_scale),
                float(p.post_decay),
                float(p.z_scale),
            )
            strength[rows, j] = s
            confidence[rows, j] = c
            last = ev.last[s_rows]
            has_last = last >= 0
            last_kind = np.where(has_last, ev.kind[np.maximum(last, 0)], np.nan)
            last_sched = np.where(has_last, ev.scheduled[np.maximum(last, 0)], np.nan)
            for key, values in (
                ("sessions_to_next_event", ev.next_gap[s_rows]),
                ("next_event_kind", ev.next_kind[s_rows]),
                ("sessions_since_event", age),
                ("last_event_kind", last_kind),
                ("last_event_scheduled", last_sched),
                ("last_event_return", ev_ret),
                ("last_event_z", ev_z),
                ("vol", vol),
                ("ret", ret),
                ("pre", pre),
                ("post", post),
            ):
                rationale[key][rows, j] = values
        return Advice(strength, confidence, rationale)
