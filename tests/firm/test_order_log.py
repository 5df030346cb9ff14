"""Reading the order write-ahead log back (a restarted execution actor): a torn last line is cut and
skipped, never fatal; corruption before it is an error naming the line; the order map rebuilt from it."""

from __future__ import annotations

import pytest

from firm.broker.orders import OrderMap, State
from firm.journal import OrderLog, read_order_log

RECORDS = [
    {"kind": "order", "order_ref": "firm-a", "decision_id": "dec:a", "ts": "2012-01-03T21:00:00+00:00", "symbol": "AAPL", "side": "BUY", "quantity": 100, "type": "MKT"},
    {"kind": "order", "order_ref": "firm-b", "decision_id": "dec:b", "ts": "2012-01-03T21:00:00+00:00", "symbol": "MSFT", "side": "SELL", "quantity": 50, "type": "MKT"},
    {"kind": "order", "order_ref": "firm-c", "decision_id": "dec:c", "ts": "2012-01-03T21:00:00+00:00", "symbol": "IBM", "side": "BUY", "quantity": 30, "type": "MKT"},
    {"kind": "order", "order_ref": "firm-d", "decision_id": "dec:d", "ts": "2012-01-03T21:00:00+00:00", "symbol": "IBM", "side": "SELL", "quantity": 10, "type": "MKT"},
    {"kind": "fill", "order_ref": "firm-a", "ts": "2012-01-04T14:30:00+00:00", "symbol": "AAPL", "quantity": 100, "price": "410.0000", "commission": "1.00"},
    {"kind": "fill", "order_ref": "firm-c", "ts": "2012-01-04T14:30:00+00:00", "symbol": "IBM", "quantity": 20, "price": "186.0000", "commission": "1.00"},
    {"kind": "cancel", "order_ref": "firm-d", "ts": "2012-01-04T21:00:00+00:00", "reason": "kill switch: ks:1"},
]  # fmt: skip


def write(path, records, tail: str = "") -> None:
    log = OrderLog(path, fsync=False)
    log.append_many(records)
    log.close()
    with open(path, "a") as f:
        f.write(tail)


def test_torn_last_line_is_skipped_then_cut_when_the_log_is_reopened(tmp_path, caplog):
    path = tmp_path / "orders.wal.jsonl"
    write(path, RECORDS, tail='{"kind":"order","order_ref":"firm-e","decision_id"')
    assert read_order_log(path) == RECORDS
    assert "torn last line 8" in caplog.text
    log = OrderLog(path, fsync=False)  # a restarted actor reopens it for appending
    assert log.torn == '{"kind":"order","order_ref":"firm-e","decision_id"'
    log.append_many([{"kind": "order", "order_ref": "firm-f"}])
    log.close()
    assert read_order_log(path) == [*RECORDS, {"kind": "order", "order_ref": "firm-f"}]  # on a line of its own
    assert OrderLog(path).torn is None


def test_a_complete_record_without_its_newline_is_torn_too(tmp_path):
    path = tmp_path / "orders.wal.jsonl"
    write(path, RECORDS[:2], tail='{"kind":"order","order_ref":"firm-x"}')
    assert read_order_log(path) == RECORDS[:2]
    assert OrderLog(path).torn == '{"kind":"order","order_ref":"firm-x"}'
    assert read_order_log(path) == RECORDS[:2]


def test_corruption_before_the_last_line_names_the_line(tmp_path):
    path = tmp_path / "orders.wal.jsonl"
    write(path, RECORDS[:2])
    with open(path, "a") as f:
        f.write("not json\n")
    write(path, RECORDS[2:3])
    with pytest.raises(ValueError, match=r"line 3 of the order log is not a JSON record"):
        read_order_log(path)


def test_no_log_no_records(tmp_path):
    assert read_order_log(tmp_path / "missing.jsonl") == []


def test_order_map_from_the_wal():
    om = OrderMap.from_wal(RECORDS)
    assert [o.order_ref for o in om.values()] == ["firm-a", "firm-b", "firm-c", "firm-d"]
    a, b, c, d = (om[r] for r in ("firm-a", "firm-b", "firm-c", "firm-d"))
    assert (a.state, a.booked, a.quantity) == (State.FILLED, 100, 100)
    assert (b.state, b.booked, b.quantity) == (State.PENDING, 0, -50)
    assert (c.state, c.booked) == (State.PARTIAL, 20)
    assert d.state is State.CANCELLED
    assert all(o.sends == 1 and o.recovered for o in om.values())  # in the WAL: may have reached IB
    # executions IB reports again: the booked shares are the book's already, only the rest is handed over
    c.on_execution("e1", 20, 186.0)
    c.on_commission("e1", 1.0)
    c.on_execution("e2", 10, 187.0)
    c.on_commission("e2", 1.0)
    assert [e.exec_id for e in c.take_fills()] == ["e2"] and c.take_fills() == []
    c.rewind(0.0)  # the book went back to before both: both are handed over again
    assert [e.exec_id for e in c.take_fills()] == ["e1", "e2"]
