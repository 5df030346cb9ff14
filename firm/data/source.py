"""Where raw daily bars come from: the data shipped with installed packages, or the user's files.

A source returns bars as the data has them (not cleaned, not sorted, duplicates kept); checking them
is :mod:`firm.data.validate`'s job. The only change a source makes is the optional split
adjustment, which needs the source's own adjusted-close column.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from abc import ABC, abstractmethod
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from firm.config import DataConfig

COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")

_DATE_NAMES = ("date", "datetime", "timestamp")
_SYMBOL_NAMES = ("symbol", "ticker")
_ADJ_NAMES = ("adj close", "adj_close", "adjclose")
_FILE_SUFFIXES = (".csv", ".parquet")


class UnknownSymbolError(KeyError):
    """A symbol the source cannot provide; the message lists the ones it can."""

    def __init__(self, symbols: str | tuple[str, ...], available: tuple[str, ...], where: str = "data source"):
        self.symbols = (symbols,) if isinstance(symbols, str) else tuple(symbols)
        self.available = available
        names = ", ".join(repr(s) for s in self.symbols)
        noun = "symbol" if len(self.symbols) == 1 else "symbols"
        super().__init__(f"unknown {noun} {names} in {where}; available: {', '.join(available) or '(none)'}")

    def __str__(self) -> str:
        return str(self.args[0])


class DataSource(ABC):
    """Provides raw daily bars per symbol."""

    @abstractmethod
    def symbols(self) -> tuple[str, ...]:
        """The symbols this source can load."""

    @abstractmethod
    def load(self, symbol: str) -> pd.DataFrame:
        """Raw bars of ``symbol``: DatetimeIndex "date", float64 columns open, high, low, close, volume.

        Raises :class:`UnknownSymbolError` (a ``KeyError``) for a symbol not in :meth:`symbols`.
        """

    def _check_known(self, symbol: str) -> None:
        available = self.symbols()
        if symbol not in available:
            raise UnknownSymbolError(symbol, available, type(self).__name__)


def _adjust(frame: pd.DataFrame, adj_close: pd.Series) -> pd.DataFrame:
    """Scale prices by adj_close / close and volume by its inverse (dollar volume kept).

    Rows whose own close is not a positive number stay as they are (validation reports them); rows
    with a close but no usable adjusted close become NaN, since they cannot be put on the same scale.
    """
    close = frame["close"].to_numpy()
    adj = adj_close.to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = adj / close
    own_fault = ~(close > 0)
    factor = np.where(own_fault, 1.0, np.where(np.isfinite(factor) & (factor > 0), factor, np.nan))
    out = frame.copy()
    for col in PRICE_COLUMNS:
        out[col] = frame[col].to_numpy() * factor
    out["volume"] = frame["volume"].to_numpy() / factor
    return out


def _bars(frame: pd.DataFrame, dates: pd.Series | pd.Index, adj_close: pd.Series | None) -> pd.DataFrame:
    """The standard bar frame from lower-cased columns and parsed dates."""
    index = pd.DatetimeIndex(np.asarray(dates, dtype="datetime64[ns]"), name="date")
    bars = pd.DataFrame(
        {col: pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype="float64") for col in COLUMNS},
        index=index,
    )
    if adj_close is not None:
        bars = _adjust(bars, pd.to_numeric(adj_close, errors="coerce"))
    return bars


@lru_cache(maxsize=None)
def _bokeh_stocks() -> dict[str, pd.DataFrame]:
    """bokeh_sampledata's stocks.csv.gz, split by ticker; read once per process."""
    path = importlib.resources.files("bokeh_sampledata") / "_data" / "stocks.csv.gz"
    with importlib.resources.as_file(path) as local:
        raw = pd.read_csv(local)
    raw.columns = [c.strip().lower() for c in raw.columns]
    raw["date"] = pd.to_datetime(raw["date"])
    return {str(t): g.drop(columns="ticker").reset_index(drop=True) for t, g in raw.groupby("ticker", sort=False)}


@lru_cache(maxsize=None)
def _arch_index(name: str) -> pd.DataFrame:
    """The file behind ``arch.data.<name>.load()`` (sp500 or nasdaq); read once per process.

    Read from the package directory, which avoids importing arch's models (over a second).
    """
    spec = importlib.util.find_spec("arch")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the 'arch' package is needed for SPX and COMP")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name / f"{name}.csv.gz"
    raw = pd.read_csv(path)
    raw.columns = [c.strip().lower() for c in raw.columns]
    raw["date"] = pd.to_datetime(raw["date"])
    return raw


class SampleDataSource(DataSource):
    """Real daily bars shipped by installed packages; nothing is downloaded.

    AAPL, MSFT, IBM, GOOG come from bokeh-sampledata, SPX (S&P 500) and COMP (NASDAQ Composite)
    from arch. With ``adjust_splits`` prices are scaled by Adj Close / Close.
    """

    _BOKEH: tuple[str, ...] = ("AAPL", "MSFT", "IBM", "GOOG")
    _ARCH: dict[str, str] = {"SPX": "sp500", "COMP": "nasdaq"}

    def __init__(self, adjust_splits: bool = True):
        self.adjust_splits = adjust_splits

    def symbols(self) -> tuple[str, ...]:
        return (*self._BOKEH, *self._ARCH)

    def load(self, symbol: str) -> pd.DataFrame:
        self._check_known(symbol)
        raw = _bokeh_stocks()[symbol] if symbol in self._BOKEH else _arch_index(self._ARCH[symbol])
        return _bars(raw, raw["date"], raw["adj close"] if self.adjust_splits else None)


def _lower_columns(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.index.name is not None or isinstance(frame.index, pd.DatetimeIndex):
        frame = frame.reset_index()
    return frame.rename(columns={c: str(c).strip().lower() for c in frame.columns})


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() == ".parquet":
        return _lower_columns(pd.read_parquet(path))
    return _lower_columns(pd.read_csv(path))


def _find(columns: pd.Index, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in columns), None)


def _parse_dates(values: pd.Series, path: Path) -> pd.DatetimeIndex:
    """Session dates: timezone-aware stamps keep their local wall date; times of day are dropped."""
    try:
        parsed = pd.to_datetime(values)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: cannot parse the date column: {err}") from None
    index = pd.DatetimeIndex(parsed)
    if index.tz is not None:
        index = index.tz_localize(None)
    if index.hasnans:
        row = int(np.flatnonzero(index.isna())[0])
        raise ValueError(f"{path}: missing date in data row {row + 1}")
    return index.normalize()


class FileDataSource(DataSource):
    """Daily bars from the user's files.

    ``path`` is a CSV or Parquet file with a "symbol" or "ticker" column, or a directory of
    ``SYMBOL.csv`` / ``SYMBOL.parquet`` files. Column names are case-insensitive; the date column is
    "date", "datetime" or "timestamp"; an "adj close" column is applied when ``adjust_splits``.
    """

    def __init__(self, path: str | Path, adjust_splits: bool = True):
        self.path = Path(path)
        self.adjust_splits = adjust_splits
        if not self.path.exists():
            raise FileNotFoundError(f"data path not found: {self.path}")
        self._table: dict[str, pd.DataFrame] | None = None

    def _files(self) -> dict[str, Path]:
        found = sorted(p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in _FILE_SUFFIXES)
        files: dict[str, Path] = {}
        for p in found:
            if p.stem in files:
                raise ValueError(f"{self.path}: two files for symbol {p.stem!r}: {files[p.stem].name}, {p.name}")
            files[p.stem] = p
        return files

    def _single_file(self) -> dict[str, pd.DataFrame]:
        if self._table is None:
            frame = _read_table(self.path)
            col = _find(frame.columns, _SYMBOL_NAMES)
            if col is None:
                raise ValueError(f"{self.path}: missing column: symbol (or ticker)")
            _check_columns(frame, self.path)
            keys = frame[col].astype(str).str.strip()
            self._table = {str(s): g.reset_index(drop=True) for s, g in frame.groupby(keys, sort=True)}
        return self._table

    def symbols(self) -> tuple[str, ...]:
        if self.path.is_dir():
            return tuple(self._files())
        return tuple(self._single_file())

    def load(self, symbol: str) -> pd.DataFrame:
        self._check_known(symbol)
        if self.path.is_dir():
            file = self._files()[symbol]
            frame = _read_table(file)
            _check_columns(frame, file)
        else:
            file, frame = self.path, self._single_file()[symbol]
        date_col = _find(frame.columns, _DATE_NAMES)
        adj_col = _find(frame.columns, _ADJ_NAMES)
        adj = frame[adj_col] if (self.adjust_splits and adj_col is not None) else None
        return _bars(frame, _parse_dates(frame[date_col], file), adj)


def _check_columns(frame: pd.DataFrame, path: Path) -> None:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if _find(frame.columns, _DATE_NAMES) is None:
        missing.insert(0, "date (or datetime, timestamp)")
    if missing:
        raise ValueError(f"{path}: missing column(s): {', '.join(missing)}")


def make_source(cfg: DataConfig) -> DataSource:
    """The source ``cfg`` describes."""
    if cfg.source == "sample":
        return SampleDataSource(adjust_splits=cfg.adjust_splits)
    if cfg.source == "file":
        if cfg.path is None:
            raise ValueError("data source 'file' needs data.path")
        return FileDataSource(cfg.path, adjust_splits=cfg.adjust_splits)
    raise ValueError(f"unknown data source {cfg.source!r}")
