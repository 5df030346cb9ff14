"""The IB order state machine, the order map and the reconciliation after a reconnect (pure)."""

from __future__ import annotations

import pytest

from firm.broker.base import DuplicateOrder
from firm.broker.orders import IBExecution, IBOrder, ManagedOrder, OrderMap, State, reconcile


def order(ref="firm-a", qty=100, **kw) -> ManagedOrder:
    return ManagedOrder(ref, "AAPL", qty, f"dec:{ref}", **kw)


def test_tws_fill_sequence_reaches_filled_with_commission():
    o = order()
    assert o.on_status("PreSubmitted") and o.state is State.SUBMITTED
    assert o.on_status("Submitted") and o.state is State.SUBMITTED
    assert o.on_execution("e1", 100, 10.5)
    assert o.state is State.FILLED and not o.settled  # commission not in yet
    assert o.on_status("Filled", 100) and o.state is State.FILLED
    assert o.take_fills() == []
    o.on_commission("e1", 1.0)
    assert o.settled
    [ex] = o.take_fills()
    assert (ex.shares, ex.price, ex.commission) == (100, 10.5, 1.0)
    assert o.take_fills() == []  # handed once


def test_commission_before_its_execution_is_kept():
    o = order(state=State.SUBMITTED)
    o.on_commission("e1", 1.25)
    o.on_execution("e1", 100, 10.0)
    assert o.executions["e1"].commission == 1.25 and o.settled


def test_partial_fills_accumulate():
    o = order(qty=-300, state=State.SUBMITTED)
    o.on_execution("e1", 100, 10.0)
    o.on_commission("e1", 1.0)
    assert o.state is State.PARTIAL and o.remaining == 200
    assert o.on_status("Submitted", 100) and o.state is State.PARTIAL  # a working status keeps it partial
    o.on_execution("e2", 200, 10.2)
    o.on_commission("e2", 1.0)
    assert o.state is State.FILLED and o.filled == 300 and o.settled
    assert [e.exec_id for e in o.take_fills()] == ["e1", "e2"]


def test_replayed_execution_counted_once():
    o = order(state=State.SUBMITTED)
    assert o.on_execution("e1", 50, 10.0)
    assert not o.on_execution("e1", 50, 10.0)
    assert o.filled == 50


def test_illegal_transitions_are_logged_not_raised():
    o = order(state=State.SUBMITTED)
    o.on_execution("e1", 100, 10.0)
    assert not o.on_status("Submitted")  # stale status after the fill
    assert not o.on_status("Cancelled")
    assert o.state is State.FILLED
    assert any("ignored" in h for h in o.history)
    assert not o.on_status("NoSuchStatus") and o.state is State.FILLED


def test_status_filled_waits_for_its_executions():
    o = order(state=State.SUBMITTED)
    o.on_status("Filled", 100)
    assert o.state is State.FILLED and not o.settled  # IB counted 100, no execution here yet
    o.on_execution("e1", 100, 10.0)
    o.on_commission("e1", 1.0)
    assert o.settled


def test_fill_racing_a_cancel_is_a_fact():
    o = order(state=State.SUBMITTED)
    o.on_status("PendingCancel")
    assert o.state is State.SUBMITTED
    o.on_status("Cancelled")
    o.on_execution("e1", 100, 10.0)
    assert o.state is State.FILLED


def test_errors_reject_and_cancel():
    o = order()
    assert o.on_error(201, "Order rejected - reason:no") and o.state is State.REJECTED and "201" in o.reason
    assert o.settled
    c = order(state=State.SUBMITTED)
    assert c.on_error(202, "Order Canceled") and c.state is State.CANCELLED
    r = order(state=State.SUBMITTED)
    r.on_status("Cancelled")  # ib_async's order: status Cancelled, then the 201
    assert r.on_error(201, "rejected") and r.state is State.REJECTED
    w = order(state=State.SUBMITTED)
    assert not w.on_error(2104, "farm ok") and w.state is State.SUBMITTED


def test_order_map_refuses_a_duplicate_order_ref_and_finds_by_ids():
    m = OrderMap()
    m.add(order("firm-a"))
    with pytest.raises(DuplicateOrder):
        m.add(order("firm-a"))
    m.bind("firm-a", order_id=7, perm_id=1001)
    assert m.find(perm_id=1001).order_ref == "firm-a"
    assert m.find(order_id=7).order_ref == "firm-a"
    assert m.find("firm-zzz") is None


def reconnect_map():
    m = OrderMap()
    live = m.add(order("firm-live", state=State.SUBMITTED, sends=1))
    m.bind("firm-live", 1, 1001)
    m.add(order("firm-filled", state=State.SUBMITTED, sends=1))
    m.bind("firm-filled", 2, 1002)
    m.add(order("firm-inflight", sends=1))  # sent, never acknowledged
    m.add(order("firm-unsent"))  # submitted while disconnected
    m.add(order("firm-cancelled", state=State.SUBMITTED, sends=1))
    m.bind("firm-cancelled", 4, 1004)
    return m, live


def test_reconcile_matches_by_order_ref_and_resends_only_what_never_reached_ib():
    m, live = reconnect_map()
    rec = reconcile(
        m,
        open_orders=[IBOrder("firm-live", 11, 1001, "Submitted")],  # new connection, new order id
        completed=[IBOrder("firm-filled", 0, 1002, "Filled", 100), IBOrder("firm-cancelled", 0, 1004, "Cancelled")],
        executions=[
            IBExecution("e1", "firm-filled", 2, 1002, 100, 10.0, commission=1.0),
            IBExecution("e1", "firm-filled", 2, 1002, 100, 10.0, commission=1.0),  # reported twice
        ],
    )
    assert rec.live == ["firm-live"] and live.order_id == 11
    assert rec.filled == ["firm-filled"] and m["firm-filled"].settled and m["firm-filled"].filled == 100
    assert rec.cancelled == ["firm-cancelled"]
    assert rec.resend == ["firm-inflight", "firm-unsent"]
    assert rec.lost == [] and rec.new_executions == 1


def test_reconcile_an_in_flight_order_ib_received_is_never_resent():
    m = OrderMap()
    m.add(order("firm-x", sends=1))
    rec = reconcile(m, [IBOrder("firm-x", 5, 2001, "PreSubmitted")], [], [])
    assert rec.resend == [] and rec.live == ["firm-x"] and m["firm-x"].perm_id == 2001
    # ...nor one that filled while we were away, known only from its execution
    m = OrderMap()
    m.add(order("firm-y", sends=1))
    rec = reconcile(m, [], [], [IBExecution("e9", "firm-y", 5, 2002, 100, 9.0, commission=1.0)])
    assert rec.resend == [] and rec.filled == ["firm-y"]


def test_reconcile_resends_once_then_declares_lost():
    m = OrderMap()
    m.add(order("firm-z", sends=2))
    rec = reconcile(m, [], [], [])
    assert rec.resend == [] and rec.lost == ["firm-z"] and m["firm-z"].state is State.REJECTED


def test_reconcile_never_resends_an_order_ib_acknowledged():
    m = OrderMap()
    m.add(order("firm-ack", state=State.SUBMITTED, sends=1))
    m.bind("firm-ack", 3, 3003)
    rec = reconcile(m, [], [], [])
    assert rec.resend == [] and rec.lost == ["firm-ack"] and "never resent" in m["firm-ack"].reason


def test_reconcile_reports_foreign_firm_orders():
    m = OrderMap()
    rec = reconcile(m, [IBOrder("firm-old", 1, 9, "Submitted"), IBOrder("manual", 2, 10, "Submitted")], [], [])
    assert rec.foreign == ["firm-old"]
