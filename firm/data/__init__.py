"""Market data: sources of raw bars, validation and quarantine, and the aligned panel of a run."""

from firm.data.market import MarketData, load_market_data
from firm.data.source import (
    COLUMNS,
    DataSource,
    FileDataSource,
    SampleDataSource,
    UnknownSymbolError,
    make_source,
)
from firm.data.validate import REASONS, Quarantined, get_calendar, validate, write_quarantine

__all__ = [
    "COLUMNS",
    "REASONS",
    "DataSource",
    "FileDataSource",
    "MarketData",
    "Quarantined",
    "SampleDataSource",
    "UnknownSymbolError",
    "get_calendar",
    "load_market_data",
    "make_source",
    "validate",
    "write_quarantine",
]
