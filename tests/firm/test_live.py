"""Live mode (firm/live.py) end to end: the real ib_async client against the fake gateway on loopback, on a real Ray.

The fake's market moves when the live loop waits for the next session (a market clock that steps the fake's
replay clock, as real time moves a real market); IB's historical pacing runs on a virtual clock shared by the
bar source and the fake. One live run over five sessions (2012-06-04 .. 08, three stocks, three agents) is
shared by the tests: partial fills (the fake fills at most 1e-4 of a bar's volume per order) and one bad bar
(MSFT's high below its low on 2012-06-08).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from firm.broker.endpoint import endpoint
from firm.broker.ibreplay import BackgroundGateway
from firm.broker.ibsim import IBSim, IBSimConfig, load_replay
from firm.config import IBConfig, load_config
from firm.data.ib_source import HistoricalDataError, IBBarSource
from firm.data.validate import get_calendar
from firm.journal import read_jsonl
from firm.portfolio import Costs

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ("AAPL", "MSFT", "IBM")
START = "2012-06-01"  # the fake's clock when the run starts: the warm-up ends here
LIVE = ["2012-06-04", "2012-06-05", "2012-06-06", "2012-06-07", "2012-06-08"]
BAD = ("MSFT", "2012-06-08")  # high below low
AGENTS = ("momentum", "mean_reversion", "ttm_squeeze")  # warm-ups 50, 61, 39 sessions
FILL_SHARE = 1e-4

logging.getLogger("ib_async").setLevel(logging.CRITICAL)


@lru_cache(maxsize=1)
def data():
    return load_replay(SYMBOLS)


def with_bad_bar():
    md = data()
    p = md.panel
    dates = pd.DatetimeIndex(pd.to_datetime(p.ts, utc=True)).tz_convert("America/New_York").normalize().tz_localize(None)
    i = int(np.searchsorted(dates.values, np.datetime64(pd.Timestamp(BAD[1]))))
    high = p.high.copy()
    high[i, SYMBOLS.index(BAD[0])] = p.low[i, SYMBOLS.index(BAD[0])] - 1.0
    return dataclasses.replace(md, panel=dataclasses.replace(p, high=high))


class VirtualClock:
    """IB's historical pacing clock: the source's waits advance it instead of sleeping."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.t += s


class FakeMarket:
    """Market time of the fake gateway: now is just after its last completed session's close; waiting moves its
    clock over every session that closes by then, once the fake has every order the run sent (so each order
    fills at the next session's open, as at IB)."""

    def __init__(self, gw: BackgroundGateway, runs: Path):
        self.gw, self.runs, self.calendar = gw, runs, get_calendar("XNYS")

    def now(self) -> pd.Timestamp:
        return self.calendar.session_close(pd.Timestamp(self.gw.sim.date)) + pd.Timedelta(minutes=1)

    def sent(self) -> set[str]:
        return {r["order_ref"] for wal in self.runs.glob("*/orders.wal.jsonl") for r in read_jsonl(wal) if r["kind"] == "order"}

    def wait_until(self, ts: pd.Timestamp) -> None:
        guard = time.monotonic() + 30
        while not self.sent() <= self.gw.call(lambda: {so.order.orderRef for so in self.gw.sim.orders.values()}):
            assert time.monotonic() < guard, "the fake never got every order the run sent"
            time.sleep(0.005)
        while self.calendar.session_close(self.calendar.next_session(pd.Timestamp(self.gw.sim.date))) <= ts:
            assert self.gw.call(self.gw.sim.step, 1) == 1


@dataclasses.dataclass
class Live:
    result: object
    source: IBBarSource
    gw: BackgroundGateway
    journal: list[dict]
    closes: dict[str, np.ndarray]  # live session -> the row's closes handed to the pipeline

    def events(self, kind: str) -> list[dict]:
        return [e for e in self.journal if e["type"] == kind]


def live_config(out, port: int, sessions: int):
    """The default config with AGENTS alone, live on the fake at ``port`` for ``sessions`` sessions, no rate limits."""
    others = {f"agents.{a}.enabled": False for a in load_config(ROOT / "configs" / "default.yaml").agents if a not in AGENTS}
    return load_config(
        ROOT / "configs" / "default.yaml",
        {"run.output_dir": str(out), "data.symbols": list(SYMBOLS), "broker.kind": "ib-paper",
         "broker.ib.port": port, "broker.ib.orders_per_minute": 10_000, "broker.ib.min_order_spacing_s": 0.0,
         "broker.ib.fill_timeout_s": 20, "broker.slippage_bps": 0.0, "broker.slippage_noise_bps": 0.0,
         "live.feed": "ib", "live.sessions": sessions, **others},
    )  # fmt: skip


@pytest.fixture(scope="module")
def live(ray_local, tmp_path_factory):
    from firm.live import run_live

    out = tmp_path_factory.mktemp("live")
    vc = VirtualClock()
    sim = IBSim(with_bad_bar(), START, IBSimConfig(fill_share=FILL_SHARE))
    sim.clock = vc
    gw = BackgroundGateway(sim, control=False)
    cfg = live_config(out, sim.port, len(LIVE))
    market = FakeMarket(gw, out)
    ep = endpoint(cfg.broker.ib, "ib-paper", env={})
    source = IBBarSource(SYMBOLS, cfg.broker.ib, ep, what_to_show="ADJUSTED_LAST", clock=vc, sleep=vc.sleep, now=market.now)
    closes = {}

    def on_batch(bars, result):
        closes[bars.stamps[0][:8]] = bars.panel.close[0].copy()

    try:
        result = run_live(cfg, clock=market, source=source, progress=False, on_batch=on_batch)
        yield Live(result, source, gw, read_jsonl(result.run_dir / "journal.jsonl"), closes)
    finally:
        source.close()
        gw.stop()


def stamp(session: str) -> str:
    return f"{session.replace('-', '')}T2000"


def test_warmup_from_adjusted_last_history_and_agents_speak_from_the_first_live_bar(live):
    warm = live.source.requests[: len(SYMBOLS)]
    assert [k[1] for k in warm] == list(SYMBOLS)
    assert all(k[2] == "" and k[5] == "ADJUSTED_LAST" and k[3] == "1 day" for k in warm)  # up to now, as IB requires
    calendar = get_calendar("XNYS")
    sessions = calendar.sessions_window(pd.Timestamp(START), -(61 + 20))  # longest warm-up + 20
    bars = {e["id"] for e in live.events("MarketDataEvent")}
    assert {f"bar:AAPL:{calendar.session_close(s):%Y%m%dT%H%M}" for s in sessions} <= bars  # the warm-up is journaled
    assert live.result.stats.rows == len(LIVE) and live.result.stats.first_ts == LIVE[0]
    first = stamp(LIVE[0])
    spoke = {e["agent"] for e in live.events("SignalEvent") if e["id"].endswith(first)}
    assert spoke == set(AGENTS)
    decided = [e for e in live.events("DecisionEvent") if e["id"].endswith(first)]
    assert decided and all(e["signal_ids"] for e in decided)  # sized on the warm CIO state, from the first bar


def test_orders_go_through_ib_once_each_and_fills_come_back(live):
    wal = read_jsonl(live.result.run_dir / "orders.wal.jsonl")
    sent = sorted(r["order_ref"] for r in wal if r["kind"] == "order")
    at_fake = sorted(live.gw.call(lambda: [so.order.orderRef for so in live.gw.sim.orders.values()]))
    assert len(sent) >= 4 and at_fake == sent  # every order reached IB, once
    fills = live.events("FillEvent")
    assert len(fills) == sum(r["kind"] == "fill" for r in wal) >= 4
    assert {f["order_ref"] for f in fills} <= set(sent)


def test_partial_fill_is_journaled_with_both_books_and_the_cio_decides_on_the_brokers(live):
    drifts = live.events("ProjectionDriftEvent")
    assert drifts, "the partial fills left no trace"
    d = drifts[0]
    assert "(partial)" in d["reason"] and d["projected_positions"] != d["actual_positions"]
    fills = [f for f in live.events("FillEvent") if f["ts"] < d["ts"]]
    for symbol, actual in d["actual_positions"].items():
        signed = sum(f["quantity"] * (1 if f["side"] == "BUY" else -1) for f in fills if f["symbol"] == symbol)
        assert actual == signed  # the broker's position: what IB filled
        filled = abs(signed)
        decided = sum(e["quantity"] for e in live.events("DecisionEvent") if e["symbol"] == symbol and e["ts"] < d["ts"])
        assert filled < decided
    # both cash figures: the first fills come out of a flat book of 1,000,000; the projection filled every share
    costs = Costs(slippage_bps=0.0, slippage_noise_bps=0.0)
    sign = {"BUY": 1, "SELL": -1}
    paid = sum(sign[f["side"]] * f["quantity"] * f["price"] + f["commission"] for f in fills)
    assert d["actual_cash"] == pytest.approx(1_000_000 - paid, abs=1e-6)
    price = {f["symbol"]: f["price"] for f in fills}  # the fake fills at the open, which the projection assumes
    decided = [e for e in live.events("DecisionEvent") if e["ts"] < d["ts"]]
    projected = sum(sign[e["side"]] * e["quantity"] * price[e["symbol"]] + costs.commission(e["quantity"], price[e["symbol"]])
                    for e in decided)  # fmt: skip
    assert d["projected_cash"] == pytest.approx(1_000_000 - projected, abs=1e-6)
    # the next decision on that instrument starts from the broker's position, not from the projected one
    after = [e for e in live.events("DecisionEvent") if e["ts"] == d["ts"] and e["symbol"] in d["actual_positions"]]
    assert after and all(e["current_position"] == d["actual_positions"][e["symbol"]] for e in after)
    assert all(e["current_position"] != d["projected_positions"][e["symbol"]] for e in after)
    # and the run went on to its last session
    assert any(e["id"].endswith(stamp(LIVE[-1])) for e in live.events("MarketDataEvent"))
    assert (live.result.run_dir / "summary.json").exists()


def test_bad_bar_is_quarantined_with_its_reason_and_never_traded(live):
    records = [json.loads(line) for line in (live.result.run_dir / "quarantine.jsonl").read_text().splitlines()]
    assert [(r["symbol"], r["date"], r["reason"]) for r in records] == [(*BAD, "high_below_low")]
    assert records[0]["detail"].startswith("high ") and "< low" in records[0]["detail"]
    symbol, session = BAD
    assert math.isnan(live.closes[session.replace("-", "")][SYMBOLS.index(symbol)])  # no bar in that row
    ids = {e["id"] for e in live.journal}
    assert f"bar:{symbol}:{stamp(session)}" not in ids and f"dec:{symbol}:{stamp(session)}" not in ids
    assert f"bar:AAPL:{stamp(session)}" in ids  # the others' bars of that session went on


class Gateway(BackgroundGateway):
    def __init__(self):
        sim = IBSim(data(), START, IBSimConfig())
        self.clock = VirtualClock()
        sim.clock = self.clock
        super().__init__(sim, control=False)

    def source(self) -> IBBarSource:
        cfg = IBConfig(port=self.sim.port, connect_timeout_s=10)
        calendar = get_calendar("XNYS")
        now = lambda: calendar.session_close(pd.Timestamp(self.sim.date)) + pd.Timedelta(minutes=1)  # noqa: E731
        ep = endpoint(cfg, "ib-paper", env={})
        return IBBarSource(SYMBOLS, cfg, ep, what_to_show="ADJUSTED_LAST", clock=self.clock, sleep=self.clock.sleep, now=now)


def test_adjusted_last_takes_no_end_date_and_a_re_adjustment_is_reported():
    from firm.live import GatewayClock

    gw = Gateway()
    try:
        with gw.source() as src:
            # the gateway's clock is market time: at the fake, just before the session after its replay clock opens
            clock = GatewayClock(src)
            assert clock.now() == pd.Timestamp("2012-06-04 13:29", tz="UTC") == gw.call(gw.sim.market_time)
            got = src.history(SYMBOLS, None, 10)
            assert got.sessions()[-1] == pd.Timestamp(START) and len(got.sessions()) == 10
            with pytest.raises(HistoricalDataError, match="321.*End date not supported with adjusted last"):
                src._call(src._request("AAPL", "20120531 23:59:59 US/Eastern", "10 D"))

            # a 1% dividend goes ex on the next session: IB scales the history before it, the new bar is as traded
            def dividend():
                sim = gw.sim
                sim.ohlcv = tuple(np.concatenate([x[: sim.bar + 1] * (0.99 if k < 4 else 1.0), x[sim.bar + 1 :]])
                                  for k, x in enumerate(sim.ohlcv))  # fmt: skip
                sim.step(1)

            gw.call(dividend)
            new = src.poll_new_bars()
            assert [(s, d) for s, d, _ in new.adjustments] == [(s, START) for s in SYMBOLS]
            assert all(f == pytest.approx(0.99, abs=1e-4) for _, _, f in new.adjustments)
            assert all(len(f) == 1 for f in new.bars.values())
    finally:
        gw.stop()


def test_live_feed_refuses_a_replay_clock(capsys):
    from firm.cli import main

    code = main(["run", "--feed", "ib", "--broker", "ib-paper", "--replay-control", "127.0.0.1:1", "--sessions", "1"])
    assert code == 2 and "replay_control" in capsys.readouterr().err


def test_summary_counts_the_projection_drift(live):
    summary = json.loads((live.result.run_dir / "summary.json").read_text())
    assert summary["projection_drifts"] == len(live.events("ProjectionDriftEvent")) >= 1
    assert summary["account"]["positions"] == {} and summary["account"]["cash"] == 1_000_000  # the fake starts flat


# -- a live run on an account that already holds positions ------------------------------------------------------

HELD = {"AAPL": 300, "MSFT": -400, "IBM": 200}  # the run's symbols
OUTSIDE = {"GOOG": 25}  # a position in a symbol the run does not trade
ACCOUNT_CASH = 600_000.0


@pytest.fixture(scope="module")
def held(ray_local, tmp_path_factory):
    """Two live sessions on a fake account that starts with positions (three in the run's symbols, one outside)
    and 600,000 of cash; full fills."""
    from firm.live import run_live

    out = tmp_path_factory.mktemp("held")
    vc = VirtualClock()
    sim = IBSim(load_replay((*SYMBOLS, *OUTSIDE)), START, IBSimConfig(cash=ACCOUNT_CASH, positions={**HELD, **OUTSIDE}))
    sim.clock = vc
    gw = BackgroundGateway(sim, control=False)
    start = {s: gw.call(sim.position_of, s) for s in (*SYMBOLS, *OUTSIDE)}
    prices = {s: gw.call(sim.price, sim.symbols.index(s)) for s in (*SYMBOLS, *OUTSIDE)}
    cfg = live_config(out, sim.port, 2)
    market = FakeMarket(gw, out)
    ep = endpoint(cfg.broker.ib, "ib-paper", env={})
    source = IBBarSource(SYMBOLS, cfg.broker.ib, ep, what_to_show="ADJUSTED_LAST", clock=vc, sleep=vc.sleep, now=market.now)
    try:
        result = run_live(cfg, clock=market, source=source, progress=False)
        end = {s: gw.call(sim.position_of, s) for s in (*SYMBOLS, *OUTSIDE)}
        yield Live(result, source, gw, read_jsonl(result.run_dir / "journal.jsonl"), {}), start, prices, end, gw.call(lambda: sim.cash)
    finally:
        source.close()
        gw.stop()


def test_the_live_book_starts_from_the_account(held):
    run, start, prices, _, _ = held
    assert start == {**HELD, **OUTSIDE}
    (snap,) = run.events("AccountSnapshotEvent")
    assert snap["account"] == "DU****567" and snap["currency"] == "USD"
    assert snap["cash"] == ACCOUNT_CASH and snap["positions"] == HELD and snap["outside"] == OUTSIDE
    assert snap["average_cost"] == pytest.approx({s: prices[s] for s in HELD}, abs=1e-9)  # the fake holds them at cost
    equity = ACCOUNT_CASH + sum(q * prices[s] for s, q in HELD.items())  # GOOG is outside the book's equity
    assert snap["equity"] == pytest.approx(equity, abs=1e-6)
    # journaled after the warm-up and before the first decision
    kinds = [e["type"] for e in run.journal]
    at = kinds.index("AccountSnapshotEvent")
    assert "DecisionEvent" not in kinds[:at] and "MarketDataEvent" in kinds[:at]
    assert at < kinds.index("DecisionEvent")
    # the first live session is decided on the account's positions: a resize of what is held, not an opening
    first = [e for e in run.events("DecisionEvent") if e["id"].endswith(stamp(LIVE[0]))]
    assert first and all(e["current_position"] == HELD[e["symbol"]] for e in first)
    assert not any(e["reason"].startswith("open") for e in first)  # on a flat book each would be an opening
    summary = json.loads((run.result.run_dir / "summary.json").read_text())
    assert summary["initial_equity"] == pytest.approx(equity, abs=1e-6)
    assert summary["account"]["outside"] == OUTSIDE and summary["projection_drifts"] == len(run.events("ProjectionDriftEvent"))


def test_the_accounts_final_positions_are_the_start_plus_the_runs_fills(held):
    run, start, _, end, cash = held
    fills = run.events("FillEvent")
    assert fills, "the run traded nothing"
    moved = {s: sum(f["quantity"] * (1 if f["side"] == "BUY" else -1) for f in fills if f["symbol"] == s) for s in start}
    assert end == {s: start[s] + moved[s] for s in start}
    assert end["GOOG"] == OUTSIDE["GOOG"]  # never traded
    book = run.result.stats.final_book  # the run's book is the account's, in the run's symbols
    assert dict(zip(book.symbols, book.positions)) == {s: end[s] for s in SYMBOLS}
    assert book.cash == pytest.approx(cash, abs=1e-6)


def test_the_start_line_masks_the_account_and_names_what_is_outside(held):
    from firm.events import parse_event
    from firm.live import account_line

    (snap,) = held[0].events("AccountSnapshotEvent")
    line = account_line(parse_event(snap))
    assert "DU****567" in line and "DU1234567" not in line
    assert "cash 600,000.00 USD" in line and "AAPL +300" in line and "MSFT -400" in line
    assert line.endswith("outside the run (not traded, not in its book or limits): GOOG +25")


def test_ibsim_positions_option_refuses_what_is_not_symbol_equals_shares(capsys):
    from firm.cli import main

    assert main(["ibsim", "--port", "0", "--positions", "AAPL=1.5"]) == 2
    assert "--positions: 'AAPL=1.5' is not SYMBOL=SHARES" in capsys.readouterr().err


def test_a_restarted_execution_actor_starts_from_the_account_in_its_wal():
    from firm.broker.ib import IBBroker

    cfg = IBConfig(port=1)
    broker = IBBroker(SYMBOLS, 1_000_000.0, Costs(), cfg, endpoint(cfg, "ib-paper", env={}), connect=False)
    try:
        broker.restore([
            {"kind": "account", "ts": "2012-06-01T20:01:00+00:00", "cash": 600_000.0, "currency": "USD",
             "positions": {"AAPL": [300, 72.0], "MSFT": [-400, 25.0]}},
            {"kind": "order", "order_ref": "firm-AAPL-x", "decision_id": "dec:AAPL:x", "ts": "2012-06-04T20:00:00+00:00",
             "symbol": "AAPL", "side": "SELL", "quantity": 100, "type": "MKT"},
            {"kind": "fill", "order_ref": "firm-AAPL-x", "ts": "2012-06-05T13:30:00+00:00", "symbol": "AAPL",
             "quantity": -100, "price": "80.0000", "commission": "1.00"},
        ])  # fmt: skip
        book = broker.book
        assert book.positions == [200, -400, 0]
        assert book.cash == pytest.approx(600_000 + 100 * 80 - 1, abs=1e-9)
        assert book.cost_basis[:2] == pytest.approx([200 * 72.0, -400 * 25.0]) and book.realized[0] == pytest.approx(799.0)
    finally:
        broker.close()
