"""IBBarSource with the real ib_async client against the fake gateway on loopback (no mocks of ib_async).

The fake serves the shipped daily bars up to its replay clock. Pacing runs on a virtual clock shared by
the source's rate limiter and the fake's pacing rules: the source's waits advance it instead of
sleeping, so nothing here is timed.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from firm.broker.endpoint import endpoint
from firm.broker.ibreplay import BackgroundGateway
from firm.broker.ibsim import IBSim, IBSimConfig, load_replay
from firm.config import IBConfig
from firm.data.ib_source import HistoricalDataError, IBBarSource
from firm.data.market import MarketData
from firm.data.source import COLUMNS, SampleDataSource
from firm.data.validate import get_calendar, validate

SYMBOLS = ("AAPL", "MSFT", "IBM")
START = "2012-03-01"  # the fake's clock: its last completed session

logging.getLogger("ib_async").setLevel(logging.CRITICAL)  # 162 and friends are logged on purpose


@lru_cache(maxsize=1)
def data() -> MarketData:
    return load_replay(SYMBOLS)


def shipped(symbol: str, first, last) -> pd.DataFrame:
    """The shipped bars of ``symbol`` in [first, last], clean, as IB reports them (4 dp, whole shares)."""
    clean, _ = validate(symbol, SampleDataSource().load(symbol), get_calendar("XNYS"), first, last)
    out = clean.copy()
    for c in COLUMNS:
        out[c] = np.round(out[c].to_numpy(), 0 if c == "volume" else 4)
    return out


class VirtualClock:
    def __init__(self):
        self.t = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


class Gateway(BackgroundGateway):
    """The fake gateway on a loop in a background thread, its pacing on a virtual clock."""

    def __init__(self, market: MarketData | None = None, start: str = START):
        sim = IBSim(market or data(), start, IBSimConfig())
        self.clock = VirtualClock()
        sim.clock = self.clock
        super().__init__(sim, control=False)

    def source(self, **cfg) -> IBBarSource:
        ib_cfg = IBConfig(port=self.sim.port, connect_timeout_s=10, **cfg)
        ep = endpoint(ib_cfg, "ib-paper", env={})
        return IBBarSource(SYMBOLS, ib_cfg, ep, clock=self.clock, sleep=self.clock.sleep)


@pytest.fixture
def gw():
    g = Gateway()
    yield g
    g.stop()


def request_errors(src: IBBarSource) -> list[int]:
    """Error codes IB sent for requests (not the farm notices with id -1)."""
    return [code for rid, code, _ in src.errors if rid != -1]


def sessions_back(last: str, n: int) -> pd.DatetimeIndex:
    return get_calendar("XNYS").sessions_window(pd.Timestamp(last), -n)


def test_history_equals_the_shipped_bars(gw):
    with gw.source() as src:
        assert src.client_id == 2 and 2 in gw.sim.sessions  # its own connection, broker's id + 1
        got = src.history(SYMBOLS, "2012-02-29", 40)
        window = sessions_back("2012-02-29", 40)
        assert got.quarantined == []
        for sym in SYMBOLS:
            bars = got.bars[sym]
            assert list(bars.columns) == list(COLUMNS) and bars.index.name == "date"
            assert bars.dtypes.eq("float64").all()
            pd.testing.assert_index_equal(bars.index, pd.DatetimeIndex(window.values, name="date"))
            pd.testing.assert_frame_equal(bars, shipped(sym, window[0], window[-1]), check_exact=True, check_freq=False)
        # the request IB saw: 1 day TRADES bars, regular trading hours
        assert all(k[3:] == ("1 day", "58 D", "TRADES", True) for k in src.requests), src.requests
        # a window longer than 365 days is asked for in years (IB's rule) and trimmed to the sessions
        long = src.history(["IBM"], "2012-03-01", 300)
        assert len(long.bars["IBM"]) == 300 and src.requests[-1][4] == "2 Y"
        assert long.bars["IBM"].index[-1] == pd.Timestamp("2012-03-01")


def test_identical_request_within_15s_is_served_from_cache_and_polls_wait(gw):
    with gw.source() as src:
        first = src.history(["AAPL"], "2012-02-29", 10)
        again = src.history(["AAPL"], "2012-02-29", 10)  # identical, no time passed: the cache answers
        assert len(src.requests) == 1 and src.cache_hits == 1
        pd.testing.assert_frame_equal(first.bars["AAPL"], again.bars["AAPL"])
        gw.clock.t += 16  # after 15 s IB allows it again: it goes to IB
        src.history(["AAPL"], "2012-02-29", 10)
        assert len(src.requests) == 2 and src.cache_hits == 1
        # a request ending "now" can change, so an identical one waits out the 15 s instead
        src.poll_new_bars()
        slept = len(gw.clock.slept)
        src.poll_new_bars()
        assert gw.clock.slept[slept:] and sum(gw.clock.slept[slept:]) == pytest.approx(15.0)
        assert request_errors(src) == []  # the fake, pacing on the same clock, never said 162
        assert gw.sim._hist_times  # (and it did count the requests)


def test_at_most_n_historical_requests_per_10_minutes(gw):
    with gw.source(historical_per_10min=2) as src:
        t0 = gw.clock.t
        src.history(["AAPL", "MSFT", "IBM"], "2012-02-29", 5)
        assert len(src.requests) == 3 and gw.clock.t - t0 == pytest.approx(600.0)
        assert request_errors(src) == []


def test_scripted_162_is_retried_after_the_penalty(gw):
    with gw.source() as src:
        gw.call(gw.sim.fault_historical, 162)
        t0 = gw.clock.t
        got = src.history(["MSFT"], "2012-02-29", 20)
        assert src.retries == 1 and request_errors(src) == [162]
        assert gw.clock.t - t0 >= src.limiter.pacing_penalty_s  # waited the penalty on the (virtual) clock
        window = sessions_back("2012-02-29", 20)
        pd.testing.assert_frame_equal(got.bars["MSFT"], shipped("MSFT", window[0], window[-1]), check_freq=False)
        # 162 again after the retry: a clear error, no third request
        gw.call(gw.sim.fault_historical, 162, None, 2)
        n = len(src.requests)
        with pytest.raises(HistoricalDataError, match="162"):
            src.history(["MSFT"], "2012-02-28", 20)
        assert len(src.requests) == n + 2


def test_poll_returns_exactly_the_bars_the_clock_advanced_over(gw):
    with gw.source() as src:
        src.history(SYMBOLS, START, 5)
        empty = src.poll_new_bars()
        assert all(len(f) == 0 for f in empty.bars.values()) and empty.quarantined == []
        gw.call(gw.sim.step, 3)
        new = src.poll_new_bars()
        expected = get_calendar("XNYS").sessions_window(pd.Timestamp(START), 4)[1:]
        assert gw.sim.date == expected[-1].date()
        for sym in SYMBOLS:
            pd.testing.assert_frame_equal(new.bars[sym], shipped(sym, expected[0], expected[-1]), check_freq=False)
        assert new.quarantined == []
        gw.call(gw.sim.step, 1)
        one = src.poll_new_bars()
        assert all(list(f.index) == [pd.Timestamp(gw.sim.date)] for f in one.bars.values())
        assert request_errors(src) == []


def bad_market() -> tuple[MarketData, dict[str, str]]:
    """The shipped bars with three bad ones: AAPL's close NaN, MSFT's low negative, IBM's high below its low."""
    md = data()
    p = md.panel
    dates = pd.DatetimeIndex(pd.to_datetime(p.ts, utc=True)).tz_convert("America/New_York").normalize().tz_localize(None)
    row = {d: int(np.searchsorted(dates.values, np.datetime64(pd.Timestamp(d)))) for d in ("2012-02-15", "2012-03-05")}
    close, low, high = p.close.copy(), p.low.copy(), p.high.copy()
    close[row["2012-02-15"], 0] = np.nan  # AAPL, in the warm-up history
    low[row["2012-02-15"], 1] = -1.0  # MSFT, in the warm-up history
    high[row["2012-03-05"], 2] = low[row["2012-03-05"], 2] - 1.0  # IBM, in a later poll
    panel = dataclasses.replace(p, close=close, low=low, high=high)
    return dataclasses.replace(md, panel=panel), {"AAPL": "nan", "MSFT": "non_positive_price", "IBM": "high_below_low"}


def test_bad_bars_from_ib_are_quarantined_never_returned():
    market, reasons = bad_market()
    g = Gateway(market)
    try:
        with g.source() as src:
            got = src.history(SYMBOLS, "2012-03-01", 20)
            bad = {(q.symbol, q.date, q.reason) for q in got.quarantined}
            assert ("AAPL", "2012-02-15", "nan") in bad and ("MSFT", "2012-02-15", "non_positive_price") in bad
            assert ("AAPL", "2012-02-15", "missing_session") in bad  # the hole is reported too
            assert pd.Timestamp("2012-02-15") not in got.bars["AAPL"].index
            assert pd.Timestamp("2012-02-15") not in got.bars["MSFT"].index
            assert len(got.bars["IBM"]) == 20 and not any(q.symbol == "IBM" for q in got.quarantined)
            g.call(g.sim.step, 3)  # over 2012-03-02, 03-05, 03-06
            new = src.poll_new_bars()
            q = [(x.symbol, x.date, x.reason) for x in new.quarantined]
            assert ("IBM", "2012-03-05", "high_below_low") in q
            assert q == sorted(q, key=lambda r: (r[1], r[0], r[2]))
            assert [d.date().isoformat() for d in new.bars["IBM"].index] == ["2012-03-02", "2012-03-06"]
            assert len(new.bars["AAPL"]) == 3 and len(new.bars["MSFT"]) == 3
            detail = next(x.detail for x in new.quarantined if x.reason == "high_below_low")
            assert detail.startswith("high ") and "< low" in detail
    finally:
        g.stop()
