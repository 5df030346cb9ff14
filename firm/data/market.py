"""The validated market data of a run: every configured symbol's clean bars on one session axis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from firm.config import DataConfig
from firm.data.reference import load_reference
from firm.data.source import COLUMNS, UnknownSymbolError, make_source
from firm.data.validate import Quarantined, get_calendar, sort_quarantine, validate
from strategies.base import Panel


@dataclass(frozen=True)
class MarketData:
    """A panel of clean bars stamped at each session's close, plus what validation reported."""

    panel: Panel
    session_open: np.ndarray  # (T,) int64, ns since epoch (UTC)
    quarantined: tuple[Quarantined, ...]

    def slice(self, i: int, j: int) -> Panel:
        """Rows ``i:j`` of the panel."""
        p = self.panel
        return Panel(
            p.ts[i:j],
            p.symbols,
            p.open[i:j],
            p.high[i:j],
            p.low[i:j],
            p.close[i:j],
            p.volume[i:j],
            {name: values[i:j] for name, values in p.reference.items()},
        )

    @property
    def n_bars(self) -> int:
        """Number of (session, symbol) cells with a valid bar."""
        return int(self.panel.valid.sum())


def _utc_ns(values: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(values).tz_convert("UTC").astype("datetime64[ns, UTC]").asi8.astype(np.int64)


def load_market_data(cfg: DataConfig) -> MarketData:
    """Load, validate and align ``cfg.symbols`` over ``cfg.start``..``cfg.end`` on ``cfg.calendar``.

    ``panel.ts`` is each session's close (UTC ns; early on half days); a symbol without a clean bar
    in a session has NaN in all five fields there.
    """
    source = make_source(cfg)
    available = source.symbols()
    unknown = [s for s in cfg.symbols if s not in available]
    if unknown:
        raise UnknownSymbolError(tuple(unknown), available, f"data source {cfg.source!r}")
    calendar = get_calendar(cfg.calendar)

    cleans: list[pd.DataFrame] = []
    records: list[Quarantined] = []
    for symbol in cfg.symbols:
        clean, problems = validate(symbol, source.load(symbol), calendar, cfg.start, cfg.end)
        cleans.append(clean)
        records.extend(problems)

    stamps = np.unique(np.concatenate([c.index.asi8 for c in cleans]))
    sessions = pd.DatetimeIndex(stamps.view("datetime64[ns]"), name="date")
    if len(sessions) == 0:
        raise ValueError(
            f"no clean bars for {', '.join(cfg.symbols)} between {cfg.start or 'the start'} and {cfg.end or 'the end'}"
        )
    aligned = [c.reindex(sessions) for c in cleans]
    fields = {col: np.column_stack([a[col].to_numpy(dtype="float64") for a in aligned]) for col in COLUMNS}
    closes = _utc_ns(calendar.closes.reindex(sessions))
    panel = Panel(
        ts=closes,
        symbols=tuple(cfg.symbols),
        **fields,
        reference=load_reference(cfg.reference, closes, cfg.calendar),
    )
    return MarketData(panel, _utc_ns(calendar.opens.reindex(sessions)), tuple(sort_quarantine(records)))
