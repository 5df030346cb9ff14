"""Sources: the real shipped data, split adjustment, and user files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from firm.config import DataConfig
from firm.data import COLUMNS, FileDataSource, SampleDataSource, make_source

LONG_STOCKS = ("AAPL", "MSFT", "IBM", "GOOG")

EXPECTED = {
    "AAPL": (3270, "2000-03-01", "2013-03-01"),
    "MSFT": (3270, "2000-03-01", "2013-03-01"),
    "IBM": (3270, "2000-03-01", "2013-03-01"),
    "GOOG": (2148, "2004-08-19", "2013-03-01"),
    "SPX": (5031, "1999-01-04", "2018-12-31"),
    "COMP": (5031, "1999-01-04", "2018-12-31"),
}


def test_sample_symbols(sample):
    assert sample.symbols() == ("AAPL", "MSFT", "IBM", "GOOG", "SPX", "COMP")


@pytest.mark.parametrize("symbol", list(EXPECTED))
def test_sample_rows_and_range(sample, symbol):
    rows, first, last = EXPECTED[symbol]
    bars = sample.load(symbol)
    assert len(bars) == rows
    assert bars.index[0] == pd.Timestamp(first)
    assert bars.index[-1] == pd.Timestamp(last)
    assert list(bars.columns) == list(COLUMNS)
    assert (bars.dtypes == np.float64).all()
    assert isinstance(bars.index, pd.DatetimeIndex)
    assert bars.index.name == "date"
    assert bars.index.tz is None
    assert not bars.isna().any().any()


def test_load_returns_independent_copy(sample):
    first = sample.load("MSFT")
    first.iloc[:, :] = -1.0
    assert (sample.load("MSFT")["close"] > 0).all()


def test_unknown_symbol_lists_available(sample):
    with pytest.raises(KeyError, match="available: AAPL, MSFT, IBM, GOOG, SPX, COMP"):
        sample.load("TSLA")


@pytest.mark.parametrize("symbol,day", [("AAPL", "2000-06-21"), ("AAPL", "2005-02-28"), ("MSFT", "2003-02-18")])
def test_split_days_adjusted(sample, symbol, day):
    adjusted = sample.load(symbol)["close"].pct_change().loc[day]
    raw = SampleDataSource(adjust_splits=False).load(symbol)["close"].pct_change().loc[day]
    assert adjusted > -0.40
    assert -0.55 < raw < -0.40


def test_real_crash_is_kept(sample):
    moves = {s: sample.load(s)["close"].pct_change() for s in LONG_STOCKS}
    assert moves["AAPL"].loc["2000-09-29"] == pytest.approx(-0.52, abs=0.01)
    big_drops = [(s, str(d.date())) for s, m in moves.items() for d in m.index[m < -0.40]]
    assert big_drops == [("AAPL", "2000-09-29")]


def test_adjustment_keeps_dollar_volume(sample):
    adjusted = sample.load("AAPL")
    raw = SampleDataSource(adjust_splits=False).load("AAPL")
    np.testing.assert_allclose(adjusted["close"] * adjusted["volume"], raw["close"] * raw["volume"], rtol=1e-12)
    assert raw["close"].loc["2000-03-01"] == 130.31
    assert raw["volume"].loc["2000-03-01"] == 9616100


@pytest.mark.parametrize("symbol", ["SPX", "COMP"])
def test_index_adjustment_matches_adj_close(sample, symbol):
    import arch.data.nasdaq
    import arch.data.sp500

    data = (arch.data.sp500 if symbol == "SPX" else arch.data.nasdaq).load()
    bars = sample.load(symbol)
    np.testing.assert_allclose(bars["close"].to_numpy(), data["Adj Close"].to_numpy(), rtol=1e-12)
    raw = SampleDataSource(adjust_splits=False).load(symbol)
    expected = data[["Open", "High", "Low", "Close", "Volume"]].astype("float64")
    expected.columns = list(COLUMNS)
    expected.index = expected.index.astype("datetime64[ns]").rename("date")
    pd.testing.assert_frame_equal(raw, expected)


def _bokeh_rows(bokeh_csv: pd.DataFrame) -> pd.DataFrame:
    return bokeh_csv[bokeh_csv["Ticker"].isin(LONG_STOCKS)]


def test_file_csv_single_file_with_adj_close(tmp_path, sample, bokeh_csv):
    path = tmp_path / "stocks.csv"
    _bokeh_rows(bokeh_csv).to_csv(path, index=False)
    source = FileDataSource(path)
    assert sorted(source.symbols()) == sorted(LONG_STOCKS)
    for symbol in LONG_STOCKS:
        pd.testing.assert_frame_equal(source.load(symbol), sample.load(symbol))
    raw = FileDataSource(path, adjust_splits=False)
    pd.testing.assert_frame_equal(raw.load("AAPL"), SampleDataSource(adjust_splits=False).load("AAPL"))


def test_file_csv_round_trip_symbol_column(tmp_path, sample):
    path = tmp_path / "bars.csv"
    frames = [sample.load(s).reset_index().assign(symbol=s) for s in LONG_STOCKS]
    pd.concat(frames).to_csv(path, index=False)
    source = FileDataSource(path)
    for symbol in LONG_STOCKS:
        pd.testing.assert_frame_equal(source.load(symbol), sample.load(symbol))


def test_file_parquet_directory_round_trip(tmp_path, sample):
    for symbol in LONG_STOCKS:
        frame = sample.load(symbol).reset_index()
        frame.columns = [c.upper() for c in frame.columns]
        frame.to_parquet(tmp_path / f"{symbol}.parquet", index=False)
    source = FileDataSource(tmp_path)
    assert sorted(source.symbols()) == sorted(LONG_STOCKS)
    for symbol in LONG_STOCKS:
        pd.testing.assert_frame_equal(source.load(symbol), sample.load(symbol))


def test_file_parquet_with_date_index(tmp_path, sample):
    sample.load("IBM").to_parquet(tmp_path / "IBM.parquet")
    pd.testing.assert_frame_equal(FileDataSource(tmp_path).load("IBM"), sample.load("IBM"))


def test_file_keeps_source_order_and_duplicates(tmp_path, sample):
    frame = sample.load("IBM").iloc[:50].reset_index()
    shuffled = pd.concat([frame.iloc[[10, 3, 3]], frame.iloc[20:]]).rename(columns={"date": "Timestamp"})
    shuffled.to_csv(tmp_path / "IBM.csv", index=False)
    loaded = FileDataSource(tmp_path).load("IBM")
    assert len(loaded) == len(shuffled)
    assert list(loaded.index) == list(pd.DatetimeIndex(shuffled["Timestamp"]))


def test_file_timezone_aware_timestamps_become_session_dates(tmp_path, sample):
    frame = sample.load("MSFT").iloc[:20].reset_index()
    frame["datetime"] = (frame.pop("date") + pd.Timedelta(hours=16)).dt.tz_localize("America/New_York")
    frame.to_parquet(tmp_path / "MSFT.parquet", index=False)
    pd.testing.assert_frame_equal(FileDataSource(tmp_path).load("MSFT"), sample.load("MSFT").iloc[:20])


def test_file_missing_column_names_file_and_column(tmp_path, sample):
    path = tmp_path / "bars.csv"
    sample.load("AAPL").reset_index().assign(symbol="AAPL").drop(columns=["volume", "low"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"bars\.csv.*low, volume"):
        FileDataSource(path).load("AAPL")


def test_file_directory_missing_column(tmp_path, sample):
    sample.load("AAPL").drop(columns="volume").to_parquet(tmp_path / "AAPL.parquet")
    with pytest.raises(ValueError, match=r"AAPL\.parquet.*volume"):
        FileDataSource(tmp_path).load("AAPL")


def test_file_missing_symbol_column(tmp_path, sample):
    path = tmp_path / "bars.csv"
    sample.load("AAPL").to_csv(path)
    with pytest.raises(ValueError, match=r"bars\.csv.*symbol"):
        FileDataSource(path).symbols()


def test_file_unknown_symbol_and_missing_path(tmp_path, sample):
    sample.load("AAPL").to_parquet(tmp_path / "AAPL.parquet")
    with pytest.raises(KeyError, match="available: AAPL"):
        FileDataSource(tmp_path).load("MSFT")
    with pytest.raises(FileNotFoundError):
        FileDataSource(tmp_path / "nope.csv")


def test_make_source(tmp_path: Path):
    assert isinstance(make_source(DataConfig()), SampleDataSource)
    assert make_source(DataConfig(adjust_splits=False)).adjust_splits is False
    source = make_source(DataConfig(source="file", path=tmp_path))
    assert isinstance(source, FileDataSource) and source.path == tmp_path


def test_file_row_without_adj_close_cannot_be_adjusted(tmp_path, bokeh_csv):
    rows = bokeh_csv[bokeh_csv["Ticker"] == "AAPL"].head(5).copy()
    rows.iloc[2, rows.columns.get_loc("Adj Close")] = np.nan
    rows.to_csv(tmp_path / "bars.csv", index=False)
    bars = FileDataSource(tmp_path / "bars.csv").load("AAPL")
    assert bars.iloc[2].isna().all()
    assert not bars.drop(index=bars.index[2]).isna().any().any()
