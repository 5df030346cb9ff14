"""Stress tests of a book: historical scenarios replayed from the shipped data, hypothetical shocks (pure; no Ray).

A book is a set of signed dollar values per instrument plus cash (:class:`Portfolio`). A scenario turns
into a :class:`ScenarioJob` (plain numpy arrays, cheap to build: :func:`prepare`) and a job into a
:class:`ScenarioResult` (:func:`evaluate`, the numba kernels); ``actors/stress.py`` spreads the
evaluations over Ray tasks, whose results are identical to :func:`evaluate` in a loop.

Historical scenarios (``kind="historical"``). ``start`` is the *base* session: the last close before the
stress, at which the book is valued; ``end`` is the last session of the window. Every instrument's
cumulative return path over the window is ``close[t] / close[start] - 1`` for the sessions t of the window
(split-adjusted closes; the sessions are the proxy's, the S&P 500 from ``arch.data.sp500``, 1999-01-04 ..
2018-12-31). The book's P&L path is ``sum_i value_i * path_i(t)`` (positions held constant in shares over
the window, no rebalancing); the result reports the P&L at ``end``, the worst point of the path and the
worst peak-to-trough loss along it.

| scenario | base .. end | why this window |
| --- | --- | --- |
| ``dotcom_2000_2002`` | 2000-03-10 .. 2002-10-09 | the NASDAQ Composite's closing peak (5,048.62) to its closing trough (1,114.11), -77.9%; the bokeh stocks start 2000-03-01, so AAPL, MSFT and IBM are covered from the peak |
| ``lehman_2008_2009`` | 2008-09-12 .. 2009-03-09 | the last close before Lehman's filing (Mon 2008-09-15) to the S&P 500's closing low of the crisis |
| ``flash_crash_2010`` | 2010-05-05 .. 2010-05-06 | the day of the flash crash, close to close (-3.2% on the S&P 500); daily closes do not see the intraday -9% low |
| ``us_downgrade_2011`` | 2011-07-22 .. 2011-08-08 | from the S&P 500's close before the July-August sell-off to the first session after S&P's downgrade of the US (announced Fri 2011-08-05 after the close) |
| ``volmageddon_2018`` | 2018-01-26 .. 2018-02-08 | the S&P 500's record close to its closing low of the February 2018 volatility spike (VIX from 11 to 37, XIV's collapse on 2018-02-05) |

Proxy rule. An instrument is replayed with its own closes when it has a close at the base and at every
session of the window. Otherwise its path is ``beta * (SPX path)``, the S&P 500 being the proxy, with
``beta`` the OLS slope of the instrument's daily simple returns on the S&P 500's (same sessions, both
closes present) over the last ``BETA_WINDOW`` = 504 such returns ending at or before the base session; if
fewer than ``BETA_MIN_OBS`` = 60 exist before the base, over its first 504 returns after the window (the
data after the scenario, e.g. GOOG, listed 2004, in the dot-com window; reported as such); an instrument
without any data in the sources gets beta 1. Every result lists the proxied instruments, their beta, the
returns it was estimated on and why (``ProxyUse``).

Hypothetical shocks (``kind="hypothetical"``), valued at the book's date (``as_of``), on daily simple
returns over the ``COV_WINDOW`` = 504 sessions ending at ``as_of`` (an instrument without its own data
there gets ``beta * SPX`` returns by the same proxy rule, so its covariance follows the proxy):

* ``equity_shock`` s: every instrument moves by ``s * beta_i``, beta_i its beta on the S&P 500 over the
  same 504 returns (the S&P 500 itself: 1); P&L = sum_i value_i s beta_i.
* ``vol_mult`` m (volatility x m) and ``correlation_one``: the one-day 99% delta-normal VaR (zero mean)
  with the stressed covariance: volatility x m is covariance x m^2; correlations to 1 is
  ``sigma sigma'`` (sigma the vector of volatilities), so VaR = z_0.99 |sum_i value_i sigma_i| m. The
  scenario's P&L is minus that VaR; the per-instrument figures are Euler contributions
  (``z value_i (C value)_i / sqrt(value' C value)``, which sum to the VaR); the unstressed VaR is in
  ``details``. :func:`parametric_var` computes it here (``risk/var.py`` has the general methods).

Scans (``kind="scan"``): the worst ``horizon``-session window of a period, every start date tried (the
book valued at each window's start). Each instrument's daily returns over the period are its own where it
has both closes, the proxy's ``beta * SPX`` return elsewhere (beta on its last 504 returns with the
S&P 500 in the whole data). The cost is periods x horizon x instruments: these are the heavy scenarios of ``bench/stress.py``.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import pandas as pd
from numba import njit

BETA_WINDOW = 504
BETA_MIN_OBS = 60
COV_WINDOW = 504
VAR_ALPHA = 0.99
PROXY = "SPX"
PROXY_SOURCE = "arch.data.sp500 (S&P 500 daily close, 1999-01-04..2018-12-31)"
Z_99 = 2.3263478740408408  # scipy.stats.norm.ppf(0.99)


class PortfolioError(ValueError):
    """A portfolio that cannot be read; the message names the file, the line and the rule broken."""


# ---------------------------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: Literal["historical", "hypothetical", "scan"]
    description: str
    start: str | None = None  # historical: the base session; scan: the first session of the period
    end: str | None = None  # historical: the last session of the window; scan: of the period
    equity_shock: float = 0.0  # hypothetical: move of a beta-1 instrument
    vol_mult: float = 1.0  # hypothetical: volatilities x this (covariance x its square)
    correlation_one: bool = False  # hypothetical: every correlation set to 1
    horizon: int = 0  # scan: sessions per window
    source: str = ""  # the data the scenario is replayed from

    def spec(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "", 0, 0.0, False) or k in ("name", "kind")}


_STOCKS = "bokeh-sampledata stocks.csv.gz (AAPL, MSFT, IBM 2000-03-01..2013-03-01; GOOG from 2004-08-19)"
_HIST_SOURCE = f"own closes where covered ({_STOCKS}; arch sp500/nasdaq 1999..2018), else the proxy {PROXY_SOURCE}"
_HYPO_SOURCE = f"covariance and betas of daily returns over the {COV_WINDOW} sessions to the book's date"

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("dotcom_2000_2002", "historical", "dot-com bust: NASDAQ peak close to its trough", "2000-03-10", "2002-10-09", source=_HIST_SOURCE),
        Scenario("lehman_2008_2009", "historical", "Lehman: last close before the filing to the S&P 500 low", "2008-09-12", "2009-03-09", source=_HIST_SOURCE),
        Scenario("flash_crash_2010", "historical", "flash crash of 2010-05-06, close to close", "2010-05-05", "2010-05-06", source=_HIST_SOURCE),
        Scenario("us_downgrade_2011", "historical", "US downgrade: July 2011 close to the first session after", "2011-07-22", "2011-08-08", source=_HIST_SOURCE),
        Scenario("volmageddon_2018", "historical", "February 2018 volatility spike: record close to the low", "2018-01-26", "2018-02-08", source=_HIST_SOURCE),
        Scenario("equity_down_20", "hypothetical", "equities -20% times each instrument's beta", equity_shock=-0.20, source=_HYPO_SOURCE),
        Scenario("vol_x2", "hypothetical", "volatility x2: 1-day 99% VaR with covariance x4", vol_mult=2.0, source=_HYPO_SOURCE),
        Scenario("correlation_one", "hypothetical", "correlations to 1: 1-day 99% VaR with sigma sigma'", correlation_one=True, source=_HYPO_SOURCE),
    )
}


def scan_scenario(horizon: int, start: str = "1999-01-04", end: str = "2018-12-31") -> Scenario:
    """The worst ``horizon``-session window between ``start`` and ``end``."""
    return Scenario(
        f"worst_{horizon}d_{start[:4]}_{end[:4]}", "scan", f"worst {horizon}-session window {start}..{end}",
        start, end, horizon=horizon, source=_HIST_SOURCE,
    )


def select(names: str | Sequence[str] | None) -> list[Scenario]:
    """Scenarios by name (comma-separated or a list; ``worst_<h>d`` is a scan over 1999..2018); all by default."""
    if names is None:
        return list(SCENARIOS.values())
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out = []
    for n in names:
        if n in SCENARIOS:
            out.append(SCENARIOS[n])
        elif n.startswith("worst_") and n.endswith("d") and n[6:-1].isdigit() and int(n[6:-1]) >= 1:
            out.append(scan_scenario(int(n[6:-1])))
        else:
            raise KeyError(f"unknown scenario {n!r}; available: {', '.join(SCENARIOS)}, worst_<N>d")
    return out


# ---------------------------------------------------------------------------------------------- portfolio


@dataclass(frozen=True)
class Portfolio:
    """Signed dollar values per instrument at ``as_of`` (the close the book is valued at), plus cash."""

    symbols: tuple[str, ...]
    values: tuple[float, ...]
    as_of: str
    cash: float = 0.0
    quantities: tuple[float | None, ...] = ()
    prices: tuple[float | None, ...] = ()
    origin: str = ""

    @property
    def net(self) -> float:
        return float(math.fsum(self.values))

    @property
    def gross(self) -> float:
        return float(math.fsum(abs(v) for v in self.values))

    @property
    def equity(self) -> float:
        """Net value plus cash; the gross exposure when that is not positive (a book given without cash)."""
        eq = self.net + self.cash
        return eq if eq > 0 else self.gross

    @property
    def equity_basis(self) -> str:
        return "net value + cash" if self.net + self.cash > 0 else "gross exposure (net value + cash is not positive)"


def _number(text: str, where: str, column: str) -> float:
    try:
        x = float(text)
    except (TypeError, ValueError):
        raise PortfolioError(f"{where}: {column} = {text!r}: must be a number") from None
    if not math.isfinite(x):
        raise PortfolioError(f"{where}: {column} = {text!r}: must be a finite number")
    return x


def _rows_to_positions(rows: list[tuple[str, dict]], path: str) -> tuple[list[tuple[str, str, float]], float]:
    """(symbol, 'quantity'|'value', amount) per row and the cash; ``rows`` are (where, {column: text})."""
    positions: list[tuple[str, str, float]] = []
    seen: dict[str, str] = {}
    cash = 0.0
    for where, row in rows:
        symbol = str(row.get("symbol") or "").strip()
        if not symbol:
            raise PortfolioError(f"{where}: missing symbol")
        qty, val = row.get("quantity"), row.get("value")
        qty = None if qty is None or str(qty).strip() == "" else qty
        val = None if val is None or str(val).strip() == "" else val
        if symbol.upper() == "CASH":
            if val is None or qty is not None:
                raise PortfolioError(f"{where}: CASH takes a value (dollars) and no quantity")
            cash += _number(val, where, "value")
            continue
        if (qty is None) == (val is None):
            raise PortfolioError(f"{where}: {symbol}: give exactly one of quantity (shares) or value (dollars)")
        if symbol in seen:
            raise PortfolioError(f"{where}: {symbol} is listed twice (first at {seen[symbol]})")
        seen[symbol] = where
        kind = "quantity" if qty is not None else "value"
        positions.append((symbol, kind, _number(qty if qty is not None else val, where, kind)))
    if not positions:
        raise PortfolioError(f"{path}: no positions")
    return positions, cash


def read_portfolio_file(path: str | Path) -> tuple[list[tuple[str, str, float]], float, str | None]:
    """Positions, cash and the optional ``as_of`` date of a portfolio file.

    CSV: a header with ``symbol`` and ``quantity`` and/or ``value``; each row gives exactly one of them
    (shares or signed dollars); a row ``CASH,,<dollars>`` is cash. JSON: ``{"as_of": "YYYY-MM-DD",
    "cash": dollars, "positions": [{"symbol": ..., "quantity": ...} | {"symbol": ..., "value": ...}]}``.
    Errors name the file, the line (CSV) or position index (JSON) and the rule.
    """
    path = Path(path)
    if not path.exists():
        raise PortfolioError(f"{path}: portfolio file not found")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise PortfolioError(f"{path}: line {err.lineno}: not valid JSON: {err.msg}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("positions"), list):
            raise PortfolioError(f'{path}: expected an object with a "positions" list (and optional "cash", "as_of")')
        unknown = set(raw) - {"positions", "cash", "as_of"}
        if unknown:
            raise PortfolioError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; allowed: positions, cash, as_of")
        rows = []
        for i, p in enumerate(raw["positions"]):
            where = f"{path}: positions[{i}]"
            if not isinstance(p, dict) or set(p) - {"symbol", "quantity", "value"}:
                raise PortfolioError(f"{where}: each position is an object with symbol and quantity or value")
            rows.append((where, {k: (None if v is None else str(v)) for k, v in p.items()}))
        positions, cash = _rows_to_positions(rows, str(path))
        if "cash" in raw:
            cash += _number(str(raw["cash"]), f"{path}: cash", "cash")
        as_of = raw.get("as_of")
        if as_of is not None:
            try:
                as_of = str(pd.Timestamp(as_of).date())
            except (ValueError, TypeError):
                raise PortfolioError(f"{path}: as_of = {as_of!r}: must be a date YYYY-MM-DD") from None
        return positions, cash, as_of
    if path.suffix.lower() != ".csv":
        raise PortfolioError(f"{path}: portfolio files are .csv or .json")
    lines = text.splitlines()
    reader = csv.reader(lines)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise PortfolioError(f"{path}: empty file; expected a header symbol,quantity or symbol,value") from None
    if "symbol" not in header or not ({"quantity", "value"} & set(header)) or set(header) - {"symbol", "quantity", "value"}:
        raise PortfolioError(
            f"{path}: line 1: header {','.join(header)!r}: expected symbol and quantity and/or value (nothing else)"
        )
    rows = []
    for lineno, cells in enumerate(reader, start=2):
        if not cells or all(not c.strip() for c in cells):
            continue
        where = f"{path}: line {lineno}"
        if len(cells) != len(header):
            raise PortfolioError(f"{where}: {len(cells)} fields, the header has {len(header)}")
        rows.append((where, dict(zip(header, cells))))
    positions, cash = _rows_to_positions(rows, str(path))
    return positions, cash, None


# ------------------------------------------------------------------------------------------------ history


@dataclass(frozen=True)
class History:
    """Closes of the book's instruments (NaN where an instrument has none) on the proxy's sessions."""

    proxy: pd.Series  # S&P 500 closes indexed by session
    closes: dict[str, pd.Series]  # per instrument, its own positive closes (sorted, unique); absent: no data
    sources: dict[str, str]

    def close_on(self, symbol: str, date: str) -> tuple[float, str]:
        """The last close of ``symbol`` on or before ``date`` and its date."""
        s = self.closes.get(symbol)
        if s is None or s.empty:
            raise PortfolioError(f"{symbol}: no price data to value a quantity; give its value in dollars")
        s = s.loc[: pd.Timestamp(date)]
        if s.empty:
            raise PortfolioError(f"{symbol}: no close on or before {date} to value a quantity; give its value")
        return float(s.iloc[-1]), str(s.index[-1].date())


def _clean_closes(frame: pd.DataFrame) -> pd.Series:
    c = frame["close"].astype("float64")
    c = c[np.isfinite(c.to_numpy()) & (c.to_numpy() > 0)]
    c = c[~c.index.duplicated(keep="first")].sort_index()
    c.index = pd.DatetimeIndex(c.index).normalize()
    return c


def load_history(symbols: Sequence[str], sources: Sequence) -> History:
    """Each symbol's closes from the first source (``firm.data.source.DataSource``) that has it; the
    S&P 500 proxy from the shipped sample data. Symbols no source has get no closes (beta-1 proxy)."""
    from firm.data.source import SampleDataSource

    sample = SampleDataSource(adjust_splits=True)
    closes: dict[str, pd.Series] = {}
    names: dict[str, str] = {}
    for sym in symbols:
        for src in [*sources, sample]:
            if sym in src.symbols():
                closes[sym] = _clean_closes(src.load(sym))
                names[sym] = type(src).__name__ + (f" {src.path}" if hasattr(src, "path") else "")
                break
    return History(_clean_closes(sample.load(PROXY)), closes, names)


def build_portfolio(
    positions: list[tuple[str, str, float]], cash: float, as_of: str, history: History, origin: str
) -> Portfolio:
    """Values from (symbol, 'quantity'|'value', amount): quantities at the last close on or before ``as_of``."""
    syms, values, qtys, prices = [], [], [], []
    for sym, kind, amount in positions:
        syms.append(sym)
        if kind == "value":
            values.append(float(amount))
            qtys.append(None)
            prices.append(None)
        else:
            price, _ = history.close_on(sym, as_of)
            values.append(float(amount) * price)
            qtys.append(float(amount))
            prices.append(price)
    return Portfolio(tuple(syms), tuple(values), as_of, float(cash), tuple(qtys), tuple(prices), origin)


# ------------------------------------------------------------------------------------------------ proxies


@dataclass(frozen=True)
class ProxyUse:
    symbol: str
    proxy: str
    beta: float
    n_obs: int
    estimated_on: str  # "first..last" dates of the returns used, or "" when beta is assumed
    reason: str


def _aligned_returns(own: pd.Series, proxy: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Daily simple returns of ``own`` and the proxy on the proxy's sessions, where both closes exist."""
    a = own.reindex(proxy.index)
    ra = a / a.shift(1) - 1.0
    rp = proxy / proxy.shift(1) - 1.0
    ok = ra.notna() & rp.notna()
    return ra[ok], rp[ok]


def ols_beta(y: np.ndarray, x: np.ndarray) -> float:
    """Slope of y on x with an intercept."""
    xm, ym = x - x.mean(), y - y.mean()
    return float((xm * ym).sum() / (xm * xm).sum())


def proxy_beta(history: History, symbol: str, before: pd.Timestamp, after: pd.Timestamp | None, why: str) -> ProxyUse:
    """The proxy rule's beta of ``symbol`` (see the module docstring)."""
    own = history.closes.get(symbol)
    if own is None or len(own) < 2:
        return ProxyUse(symbol, PROXY, 1.0, 0, "", f"{why}; no data in any source: beta 1 assumed")
    ra, rp = _aligned_returns(own, history.proxy)
    pre = ra.index <= before
    if pre.sum() >= BETA_MIN_OBS:
        y, x, note = ra[pre].iloc[-BETA_WINDOW:], rp[pre].iloc[-BETA_WINDOW:], "before the window"
    else:
        post = ra.index > (after if after is not None else before)
        if post.sum() < BETA_MIN_OBS:
            return ProxyUse(symbol, PROXY, 1.0, 0, "", f"{why}; fewer than {BETA_MIN_OBS} returns to estimate: beta 1 assumed")
        y, x, note = ra[post].iloc[:BETA_WINDOW], rp[post].iloc[:BETA_WINDOW], "after the window (no data before)"
    beta = ols_beta(y.to_numpy(), x.to_numpy())
    span = f"{y.index[0].date()}..{y.index[-1].date()}"
    return ProxyUse(symbol, PROXY, beta, len(y), span, f"{why}; beta on {len(y)} daily returns {note}")


# ---------------------------------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class ScenarioJob:
    """Everything :func:`evaluate` needs, as arrays (picklable, no pandas)."""

    scenario: Scenario
    symbols: tuple[str, ...]
    values: np.ndarray  # (n,) signed dollars
    equity: float
    path: np.ndarray | None = None  # historical: (T+1, n) cumulative returns, row 0 = 0; scan: (T, n) levels
    dates: tuple[str, ...] = ()
    shock: np.ndarray | None = None  # hypothetical equity: (n,) returns
    cov: np.ndarray | None = None  # hypothetical VaR: (n, n) daily covariance (unstressed)
    proxies: tuple[ProxyUse, ...] = ()
    notes: tuple[str, ...] = ()


def _sessions(history: History, start: str, end: str) -> pd.DatetimeIndex:
    idx = history.proxy.index
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    if s not in idx:
        raise ValueError(f"{start} is not a session of the proxy data ({idx[0].date()}..{idx[-1].date()})")
    return idx[(idx >= s) & (idx <= e)]


def _historical(sc: Scenario, pf: Portfolio, history: History) -> ScenarioJob:
    sessions = _sessions(history, sc.start, sc.end)
    spx = history.proxy.reindex(sessions).to_numpy()
    spx_path = spx / spx[0] - 1.0
    cols, proxies = [], []
    for sym in pf.symbols:
        own = history.closes.get(sym)
        c = own.reindex(sessions).to_numpy() if own is not None else np.full(len(sessions), np.nan)
        if np.isfinite(c).all():
            cols.append(c / c[0] - 1.0)
        else:
            first = own.index[0].date() if own is not None and len(own) else None
            why = f"no data {sc.start}..{sc.end}" + (f" (its data: {first}..{own.index[-1].date()})" if first else "")
            use = proxy_beta(history, sym, sessions[0], sessions[-1], why)
            proxies.append(use)
            cols.append(use.beta * spx_path)
    return ScenarioJob(
        sc, pf.symbols, np.asarray(pf.values, dtype=np.float64), pf.equity,
        path=np.ascontiguousarray(np.column_stack(cols)), dates=tuple(str(d.date()) for d in sessions),
        proxies=tuple(proxies),
    )


def returns_matrix(history: History, symbols: Sequence[str], sessions: pd.DatetimeIndex, per_window_beta: bool = True):
    """(len(sessions)-1, n) daily returns on ``sessions``: own where an instrument has every close, else
    (per_window_beta) beta x SPX for the whole window, or (scan) own where both closes exist and the proxy's
    beta x SPX return elsewhere. Returns the matrix, the betas on SPX and the proxies used."""
    spx = history.proxy.reindex(sessions).to_numpy()
    rs = spx[1:] / spx[:-1] - 1.0
    cols, betas, proxies = [], [], []
    for sym in symbols:
        own = history.closes.get(sym)
        c = own.reindex(sessions).to_numpy() if own is not None else np.full(len(sessions), np.nan)
        r = c[1:] / c[:-1] - 1.0
        ok = np.isfinite(r)
        if ok.all():
            cols.append(r)
            betas.append(ols_beta(r, rs))
            continue
        span = f"{sessions[0].date()}..{sessions[-1].date()}"
        if per_window_beta:
            use = proxy_beta(history, sym, sessions[-1], None, f"incomplete data {span}")
            cols.append(use.beta * rs)
        else:
            use = proxy_beta(history, sym, sessions[-1] + pd.Timedelta(days=36500), None,
                             f"no data on {int((~ok).sum())} of {len(r)} sessions {span}: proxy there, beta on all its data")
            cols.append(np.where(ok, r, use.beta * rs))
        proxies.append(use)
        betas.append(use.beta)
    return np.column_stack(cols), np.asarray(betas), proxies


def _hypothetical(sc: Scenario, pf: Portfolio, history: History) -> ScenarioJob:
    idx = history.proxy.index
    end = idx[idx <= pd.Timestamp(pf.as_of)]
    if len(end) < COV_WINDOW + 1:
        raise ValueError(f"the book's date {pf.as_of} leaves fewer than {COV_WINDOW} proxy returns before it")
    sessions = end[-(COV_WINDOW + 1):]
    notes = []
    if pd.Timestamp(pf.as_of) > idx[-1]:
        notes.append(f"book dated {pf.as_of}, after the proxy data ends ({idx[-1].date()}): estimated to then")
    r, betas, proxies = returns_matrix(history, pf.symbols, sessions)
    cov = np.cov(r, rowvar=False, ddof=1).reshape(len(pf.symbols), len(pf.symbols))
    notes.append(f"returns {sessions[1].date()}..{sessions[-1].date()} ({COV_WINDOW} sessions)")
    return ScenarioJob(
        sc, pf.symbols, np.asarray(pf.values, dtype=np.float64), pf.equity,
        shock=sc.equity_shock * betas, cov=np.ascontiguousarray(cov), proxies=tuple(proxies), notes=tuple(notes),
    )


_LEVELS: dict = {}  # (id(history), symbols, start, end) -> (history, levels, proxies, dates): scans of a period share them


def _scan(sc: Scenario, pf: Portfolio, history: History) -> ScenarioJob:
    sessions = _sessions(history, sc.start, sc.end)
    if len(sessions) <= sc.horizon:
        raise ValueError(f"{sc.name}: {len(sessions)} sessions, fewer than the horizon + 1")
    key = (id(history), pf.symbols, sc.start, sc.end)
    hit = _LEVELS.get(key)
    if hit is None or hit[0] is not history:
        r, _, proxies = returns_matrix(history, pf.symbols, sessions, per_window_beta=False)
        levels = np.vstack([np.ones(len(pf.symbols)), np.cumprod(1.0 + r, axis=0)])
        levels.flags.writeable = False
        if len(_LEVELS) > 16:
            _LEVELS.clear()
        _LEVELS[key] = hit = (history, levels, tuple(proxies), tuple(str(d.date()) for d in sessions))
    _, levels, proxies, dates = hit
    return ScenarioJob(
        sc, pf.symbols, np.asarray(pf.values, dtype=np.float64), pf.equity, path=levels, dates=dates, proxies=proxies,
    )


def prepare(scenario: Scenario, portfolio: Portfolio, history: History) -> ScenarioJob:
    """The arrays of one scenario for one book (pandas; cheap)."""
    build: dict[str, Callable] = {"historical": _historical, "hypothetical": _hypothetical, "scan": _scan}
    return build[scenario.kind](scenario, portfolio, history)


# ------------------------------------------------------------------------------------------------- kernels


@njit(cache=True)
def path_pnl_kernel(values, path):
    """P&L path ``sum_i values[i] * path[t, i]`` of a book held through cumulative returns ``path`` (row 0 is
    the base, all zeros), summed in instrument order; returns (pnl path, worst peak-to-trough loss, index of
    the peak, index of the trough). The running peak starts at the base (P&L 0)."""
    T, n = path.shape
    pnl = np.empty(T)
    peak = 0.0
    peak_at = 0
    worst = 0.0
    w_peak = 0
    w_trough = 0
    for t in range(T):
        s = 0.0
        for i in range(n):
            s += values[i] * path[t, i]
        pnl[t] = s
        if s > peak:
            peak = s
            peak_at = t
        dd = peak - s
        if dd > worst:
            worst = dd
            w_peak = peak_at
            w_trough = t
    return pnl, worst, w_peak, w_trough


@njit(cache=True)
def scan_kernel(values, levels, horizon):
    """For every start s with s + horizon < T: the book valued ``values`` at s, held through the levels to
    s + horizon. Returns (worst P&L at the end of a window, its start, worst peak-to-trough loss inside a
    window, its start). Exact ties keep the earliest start."""
    T, n = levels.shape
    total = 0.0
    for i in range(n):
        total += values[i]
    w = np.empty(n)
    worst_end = math.inf
    worst_end_at = -1
    worst_dd = -math.inf
    worst_dd_at = -1
    for s in range(T - horizon):
        for i in range(n):
            w[i] = values[i] / levels[s, i]
        peak = 0.0
        dd_max = 0.0
        pnl = 0.0
        for t in range(s + 1, s + horizon + 1):
            v = 0.0
            for i in range(n):
                v += w[i] * levels[t, i]
            pnl = v - total
            if pnl > peak:
                peak = pnl
            if peak - pnl > dd_max:
                dd_max = peak - pnl
        if pnl < worst_end:
            worst_end = pnl
            worst_end_at = s
        if dd_max > worst_dd:
            worst_dd = dd_max
            worst_dd_at = s
    return worst_end, worst_end_at, worst_dd, worst_dd_at


def parametric_var(values: np.ndarray, cov: np.ndarray, alpha: float = VAR_ALPHA) -> tuple[float, np.ndarray]:
    """One-period delta-normal VaR with zero mean, ``z_alpha sqrt(v' C v)``, and its Euler contributions
    ``z_alpha v_i (C v)_i / sqrt(v' C v)`` (they sum to the VaR)."""
    from scipy.stats import norm

    z = Z_99 if alpha == VAR_ALPHA else float(norm.ppf(alpha))
    cv = cov @ values
    sd = math.sqrt(max(float(values @ cv), 0.0))
    contrib = z * values * cv / sd if sd > 0 else np.zeros_like(values)
    return z * sd, contrib


# ------------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    kind: str
    description: str
    pnl: float  # $ at the end of the window (historical), of the shock, or minus the stressed VaR
    pnl_pct: float  # of the book's equity
    worst_point: float  # $ lowest P&L along the path (<= 0 unless the path only gains)
    max_drawdown: float  # $ worst peak-to-trough loss along the path (>= 0)
    by_instrument: dict[str, float]  # $ each instrument's P&L (or minus its VaR contribution)
    worst_instrument: str
    window: tuple[str, str] | None
    proxies: tuple[ProxyUse, ...]
    details: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["window"] = list(self.window) if self.window else None
        return d


def _result(job: ScenarioJob, pnl: float, worst_point: float, dd: float, contrib: np.ndarray, window, details) -> ScenarioResult:
    sc = job.scenario
    by = {s: float(c) for s, c in zip(job.symbols, contrib)}
    worst = min(by, key=lambda s: (by[s], job.symbols.index(s))) if by else ""
    return ScenarioResult(
        sc.name, sc.kind, sc.description, float(pnl), float(pnl) / job.equity, float(worst_point), float(dd), by,
        worst, window, job.proxies, details, job.notes,
    )


def evaluate(job: ScenarioJob) -> ScenarioResult:
    """The scenario's P&L (the numba kernels for paths and scans; closed forms for the shocks)."""
    sc, v = job.scenario, job.values
    if sc.kind == "historical":
        pnl, dd, peak, trough = path_pnl_kernel(v, job.path)
        details = {
            "sessions": len(job.dates) - 1,
            "worst_point_date": job.dates[int(np.argmin(pnl))],
            "drawdown_from": job.dates[peak], "drawdown_to": job.dates[trough],
            "instrument_returns": {s: float(r) for s, r in zip(job.symbols, job.path[-1])},
        }
        return _result(job, pnl[-1], min(0.0, float(pnl.min())), dd, v * job.path[-1], (job.dates[0], job.dates[-1]), details)
    if sc.kind == "scan":
        end, end_at, dd, dd_at = scan_kernel(v, job.path, sc.horizon)
        h = sc.horizon
        contrib = v * (job.path[end_at + h] / job.path[end_at] - 1.0)
        details = {
            "horizon": h, "windows": len(job.dates) - h,
            "worst_window": [job.dates[end_at], job.dates[end_at + h]],
            "worst_drawdown_window": [job.dates[dd_at], job.dates[dd_at + h]],
        }
        return _result(job, end, min(0.0, end), dd, contrib, (job.dates[0], job.dates[-1]), details)
    # hypothetical
    if sc.vol_mult == 1.0 and not sc.correlation_one:
        contrib = v * job.shock
        pnl = float(contrib.sum())
        return _result(job, pnl, min(0.0, pnl), max(0.0, -pnl), contrib, None,
                       {"equity_shock": sc.equity_shock, "betas": {s: float(b) for s, b in zip(job.symbols, job.shock / sc.equity_shock)} if sc.equity_shock else {}})
    cov = job.cov
    base_var, _ = parametric_var(v, cov)
    if sc.correlation_one:
        sd = np.sqrt(np.diag(cov))
        cov = np.outer(sd, sd)
    stressed = cov * sc.vol_mult**2
    var, contrib = parametric_var(v, stressed)
    shock_pnl = float((v * job.shock).sum()) if sc.equity_shock else 0.0
    pnl = shock_pnl - var
    details = {
        "alpha": VAR_ALPHA, "horizon_days": 1, "var_unstressed": base_var, "var_stressed": var,
        "vol_mult": sc.vol_mult, "correlation_one": sc.correlation_one,
        "daily_vol": {s: float(x) for s, x in zip(job.symbols, np.sqrt(np.diag(job.cov)))},
    }
    if sc.equity_shock:
        details["equity_shock_pnl"] = shock_pnl
    return _result(job, pnl, min(0.0, pnl), max(0.0, -pnl), v * job.shock - contrib, None, details)


def run_local(jobs: Sequence[ScenarioJob]) -> list[ScenarioResult]:
    """The loop: every job evaluated in this process, in order."""
    return [evaluate(j) for j in jobs]


# ------------------------------------------------------------------------------------------------- report


def report_dict(portfolio: Portfolio, results: Sequence[ScenarioResult], execution: dict | None = None) -> dict:
    return {
        "portfolio": {
            "origin": portfolio.origin, "as_of": portfolio.as_of, "cash": portfolio.cash, "net": portfolio.net,
            "gross": portfolio.gross, "equity": portfolio.equity, "equity_basis": portfolio.equity_basis,
            "positions": [
                {"symbol": s, "value": v, "quantity": q, "price": p}
                for s, v, q, p in zip(portfolio.symbols, portfolio.values,
                                      portfolio.quantities or [None] * len(portfolio.symbols),
                                      portfolio.prices or [None] * len(portfolio.symbols))
            ],
        },
        "rules": {
            "proxy": f"{PROXY} from {PROXY_SOURCE}; beta = OLS of daily returns over the last {BETA_WINDOW} "
                     f"returns before the window (min {BETA_MIN_OBS}; else the first {BETA_WINDOW} after it; else 1)",
            "historical": "P&L = sum value_i (close_i[t] / close_i[base] - 1), held in shares, no rebalancing",
            "hypothetical": f"equity shock x beta; 1-day {VAR_ALPHA:.0%} delta-normal VaR on {COV_WINDOW} daily returns",
        },
        "execution": execution or {},
        "scenarios": [r.to_dict() for r in results],
    }


def _money(x: float) -> str:
    return f"{x:,.0f}"


def table(results: Sequence[ScenarioResult]) -> str:
    head = f"{'scenario':<24} {'window':<23} {'P&L $':>13} {'% equity':>9} {'max DD $':>12} {'worst instrument':<22} proxies"
    lines = [head, "-" * len(head)]
    for r in results:
        win = f"{r.window[0]}..{r.window[1]}" if r.window and r.kind == "historical" else (
            "..".join(r.details["worst_window"]) if r.kind == "scan" else "1 day" if r.kind == "hypothetical" and "var_stressed" in r.details else "instant")
        wi = f"{r.worst_instrument} {_money(r.by_instrument.get(r.worst_instrument, 0.0))}"
        px = ", ".join(f"{p.symbol}~{p.proxy} b={p.beta:.2f}" for p in r.proxies) or "-"
        lines.append(f"{r.name:<24} {win:<23} {_money(r.pnl):>13} {r.pnl_pct:>8.2%} {_money(r.max_drawdown):>12} {wi:<22} {px}")
    return "\n".join(lines)


def markdown(report: dict) -> str:
    pf = report["portfolio"]
    lines = [
        "# Stress tests", "",
        f"Book: {pf['origin']}, valued at the close of {pf['as_of']}; net {_money(pf['net'])}, gross "
        f"{_money(pf['gross'])}, cash {_money(pf['cash'])}; equity {_money(pf['equity'])} ({pf['equity_basis']}).", "",
        "| symbol | quantity | price | value $ |", "| --- | ---: | ---: | ---: |",
    ]
    for p in pf["positions"]:
        q = "" if p["quantity"] is None else f"{p['quantity']:,.0f}"
        pr = "" if p["price"] is None else f"{p['price']:,.4f}"
        lines.append(f"| {p['symbol']} | {q} | {pr} | {_money(p['value'])} |")
    lines += ["", "| scenario | kind | window | P&L $ | % of equity | worst point $ | max drawdown $ | worst instrument | proxies |",
              "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in report["scenarios"]:
        win = "..".join(r["window"]) if r["window"] else "-"
        if r["kind"] == "scan":
            win = "..".join(r["details"]["worst_window"])
        px = "; ".join(f"{p['symbol']} ~ {p['proxy']} beta {p['beta']:.3f} ({p['reason']}{', ' + p['estimated_on'] if p['estimated_on'] else ''})"
                       for p in r["proxies"]) or "-"
        wi = f"{r['worst_instrument']} ({_money(r['by_instrument'].get(r['worst_instrument'], 0.0))})"
        lines.append(f"| {r['name']} | {r['kind']} | {win} | {_money(r['pnl'])} | {r['pnl_pct']:.2%} | "
                     f"{_money(r['worst_point'])} | {_money(r['max_drawdown'])} | {wi} | {px} |")
    lines += ["", "Rules:", ""] + [f"* {k}: {v}" for k, v in report["rules"].items()]
    ex = report.get("execution") or {}
    if ex:
        lines += ["", "Execution: " + ", ".join(f"{k} {v}" for k, v in ex.items())]
    return "\n".join(lines) + "\n"
