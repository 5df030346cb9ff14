"""IBBroker with the real ib_async client against the fake gateway on loopback (no mocks of ib_async).

The fake runs on its own event loop in a background thread, with its replay clock served on a side
channel (firm.broker.ibreplay) that the broker's ``market_time`` drives. No timed assertions: every wait
is for a state, with a guard that only turns a hang into a failure.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from firm.broker.base import DuplicateOrder
from firm.broker.endpoint import Endpoint, LiveRefused, confirm_live, endpoint, mask_account, resolve_kind
from firm.broker.ib import IBBroker
from firm.broker.ibreplay import BackgroundGateway
from firm.broker.ibsim import DEFAULT_ACCOUNT, IBSim, IBSimConfig, load_replay
from firm.config import IBConfig
from firm.events import OrderEvent, Side
from firm.execution import ExecutionEngine
from firm.journal import OrderLog
from firm.portfolio import Costs

START = "2012-01-03"
SYMBOLS = ("AAPL", "MSFT", "IBM")
COSTS = Costs(slippage_bps=0.0, slippage_noise_bps=0.0)

logging.getLogger("ib_async").setLevel(logging.CRITICAL)  # the faults make it log errors on purpose


@lru_cache(maxsize=1)
def data():
    return load_replay(SYMBOLS)


class Gateway(BackgroundGateway):
    """The fake gateway and its replay clock on a loop in a background thread."""

    def __init__(self, **cfg):
        super().__init__(IBSim(data(), START, IBSimConfig(**cfg)))

    def orders_with_ref(self, ref: str):
        return self.call(lambda: [so for so in self.sim.orders.values() if so.order.orderRef == ref])


@pytest.fixture
def gw():
    g = Gateway()
    yield g
    g.stop()


def make_broker(gw: Gateway, **cfg) -> IBBroker:
    cfg = {"backoff_base_s": 0.05, **cfg}
    ib_cfg = IBConfig(
        port=gw.sim.port, replay_control=f"127.0.0.1:{gw.control_port}", fill_timeout_s=20,
        orders_per_minute=1000, min_order_spacing_s=0.0, **cfg,
    )  # fmt: skip
    ep = endpoint(ib_cfg, "ib-paper", env={})
    return IBBroker(SYMBOLS, 1_000_000.0, COSTS, ib_cfg, ep, seed=1)


def until(pred, what: str, guard_s: float = 30.0):
    end = time.monotonic() + guard_s
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.005)


def order(ref: str, symbol="AAPL", side=Side.BUY, qty=100) -> OrderEvent:
    ts = dt.datetime(2012, 1, 3, 21, tzinfo=dt.timezone.utc)
    return OrderEvent(id=f"ord:{ref}", ts=ts, order_ref=ref, symbol=symbol, side=side, quantity=qty, decision_id=f"dec:{ref}")


def bar_at(session: str):
    """(open time UTC, opens, closes) of a session of the replayed data."""
    p = data().panel
    dates = pd.DatetimeIndex(pd.to_datetime(p.ts, utc=True)).tz_convert("America/New_York").normalize().tz_localize(None)
    i = int(np.searchsorted(dates.values, np.datetime64(pd.Timestamp(session))))
    opened = dt.datetime.fromtimestamp(int(data().session_open[i]) // 1_000_000_000, tz=dt.timezone.utc)
    return opened, p.open[i], p.close[i]


def next_bar(broker: IBBroker, session: str):
    ts, opens, closes = bar_at(session)
    broker.market_time(ts)
    return broker.on_bar(opens, closes)


def test_submit_fill_commission_and_fill_event(gw, tmp_path):
    broker = make_broker(gw)
    try:
        assert broker.is_ready()
        engine = ExecutionEngine(broker, OrderLog(tmp_path / "wal.jsonl", fsync=False))
        broker.submit(order("firm-t1"))
        broker.submit(order("firm-t2", "MSFT", Side.SELL, 50))
        with pytest.raises(DuplicateOrder):
            broker.submit(order("firm-t1"))
        assert [p.order_ref for p in broker.book.pending] == ["firm-t1", "firm-t2"]
        fills = next_bar(broker, "2012-01-04")
        _, opens, _ = bar_at("2012-01-04")
        assert [(f.order_ref, f.quantity) for f in fills] == [("firm-t1", 100), ("firm-t2", -50)]
        aapl, msft = fills
        assert aapl.price == round(float(opens[0]), 4) and aapl.commission == COSTS.commission(100, aapl.price)
        assert msft.price == round(float(opens[1]), 4) and msft.commission == 1.0
        assert broker.book.positions == [100, -50, 0] and broker.book.pending == []
        expected_cash = 1_000_000 - 100 * aapl.price - aapl.commission + 50 * msft.price - msft.commission
        assert broker.book.cash == pytest.approx(expected_cash, abs=1e-6)
        event = engine._fill_event(aapl, bar_at("2012-01-04")[0])
        assert event.commission == aapl.commission and event.side is Side.BUY and event.order_ref == "firm-t1"
        assert broker.order_states() == {"firm-t1": "filled", "firm-t2": "filled"}
        until(lambda: broker.ib_positions() == {"AAPL": 100, "MSFT": -50}, "IB's positions")
        assert next_bar(broker, "2012-01-05") == []  # nothing counted twice
        assert all(mask_account(DEFAULT_ACCOUNT) in line or "account" not in line for line in broker.lines)
        assert not any(DEFAULT_ACCOUNT in line for line in broker.lines)  # never in full
    finally:
        broker.close()


def test_socket_drop_mid_order_reconnects_reconciles_no_duplicate_no_loss(gw):
    broker = make_broker(gw, backoff_base_s=1.0)  # a second between a drop and the reconnect: room to submit
    try:
        gw.call(gw.sim.fault_drop_mid_order, 1)
        broker.submit(order("firm-drop"))  # IB acknowledges it, then the socket drops
        until(lambda: broker.reconnects >= 1 and broker.is_ready(), "reconnected and reconciled")
        rec = broker.reconciliations[-1]
        assert rec.live == ["firm-drop"] and rec.resend == []
        fills = next_bar(broker, "2012-01-04")
        assert [(f.order_ref, f.quantity) for f in fills] == [("firm-drop", 100)]
        assert len(gw.orders_with_ref("firm-drop")) == 1  # never duplicated
        assert broker.book.positions[0] == 100 and broker.book.pending == []

        # the socket drops again; an order decided while disconnected never reached IB: sent once, after
        gw.call(gw.sim.drop, None)
        until(lambda: broker.reconnects >= 2, "the broker sees the drop")  # (a count: a state could be missed)
        broker.submit(order("firm-held", "IBM", Side.BUY, 10))
        until(lambda: broker.is_ready() and len(broker.reconciliations) >= 3, "reconnected again")
        assert broker.reconciliations[-1].resend == ["firm-held"]
        fills = next_bar(broker, "2012-01-05")
        assert [(f.order_ref, f.quantity) for f in fills] == [("firm-held", 10)]
        assert len(gw.orders_with_ref("firm-held")) == 1 and len(gw.orders_with_ref("firm-drop")) == 1
        assert broker.book.positions == [100, 0, 10]
        states = broker.order_states()
        assert states == {"firm-drop": "filled", "firm-held": "filled"}
    finally:
        broker.close()


def test_gateway_restart_with_next_valid_id_going_backwards_reuses_no_order_id(gw):
    broker = make_broker(gw)
    try:
        broker.submit(order("firm-r1"))
        assert len(next_bar(broker, "2012-01-04")) == 1
        reconciled = len(broker.reconciliations)
        gw.call(gw.sim.restart, 1)  # nextValidId back to 1, which order firm-r1 used
        until(lambda: broker.is_ready() and len(broker.reconciliations) > reconciled, "reconnected after the restart")
        assert broker.reconciliations[-1].filled == ["firm-r1"]
        broker.submit(order("firm-r2", "MSFT", Side.BUY, 10))
        fills = next_bar(broker, "2012-01-05")
        assert [(f.order_ref, f.quantity) for f in fills] == [("firm-r2", 10)]  # not rejected with 103
        assert not any(code == 103 for _, code, _ in broker.errors)
    finally:
        broker.close()


def test_rejected_order_and_cancel_all(gw):
    broker = make_broker(gw)
    try:
        gw.call(gw.sim.fault_reject_next_order, "no permissions")
        broker.submit(order("firm-rej"))
        until(lambda: broker.order_states().get("firm-rej") == "rejected", "rejected by 201")
        broker.submit(order("firm-c1", "MSFT"))
        broker.submit(order("firm-c2", "IBM"))
        broker.market_time(bar_at("2012-01-03")[0])  # waits for the acknowledgements; the clock stays
        assert sorted(broker.cancel_all()) == ["firm-c1", "firm-c2"]
        assert broker.book.pending == [p for p in broker.book.pending if p.order_ref == "firm-rej"]
        assert {so.status for so in gw.call(lambda: list(gw.sim.orders.values()))} == {"Cancelled"}
        fills = next_bar(broker, "2012-01-04")
        assert fills == []
        states = broker.order_states()
        assert states == {"firm-rej": "rejected", "firm-c1": "cancelled", "firm-c2": "cancelled"}
    finally:
        broker.close()


def test_unreachable_gateway_fails_behind_the_breaker():
    cfg = IBConfig(port=1, connect_timeout_s=0.5, breaker_failures=2, backoff_base_s=0.01, breaker_cooldown_s=0.05)
    with pytest.raises(ConnectionError, match="ib-paper 127.0.0.1:1"):
        IBBroker(SYMBOLS, 1e6, COSTS, cfg, endpoint(cfg, "ib-paper", env={}))


# paper default, live guard, masking (pure) ---------------------------------------------------------------


def test_endpoint_defaults_paper_and_env_overrides():
    ep = endpoint(IBConfig(), "ib-paper", env={})
    assert (ep.host, ep.port, ep.client_id, ep.account) == ("127.0.0.1", 4002, 1, None)
    assert endpoint(IBConfig(), "ib-live", env={}).port == 4001
    ep = endpoint(IBConfig(), "ib-paper", env={"FIRM_IB_ACCOUNT": "DU7654321", "FIRM_IB_PORT": "7497", "FIRM_IB_CLIENT_ID": "9"})
    assert (ep.port, ep.client_id, ep.account) == (7497, 9, "DU7654321")
    assert "DU7654321" not in str(ep) and "DU****321" in str(ep)
    with pytest.raises(LiveRefused, match="live-trading port"):
        endpoint(IBConfig(port=4001), "ib-paper", env={})


def test_live_needs_the_flag_and_a_confirmation():
    assert resolve_kind(None, False, "sim") == "sim"
    assert resolve_kind("ib-paper", False, "sim") == "ib-paper"
    assert resolve_kind(None, True, "sim") == "ib-live"
    with pytest.raises(LiveRefused, match="needs --live"):
        resolve_kind("ib-live", False, "sim")
    with pytest.raises(LiveRefused, match="needs --live"):
        resolve_kind(None, False, "ib-live")
    with pytest.raises(LiveRefused):
        resolve_kind("ib-paper", True, "sim")
    ep = Endpoint("ib-live", "127.0.0.1", 4001, 1, "U1234567")
    with pytest.raises(LiveRefused, match="no confirmation") as err:
        confirm_live(ep, env={}, isatty=False)
    assert "U1234567" not in str(err.value)
    with pytest.raises(LiveRefused, match="not LIVE"):
        confirm_live(ep, env={}, isatty=True, ask=lambda prompt: "yes")
    assert confirm_live(ep, env={}, isatty=True, ask=lambda prompt: "LIVE") == "typed LIVE"
    assert confirm_live(ep, env={"FIRM_CONFIRM_LIVE": "yes"}) == "FIRM_CONFIRM_LIVE=yes"


def test_account_masking():
    assert mask_account("DU1234567") == "DU****567"
    assert mask_account("U12345678") == "U1****678"
    assert mask_account("DU12") == "****"
    assert mask_account(None) == "(none)"


# the CLI's refusals ----------------------------------------------------------------------------------


def test_cli_refuses_live_without_the_flag_or_a_confirmation(capsys, monkeypatch):
    from firm.cli import main

    monkeypatch.setenv("FIRM_IB_ACCOUNT", "U9876543")
    monkeypatch.delenv("FIRM_CONFIRM_LIVE", raising=False)
    assert main(["run", "--broker", "ib-live"]) == 2
    assert "needs --live" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["run", "--broker", "ib-live", "--live"]) == 2
    err = capsys.readouterr().err
    assert "no confirmation" in err and "U9***543" in err and "U9876543" not in err


# end to end: the pipeline through IB gives the simulator's orders --------------------------------------


@pytest.mark.usefixtures("ray_local")
def test_run_through_ib_paper_against_the_fake_gives_the_simulators_order_log(tmp_path):
    from pathlib import Path

    from firm.config import load_config
    from firm.journal import read_jsonl
    from firm.pipeline import run

    default = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"
    span = {"data.start": "2008-01-02", "data.end": "2008-06-30", "run.progress_every_s": 3600,
            "broker.slippage_bps": 0.0, "broker.slippage_noise_bps": 0.0}  # fmt: skip
    sim_cfg = load_config(default, {"run.output_dir": str(tmp_path / "sim"), **span})
    sim_run = run(sim_cfg, config_name="sim", progress=False)

    symbols = sim_cfg.data.symbols
    g = BackgroundGateway(IBSim(load_replay(symbols), "2008-01-02", IBSimConfig()))  # the run's instruments
    try:
        ib_cfg = load_config(
            default,
            {"run.output_dir": str(tmp_path / "ib"), **span, "broker.kind": "ib-paper",
             "broker.ib.port": g.sim.port, "broker.ib.replay_control": f"127.0.0.1:{g.control_port}",
             "broker.ib.orders_per_minute": 10_000, "broker.ib.min_order_spacing_s": 0.0},
        )  # fmt: skip
        ib_run = run(ib_cfg, config_name="ib", progress=False)
    finally:
        g.stop()
    sim_wal = read_jsonl(sim_run.run_dir / "orders.wal.jsonl")
    ib_wal = read_jsonl(ib_run.run_dir / "orders.wal.jsonl")
    assert sum(r["kind"] == "order" for r in sim_wal) > 5
    assert ib_wal == sim_wal  # every order and every fill (price, commission), in the same order
    assert ib_run.stats.order_log_sha256 == sim_run.stats.order_log_sha256
    refs = [so.order.orderRef for so in g.sim.orders.values()]
    assert sorted(refs) == sorted(r["order_ref"] for r in sim_wal if r["kind"] == "order")  # each sent once


# restart from the write-ahead log; faults on the IBBroker ---------------------------------------------------


def positions_at_ib(gw: Gateway) -> dict[str, float]:
    return gw.call(lambda: {s: gw.sim.position_of(s) for s in SYMBOLS if gw.sim.position_of(s)})


def sent_once(gw: Gateway, refs) -> bool:
    return all(len(gw.orders_with_ref(ref)) == 1 for ref in refs)


def log_and_submit(broker: IBBroker, wal: OrderLog, *orders: OrderEvent, send: int | None = None) -> None:
    """What the engine does: every order in the WAL (fsynced) first, then to the broker (only the first
    ``send`` of them: an actor that dies in between)."""
    from firm.execution import _wal_record

    wal.append_many([_wal_record(o) for o in orders])
    for o in orders[:send]:
        broker.submit(o)


def book_bar(broker: IBBroker, engine: ExecutionEngine, session: str):
    """A bar as the engine commits it: its fills become FillEvents and WAL records."""
    return engine._fill_events(next_bar(broker, session), bar_at(session)[0])


RESTART_ORDERS = (
    order("firm-a"), order("firm-b", "MSFT", Side.SELL, 50),  # day 1, filled on day 2
    order("firm-c", "IBM", Side.BUY, 10), order("firm-d", "AAPL", Side.SELL, 40),  # day 2, filled on day 3
)  # fmt: skip


def test_restart_rebuilds_the_order_map_from_the_wal_and_sends_only_what_ib_never_got(tmp_path):
    from firm.journal import read_jsonl, read_order_log

    a, b, c, d = RESTART_ORDERS
    # the clean run
    clean_gw = Gateway()
    try:
        broker = make_broker(clean_gw)
        wal = OrderLog(tmp_path / "clean.wal.jsonl", fsync=False)
        engine = ExecutionEngine(broker, wal)
        log_and_submit(broker, wal, a, b)
        book_bar(broker, engine, "2012-01-04")
        log_and_submit(broker, wal, c, d)
        book_bar(broker, engine, "2012-01-05")
        clean_book, clean_at_ib = broker.book.positions, positions_at_ib(clean_gw)
        broker.close()
    finally:
        clean_gw.stop()

    gw = Gateway()
    try:
        path = tmp_path / "orders.wal.jsonl"
        broker = make_broker(gw)
        wal = OrderLog(path, fsync=False)
        engine = ExecutionEngine(broker, wal)
        log_and_submit(broker, wal, a, b)
        book_bar(broker, engine, "2012-01-04")
        log_and_submit(broker, wal, c, d, send=1)  # c reaches IB; the actor dies before d does
        broker.market_time(bar_at("2012-01-04")[0])  # (c acknowledged)
        broker.close()
        wal.close()
        with open(path, "a") as f:
            f.write('{"kind":"fill","order_ref":"firm-c","price":"3')  # a record the dying process tore

        # the restarted actor: the WAL without its torn line, the order map and book from it, then IB
        wal = OrderLog(path, fsync=False)
        assert wal.torn.startswith('{"kind":"fill"')
        records = read_order_log(path)
        assert [r["order_ref"] for r in records if r["kind"] == "order"] == ["firm-a", "firm-b", "firm-c", "firm-d"]
        ib_cfg = broker.cfg
        broker = IBBroker(SYMBOLS, 1_000_000.0, COSTS, ib_cfg, endpoint(ib_cfg, "ib-paper", env={}), seed=1, connect=False)
        broker.restore(records)
        assert broker.book.positions == [100, -50, 0]  # the WAL's fills
        broker.connect()
        rec = broker.reconciliations[-1]
        assert rec.filled == ["firm-a", "firm-b"] and rec.live == ["firm-c"] and rec.resend == ["firm-d"]
        engine = ExecutionEngine(broker, wal, recovered=records)
        engine._logged_fills = {"firm-a": 1, "firm-b": 1}  # (what _resume derives from the records)
        engine._executions = dict(engine._logged_fills)
        for o in (c, d):  # the engine commits the row again: both adopted, neither sent again
            broker.submit(o)
        with pytest.raises(DuplicateOrder):
            broker.submit(c)
        fills = book_bar(broker, engine, "2012-01-05")
        assert sorted((f.order_ref, f.quantity) for f in fills) == [("firm-c", 10), ("firm-d", 40)]
        assert next_bar(broker, "2012-01-06") == []  # nothing booked twice
        assert sent_once(gw, [o.order_ref for o in RESTART_ORDERS])  # zero duplicated
        assert broker.order_states() == dict.fromkeys([o.order_ref for o in RESTART_ORDERS], "filled")  # zero lost
        assert broker.book.positions == clean_book == [60, -50, 10]
        assert positions_at_ib(gw) == clean_at_ib
        wal.close()
        assert read_jsonl(path) == read_jsonl(tmp_path / "clean.wal.jsonl")  # the same log, torn line gone
        broker.close()
    finally:
        gw.stop()


def clean_positions(*orders: OrderEvent) -> tuple[list[int], dict[str, float]]:
    """Book and IB positions after ``orders`` are sent on 2012-01-03 and filled on the next bar, no fault."""
    g = Gateway()
    try:
        broker = make_broker(g)
        for o in orders:
            broker.submit(o)
        next_bar(broker, "2012-01-04")
        until(lambda: broker.ib_positions() == positions_at_ib(g), "IB's positions pushed")
        out = broker.book.positions, positions_at_ib(g)
        broker.close()
        return out
    finally:
        g.stop()


def test_1101_data_lost_resyncs_state_before_sending_again(gw):
    a, b = order("firm-1101a"), order("firm-1101b", "MSFT", Side.SELL, 50)
    broker = make_broker(gw)
    try:
        broker.submit(a)
        broker.market_time(bar_at("2012-01-03")[0])  # acknowledged
        asked = lambda: gw.call(lambda: gw.sim.sessions[1].requests.count("reqCompletedOrders"))  # noqa: E731
        before, reconciled = asked(), len(broker.reconciliations)
        gw.call(gw.sim.connectivity_lost)
        gw.call(gw.sim.connectivity_restored, False)  # 1101: restored, data lost
        broker.submit(b)  # decided while the view is rebuilt: held or resent, sent once either way
        until(lambda: len(broker.reconciliations) > reconciled and broker.is_ready(), "resynced after 1101")
        assert asked() == before + 1  # open orders, completed orders and executions asked again
        rec = broker.reconciliations[-1]
        assert "firm-1101a" in rec.live and "firm-1101a" not in rec.resend
        assert [code for _, code, _ in broker.errors][-2:] == [1100, 1101]
        fills = next_bar(broker, "2012-01-04")
        assert sorted((f.order_ref, f.quantity) for f in fills) == [("firm-1101a", 100), ("firm-1101b", -50)]
        assert sent_once(gw, ["firm-1101a", "firm-1101b"])  # zero duplicated
        assert broker.order_states() == {"firm-1101a": "filled", "firm-1101b": "filled"}  # zero lost
        until(lambda: broker.ib_positions() == positions_at_ib(gw), "IB's positions pushed")
        assert (broker.book.positions, positions_at_ib(gw)) == clean_positions(a, b)
    finally:
        broker.close()


def test_fill_after_the_cancel_request_is_booked_once(gw):
    a = order("firm-late")
    broker = make_broker(gw)
    try:
        broker.submit(a)
        broker.market_time(bar_at("2012-01-03")[0])  # acknowledged, working
        gw.call(gw.sim.fault_fill_after_cancel)
        assert broker.cancel_all() == []  # the cancel lost the race: 10148, the order filled
        assert broker.order_states() == {"firm-late": "filled"}
        until(lambda: any(code == 10148 for _, code, _ in broker.errors), "10148: too late to cancel")  # after the fill
        fills = next_bar(broker, "2012-01-04")
        _, _, closes = bar_at("2012-01-03")
        assert [(f.order_ref, f.quantity, f.price) for f in fills] == [("firm-late", 100, round(float(closes[0]), 4))]
        assert next_bar(broker, "2012-01-05") == []  # booked once
        assert broker.book.pending == [] and sent_once(gw, ["firm-late"])
        until(lambda: broker.ib_positions() == positions_at_ib(gw), "IB's positions pushed")
        assert (broker.book.positions, positions_at_ib(gw)) == clean_positions(a)
    finally:
        broker.close()


def test_exec_details_without_order_status_fills_the_order(gw):
    a, b = order("firm-nostat"), order("firm-stat", "IBM", Side.BUY, 10)
    said: list[str] = []
    gw.sim.on_log = said.append
    broker = make_broker(gw)
    try:
        broker.submit(a)
        broker.market_time(bar_at("2012-01-03")[0])
        gw.call(gw.sim.fault_exec_without_status)  # the first fill of the next bar: no orderStatus, no openOrder
        broker.submit(b)
        fills = next_bar(broker, "2012-01-04")
        assert sorted((f.order_ref, f.quantity) for f in fills) == [("firm-nostat", 100), ("firm-stat", 10)]
        assert broker.order_states() == {"firm-nostat": "filled", "firm-stat": "filled"}  # the executions are facts
        nostat_id = gw.orders_with_ref("firm-nostat")[0].order.orderId
        assert f"fault: execDetails of order {nostat_id} without orderStatus" in said
        # a reconnect replays the executions (reqExecutions): counted once
        reconciled = len(broker.reconciliations)
        gw.call(gw.sim.drop, None)
        until(lambda: len(broker.reconciliations) > reconciled and broker.is_ready(), "reconnected")
        assert broker.reconciliations[-1].new_executions == 0
        assert next_bar(broker, "2012-01-05") == []
        assert sent_once(gw, ["firm-nostat", "firm-stat"])
        until(lambda: broker.ib_positions() == positions_at_ib(gw), "IB's positions pushed")
        assert (broker.book.positions, positions_at_ib(gw)) == clean_positions(a, b)
    finally:
        broker.close()


def session_bars(session: str):
    from firm.batches import Bars

    ts, _, _ = bar_at(session)
    i = int(np.searchsorted(data().session_open, int(ts.timestamp()) * 1_000_000_000))
    return Bars(offset=i, panel=data().slice(i, i + 1), session_open=data().session_open[i : i + 1])


def test_live_restart_between_sessions_books_the_fills_it_missed_once(tmp_path):
    """Live mode (batch 1, ExecutionEngine.open_bar): the actor dies after sending, before the next session;
    restarted, its first open_bar goes on from the WAL's book and books the fill it had not seen, once."""
    from firm.journal import read_jsonl, read_order_log

    a, b = order("firm-live-a"), order("firm-live-b", "MSFT", Side.SELL, 50)
    runs = {}
    for kind in ("clean", "restarted"):
        g = Gateway()
        path = tmp_path / f"{kind}.wal.jsonl"
        try:
            broker = make_broker(g)
            wal = OrderLog(path, fsync=False)
            engine = ExecutionEngine(broker, wal)
            log_and_submit(broker, wal, a, b)
            broker.market_time(bar_at("2012-01-03")[0])  # acknowledged
            if kind == "restarted":
                broker.close()
                wal.close()
                wal = OrderLog(path, fsync=False)
                records = read_order_log(path)
                broker = IBBroker(SYMBOLS, 1_000_000.0, COSTS, broker.cfg, broker.ep, seed=1, connect=False)
                broker.restore(records)
                broker.connect()
                assert broker.reconciliations[-1].live == ["firm-live-a", "firm-live-b"]
                engine = ExecutionEngine(broker, wal, recovered=records)
            opened = engine.open_bar(session_bars("2012-01-04"))
            assert [(f.order_ref, f.quantity) for f in opened.fills] == [("firm-live-a", 100), ("firm-live-b", 50)]
            assert next_bar(broker, "2012-01-05") == []  # booked once
            assert sent_once(g, ["firm-live-a", "firm-live-b"])
            runs[kind] = broker.book.positions, positions_at_ib(g), read_jsonl(path)
            broker.close()
            wal.close()
        finally:
            g.stop()
    assert runs["restarted"] == runs["clean"]
    assert runs["clean"][0] == [100, -50, 0]
