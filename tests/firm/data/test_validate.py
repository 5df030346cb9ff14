"""Validation on real AAPL bars with injected faults."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from firm.data import REASONS, Quarantined, get_calendar, validate, write_quarantine

LONG_STOCKS = ("AAPL", "MSFT", "IBM", "GOOG")

DAY = pd.Timestamp("2010-06-15")


def _reasons(records: list[Quarantined]) -> list[tuple[str, str]]:
    return [(r.date, r.reason) for r in records]


def _assert_clean_output(clean: pd.DataFrame) -> None:
    assert clean.index.is_monotonic_increasing and clean.index.is_unique
    assert clean.index.name == "date"
    assert not clean.isna().any().any()


def test_real_aapl_is_clean(aapl, xnys):
    clean, records = validate("AAPL", aapl, xnys)
    assert records == []
    pd.testing.assert_frame_equal(clean, aapl)


@pytest.mark.parametrize("symbol", LONG_STOCKS)
def test_default_universe_is_clean(sample, xnys, symbol):
    clean, records = validate(symbol, sample.load(symbol), xnys, "2004-08-19", "2013-03-01")
    assert records == []
    assert len(clean) == 2148
    assert clean.index[0] == pd.Timestamp("2004-08-19") and clean.index[-1] == pd.Timestamp("2013-03-01")


def _set(field: str, value):
    def inject(bars: pd.DataFrame) -> None:
        bars.loc[DAY, field] = value(bars.loc[DAY]) if callable(value) else value

    return inject


def _swap_high_low(bars: pd.DataFrame) -> None:
    bars.loc[DAY, ["high", "low"]] = bars.loc[DAY, ["low", "high"]].to_numpy()


VALUE_FAULTS = [
    ("nan", _set("close", np.nan)),
    ("nan", _set("volume", np.nan)),
    ("nan", _set("high", np.inf)),
    ("non_positive_price", _set("low", 0.0)),
    ("non_positive_price", _set("open", -1.0)),
    ("high_below_low", _swap_high_low),
    ("open_outside_range", _set("open", lambda row: row["high"] * 1.05)),
    ("open_outside_range", _set("open", lambda row: row["low"] * 0.95)),
    ("close_outside_range", _set("close", lambda row: row["high"] * 1.05)),
    ("close_outside_range", _set("close", lambda row: row["low"] * 0.95)),
    ("negative_volume", _set("volume", -100.0)),
]


@pytest.mark.parametrize("reason,inject", VALUE_FAULTS)
def test_value_fault_is_quarantined(aapl, xnys, reason, inject):
    raw = aapl.copy()
    inject(raw)
    bad_row = raw.loc[DAY].to_dict()
    clean, records = validate("AAPL", raw, xnys)
    assert _reasons(records) == [("2010-06-15", reason), ("2010-06-15", "missing_session")]
    record = records[0]
    assert record.symbol == "AAPL" and record.detail
    assert record.bar == {k: (v if np.isfinite(v) else None) for k, v in bad_row.items()}
    assert DAY not in clean.index
    assert len(clean) == len(aapl) - 1
    _assert_clean_output(clean)


def test_row_is_reported_once_with_first_reason(aapl, xnys):
    aapl.loc[DAY, ["close", "volume"]] = [np.nan, -5.0]
    aapl.loc[DAY, "low"] = -1.0
    _, records = validate("AAPL", aapl, xnys)
    assert _reasons(records) == [("2010-06-15", "nan"), ("2010-06-15", "missing_session")]


def test_zero_volume_is_fine(aapl, xnys):
    aapl.loc[DAY, "volume"] = 0.0
    clean, records = validate("AAPL", aapl, xnys)
    assert records == [] and clean.loc[DAY, "volume"] == 0.0


@pytest.mark.parametrize("identical", [True, False])
def test_duplicates_quarantine_every_copy(aapl, xnys, identical):
    copy = aapl.loc[[DAY]].copy()
    if not identical:
        copy["close"] = copy["low"]
    raw = pd.concat([aapl, copy]).sort_index(kind="stable")
    clean, records = validate("AAPL", raw, xnys)
    assert _reasons(records) == [("2010-06-15", "duplicate_timestamp")] * 2 + [("2010-06-15", "missing_session")]
    assert records[0].bar != records[1].bar or identical
    assert "2 rows" in records[0].detail
    assert DAY not in clean.index
    _assert_clean_output(clean)


def test_out_of_order(aapl, xnys):
    i = aapl.index.get_loc(DAY)
    order = np.arange(len(aapl))
    order[[i, i + 1]] = order[[i + 1, i]]
    raw = aapl.iloc[order]
    clean, records = validate("AAPL", raw, xnys)
    assert _reasons(records) == [("2010-06-15", "out_of_order"), ("2010-06-15", "missing_session")]
    assert "2010-06-16" in records[0].detail
    assert DAY not in clean.index
    assert pd.Timestamp("2010-06-16") in clean.index
    _assert_clean_output(clean)


def test_unsorted_source_keeps_only_increasing_rows(aapl, xnys):
    raw = aapl.iloc[::-1].iloc[:10]
    clean, records = validate("AAPL", raw, xnys)
    assert list(clean.index) == [aapl.index[-1]]
    assert [r.reason for r in records] == ["out_of_order"] * 9


@pytest.mark.parametrize("day", ["2010-06-19", "2008-12-25", "2013-03-02"])
def test_not_a_session(aapl, xnys, day):
    extra = aapl.loc[[DAY]].set_axis(pd.DatetimeIndex([day], name="date"))
    raw = pd.concat([aapl, extra]).sort_index(kind="stable")
    clean, records = validate("AAPL", raw, xnys)
    assert _reasons(records) == [(day, "not_a_session")]
    assert pd.Timestamp(day) not in clean.index
    pd.testing.assert_frame_equal(clean, aapl)


def test_missing_session_reported(aapl, xnys):
    raw = aapl.drop(index=DAY)
    clean, records = validate("AAPL", raw, xnys)
    assert records == [Quarantined("AAPL", "2010-06-15", "missing_session", records[0].detail, {})]
    pd.testing.assert_frame_equal(clean, raw)


def test_period_clips_silently(aapl, xnys):
    aapl.loc["2004-06-15", "close"] = np.nan
    clean, records = validate("AAPL", aapl.drop(index=pd.Timestamp("2004-12-31")), xnys, "2005-01-01", "2005-12-30")
    assert records == []
    assert len(clean) == 252
    assert clean.index[0] == pd.Timestamp("2005-01-03") and clean.index[-1] == pd.Timestamp("2005-12-30")


def test_missing_sessions_only_inside_clean_range(aapl, xnys):
    raw = aapl.loc["2005-01-10":"2005-01-20"]
    _, records = validate("AAPL", raw, xnys, "2005-01-01", "2005-01-31")
    assert records == []


def test_quarantine_file_is_sorted_and_deterministic(aapl, xnys, tmp_path):
    aapl.loc[DAY, "close"] = np.nan
    aapl.loc["2003-01-02", "volume"] = -1.0
    _, records = validate("AAPL", aapl, xnys)
    other = Quarantined("AA", "2010-06-15", "nan", "x", {"open": 1.0})
    first = write_quarantine([*records, other], tmp_path / "a" / "q.jsonl")
    second = write_quarantine([other, *reversed(records)], tmp_path / "b.jsonl")
    assert first.read_text() == second.read_text()
    rows = [json.loads(line) for line in first.read_text().splitlines()]
    assert [(r["date"], r["symbol"], r["reason"]) for r in rows] == [
        ("2003-01-02", "AAPL", "missing_session"),
        ("2003-01-02", "AAPL", "negative_volume"),
        ("2010-06-15", "AA", "nan"),
        ("2010-06-15", "AAPL", "missing_session"),
        ("2010-06-15", "AAPL", "nan"),
    ]
    assert list(rows[0]) == ["symbol", "date", "reason", "detail", "bar"]
    assert rows[4]["bar"]["close"] is None and rows[4]["bar"]["open"] > 0


def test_quarantined_is_frozen():
    record = Quarantined("AAPL", "2010-06-15", "nan", "close", {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.reason = "x"  # type: ignore[misc]
    assert REASONS == (
        "nan",
        "non_positive_price",
        "high_below_low",
        "open_outside_range",
        "close_outside_range",
        "negative_volume",
        "duplicate_timestamp",
        "out_of_order",
        "not_a_session",
        "missing_session",
    )


def test_calendar_is_cached_and_reaches_1990():
    cal = get_calendar("XNYS")
    assert cal is get_calendar("XNYS")
    assert cal.first_session == pd.Timestamp("1990-01-02")
    assert cal.is_session("2000-03-01")


def test_missing_column_is_an_error(aapl, xnys):
    with pytest.raises(ValueError, match="volume"):
        validate("AAPL", aapl.drop(columns="volume"), xnys)
