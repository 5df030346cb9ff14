"""The session strategy on the real 4-stock panels: calendar facts, the rolling estimator, the rule, params.

The contract every strategy honours (ranges, prefix stability, no look-ahead, gaps) is in test_contract.py.
"""

from __future__ import annotations

from functools import lru_cache

import exchange_calendars
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from strategies import registry
from strategies.base import Advice, Panel
from strategies.session import EFFECTS, Session, session_calendar

@pytest.fixture(scope="module")
def full(panel: Panel) -> Advice:
    return Session().compute(panel)


@pytest.fixture(scope="module")
def gappy_full(gappy_panel: Panel) -> Advice:
    return Session().compute(gappy_panel)


def _row(panel: Panel, day: str) -> int:
    rows = np.flatnonzero(panel.ts == pd.Timestamp(day).value)
    assert rows.size == 1, day
    return int(rows[0])


def test_registry_finds_session() -> None:
    assert registry.get("session") is Session
    strategy = registry.create("session", {"lookback": 100, "calendar": "XLON"})
    assert isinstance(strategy, Session) and strategy.params.lookback == 100


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"calendar": "NOPE"}, r"unknown exchange calendar 'NOPE'"),
        ({"min_occurrences": 40}, r"min_occurrences \(40\) must be <= max_occurrences \(36\)"),
        ({"lookback": 1}, "lookback"),
        ({"gap_n": 0}, "gap_n"),
        ({"max_occurrences": 0}, "max_occurrences"),
        ({"prior_n": 0.0}, "prior_n"),
        ({"lookback": "long"}, "lookback"),
        ({"window": 20}, "window"),
    ],
)
def test_bad_params_raise_validation_error(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Session(params)


@pytest.mark.parametrize(
    ("params", "warmup"), [({}, 251), ({"lookback": 100, "gap_n": 20}, 101), ({"lookback": 30, "gap_n": 70}, 71)]
)
def test_abstains_exactly_during_warmup(panel: Panel, params: dict, warmup: int, assert_warmup) -> None:
    strategy = Session(params)
    assert strategy.warmup == warmup
    assert_warmup(strategy.compute(panel), warmup)


# ---------------------------------------------------------------------------------------------------
# Calendar facts


def test_half_day_closes_early_and_both_stamps_name_the_same_session() -> None:
    cal = session_calendar("XNYS")
    assert session_calendar("XNYS") is cal  # built once per process
    half = pd.Timestamp("2008-11-28 18:00", tz="UTC").value
    full_day = pd.Timestamp("2008-12-01 21:00", tz="UTC").value
    i = cal.session_index(np.array([half, pd.Timestamp("2008-11-28").value, full_day]))
    assert i[0] == i[1] and i[2] == i[0] + 1
    assert cal.closes[i[0]] == half and cal.flags[i[0], EFFECTS.index("half_day")]
    assert not cal.flags[i[2], EFFECTS.index("half_day")]


@pytest.mark.parametrize(
    "stamp", ["2008-12-25", "2008-11-29", "2008-11-28 21:00", "1989-12-29", "2200-01-02"], ids=str
)
def test_a_timestamp_that_is_not_a_session_is_refused(panel: Panel, stamp: str) -> None:
    ts = panel.ts[:3].copy()
    ts[2] = pd.Timestamp(stamp, tz="UTC").value
    bad = Panel(ts, panel.symbols, panel.open[:3], panel.high[:3], panel.low[:3], panel.close[:3], panel.volume[:3])
    with pytest.raises(ValueError, match="row 2: .* is neither the close nor the date of a XNYS session"):
        Session().compute(bad)


# session t -> the effects of the next XNYS session, checked by hand against the 2001-2012 calendars
NEXT_SESSION = [
    ("2008-11-26", "2008-11-28", {"half_day", "post_holiday", "week_last", "month_last"}),  # Thanksgiving
    ("2008-11-28", "2008-12-01", {"month_first", "week_first"}),
    ("2008-12-23", "2008-12-24", {"half_day", "pre_holiday"}),  # the session before Christmas
    ("2008-12-24", "2008-12-26", {"post_holiday", "week_last"}),
    ("2008-12-30", "2008-12-31", {"month_last", "pre_holiday"}),
    ("2008-12-31", "2009-01-02", {"month_first", "post_holiday", "week_last"}),  # not the first of its week
    ("2009-12-31", "2010-01-04", {"month_first", "week_first", "post_holiday"}),  # Jan 1 was a Friday
    ("2009-01-16", "2009-01-20", {"week_first", "post_holiday"}),  # Martin Luther King day
    ("2009-04-08", "2009-04-09", {"week_last", "pre_holiday"}),  # Good Friday
    ("2010-05-27", "2010-05-28", {"month_last", "week_last", "pre_holiday"}),  # Memorial Day was May 31
    ("2010-05-28", "2010-06-01", {"month_first", "week_first", "post_holiday"}),
    ("2001-09-07", "2001-09-10", {"week_first", "week_last", "pre_holiday"}),  # closed Sep 11-14
    ("2001-09-10", "2001-09-17", {"week_first", "post_holiday"}),
    ("2012-10-26", "2012-10-31", {"week_first", "month_last", "post_holiday"}),  # hurricane Sandy
    ("2012-11-27", "2012-11-28", set()),  # an ordinary Wednesday
]


@pytest.mark.parametrize(("day", "next_day", "effects"), NEXT_SESSION, ids=[c[0] for c in NEXT_SESSION])
def test_next_session_effects_on_hand_checked_dates(
    gappy_panel: Panel, gappy_full: Advice, day: str, next_day: str, effects: set[str]
) -> None:
    cal = session_calendar("XNYS")
    i = int(cal.session_index(np.array([pd.Timestamp(day).value]))[0])
    assert cal.labels[i + 1] == pd.Timestamp(next_day).value
    assert {e for e, on in zip(EFFECTS, cal.next_flags(np.array([i]))[0]) if on} == effects
    t = _row(gappy_panel, day)
    valid = gappy_panel.valid[t]
    for e in EFFECTS:
        got = gappy_full.rationale[f"next_{e}"][t]
        assert (got[valid] == float(e in effects)).all(), e
        assert np.isnan(got[~valid]).all(), e


@lru_cache(maxsize=None)
def _pandas_flags(code: str) -> pd.DataFrame:
    """The effects of every session, rebuilt with pandas from exchange_calendars directly."""
    cal = exchange_calendars.get_calendar(code, start="1990-01-01")
    sessions = pd.DatetimeIndex(cal.sessions)
    s = pd.Series(sessions, index=sessions)
    month, week = s.dt.to_period("M"), s.dt.to_period("W-SUN")
    has_next = s.shift(-1).notna()
    closed = pd.bdate_range(sessions[0], sessions[-1]).difference(sessions)  # weekdays without a session
    return pd.DataFrame(
        {
            "month_first": month != month.shift(1),
            "month_last": (month != month.shift(-1)) & has_next,
            "week_first": week != week.shift(1),
            "week_last": (week != week.shift(-1)) & has_next,
            "half_day": sessions.isin(cal.early_closes),
            "pre_holiday": (sessions + pd.offsets.BDay(1)).isin(closed),
            "post_holiday": (sessions - pd.offsets.BDay(1)).isin(closed),
        },
        index=sessions,
    )


def test_session_flags_match_a_pandas_rebuild_of_the_calendar() -> None:
    cal = session_calendar("XNYS")
    expected = _pandas_flags("XNYS")
    assert np.array_equal(cal.labels, expected.index.as_unit("ns").asi8)
    for e, name in enumerate(EFFECTS):
        assert np.array_equal(cal.flags[:, e], expected[name].to_numpy()), name
    half = cal.flags[:, EFFECTS.index("half_day")]
    close_time = (cal.closes - cal.labels)[half]
    assert (close_time < (cal.closes - cal.labels)[~half].min()).all()  # half days do close early


def test_close_stamps_and_date_stamps_give_identical_advice(panel: Panel, full: Advice, assert_same_rows) -> None:
    cal = session_calendar("XNYS")
    closes = cal.closes[cal.session_index(panel.ts)]
    assert pd.Timestamp(closes[_row(panel, "2008-11-28")], tz="UTC") == pd.Timestamp("2008-11-28 18:00", tz="UTC")
    stamped = Panel(closes, panel.symbols, panel.open, panel.high, panel.low, panel.close, panel.volume)
    assert_same_rows(Session().compute(stamped), full, len(panel))


# ---------------------------------------------------------------------------------------------------
# The estimator and the rule


def _pandas_estimates(panel: Panel, j: int, p) -> dict[str, pd.Series]:
    """mu_e, n_e, base, vol and the gap features of instrument j, recomputed with pandas rolling windows."""
    valid = panel.valid[:, j]
    index = pd.DatetimeIndex(panel.ts[valid])
    close = pd.Series(panel.close[valid, j], index=index)
    open_ = pd.Series(panel.open[valid, j], index=index)
    flags = _pandas_flags(p.calendar).reindex(index)
    assert flags.notna().all().all()
    sessions = exchange_calendars.get_calendar(p.calendar, start="1990-01-01").sessions
    position = pd.Series(sessions.get_indexer(index), index=index)

    ret = close.pct_change()
    base = ret.rolling(p.lookback).mean()
    vol = ret.rolling(p.lookback).std(ddof=0)
    excess = ret - base.shift(1)
    follows = position.diff() == 1
    out = {"base": base, "vol": vol, "ret": ret}
    for e in EFFECTS:
        x = excess[flags[e] & follows & excess.notna()]
        out[f"mu_{e}"] = x.rolling(p.max_occurrences, min_periods=1).mean().reindex(index).ffill()
        out[f"n_{e}"] = x.rolling(p.max_occurrences, min_periods=1).count().reindex(index).ffill().fillna(0.0)
    gap = open_ / close.shift(1) - 1
    intraday = close / open_ - 1
    out["gap"], out["intraday"] = gap, intraday
    out["gap_beta"] = (gap * intraday).rolling(p.gap_n).sum() / (gap * gap).rolling(p.gap_n).sum()
    return out


@pytest.mark.parametrize(
    ("symbol", "params"), [("AAPL", {}), ("GOOG", {}), ("IBM", {"lookback": 60, "max_occurrences": 10})]
)
def test_rolling_estimates_match_pandas(gappy_panel: Panel, symbol: str, params: dict) -> None:
    strategy = Session(params)
    advice = strategy.compute(gappy_panel)
    j = gappy_panel.symbols.index(symbol)
    valid = gappy_panel.valid[:, j]
    expected = _pandas_estimates(gappy_panel, j, strategy.params)
    for key, series in expected.items():
        got = advice.rationale[key][valid, j]
        np.testing.assert_allclose(got, series.to_numpy(), rtol=1e-9, atol=1e-12, err_msg=key)
    counts = {e: advice.rationale[f"n_{e}"][valid, j] for e in EFFECTS}
    assert all(c[-1] == strategy.params.max_occurrences for e, c in counts.items() if e != "half_day")
    assert counts["half_day"][-1] >= 10


def test_an_occurrence_counts_at_its_own_close_not_before(panel: Panel, full: Advice) -> None:
    """The half day 2008-11-28 is forecast on 2008-11-26 and its return enters the estimate on 2008-11-28."""
    t = _row(panel, "2008-11-26")
    n = full.rationale["n_half_day"]
    mu = full.rationale["mu_half_day"]
    assert (full.rationale["next_half_day"][t] == 1).all()
    assert np.array_equal(n[t + 1], n[t] + 1) and np.array_equal(mu[t], mu[t - 1])
    assert not np.array_equal(mu[t + 1], mu[t])
    # half days only ever move the half-day count
    half = full.rationale["n_half_day"][1:] != full.rationale["n_half_day"][:-1]
    days = pd.DatetimeIndex(panel.ts[1:])[half.any(axis=1)]
    assert set(days.strftime("%m-%d")) <= {"07-03", "11-23", "11-24", "11-25", "11-26", "11-27", "11-28", "12-24"}


def _rule(rationale: dict[str, np.ndarray], p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The documented rule, from the rationale: (expected, strength, confidence)."""
    n = np.stack([rationale[f"n_{e}"] for e in EFFECTS])
    mu = np.stack([rationale[f"mu_{e}"] for e in EFFECTS])
    applies = (np.stack([rationale[f"next_{e}"] for e in EFFECTS]) == 1) & (n >= p.min_occurrences)
    c = np.where(applies, n / (n + p.prior_n), 0.0)
    weight = c.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(weight > 0, np.where(applies, c * mu, 0.0).sum(axis=0) / weight, 0.0)
    strength = np.where(weight > 0, np.tanh(expected / rationale["vol"]), 0.0)
    return expected, strength, c.max(axis=0)


@pytest.mark.parametrize("params", [{}, {"min_occurrences": 1, "prior_n": 3.0}, {"lookback": 120, "gap_n": 130}])
def test_strength_and_confidence_follow_the_documented_rule(gappy_panel: Panel, params: dict) -> None:
    strategy = Session(params)
    advice = strategy.compute(gappy_panel)
    speaking = ~np.isnan(advice.strength)
    expected, strength, confidence = _rule(advice.rationale, strategy.params)
    np.testing.assert_allclose(advice.rationale["expected"][speaking], expected[speaking], rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(advice.strength[speaking], strength[speaking], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(advice.confidence[speaking], confidence[speaking], rtol=1e-12)
    assert (advice.confidence[~speaking] == 0).all()
    # every kind of row occurs: no effect, one effect, several effects blended
    used = sum(
        (advice.rationale[f"next_{e}"] == 1) & (advice.rationale[f"n_{e}"] >= strategy.params.min_occurrences)
        for e in EFFECTS
    )
    for k in (0, 1, 2, 3):
        assert (speaking & (used == k)).any(), k
    assert (advice.strength[speaking & (used == 0)] == 0).all()
    active = advice.strength[speaking & (used > 0)]
    assert (active > 0.2).any() and (active < -0.2).any()


def test_first_of_month_rows_use_the_month_first_estimate(panel: Panel, full: Advice) -> None:
    """Before a first-of-month session with no other effect, expected is exactly mu_month_first (once it has 5)."""
    r = full.rationale
    only = (r["next_month_first"] == 1) & (sum(r[f"next_{e}"] for e in EFFECTS) == 1)
    only &= ~np.isnan(full.strength) & (r["n_month_first"] >= 5)
    assert only.sum() > 50
    np.testing.assert_allclose(r["expected"][only], r["mu_month_first"][only], rtol=1e-15)  # c*mu/c
    n = r["n_month_first"][only]
    assert np.array_equal(full.confidence[only], n / (n + 20.0))
    assert pd.DatetimeIndex(panel.ts[only.any(axis=1)]).is_month_end.sum() > 0  # usually the calendar month end


def test_gap_beta_tells_fading_from_continuation(full: Advice) -> None:
    beta = full.rationale["gap_beta"]
    assert (beta[~np.isnan(beta)] < 0).any() and (beta[~np.isnan(beta)] > 0).any()
    g, i = full.rationale["gap"], full.rationale["intraday"]
    assert np.isnan(g[0]).all() and not np.isnan(i[0]).any()
