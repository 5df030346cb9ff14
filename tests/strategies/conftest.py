"""Real daily bars (AAPL, GOOG, IBM, MSFT from bokeh-sampledata; SPX and COMP from arch), split-adjusted by
Adj Close / Close."""

from __future__ import annotations

import pathlib
from typing import Callable

import bokeh_sampledata
import numpy as np
import pandas as pd
import pytest

from strategies.base import Panel

SYMBOLS = ("AAPL", "GOOG", "IBM", "MSFT")
INDEX_SYMBOLS = ("SPX", "COMP")  # the S&P 500 and NASDAQ Composite, symbols of the shipped sample source
_FIELDS = ("open", "high", "low", "close", "volume")


@pytest.fixture(scope="session")
def stocks() -> pd.DataFrame:
    """All rows of stocks.csv.gz with Open/High/Low/Close scaled by Adj Close / Close."""
    path = pathlib.Path(bokeh_sampledata.__file__).parent / "_data" / "stocks.csv.gz"
    df = pd.read_csv(path, parse_dates=["Date"])
    factor = df["Adj Close"] / df["Close"]
    for col in ("Open", "High", "Low", "Close"):
        df[col] = df[col] * factor
    return df.sort_values(["Ticker", "Date"]).reset_index(drop=True)


@pytest.fixture(scope="session")
def aapl(stocks: pd.DataFrame) -> dict[str, np.ndarray]:
    """AAPL 2000-03-01..2013-03-01 as 1-D float64 arrays: open, high, low, close, volume."""
    rows = stocks[stocks["Ticker"] == "AAPL"]
    return {f: rows[f.capitalize()].to_numpy(np.float64) for f in _FIELDS}


@pytest.fixture(scope="session")
def msft(stocks: pd.DataFrame) -> dict[str, np.ndarray]:
    """MSFT 2000-03-01..2013-03-01 as 1-D float64 arrays: open, high, low, close, volume."""
    rows = stocks[stocks["Ticker"] == "MSFT"]
    return {f: rows[f.capitalize()].to_numpy(np.float64) for f in _FIELDS}


def _panel(stocks: pd.DataFrame, how: str) -> Panel:
    wide = {
        f: stocks[stocks["Ticker"].isin(SYMBOLS)].pivot(index="Date", columns="Ticker", values=f.capitalize())
        for f in _FIELDS
    }
    index = wide["close"].dropna(how="all" if how == "union" else "any").index
    arrays = [wide[f].loc[index, list(SYMBOLS)].to_numpy(np.float64) for f in _FIELDS]
    ts = index.to_numpy().astype("datetime64[ns]").astype(np.int64)
    return Panel(ts, SYMBOLS, *arrays)


@pytest.fixture(scope="session")
def panel(stocks: pd.DataFrame) -> Panel:
    """The four stocks on their common dates 2004-08-19..2013-03-01 (2148 rows, no gaps)."""
    return _panel(stocks, "common")


@pytest.fixture(scope="session")
def gappy_panel(stocks: pd.DataFrame) -> Panel:
    """The four stocks on the union of their dates from 2000-03-01; GOOG is NaN before 2004-08-19."""
    return _panel(stocks, "union")


def _with_columns(p: Panel, extra: pd.DataFrame) -> Panel:
    """``p`` with the instruments of ``extra`` (long format, like ``stocks``) appended as columns on p's rows."""
    symbols = tuple(extra["Ticker"].unique())
    index = pd.DatetimeIndex(p.ts.astype("datetime64[ns]"))
    arrays = []
    for f in _FIELDS:
        wide = extra.pivot(index="Date", columns="Ticker", values=f.capitalize()).reindex(index)
        arrays.append(np.hstack([getattr(p, f), wide[list(symbols)].to_numpy(np.float64)]))
    return Panel(p.ts.copy(), p.symbols + symbols, *arrays)


@pytest.fixture(scope="session")
def indices() -> pd.DataFrame:
    """SPX and COMP as shipped by arch (``arch.data.sp500`` / ``arch.data.nasdaq``, 1999-01-04..2018-12-31),
    in the long format of ``stocks`` (Ticker, Date, Open, High, Low, Close, Adj Close, Volume) with
    Open/High/Low/Close scaled by Adj Close / Close."""
    import arch.data.nasdaq
    import arch.data.sp500

    frames = []
    for symbol, module in zip(INDEX_SYMBOLS, (arch.data.sp500, arch.data.nasdaq)):
        df = module.load().reset_index()
        df["Date"] = df["Date"].astype("datetime64[ns]")
        factor = df["Adj Close"] / df["Close"]
        for col in ("Open", "High", "Low", "Close"):
            df[col] = df[col] * factor
        df.insert(0, "Ticker", symbol)
        frames.append(df.astype({"Volume": np.float64}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="session")
def index_panel(stocks: pd.DataFrame, indices: pd.DataFrame) -> Panel:
    """AAPL, GOOG, IBM, MSFT, SPX, COMP on the common dates 2004-08-19..2013-03-01 (2148 rows, no gaps):
    ``panel`` with the two indices appended (built from ``stocks``, as a test module may override ``panel``)."""
    wide = _with_columns(_panel(stocks, "common"), indices)
    assert not np.isnan(wide.close).any(), "every stock session is an index session"
    return wide


@pytest.fixture(scope="session")
def gappy_index_panel(stocks: pd.DataFrame, indices: pd.DataFrame) -> Panel:
    """``gappy_panel`` (union of the stocks' dates from 2000-03-01, GOOG NaN before 2004-08-19) with SPX and
    COMP appended; the indices have a bar on every row."""
    wide = _with_columns(_panel(stocks, "union"), indices)
    assert not np.isnan(wide.close[:, len(SYMBOLS) :]).any()
    return wide


@pytest.fixture(scope="session")
def head() -> Callable[[Panel, int], Panel]:
    """head(panel, k): the first k rows of a panel (copies, so no buffer is shared)."""

    def _head(p: Panel, k: int) -> Panel:
        return Panel(
            p.ts[:k].copy(),
            p.symbols,
            *(getattr(p, f)[:k].copy() for f in _FIELDS),
            reference={name: v[:k].copy() for name, v in p.reference.items()},
        )

    return _head


@pytest.fixture(scope="session")
def perturb_after() -> Callable[[Panel, int, str], Panel]:
    """perturb_after(panel, t, how): rows > t, reference series included, scaled by 1.5 ("scale") or
    replaced by random values ("random")."""

    def _perturb(p: Panel, t: int, how: str) -> Panel:
        arrays = {f: getattr(p, f).copy() for f in _FIELDS}
        tail = slice(t + 1, None)
        reference = {name: v.copy() for name, v in p.reference.items()}
        for name, values in reference.items():
            if how == "scale":
                values[tail] *= 1.5
            else:
                values[tail] = np.random.default_rng(t + 1).uniform(1.0, 200.0, values[tail].shape)
        if how == "scale":
            for f in _FIELDS:
                arrays[f][tail] *= 1.5
        else:
            rng = np.random.default_rng(t)
            shape = arrays["close"][tail].shape
            close = rng.uniform(1.0, 500.0, shape)
            arrays["close"][tail] = close
            arrays["open"][tail] = close * rng.uniform(0.95, 1.05, shape)
            arrays["high"][tail] = close * rng.uniform(1.0, 1.1, shape)
            arrays["low"][tail] = close * rng.uniform(0.9, 1.0, shape)
            arrays["volume"][tail] = rng.uniform(1e5, 1e7, shape)
        gaps = np.isnan(p.close)
        for f in _FIELDS:
            arrays[f][gaps] = np.nan
        return Panel(p.ts.copy(), p.symbols, *(arrays[f] for f in _FIELDS), reference=reference)

    return _perturb


@pytest.fixture(scope="session")
def assert_same_rows():
    """Asserts that two Advice agree bit for bit (NaN equal to NaN) on their first ``rows`` rows."""

    def check(a, b, rows: int) -> None:
        assert np.array_equal(a.strength[:rows], b.strength[:rows], equal_nan=True)
        assert np.array_equal(a.confidence[:rows], b.confidence[:rows], equal_nan=True)
        assert a.rationale.keys() == b.rationale.keys()
        for key in a.rationale:
            assert np.array_equal(a.rationale[key][:rows], b.rationale[key][:rows], equal_nan=True), key

    return check


@pytest.fixture(scope="session")
def assert_warmup():
    """Asserts that on each instrument an Advice abstains (NaN strength, confidence 0) where ``valid`` has no
    bar and on the instrument's first ``warmup - 1`` bars, and speaks on every later bar (``valid``: all rows)."""

    def check(advice, warmup: int, valid: np.ndarray | None = None) -> None:
        if valid is None:
            valid = np.ones(advice.strength.shape, dtype=bool)
        for j in range(valid.shape[1]):
            silent = np.ones(len(valid), dtype=bool)
            silent[np.flatnonzero(valid[:, j])[warmup - 1 :]] = False
            assert np.isnan(advice.strength[silent, j]).all(), j
            assert (advice.confidence[silent, j] == 0).all(), j
            assert not np.isnan(advice.strength[~silent, j]).any(), j

    return check


def with_reference(panel: Panel) -> Panel:
    """``panel`` with every reference series aligned to its sessions' XNYS closes.

    The fixture panels' ts are session dates at midnight; the reference series are aligned to those
    sessions' closes (as firm/data/market.py does), so each row sees what was public at its close.
    """
    import dataclasses

    from firm.data.reference import REFERENCE, load_reference
    from firm.data.validate import get_calendar  # exchange_calendars' XNYS from 1990, its pandas warning silenced

    closes = get_calendar("XNYS").closes
    dates = pd.DatetimeIndex(panel.ts.view("datetime64[ns]"))
    at = closes.reindex(dates)
    assert not at.isna().any(), "every panel date is an XNYS session"
    closes_ns = at.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[ns]").astype(np.int64)
    return dataclasses.replace(panel, reference=load_reference(tuple(REFERENCE), closes_ns))


@pytest.fixture(scope="session")
def add_reference() -> Callable[[Panel], Panel]:
    """add_reference(panel): the panel with every reference series (see ``with_reference``)."""
    return with_reference


@pytest.fixture(scope="session")
def reference_panel(panel: Panel) -> Panel:
    """The four-stock common-dates panel with every reference series (see ``with_reference``)."""
    return with_reference(panel)
