"""Every message the fake gateway encodes, decoded by ib_async's own Decoder at server version 178.

openOrder and completedOrder carry ~120 fields each: the tests give every field a distinct value so
that one missing or extra field, which shifts all that follow, shows as a value in the wrong field.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import struct

import pytest
from ib_async.contract import Contract
from ib_async.decoder import Decoder
from ib_async.objects import CommissionReport, Execution, SoftDollarTier
from ib_async.order import Order, OrderState
from ib_async.util import UNSET_DOUBLE, UNSET_INTEGER

from firm.broker import ibwire as w


class Recorder:
    """Stands where ib_async's Wrapper stands: records each callback the real Decoder makes."""

    defaultTimezone = dt.timezone.utc

    def __init__(self):
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def record(*args):
            self.calls.append((name, args))

        return record


def decode(*messages: bytes) -> list[tuple[str, tuple]]:
    """Split the bytes as ib_async's Client does and hand each message to a real Decoder."""
    rec = Recorder()
    dec = Decoder(rec, w.SERVER_VERSION)
    data = b"".join(messages)
    while data:
        end = 4 + struct.unpack(">I", data[:4])[0]
        fields = data[4:end].decode().split("\0")
        fields.pop()  # as Client._onSocketHasData
        data = data[end:]
        dec.interpret(fields)
    return rec.calls


def one(message: bytes) -> tuple[str, tuple]:
    calls = decode(message)
    assert len(calls) == 1, calls
    return calls[0]


# block-opening fields: a non-empty value announces extra fields the fake never sends
_BLOCK_OPENERS = {"deltaNeutralOrderType", "hedgeType", "hedgeParam", "algoStrategy", "algoId", "scalePriceIncrement"}


def distinct(obj, start: int, skip=()):
    """Give every simple field of a dataclass instance a distinct value (by its default's type)."""
    assigned = {}
    for k, f in enumerate(dataclasses.fields(obj)):
        if f.name in skip or f.name in _BLOCK_OPENERS:
            continue
        typ = type(f.default)
        n = start + k
        if typ is bool:
            value = n % 2 == 0
        elif typ is int:
            value = 1000 + n
        elif typ is float:
            value = n + 0.25
        elif typ is str:
            value = f"s{n}"
        else:
            continue
        setattr(obj, f.name, value)
        assigned[f.name] = value
    return assigned


def check_fields(decoded, assigned: dict, default, must_carry: set[str]) -> set[str]:
    """Each assigned field decodes to its own value or, if the message does not carry it, the default."""
    carried = set()
    for name, value in assigned.items():
        got = getattr(decoded, name)
        if got == value:
            carried.add(name)
        else:
            assert got == getattr(default, name), f"{name}: decoded {got!r}, sent {value!r}: fields shifted?"
    assert must_carry <= carried, f"not carried: {sorted(must_carry - carried)}"
    return carried


def order_fixture(start: int):
    o, c, st = Order(), Contract(), OrderState()
    oa = distinct(o, start, skip={"orderType", "volatility"})
    o.orderType = "LMT"
    o.softDollarTier = SoftDollarTier("tier", "v1", "Tier One")
    ca = distinct(c, start + 300, skip={"secIdType", "secId", "description", "issuerId", "includeExpired"})
    sa = distinct(st, start + 400)
    return o, c, st, oa, ca, sa


ORDER_CORE = {
    "orderId", "clientId", "permId", "action", "totalQuantity", "lmtPrice", "auxPrice", "tif", "ocaGroup",
    "account", "orderRef", "outsideRth", "goodTillDate", "parentId", "triggerMethod", "cashQty",
    "minTradeQty", "midOffsetAtHalf",
}  # fmt: skip
CONTRACT_CORE = {"conId", "symbol", "secType", "strike", "right", "multiplier", "exchange", "currency", "localSymbol", "tradingClass"}


def test_open_order_round_trip_every_field():
    o, c, st, oa, ca, sa = order_fixture(0)
    name, (order_id, dc, do, dst) = one(w.open_order(o, c, st))
    assert name == "openOrder" and order_id == o.orderId
    carried = check_fields(do, oa, Order(), ORDER_CORE)
    assert len(carried) >= 85, len(carried)
    assert do.orderType == "LMT" and do.softDollarTier == o.softDollarTier
    check_fields(dc, ca, Contract(), CONTRACT_CORE)
    check_fields(dst, sa, OrderState(), {"status", "commission", "minCommission", "maxCommission", "commissionCurrency", "warningText", "initMarginAfter"})


def test_open_order_of_defaults_round_trips_exactly():
    o = Order(orderId=7, clientId=3, permId=99, action="BUY", totalQuantity=100, orderType="MKT", tif="DAY", account="DU1")
    c = Contract(secType="STK", conId=265598, symbol="AAPL", exchange="SMART", currency="USD", localSymbol="AAPL")
    st = OrderState(status="PreSubmitted")
    _, (_, dc, do, dst) = one(w.open_order(o, c, st))
    assert dataclasses.asdict(do) == dataclasses.asdict(o) and dst == st  # Order compares by identity
    assert dc.conId == c.conId and dc.symbol == "AAPL" and dc.exchange == "SMART"


def test_completed_order_round_trip_every_field():
    o, c, st, oa, ca, sa = order_fixture(1)
    name, (dc, do, dst) = one(w.completed_order(o, c, st))
    assert name == "completedOrder"
    core = (ORDER_CORE - {"orderId", "clientId", "parentId"}) | {"filledQuantity", "parentPermId", "autoCancelDate"}
    carried = check_fields(do, oa, Order(), core)
    assert len(carried) >= 70, len(carried)
    check_fields(dc, ca, Contract(), CONTRACT_CORE)
    check_fields(dst, sa, OrderState(), {"status", "completedTime", "completedStatus"})


def test_order_status():
    name, args = one(w.order_status(5, "Submitted", 40, 60, 101.5, 777, 0, 101.5, 2, "", 0.0))
    assert name == "orderStatus"
    assert args == (5, "Submitted", 40.0, 60.0, 101.5, 777, 0, 101.5, 2, "", 0.0)


def test_exec_details_and_commission_report():
    c = Contract(secType="STK", conId=8314, symbol="IBM", exchange="SMART", currency="USD", localSymbol="IBM", tradingClass="IBM")
    ex = Execution()
    assigned = distinct(ex, 0, skip={"time"})
    name, (req_id, dc, dex) = one(w.exec_details(-1, c, ex, "20120104 09:30:00 America/New_York"))
    assert name == "execDetails" and req_id == -1
    check_fields(dex, assigned, Execution(), {f for f in assigned})  # every Execution field is carried
    assert dex.time == dt.datetime(2012, 1, 4, 14, 30, tzinfo=dt.timezone.utc)
    assert (dc.conId, dc.symbol, dc.tradingClass) == (8314, "IBM", "IBM")

    report = CommissionReport("0001.02.01", 1.23, "USD", UNSET_DOUBLE, UNSET_DOUBLE, 0)
    name, (dr,) = one(w.commission_report(report))
    assert name == "commissionReport" and dr == report
    report = CommissionReport("0001.02.02", 5.0, "USD", -12.5, 0.0, 20130101)
    assert one(w.commission_report(report))[1][0] == report


def test_position_portfolio_account_values():
    c = Contract(secType="STK", conId=272093, symbol="MSFT", exchange="SMART", primaryExchange="NASDAQ", currency="USD", localSymbol="MSFT", tradingClass="NMS")
    name, (account, dc, pos, avg) = one(w.position("DU1", c, -150, 27.125))
    assert (name, account, pos, avg) == ("position", "DU1", -150.0, 27.125)
    assert (dc.conId, dc.symbol, dc.exchange, dc.currency) == (272093, "MSFT", "SMART", "USD")

    name, args = one(w.update_portfolio(c, 10, 30.5, 305.0, 29.0, 15.0, -2.5, "DU1"))
    assert name == "updatePortfolio"
    assert args[0].primaryExchange == "NASDAQ" and args[0].conId == 272093
    assert args[1:] == (10.0, 30.5, 305.0, 29.0, 15.0, -2.5, "DU1")

    assert one(w.update_account_value("NetLiquidation", "1000.50", "USD", "DU1")) == (
        "updateAccountValue", ("NetLiquidation", "1000.50", "USD", "DU1"))  # fmt: skip
    assert one(w.update_account_time("16:00")) == ("updateAccountTime", ("16:00",))
    assert one(w.account_download_end("DU1")) == ("accountDownloadEnd", ("DU1",))
    assert one(w.account_update_multi(4, "DU1", "", "CashBalance", "5.00", "USD")) == (
        "accountUpdateMulti", (4, "DU1", "", "CashBalance", "5.00", "USD"))  # fmt: skip
    assert one(w.account_update_multi_end(4)) == ("accountUpdateMultiEnd", (4,))
    assert one(w.account_summary(9, "DU1", "BuyingPower", "4.00", "USD")) == (
        "accountSummary", (9, "DU1", "BuyingPower", "4.00", "USD"))  # fmt: skip
    assert one(w.account_summary_end(9)) == ("accountSummaryEnd", (9,))


def test_startup_and_end_messages():
    assert one(w.managed_accounts(["DU1", "DU2"])) == ("managedAccounts", ("DU1,DU2",))
    assert one(w.next_valid_id(42)) == ("nextValidId", (42,))
    assert one(w.position_end()) == ("positionEnd", ())
    assert one(w.open_order_end()) == ("openOrderEnd", ())
    assert one(w.completed_orders_end()) == ("completedOrdersEnd", ())
    assert one(w.exec_details_end(3)) == ("execDetailsEnd", (3,))
    assert one(w.contract_details_end(3)) == ("contractDetailsEnd", (3,))
    assert one(w.current_time(1_700_000_000)) == ("currentTime", (1_700_000_000,))


@pytest.mark.parametrize("code", [326, 201, 202, 162, 1100, 1101, 1102, 2103, 2104, 10148])
def test_error(code):
    assert one(w.error(12, code, "text, with a comma", '{"x": 1}')) == ("error", (12, code, "text, with a comma", '{"x": 1}'))


def test_historical_data():
    bars = [w.Bar("20120103", 1.5, 2.25, 1.0, 2.0, 1000.0, 1.75, 0), w.Bar("20120104", 2.0, 2.5, 1.75, 2.25, 2000.0, 2.1, 3)]
    calls = decode(w.historical_data(8, "20120101 00:00:00", "20120104 23:59:59", bars))
    assert [c[0] for c in calls] == ["historicalData", "historicalData", "historicalDataEnd"]
    first = calls[0][1][1]
    assert calls[0][1][0] == 8
    assert (first.date, first.open, first.high, first.low, first.close, first.volume, first.average, first.barCount) == (
        "20120103", 1.5, 2.25, 1.0, 2.0, 1000.0, 1.75, 0)  # fmt: skip
    assert calls[1][1][1].barCount == 3
    assert calls[2][1] == (8, "20120101 00:00:00", "20120104 23:59:59")


def test_contract_details():
    c = Contract(secType="STK", conId=265598, symbol="AAPL", exchange="SMART", primaryExchange="NASDAQ", currency="USD", localSymbol="AAPL", tradingClass="NMS")
    name, (req_id, cd) = one(w.contract_details(5, c, "APPLE INC"))
    assert (name, req_id) == ("contractDetails", 5)
    k = cd.contract
    assert (k.conId, k.symbol, k.secType, k.exchange, k.primaryExchange, k.currency, k.localSymbol, k.tradingClass) == (
        265598, "AAPL", "STK", "SMART", "NASDAQ", "USD", "AAPL", "NMS")  # fmt: skip
    assert cd.longName == "APPLE INC" and cd.minTick == 0.01 and cd.stockType == "COMMON" and cd.timeZoneId == "US/Eastern"


def test_unset_values_as_tws_writes_them():
    assert w.text(UNSET_DOUBLE) == "1.7976931348623157E308"
    assert w.text(UNSET_INTEGER) == "2147483647"
    assert (w.text(True), w.text(False), w.text(None), w.text(100.0), w.text(0.1)) == ("1", "0", "", "100", "0.1")


def test_framing_and_handshake():
    # the bytes ib_async's Client.connectAsync sends
    hello = b"API\0" + struct.pack(">I", len(b"v157..178")) + b"v157..178"
    versions, rest = w.parse_handshake(hello[:6])
    assert versions is None and rest == hello[:6]
    versions, rest = w.parse_handshake(hello + b"xx")
    assert versions == (157, 178) and rest == b"xx"
    with pytest.raises(w.ProtocolError):
        w.parse_handshake(b"GET / HTTP/1.1\r\n")
    # the server hello is two fields, which is how the client recognises the end of the handshake
    msgs, rest = w.split_frames(w.server_hello(178, "20250101 12:00:00 UTC"))
    assert msgs == [["178", "20250101 12:00:00 UTC"]] and rest == b""
    # startApi as Client.send frames it, split across reads
    body = b"71\x002\x007\x00\x00"
    data = struct.pack(">I", len(body)) + body + b"\x00\x00"
    msgs, rest = w.split_frames(data)
    assert msgs == [["71", "2", "7", ""]] and rest == b"\x00\x00"
