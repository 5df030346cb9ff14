"""The event-driven agent: the shipped calendar against independent lists, its rule on the shipped data,
abstention outside the calendar's coverage, and the errors of a bad calendar file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from strategies import registry
from strategies.base import Panel
from strategies.event_driven import CalendarError, EventDriven, load_calendar
from strategies.session import session_calendar

CALENDAR = Path(__file__).resolve().parents[2] / "configs" / "macro_events.csv"
HEADER = "date,time_et,kind,scheduled,source,note\n"

# Scheduled FOMC decision days from a list independent of the file's first source (H21): Weiland & Yeo (2024),
# https://github.com/henryrweiland/Central-Bank-Meeting-Dates (individual_central_banks/fed_meeting_dates.csv,
# "Source: FOMC website"), for the years pyfedwatch's list was found incomplete and the crisis year.
WY24 = {
    2006: ["01-31", "03-28", "05-10", "06-29", "08-08", "09-20", "10-25", "12-12"],
    2007: ["01-31", "03-21", "05-09", "06-28", "08-07", "09-18", "10-31", "12-11"],
    2008: ["01-30", "03-18", "04-30", "06-25", "08-05", "09-16", "10-29", "12-16"],
    2011: ["01-26", "03-15", "04-27", "06-22", "08-09", "09-21", "11-02", "12-13"],
}
# Every change of the intended federal funds rate 2005-2008 in the Board's table (federalreserve.gov/fomc/
# fundsrate.htm, copy of 2009-01-17 in the UNT End of Term archive); True: an intermeeting (unscheduled) move.
FUNDS_RATE_CHANGES = {
    "2005-03-22": True, "2005-05-03": True, "2005-06-30": True, "2005-08-09": True, "2005-09-20": True,
    "2005-11-01": True, "2005-12-13": True, "2006-01-31": True, "2006-03-28": True, "2006-05-10": True,
    "2006-06-29": True, "2007-09-18": True, "2007-10-31": True, "2007-12-11": True, "2008-01-22": False,
    "2008-01-30": True, "2008-03-18": True, "2008-04-30": True, "2008-10-08": False, "2008-10-29": True,
    "2008-12-16": True,
}  # fmt: skip
UNSCHEDULED = ["2001-01-03", "2001-04-18", "2001-09-17", "2008-01-22", "2008-10-08"]
PRESS_CONFERENCES = ["2011-04-27", "2011-06-22", "2011-11-02", "2012-01-25", "2012-04-25", "2012-06-20",
                     "2012-09-13", "2012-12-12"]  # fmt: skip


@pytest.fixture(scope="module")
def shipped():
    return load_calendar(CALENDAR)


@pytest.fixture(scope="module")
def frame(shipped) -> pd.DataFrame:
    return pd.DataFrame(
        [(e.date, e.time_et, e.kind, e.scheduled, e.source) for e in shipped.events],
        columns=["date", "time_et", "kind", "scheduled", "source"],
    )


def test_shipped_calendar_covers_fomc_2000_2013_and_nothing_else(shipped, frame) -> None:
    assert shipped.coverage == {"FOMC": (pd.Timestamp("2000-01-01"), pd.Timestamp("2013-12-31"))}
    assert set(frame["kind"]) == {"FOMC"}  # CPI and NFP could not be sourced: none shipped, no coverage
    assert (frame["source"] != "").all()


def test_eight_scheduled_fomc_decisions_a_year(frame) -> None:
    scheduled = frame[frame["scheduled"]]
    counts = scheduled.groupby(scheduled["date"].dt.year).size()
    assert counts.index.tolist() == list(range(2000, 2014))
    assert (counts == 8).all(), counts[counts != 8]


def test_unscheduled_rows_are_the_intermeeting_rate_moves(frame) -> None:
    unscheduled = frame[~frame["scheduled"]]
    assert unscheduled["date"].dt.strftime("%Y-%m-%d").tolist() == UNSCHEDULED


def test_every_date_is_an_xnys_session(frame) -> None:
    cal = session_calendar("XNYS")
    labels = pd.DatetimeIndex(cal.labels.view("datetime64[ns]"))
    assert (frame["date"].dt.day_of_week < 5).all()
    assert frame["date"].isin(labels).all(), frame.loc[~frame["date"].isin(labels), "date"]


def test_scheduled_fomc_dates_match_an_independent_list(frame) -> None:
    scheduled = frame[frame["scheduled"]]
    for year, days in WY24.items():
        got = scheduled.loc[scheduled["date"].dt.year == year, "date"].dt.strftime("%m-%d").tolist()
        assert got == days, year


def test_every_funds_rate_change_is_an_event_with_its_schedule_flag(frame) -> None:
    by_date = frame.set_index(frame["date"].dt.strftime("%Y-%m-%d"))["scheduled"]
    for day, scheduled in FUNDS_RATE_CHANGES.items():
        assert by_date[day] == scheduled, day


def test_statement_times_follow_the_documented_eras(frame) -> None:
    scheduled = frame[frame["scheduled"]]
    day = scheduled["date"].dt.strftime("%Y-%m-%d")
    expected = np.where(day.isin(PRESS_CONFERENCES), "12:30", np.where(day >= "2013-03-20", "14:00", "14:15"))
    assert (scheduled["time_et"].to_numpy() == expected).all()
    assert (frame.loc[~frame["scheduled"], "time_et"] == "").all()  # not sourced, left empty


# --- the rule on the shipped data ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strategy() -> EventDriven:
    return registry.create("event_driven")


@pytest.fixture(scope="module")
def advice(strategy: EventDriven, panel: Panel):
    return strategy.compute(panel)


def _row(panel: Panel, day: str) -> int:
    return int(np.flatnonzero(panel.ts == pd.Timestamp(day).value)[0])


def _z(panel: Panel, j: int, t: int, vol_n: int) -> float:
    """The event-session return of column j at row t over the population std of the vol_n returns before it."""
    close = panel.close[:, j]
    ret = close[1:] / close[:-1] - 1.0  # ret[k] is the return of row k + 1
    before = ret[t - 1 - vol_n : t - 1]
    return (close[t] / close[t - 1] - 1.0) / before.std()


def test_unscheduled_cut_drifts_after_and_is_not_anticipated(strategy, advice, panel: Panel) -> None:
    p, ibm = strategy.params, panel.symbols.index("IBM")
    t = _row(panel, "2008-01-22")  # intermeeting cut before the open; the next scheduled decision is 2008-01-30
    z = _z(panel, ibm, t, p.vol_n)
    assert advice.rationale["last_event_z"][t, ibm] == pytest.approx(z, rel=1e-12)
    assert advice.strength[t, ibm] == pytest.approx(p.post_scale * math.tanh(z / p.z_scale), rel=1e-12)
    assert advice.confidence[t, ibm] == pytest.approx(1.0)
    assert advice.rationale["sessions_to_next_event"][t, ibm] == 6
    before = _row(panel, "2008-01-18")  # the session before: nothing scheduled within pre_days
    assert advice.strength[before, ibm] == 0.0 and advice.confidence[before, ibm] == 0.0
    # three sessions later: the drift decays and the 2008-01-30 decision is 3 sessions ahead
    t3 = _row(panel, "2008-01-25")
    pre = -p.pre_scale * (p.pre_days + 1 - 3) / p.pre_days
    post = p.post_scale * p.post_decay**3 * math.tanh(z / p.z_scale)
    assert advice.rationale["sessions_since_event"][t3, ibm] == 3
    assert advice.rationale["pre"][t3, ibm] == pytest.approx(pre, rel=1e-12)
    assert advice.strength[t3, ibm] == pytest.approx(pre + post, rel=1e-12)
    # the close before the scheduled decision: full de-risking, the drift window (5 sessions) has closed
    t5 = _row(panel, "2008-01-29")
    assert advice.strength[t5, ibm] == pytest.approx(-p.pre_scale)
    assert advice.rationale["post"][t5, ibm] == 0.0
    assert advice.rationale["next_event_kind"][t5, ibm] == 1.0  # FOMC


def test_scheduled_decision_reacts_in_its_own_close(strategy, advice, panel: Panel) -> None:
    p, msft = strategy.params, panel.symbols.index("MSFT")
    t = _row(panel, "2008-09-16")  # 14:15 statement, before the 16:00 close
    z = _z(panel, msft, t, p.vol_n)
    assert advice.rationale["sessions_since_event"][t, msft] == 0
    assert advice.rationale["last_event_scheduled"][t, msft] == 1.0
    assert advice.strength[t, msft] == pytest.approx(p.post_scale * math.tanh(z / p.z_scale), rel=1e-12)


def test_quiet_sessions_are_neutral_with_no_confidence(advice, panel: Panel) -> None:
    t = _row(panel, "2008-02-20")  # 14 sessions after 2008-01-30, 18 before 2008-03-18
    assert (advice.strength[t] == 0.0).all() and (advice.confidence[t] == 0.0).all()


# --- coverage, event timing and errors with small calendar files --------------------------------------------


def _write(tmp_path: Path, body: str, coverage: str = "# coverage: FOMC 2006-01-01 2006-12-31\n") -> Path:
    path = tmp_path / "events.csv"
    path.write_text("# test calendar\n" + coverage + HEADER + body, encoding="utf-8")
    return path


def test_abstains_outside_the_coverage(tmp_path: Path, panel: Panel) -> None:
    path = _write(tmp_path, "2006-03-28,14:15,FOMC,true,test,\n2006-05-10,14:15,FOMC,true,test,\n")
    s = EventDriven({"calendar_path": str(path)})
    a = s.compute(panel)
    days = pd.DatetimeIndex(panel.ts.view("datetime64[ns]"))
    p = s.params
    first = int(np.flatnonzero(days >= "2006-01-01")[0]) + p.post_days - 1  # the drift window must be covered
    last = int(np.flatnonzero(days <= "2006-12-31")[-1]) - p.pre_days  # and so must the pre-event window
    speaks = ~np.isnan(a.strength[:, 0])
    assert np.flatnonzero(speaks).tolist() == list(range(first, last + 1))
    assert (a.confidence[~speaks] == 0).all()
    # after 2006-05-10 the file knows no further event up to its end: no next event, not a guessed one
    assert np.isnan(a.rationale["sessions_to_next_event"][_row(panel, "2006-06-01"), 0])
    assert a.rationale["sessions_to_next_event"][_row(panel, "2006-03-27"), 0] == 1
    assert a.strength[_row(panel, "2006-03-27"), 0] == pytest.approx(-p.pre_scale)


def test_an_event_is_seen_at_the_first_close_after_it(tmp_path: Path) -> None:
    body = (
        "2006-04-14,08:30,FOMC,true,Good Friday (no session),\n"  # reacts on Monday 2006-04-17
        "2006-06-07,16:30,FOMC,true,after the close,\n"  # reacts on 2006-06-08
        "2006-08-08,,FOMC,false,no time,\n"  # same session
    )
    s = EventDriven({"calendar_path": str(_write(tmp_path, body))})
    cal = session_calendar("XNYS")
    labels = pd.DatetimeIndex(cal.labels.view("datetime64[ns]"))
    events = labels[np.flatnonzero(s._sessions.weight > 0)].strftime("%Y-%m-%d").tolist()
    assert events == ["2006-04-17", "2006-06-08", "2006-08-08"]


@pytest.mark.parametrize(
    ("body", "coverage", "message"),
    [
        ("2006-13-01,14:15,FOMC,true,x,\n", None, r":4: date '2006-13-01' is not a calendar date"),
        ("06-03-28,14:15,FOMC,true,x,\n", None, r":4: date '06-03-28' is not a date YYYY-MM-DD"),
        ("2006-03-28,14:15,ECB,true,x,\n", None, r":4: unknown kind 'ECB'"),
        ("2006-03-28,2:15pm,FOMC,true,x,\n", None, r":4: time_et '2:15pm' is not HH:MM"),
        ("2006-03-28,14:15,FOMC,yes,x,\n", None, r":4: scheduled 'yes' must be true or false"),
        ("2006-03-28,14:15,FOMC,true,,\n", None, r":4: source is empty"),
        ("2006-03-28,14:15,FOMC,true,x\n", None, r":4: 5 fields, expected 6"),
        ("2006-03-28,14:15,FOMC,true,x,\n2006-03-28,14:15,FOMC,true,y,\n", None,
         r":5: duplicate FOMC event on 2006-03-28 \(first on line 4\)"),
        ("2007-01-31,14:15,FOMC,true,x,\n", None, r":4: FOMC 2007-01-31 is outside its coverage"),
        ("2006-03-15,08:30,CPI,true,x,\n", None, r":4: no '# coverage: CPI START END' line"),
        ("", "# coverage: FOMC 2006-12-31 2006-01-01\n", r":2: coverage of FOMC ends"),
        ("", "# coverage: FOMC 2006\n", r":2: a coverage line is"),
    ],
)  # fmt: skip
def test_a_bad_calendar_names_file_line_and_rule(tmp_path: Path, body: str, coverage: str | None, message: str) -> None:
    path = _write(tmp_path, body, *([coverage] if coverage else []))
    with pytest.raises(CalendarError, match=str(path).replace(".", r"\.") + message):
        EventDriven({"calendar_path": str(path)})


def test_a_bad_header_and_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("# coverage: FOMC 2006-01-01 2006-12-31\ndate,kind\n", encoding="utf-8")
    with pytest.raises(CalendarError, match=r":2: the header must be date,time_et,kind,scheduled,source,note"):
        EventDriven({"calendar_path": str(path)})
    with pytest.raises(CalendarError, match="cannot read the event calendar"):
        EventDriven({"calendar_path": str(tmp_path / "missing.csv")})


def test_kinds_the_shipped_file_does_not_cover_are_refused() -> None:
    with pytest.raises(CalendarError, match=r"no coverage line for event kinds \['CPI', 'NFP'\]"):
        EventDriven({"kinds": ["FOMC", "CPI", "NFP"]})
    with pytest.raises(ValidationError, match="unknown event kinds"):
        EventDriven({"kinds": ["GDP"]})
