"""Shared fixtures: the real shipped data and the NYSE calendar."""

from __future__ import annotations

import importlib.resources

import pandas as pd
import pytest
from exchange_calendars import ExchangeCalendar

from firm.data import SampleDataSource, get_calendar


@pytest.fixture(scope="session")
def xnys() -> ExchangeCalendar:
    return get_calendar("XNYS")


@pytest.fixture(scope="session")
def sample() -> SampleDataSource:
    return SampleDataSource()


@pytest.fixture
def aapl(sample: SampleDataSource) -> pd.DataFrame:
    """A fresh copy of the real, split-adjusted AAPL bars (safe to modify)."""
    return sample.load("AAPL")


@pytest.fixture(scope="session")
def bokeh_csv() -> pd.DataFrame:
    """bokeh-sampledata's stocks file exactly as shipped."""
    path = importlib.resources.files("bokeh_sampledata") / "_data" / "stocks.csv.gz"
    with importlib.resources.as_file(path) as local:
        return pd.read_csv(local)
