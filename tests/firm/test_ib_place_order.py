"""The fake gateway reads ib_async's whole placeOrder message (server version 178), not only the fields up
to ``hidden``: every order field the real client writes arrives at the fake with its value, the optional
blocks (combo legs, delta-neutral, scale, hedge, algo, PEG BENCH, conditions) are read to the message's
end, and an order openOrder cannot carry (ibwire.encodable) is refused with a reason, not mis-filled."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from functools import lru_cache

from ib_async import IB, ComboLeg, Contract, LimitOrder, Order, PriceCondition, Stock, TagValue
from ib_async.objects import SoftDollarTier
from ib_async.util import UNSET_DOUBLE, UNSET_INTEGER

from firm.broker import ibwire as w
from firm.broker.ibsim import IBSim, IBSimConfig, load_replay

logging.getLogger("ib_async").setLevel(logging.CRITICAL)

AAPL = Stock("AAPL", "SMART", "USD")
# what placeOrder never writes, or the fake assigns, or needs its own block; the rest gets a distinct value
NOT_SENT = {"orderId", "clientId", "permId", "faProfile", "volatility", "minTradeQty", "minCompeteSize",
            "competeAgainstBestOffset", "midOffsetAtWhole", "midOffsetAtHalf", "lmtPrice", "auxPrice", "tif",
            "account", "openClose", "orderType", "action", "totalQuantity", "parentId", "transmit",
            # openOrder/completedOrder only (IB's answers), never in placeOrder
            "basisPoints", "basisPointsType", "autoCancelDate", "filledQuantity", "refFuturesConId",
            "shareholder", "imbalanceOnly", "parentPermId",
            # only inside their blocks (PEG BENCH orders; orders with conditions)
            "referenceContractId", "isPeggedChangeAmountDecrease", "peggedChangeAmount", "referenceChangeAmount",
            "referenceExchangeId", "conditionsIgnoreRth", "conditionsCancelOrder"}  # fmt: skip
BLOCK_OPENERS = {"deltaNeutralOrderType", "scalePriceIncrement", "hedgeType", "algoStrategy"}


@lru_cache(maxsize=1)
def data():
    return load_replay(("AAPL", "MSFT", "IBM"))


def distinct_order() -> tuple[Order, dict]:
    o = LimitOrder("BUY", 10, 1.25, tif="GTC", orderRef="firm-every-field")
    assigned = {}
    for k, f in enumerate(dataclasses.fields(o)):
        if f.name in NOT_SENT or f.name in BLOCK_OPENERS or f.name.startswith(("deltaNeutral", "scale", "hedge")):
            continue
        default = getattr(o, f.name)
        value = (
            (k % 2 == 0) if isinstance(default, bool)
            else 100 + k if isinstance(default, int)
            else k + 0.25 if isinstance(default, float)
            else f"s{k}" if isinstance(default, str)
            else None
        )  # fmt: skip
        if value is not None:
            setattr(o, f.name, value)
            assigned[f.name] = value
    o.outsideRth = False  # (the fake fills regular hours only)
    assigned["outsideRth"] = False
    o.orderMiscOptions = [TagValue("k1", "v1"), TagValue("k2", "v2")]
    o.softDollarTier = SoftDollarTier("tier", "v1")
    return o, assigned


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def until(pred, what: str):
    for _ in range(2000):
        if pred():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


def test_every_field_of_a_plain_order_reaches_the_fake():
    async def go():
        async with IBSim(data(), "2012-01-03", IBSimConfig()) as sim:
            ib = IB()
            await ib.connectAsync("127.0.0.1", sim.port, clientId=1, timeout=10)
            o, assigned = distinct_order()
            trade = ib.placeOrder(AAPL, o)
            await until(lambda: trade.orderStatus.status == "Submitted", "acknowledged")
            [so] = sim.orders.values()
            got = so.order
            wrong = {n: (getattr(got, n), v) for n, v in assigned.items() if getattr(got, n) != v}
            assert wrong == {}, f"decoded differently (fields shifted?): {wrong}"
            assert len(assigned) > 70
            assert got.orderMiscOptions == [TagValue("k1", "v1"), TagValue("k2", "v2")]
            assert (got.action, got.totalQuantity, got.orderType, got.lmtPrice, got.tif) == ("BUY", 10, "LMT", 1.25, "GTC")
            assert got.volatility == UNSET_DOUBLE and got.minTradeQty == UNSET_INTEGER  # not written: defaults
            assert (got.softDollarTier.name, got.softDollarTier.val) == ("tier", "v1")
            # openOrder echoes what arrived, and ib_async decodes it back
            assert trade.order.orderRef == o.orderRef == got.orderRef and trade.order.goodTillDate == o.goodTillDate
            ib.disconnect()

    run(go())


def test_orders_with_optional_blocks_are_read_to_the_end_and_refused_with_the_reason():
    async def go():
        async with IBSim(data(), "2012-01-03", IBSimConfig()) as sim:
            ib = IB()
            await ib.connectAsync("127.0.0.1", sim.port, clientId=1, timeout=10)
            errors: list[tuple[int, str]] = []
            ib.errorEvent += lambda req_id, code, msg, c: errors.append((code, msg))
            cases = []
            algo = LimitOrder("BUY", 10, 1.0, algoStrategy="Adaptive", algoParams=[TagValue("adaptivePriority", "Normal")])
            cases.append((AAPL, algo))
            cond = LimitOrder("BUY", 10, 1.0, conditionsIgnoreRth=True)
            cond.conditions = [PriceCondition(price=500.0, conId=265598, exch="SMART"), PriceCondition(isMore=False, price=1.0, conId=8314, exch="SMART", conjunction="o")]
            cases.append((AAPL, cond))
            cases.append((AAPL, LimitOrder("BUY", 10, 1.0, deltaNeutralOrderType="LMT", deltaNeutralConId=7, deltaNeutralAuxPrice=2.5)))
            cases.append((AAPL, LimitOrder("BUY", 10, 1.0, hedgeType="D", hedgeParam="0.5")))
            bag = Contract(secType="BAG", symbol="AAPL", currency="USD", exchange="SMART",
                           comboLegs=[ComboLeg(conId=265598, ratio=1, action="BUY", exchange="SMART"),
                                      ComboLeg(conId=8314, ratio=1, action="SELL", exchange="SMART")])  # fmt: skip
            cases.append((bag, LimitOrder("BUY", 1, 1.0)))
            scale = LimitOrder("BUY", 100, 1.0, scaleInitLevelSize=10, scaleSubsLevelSize=10, scalePriceIncrement=0.05,
                               scalePriceAdjustValue=0.01, scalePriceAdjustInterval=60, scaleAutoReset=True)  # fmt: skip
            cases.append((AAPL, scale))
            trades = [ib.placeOrder(c, o) for c, o in cases]
            await until(lambda: len(errors) >= 5 and trades[-1].orderStatus.status == "Submitted", "every order answered")
            codes = [code for code, _ in errors]
            assert 320 not in codes, errors  # every message was read to its end (else: cannot decode, 320)
            assert codes[:4] == [201] * 4 and all(w.UNENCODED in msg for _, msg in errors[:4])
            assert codes[4] == 200  # the combo: read in full, then no security definition for a BAG
            assert len(errors) == 5  # the scale order has no block the fake refuses: it works
            [so] = sim.orders.values()
            assert (so.order.scalePriceIncrement, so.order.scalePriceAdjustInterval, so.order.scaleAutoReset) == (0.05, 60, True)
            ib.disconnect()

    run(go())


def test_decoder_refuses_a_message_that_ends_early():
    import pytest

    fields = ["3", "1", *([""] * 14)]
    with pytest.raises(w.ProtocolError, match="ends after 16 fields"):
        w.decode_place_order(fields)
