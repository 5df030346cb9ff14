"""Execution: the write-ahead log is on disk before the broker sees an order; no order is sent twice."""

from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pytest

from firm.batches import Bars, Review
from firm.broker.base import DuplicateOrder
from firm.broker.sim import SimulatedBroker
from firm.events import DecisionEvent, OrderEvent, Side, ValidatedDecisionEvent, Verdict
from firm.execution import ExecutionEngine, ProjectionMismatch
from firm.journal import OrderLog, read_jsonl
from firm.portfolio import Costs
from strategies.base import Panel

SYMBOLS = ("AAPL", "MSFT")
TS = datetime(2008, 9, 15, 20, 0, tzinfo=timezone.utc)


class ProbeBroker(SimulatedBroker):
    """The simulated broker, checking at each send that the order is already in the log file."""

    def __init__(self, wal_path, *args):
        super().__init__(*args)
        self.wal_path = wal_path
        self.seen_in_wal = []

    def submit(self, order: OrderEvent) -> None:
        refs = [r["order_ref"] for r in read_jsonl(self.wal_path) if r["kind"] == "order"]
        self.seen_in_wal.append(order.order_ref in refs)
        super().submit(order)


def _bars() -> Bars:
    one = np.array([[100.0, 30.0]])
    panel = Panel(np.array([TS.timestamp() * 1e9], dtype=np.int64), SYMBOLS, one, one * 1.01, one * 0.99, one, one)
    return Bars(offset=0, panel=panel, session_open=np.array([0], dtype=np.int64))


def _approved(symbol: str, qty: int) -> ValidatedDecisionEvent:
    d = DecisionEvent(
        id=f"dec:{symbol}:20080915T2000", ts=TS, symbol=symbol, side=Side.BUY, quantity=qty, current_position=0,
        target_position=qty, price=100.0, score=0.5, signal_ids=(f"sig:momentum:{symbol}:20080915T2000",),
        reason="open long: test",
    )
    verdicts = (Verdict(validator="risk", approved=True), Verdict(validator="compliance", approved=True))
    return ValidatedDecisionEvent(id=f"val:compliance:{symbol}", cause_id="x", ts=TS, decision=d, verdicts=verdicts)


def _review(broker, validated) -> Review:
    projected = broker.book.copy()
    projected.fill_at_open(_bars().panel.open[0])
    projected.mark(_bars().panel.close[0])
    return Review(
        offset=0, start=0, stop=1, book=broker.book.copy(), fingerprints=[projected.fingerprint()],
        validated=[validated], alerts=[[]],
    )


def test_orders_are_in_the_log_before_the_broker_sees_them(tmp_path):
    wal = tmp_path / "orders.wal.jsonl"
    broker = ProbeBroker(wal, SYMBOLS, 1e6, Costs())
    engine = ExecutionEngine(broker, OrderLog(wal, fsync=True))
    committed, rejected = engine.execute(_review(broker, [_approved("AAPL", 100), _approved("MSFT", 50)]), _bars())
    assert broker.seen_in_wal == [True, True]
    assert [o.order_ref for o in committed.orders[0]] == ["firm-AAPL-20080915T2000", "firm-MSFT-20080915T2000"]
    assert rejected == []
    assert broker.book.working(0) == 100 and broker.book.working(1) == 50


def test_an_order_is_never_sent_twice(tmp_path):
    broker = SimulatedBroker(SYMBOLS, 1e6, Costs())
    order = OrderEvent(
        id="ord:AAPL:x", ts=TS, order_ref="firm-AAPL-x", symbol="AAPL", side=Side.BUY, quantity=1, decision_id="dec:x"
    )
    broker.submit(order)
    with pytest.raises(DuplicateOrder):
        broker.submit(order)
    assert broker.book.working(0) == 1


def test_a_proposal_on_a_book_the_broker_does_not_have_is_refused(tmp_path):
    broker = SimulatedBroker(SYMBOLS, 1e6, Costs())
    engine = ExecutionEngine(broker, OrderLog(tmp_path / "wal", fsync=False))
    review = _review(broker, [_approved("AAPL", 100)])
    review.book = SimulatedBroker(SYMBOLS, 2e6, Costs()).book  # decided on a different account
    with pytest.raises(ProjectionMismatch):
        engine.execute(review, _bars())
    assert read_jsonl(tmp_path / "wal") == []


class SplittingBroker(SimulatedBroker):
    """The simulated book, reporting each fill as two executions (as a real broker reports partial fills)."""

    def on_bar(self, opens, closes):
        out = []
        for f in super().on_bar(opens, closes):
            half = f.quantity // 2
            out += [replace(f, quantity=half, commission=0.0), replace(f, quantity=f.quantity - half)]
        return out


def test_each_execution_of_an_order_is_its_own_fill_event(tmp_path):
    broker = SplittingBroker(SYMBOLS, 1e6, Costs())
    engine = ExecutionEngine(broker, OrderLog(tmp_path / "wal", fsync=False))
    engine.execute(_review(broker, [_approved("AAPL", 100)]), _bars())
    # the next bar: the order fills at its open, in two executions with distinct ids
    nxt = Bars(offset=1, panel=_bars().panel, session_open=np.array([0], dtype=np.int64))
    projected = broker.book.copy()
    projected.fill_at_open(nxt.panel.open[0])
    projected.mark(nxt.panel.close[0])
    review = Review(offset=1, start=0, stop=1, book=broker.book.copy(), fingerprints=[projected.fingerprint()],
                    validated=[[]], alerts=[[]])
    committed, _ = engine.execute(review, nxt)
    fills = committed.fills[0]
    assert [f.id for f in fills] == ["fill:firm-AAPL-20080915T2000", "fill:firm-AAPL-20080915T2000:2"]
    assert sum(f.quantity for f in fills) == 100 and len({f.id for f in fills}) == 2
