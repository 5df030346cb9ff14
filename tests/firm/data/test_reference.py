"""Reference series are used only once public: publication rules, staleness, and an asof recomputation."""

import numpy as np
import pandas as pd
import pytest

from firm.config import DataConfig
from firm.data.market import load_market_data
from firm.data.reference import REFERENCE, align, publication_times
from firm.data.validate import get_calendar


def _closes(start, end) -> np.ndarray:
    cal = get_calendar("XNYS")
    return pd.DatetimeIndex(cal.closes.loc[start:end]).as_unit("ns").asi8


def _at(name, day) -> float:
    return float(align(name, _closes(day, day))[0])


def test_vix_is_public_from_the_next_close_and_missing_outside_its_span():
    assert np.isnan(_at("VIX", "2014-01-03"))  # its own first value is not public yet
    assert _at("VIX", "2014-01-06") == 13.76  # the 2014-01-03 close, one session later
    assert np.isnan(_at("VIX", "2013-06-03"))  # before the series
    assert np.isnan(_at("VIX", "2019-02-01"))  # stale after the series ends


def test_monthly_yields_wait_for_publication():
    raw = REFERENCE["AAA"].load()
    september, august = float(raw.loc["2008-09-01"]), float(raw.loc["2008-08-01"])
    assert september != august
    assert _at("AAA", "2008-10-07") == august  # September's average is not out yet
    assert _at("AAA", "2008-10-08") == september
    cpi = REFERENCE["CORE_CPI"].load()
    assert _at("CORE_CPI", "2008-10-17") == float(cpi.loc["2008-08-01"])
    assert _at("CORE_CPI", "2008-10-20") == float(cpi.loc["2008-09-01"])


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_aligned_values_are_the_last_public_ones(name):
    closes = _closes("2004-01-02", "2018-12-31")
    ours = align(name, closes)
    public = publication_times(name)
    stamps = pd.DatetimeIndex(closes.view("datetime64[ns]")).tz_localize("UTC")
    reference = public.sort_index().asof(stamps).to_numpy().copy()
    last_seen = pd.Series(public.index, index=public.index).asof(stamps)
    stale = (stamps - pd.DatetimeIndex(last_seen)) > REFERENCE[name].max_age
    reference[np.asarray(stale)] = np.nan
    assert np.array_equal(ours, reference, equal_nan=True)
    assert np.isfinite(ours).sum() > 200


def test_spx_reference_is_the_shipped_close():
    data = load_market_data(DataConfig(symbols=("SPX",), start="2008-01-02", end="2008-12-31", reference=("SPX",)))
    assert np.array_equal(data.panel.reference["SPX"], data.panel.close[:, 0])
    rows = data.slice(10, 20)
    assert np.array_equal(rows.reference["SPX"], rows.close[:, 0])


def test_unknown_series_is_a_config_error():
    with pytest.raises(ValueError, match="unknown reference series GOLD"):
        DataConfig(reference=("SPX", "GOLD"))
