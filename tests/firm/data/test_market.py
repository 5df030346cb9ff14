"""The aligned market data of a run, on the real default universe."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from firm.config import DataConfig
from firm.data import COLUMNS, MarketData, load_market_data
from strategies.base import Panel

LONG_STOCKS = ("AAPL", "MSFT", "IBM", "GOOG")


def _ns(stamp: str) -> int:
    return pd.Timestamp(stamp).value


@pytest.fixture(scope="module")
def default() -> MarketData:
    return load_market_data(DataConfig())


def _dates(md: MarketData) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(md.panel.ts, unit="ns", utc=True).tz_convert("America/New_York").normalize().tz_localize(None))


def test_default_universe_shape(default):
    panel = default.panel
    assert panel.symbols == (*LONG_STOCKS, "SPX", "COMP")
    assert len(panel) == 2148
    for name in COLUMNS:
        assert getattr(panel, name).shape == (2148, 6)
        assert getattr(panel, name).dtype == np.float64
    assert default.quarantined == ()
    assert default.n_bars == 2148 * 6
    assert panel.ts.dtype == np.int64 and default.session_open.dtype == np.int64
    assert (np.diff(panel.ts) > 0).all()
    assert (default.session_open < panel.ts).all()


def test_ts_are_xnys_session_closes(default, xnys):
    dates = _dates(default)
    assert dates[0] == pd.Timestamp("2004-08-19") and dates[-1] == pd.Timestamp("2013-03-01")
    expected = xnys.sessions_in_range("2004-08-19", "2013-03-01")
    assert list(dates) == list(expected)
    closes = np.array([xnys.session_close(d).value for d in expected], dtype=np.int64)
    opens = np.array([xnys.session_open(d).value for d in expected], dtype=np.int64)
    np.testing.assert_array_equal(default.panel.ts, closes)
    np.testing.assert_array_equal(default.session_open, opens)


@pytest.mark.parametrize(
    "day,open_utc,close_utc",
    [
        ("2008-11-28", "2008-11-28 14:30Z", "2008-11-28 18:00Z"),
        ("2008-11-26", "2008-11-26 14:30Z", "2008-11-26 21:00Z"),
        ("2010-07-01", "2010-07-01 13:30Z", "2010-07-01 20:00Z"),
        ("2012-12-24", "2012-12-24 14:30Z", "2012-12-24 18:00Z"),
    ],
)
def test_session_times(default, day, open_utc, close_utc):
    i = int(np.flatnonzero(_dates(default) == pd.Timestamp(day))[0])
    assert default.panel.ts[i] == _ns(close_utc)
    assert default.session_open[i] == _ns(open_utc)


def test_values_match_source(default, sample):
    for j, symbol in enumerate(LONG_STOCKS):
        bars = sample.load(symbol).loc["2004-08-19":"2013-03-01"]
        for name in COLUMNS:
            np.testing.assert_array_equal(getattr(default.panel, name)[:, j], bars[name].to_numpy())


def test_slice(default):
    part = default.slice(10, 20)
    assert isinstance(part, Panel)
    assert len(part) == 10 and part.symbols == default.panel.symbols
    np.testing.assert_array_equal(part.ts, default.panel.ts[10:20])
    np.testing.assert_array_equal(part.volume, default.panel.volume[10:20])


def test_union_alignment_fills_nan():
    md = load_market_data(DataConfig(symbols=("AAPL", "GOOG"), start="2004-01-01", end="2004-12-31"))
    dates = _dates(md)
    assert dates[0] == pd.Timestamp("2004-01-02") and len(md.panel) == 252
    before = dates < pd.Timestamp("2004-08-19")
    for name in COLUMNS:
        values = getattr(md.panel, name)
        assert np.isnan(values[before, 1]).all()
        assert not np.isnan(values[~before, 1]).any()
        assert not np.isnan(values[:, 0]).any()
    assert md.n_bars == 252 + int((~before).sum())
    assert md.quarantined == ()


def test_indexes_whole_period():
    md = load_market_data(DataConfig(symbols=("SPX", "COMP"), start=None, end=None))
    assert len(md.panel) == 5031 and md.n_bars == 2 * 5031
    assert md.quarantined == ()


def test_quarantined_bar_becomes_nan(tmp_path, sample):
    frames = [sample.load(s).loc["2010-06-01":"2010-06-30"].reset_index().assign(symbol=s) for s in ("AAPL", "MSFT")]
    data = pd.concat(frames, ignore_index=True)
    data.loc[(data["symbol"] == "AAPL") & (data["date"] == "2010-06-15"), "close"] = -1.0
    path = tmp_path / "bars.csv"
    data.to_csv(path, index=False)
    md = load_market_data(DataConfig(source="file", path=path, symbols=("AAPL", "MSFT"), start=None, end=None))
    assert [(q.symbol, q.date, q.reason) for q in md.quarantined] == [
        ("AAPL", "2010-06-15", "missing_session"),
        ("AAPL", "2010-06-15", "non_positive_price"),
    ]
    i = int(np.flatnonzero(_dates(md) == pd.Timestamp("2010-06-15"))[0])
    assert all(np.isnan(getattr(md.panel, name)[i, 0]) for name in COLUMNS)
    assert md.panel.close[i, 1] == sample.load("MSFT").loc["2010-06-15", "close"]
    assert md.n_bars == 2 * 22 - 1


def test_unknown_symbol_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown symbol 'TSLA'.*available: AAPL"):
        load_market_data(DataConfig(symbols=("AAPL", "TSLA")))


def test_no_bars_in_period_is_an_error():
    with pytest.raises(ValueError, match="no clean bars"):
        load_market_data(DataConfig(symbols=("GOOG",), start="2001-01-01", end="2002-01-01"))


def test_default_loads_fast():
    started = time.perf_counter()
    load_market_data(DataConfig())
    assert time.perf_counter() - started < 2.0
