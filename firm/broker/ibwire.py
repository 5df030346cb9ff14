"""The TWS API wire protocol at server version 178, the server's side of it (for the fake gateway).

Framing both ways: a 4-byte big-endian length, then NUL-terminated text fields, the message id
first. The client opens with ``b"API\\0"`` and a framed ``v157..178``; the server answers with one
framed ``<version>\\0<connection time>\\0``. From 201 on TWS speaks protobuf: this module is 178 only.

The encoders below build server -> client messages in exactly the field order of
``ib_async.decoder.Decoder`` (ib_async 2.1) at server version 178; every one of them is round-tripped
through that decoder in ``tests/firm/test_ibwire.py``. The decoders parse the client -> server
requests ``ib_async.client.Client`` sends (only the fields the fake uses). Orders, contracts,
executions and order states are ib_async's own dataclasses: the fake speaks the library's types.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field, fields

from ib_async.contract import ComboLeg, Contract, DeltaNeutralContract, TagValue
from ib_async.objects import CommissionReport, Execution, SoftDollarTier
from ib_async.order import Order, OrderComboLeg, OrderCondition, OrderState
from ib_async.util import UNSET_DOUBLE, UNSET_INTEGER

SERVER_VERSION = 178
MIN_CLIENT_VERSION = 157
UNSET_DOUBLE_TEXT = "1.7976931348623157E308"  # how TWS writes an unset double
UNSET_INTEGER_TEXT = str(UNSET_INTEGER)


class ProtocolError(ValueError):
    pass


# ---------------------------------------------------------------------------------------------------------
# fields and frames


def text(value) -> str:
    """One field as TWS writes it: bools 1/0, None empty, unset double as TWS spells it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if value == UNSET_DOUBLE:
            return UNSET_DOUBLE_TEXT
        if math.isinf(value):
            return "Infinite"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)


def frame(*fields) -> bytes:
    """One length-prefixed message of NUL-terminated fields."""
    body = "".join(text(f) + "\0" for f in fields).encode()
    return struct.pack(">I", len(body)) + body


def split_frames(buffer: bytes) -> tuple[list[list[str]], bytes]:
    """Complete messages in ``buffer`` (each a list of fields) and the unconsumed rest."""
    out = []
    while len(buffer) >= 4:
        end = 4 + struct.unpack(">I", buffer[:4])[0]
        if len(buffer) < end:
            break
        fields = buffer[4:end].decode(errors="backslashreplace").split("\0")
        if fields and fields[-1] == "":
            fields.pop()
        out.append(fields)
        buffer = buffer[end:]
    return out, buffer


def parse_handshake(buffer: bytes) -> tuple[tuple[int, int] | None, bytes]:
    """``API\\0`` + framed ``vMIN..MAX[ options]``: the client's version range, or None if incomplete."""
    if len(buffer) < 8:
        return None, buffer
    if buffer[:4] != b"API\0":
        raise ProtocolError(f"not a TWS API client: starts with {buffer[:4]!r}")
    size = struct.unpack(">I", buffer[4:8])[0]
    if len(buffer) < 8 + size:
        return None, buffer
    spec = buffer[8 : 8 + size].decode().split(" ", 1)[0]
    if not spec.startswith("v") or ".." not in spec:
        raise ProtocolError(f"bad version range {spec!r}")
    lo, hi = spec[1:].split("..")
    return (int(lo), int(hi)), buffer[8 + size :]


# ---------------------------------------------------------------------------------------------------------
# server -> client messages (ids as in ib_async.decoder.Decoder.handlers)


def server_hello(version: int, connection_time: str) -> bytes:
    return frame(version, connection_time)


def managed_accounts(accounts: list[str]) -> bytes:
    return frame(15, 1, ",".join(accounts))


def next_valid_id(order_id: int) -> bytes:
    return frame(9, 1, order_id)


def error(req_id: int, code: int, message: str, advanced_order_reject_json: str = "") -> bytes:
    return frame(4, 2, req_id, code, message, advanced_order_reject_json)


def current_time(epoch_seconds: int) -> bytes:
    return frame(49, 1, epoch_seconds)


def _contract_short(c: Contract) -> list:
    """conId .. tradingClass as openOrder, execDetails and position carry them (exchange, no primaryExchange)."""
    return [
        c.conId, c.symbol, c.secType, c.lastTradeDateOrContractMonth, c.strike, c.right, c.multiplier,
        c.exchange, c.currency, c.localSymbol, c.tradingClass,
    ]  # fmt: skip


def order_status(
    order_id: int,
    status: str,
    filled: float,
    remaining: float,
    avg_fill_price: float,
    perm_id: int,
    parent_id: int,
    last_fill_price: float,
    client_id: int,
    why_held: str = "",
    mkt_cap_price: float = 0.0,
) -> bytes:
    # no version field since MARKET_CAP_PRICE (the decoder skips only the id)
    return frame(
        3, order_id, status, filled, remaining, avg_fill_price, perm_id, parent_id, last_fill_price,
        client_id, why_held, mkt_cap_price,
    )  # fmt: skip


UNENCODED = "delta-neutral, algo, hedge, conditional and combo orders"


def encodable(o: Order, c: Contract) -> bool:
    """Whether openOrder / completedOrder can carry this order: none of the features in UNENCODED. The fake
    decodes every placeOrder field, these included, and refuses (201) an order that has any of them rather
    than fill and report it as the plain order underneath."""
    return not (o.deltaNeutralOrderType or o.algoStrategy or o.hedgeType or o.conditions or c.comboLegs)


def open_order(o: Order, c: Contract, st: OrderState) -> bytes:
    """openOrder (5): ~120 fields, in Decoder.openOrder's order at version 178 (>= 177: no faProfile).

    Not encoded (the fake never produces them): delta-neutral orders, combo legs, smart-combo routing
    params, scale orders, hedge orders, algo orders, PEG BENCH, order conditions. Each is announced by
    a count or a leading field that is written empty or 0 here, so the rest stays aligned.
    """
    if not encodable(o, c):
        raise ValueError(f"openOrder: {UNENCODED} are not encoded by the fake gateway")
    f: list = [5, o.orderId, *_contract_short(c)]
    f += [
        o.action, o.totalQuantity, o.orderType, o.lmtPrice, o.auxPrice, o.tif, o.ocaGroup, o.account,
        o.openClose, o.origin, o.orderRef, o.clientId, o.permId, o.outsideRth, o.hidden, o.discretionaryAmt,
        o.goodAfterTime, "",  # sharesAllocation, deprecated
        o.faGroup, o.faMethod, o.faPercentage,
        o.modelCode, o.goodTillDate, o.rule80A, o.percentOffset, o.settlingFirm, o.shortSaleSlot,
        o.designatedLocation, o.exemptCode, o.auctionStrategy, o.startingPrice, o.stockRefPrice, o.delta,
        o.stockRangeLower, o.stockRangeUpper, o.displaySize, o.blockOrder, o.sweepToFill, o.allOrNone,
        o.minQty, o.ocaType, o.eTradeOnly, o.firmQuoteOnly, o.nbboPriceCap, o.parentId, o.triggerMethod,
        o.volatility, o.volatilityType, "", o.deltaNeutralAuxPrice,  # deltaNeutralOrderType: empty
        o.continuousUpdate, o.referencePriceType, o.trailStopPrice, o.trailingPercent, o.basisPoints,
        o.basisPointsType, c.comboLegsDescrip,
        0,  # combo legs
        0,  # order combo legs
        0,  # smart combo routing params
        o.scaleInitLevelSize, o.scaleSubsLevelSize, UNSET_DOUBLE,  # scalePriceIncrement unset: no scale block
        "",  # hedgeType
        o.optOutSmartRouting, o.clearingAccount, o.clearingIntent, o.notHeld,
        0,  # delta-neutral contract present
        "",  # algoStrategy
        o.solicited, o.whatIf, st.status, st.initMarginBefore, st.maintMarginBefore, st.equityWithLoanBefore,
        st.initMarginChange, st.maintMarginChange, st.equityWithLoanChange, st.initMarginAfter,
        st.maintMarginAfter, st.equityWithLoanAfter, st.commission, st.minCommission, st.maxCommission,
        st.commissionCurrency, st.warningText, o.randomizeSize, o.randomizePrice,
        0,  # conditions
        o.adjustedOrderType, o.triggerPrice, o.trailStopPrice, o.lmtPriceOffset, o.adjustedStopPrice,
        o.adjustedStopLimitPrice, o.adjustedTrailingAmount, o.adjustableTrailingUnit, o.softDollarTier.name,
        o.softDollarTier.val, o.softDollarTier.displayName, o.cashQty, o.dontUseAutoPriceForHedge,
        o.isOmsContainer, o.discretionaryUpToLimitPrice, o.usePriceMgmtAlgo,
        o.duration, o.postToAts, o.autoCancelParent,  # >= 159, 160, 162
        o.minTradeQty, o.minCompeteSize, o.competeAgainstBestOffset, o.midOffsetAtWhole, o.midOffsetAtHalf,  # >= 170
    ]  # fmt: skip
    return frame(*f)


def open_order_end() -> bytes:
    return frame(53, 1)


def completed_order(o: Order, c: Contract, st: OrderState) -> bytes:
    """completedOrder (101), in Decoder.completedOrder's order at version 178 (no orderId, no clientId)."""
    if not encodable(o, c):
        raise ValueError(f"completedOrder: {UNENCODED} are not encoded by the fake gateway")
    f: list = [101, *_contract_short(c)]
    f += [
        o.action, o.totalQuantity, o.orderType, o.lmtPrice, o.auxPrice, o.tif, o.ocaGroup, o.account,
        o.openClose, o.origin, o.orderRef, o.permId, o.outsideRth, o.hidden, o.discretionaryAmt,
        o.goodAfterTime, o.faGroup, o.faMethod, o.faPercentage,
        o.modelCode, o.goodTillDate, o.rule80A, o.percentOffset, o.settlingFirm, o.shortSaleSlot,
        o.designatedLocation, o.exemptCode, o.startingPrice, o.stockRefPrice, o.delta, o.stockRangeLower,
        o.stockRangeUpper, o.displaySize, o.sweepToFill, o.allOrNone, o.minQty, o.ocaType, o.triggerMethod,
        o.volatility, o.volatilityType, "", o.deltaNeutralAuxPrice,
        o.continuousUpdate, o.referencePriceType, o.trailStopPrice, o.trailingPercent, c.comboLegsDescrip,
        0, 0, 0,  # combo legs, order combo legs, smart combo routing params
        o.scaleInitLevelSize, o.scaleSubsLevelSize, UNSET_DOUBLE,
        "",  # hedgeType
        o.clearingAccount, o.clearingIntent, o.notHeld,
        0,  # delta-neutral contract present
        "",  # algoStrategy
        o.solicited, st.status, o.randomizeSize, o.randomizePrice,
        0,  # conditions
        o.trailStopPrice, o.lmtPriceOffset, o.cashQty, o.dontUseAutoPriceForHedge, o.isOmsContainer,
        o.autoCancelDate, o.filledQuantity, o.refFuturesConId, o.autoCancelParent, o.shareholder,
        o.imbalanceOnly, o.routeMarketableToBbo, o.parentPermId, st.completedTime, st.completedStatus,
        o.minTradeQty, o.minCompeteSize, o.competeAgainstBestOffset, o.midOffsetAtWhole, o.midOffsetAtHalf,
    ]  # fmt: skip
    return frame(*f)


def completed_orders_end() -> bytes:
    return frame(102)


def exec_details(req_id: int, c: Contract, ex: Execution, time_text: str) -> bytes:
    """execDetails (11); ``time_text`` as TWS writes it, with its zone (``20120104 09:30:00 America/New_York``)."""
    return frame(
        11, req_id, ex.orderId, *_contract_short(c), ex.execId, time_text, ex.acctNumber, ex.exchange,
        ex.side, ex.shares, ex.price, ex.permId, ex.clientId, ex.liquidation, ex.cumQty, ex.avgPrice,
        ex.orderRef, ex.evRule, ex.evMultiplier, ex.modelCode, ex.lastLiquidity,
        ex.pendingPriceRevision,  # >= 178
    )  # fmt: skip


def exec_details_end(req_id: int) -> bytes:
    return frame(55, 1, req_id)


def commission_report(r: CommissionReport) -> bytes:
    return frame(59, 1, r.execId, r.commission, r.currency, r.realizedPNL, r.yield_, r.yieldRedemptionDate)


def position(account: str, c: Contract, pos: float, avg_cost: float) -> bytes:
    return frame(61, 3, account, *_contract_short(c), pos, avg_cost)


def position_end() -> bytes:
    return frame(62, 1)


def update_portfolio(
    c: Contract,
    pos: float,
    market_price: float,
    market_value: float,
    average_cost: float,
    unrealized_pnl: float,
    realized_pnl: float,
    account: str,
) -> bytes:
    # primaryExchange where the others carry exchange
    return frame(
        7, 8, c.conId, c.symbol, c.secType, c.lastTradeDateOrContractMonth, c.strike, c.right, c.multiplier,
        c.primaryExchange, c.currency, c.localSymbol, c.tradingClass, pos, market_price, market_value,
        average_cost, unrealized_pnl, realized_pnl, account,
    )  # fmt: skip


def update_account_value(tag: str, value: str, currency: str, account: str) -> bytes:
    return frame(6, 2, tag, value, currency, account)


def update_account_time(hhmm: str) -> bytes:
    return frame(8, 1, hhmm)


def account_download_end(account: str) -> bytes:
    return frame(54, 1, account)


def account_update_multi(req_id: int, account: str, model_code: str, tag: str, value: str, currency: str) -> bytes:
    return frame(73, 1, req_id, account, model_code, tag, value, currency)


def account_update_multi_end(req_id: int) -> bytes:
    return frame(74, 1, req_id)


def account_summary(req_id: int, account: str, tag: str, value: str, currency: str) -> bytes:
    return frame(63, 1, req_id, account, tag, value, currency)


def account_summary_end(req_id: int) -> bytes:
    return frame(64, 1, req_id)


@dataclass(frozen=True)
class Bar:
    date: str  # YYYYMMDD for daily bars
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float
    count: int


def historical_data(req_id: int, start: str, end: str, bars: list[Bar]) -> bytes:
    """historicalData (17) with all bars and the end marker in one message (no version at 178)."""
    f: list = [17, req_id, start, end, len(bars)]
    for b in bars:
        f += [b.date, b.open, b.high, b.low, b.close, b.volume, b.wap, b.count]
    return frame(*f)


def contract_details(req_id: int, c: Contract, long_name: str, min_tick: float = 0.01) -> bytes:
    """contractDetails (10) for a stock, Decoder.contractDetails' order at version >= 164."""
    return frame(
        10, req_id, c.symbol, c.secType, c.lastTradeDateOrContractMonth, c.strike, c.right, c.exchange,
        c.currency, c.localSymbol, "NMS", c.tradingClass, c.conId, min_tick,
        c.multiplier, "LMT,MKT,STP,STPLMT", "SMART,NASDAQ,NYSE", 1, 0, long_name, c.primaryExchange,
        "", "", "", "", "US/Eastern", "", "", "", "",  # contractMonth, industry, category, subcategory,
        # timeZoneId, tradingHours, liquidHours, evRule, evMultiplier
        0,  # secIdList
        1, "", "", "26", "", "COMMON",  # aggGroup, underSymbol, underSecType, marketRuleIds, realExpirationDate, stockType
        "1", "1", "100",  # minSize, sizeIncrement, suggestedSizeIncrement
    )  # fmt: skip


def contract_details_end(req_id: int) -> bytes:
    return frame(52, 1, req_id)


# ---------------------------------------------------------------------------------------------------------
# client -> server requests (ids as in ib_async.client.Client's request methods)

REQUEST_NAMES = {
    1: "reqMktData", 2: "cancelMktData", 3: "placeOrder", 4: "cancelOrder", 5: "reqOpenOrders",
    6: "reqAccountUpdates", 7: "reqExecutions", 8: "reqIds", 9: "reqContractDetails", 15: "reqAutoOpenOrders",
    16: "reqAllOpenOrders", 17: "reqManagedAccts", 20: "reqHistoricalData", 25: "cancelHistoricalData",
    49: "reqCurrentTime", 58: "reqGlobalCancel", 59: "reqMarketDataType", 61: "reqPositions",
    62: "reqAccountSummary", 63: "cancelAccountSummary", 64: "cancelPositions", 71: "startApi",
    76: "reqAccountUpdatesMulti", 77: "cancelAccountUpdatesMulti", 99: "reqCompletedOrders",
}  # fmt: skip


def _contract12(f: list[str], i: int) -> Contract:
    """The 12 contract fields ``Client.send`` writes for a Contract argument, from index ``i``."""
    c = Contract()
    (
        c.conId, c.symbol, c.secType, c.lastTradeDateOrContractMonth, c.strike, c.right, c.multiplier,
        c.exchange, c.primaryExchange, c.currency, c.localSymbol, c.tradingClass,
    ) = f[i : i + 12]  # fmt: skip
    c.conId = int(c.conId or 0)
    c.strike = float(c.strike or 0.0)
    return c


def _float(s: str) -> float:
    return UNSET_DOUBLE if s in ("", UNSET_DOUBLE_TEXT) else float(s)


def _int(s: str, default: int = 0) -> int:
    return default if s == "" else int(s)


def _bool(s: str) -> bool:
    return bool(int(s or 0))


@dataclass
class PlaceOrder:
    order_id: int
    contract: Contract
    order: Order


def decode_place_order(f: list[str]) -> PlaceOrder:
    """placeOrder (3) at version 178, every field, in ``Client.placeOrder``'s order: the contract (with combo
    legs for a BAG), the order, and each optional block (delta-neutral, scale, hedge, algo, PEG BENCH,
    conditions, PEG BEST/MID) that its opening field announces. Fields left over or missing are a
    ProtocolError: the message was not read as the client wrote it."""
    if f[0] != "3":
        raise ProtocolError(f"not a placeOrder: {f[:2]}")
    order_id = int(f[1])
    c = _contract12(f, 2)
    c.secIdType, c.secId = f[14], f[15]
    o = Order()
    r = _Reader(f, 16, o)
    try:
        r.take(*_PLACE_HEAD)
        if c.secType == "BAG":
            c.comboLegs = [
                ComboLeg(r.int(), r.int(), r.str(), r.str(), r.int(), r.int(), r.str(), r.int())
                for _ in range(r.int())
            ]  # fmt: skip
            o.orderComboLegs = [OrderComboLeg(r.float()) for _ in range(r.int())]
            o.smartComboRoutingParams = [TagValue(r.str(), r.str()) for _ in range(r.int())]
        r.str()  # sharesAllocation, deprecated
        r.take(*_PLACE_FA, *_PLACE_MAIN)
        if o.deltaNeutralOrderType:
            r.take(*_PLACE_DELTA_NEUTRAL)
        r.take(*_PLACE_CONTINUOUS)
        if 0 < o.scalePriceIncrement < UNSET_DOUBLE:
            r.take(*_PLACE_SCALE)
        r.take(*_PLACE_ACTIVE)
        if o.hedgeType:
            r.take("hedgeParam")
        r.take(*_PLACE_CLEARING)
        if r.bool():
            c.deltaNeutralContract = DeltaNeutralContract(r.int(), r.float(), r.float())
        r.take("algoStrategy")
        if o.algoStrategy:
            o.algoParams = [TagValue(r.str(), r.str()) for _ in range(r.int())]
        r.take("algoId", "whatIf")
        o.orderMiscOptions = _tags(r.str())
        r.take("solicited", "randomizeSize", "randomizePrice")
        if o.orderType in ("PEG BENCH", "PEGBENCH"):
            r.take(*_PLACE_PEG_BENCH)
        o.conditions = [r.condition() for _ in range(r.int())]
        if o.conditions:
            r.take("conditionsIgnoreRth", "conditionsCancelOrder")
        r.take(*_PLACE_ADJUSTED)
        o.softDollarTier = SoftDollarTier(r.str(), r.str())
        r.take(*_PLACE_TAIL)
        if c.exchange == "IBKRATS":
            r.take("minTradeQty")
        if o.orderType in ("PEG BEST", "PEGBEST"):
            r.take("minCompeteSize", "competeAgainstBestOffset")
            if o.competeAgainstBestOffset == math.inf:
                r.take("midOffsetAtWhole", "midOffsetAtHalf")
        elif o.orderType in ("PEG MID", "PEGMID"):
            r.take("midOffsetAtWhole", "midOffsetAtHalf")
    except IndexError:
        raise ProtocolError(f"placeOrder {order_id}: the message ends after {len(f)} fields, inside field {r.i}") from None
    if r.i != len(f):
        raise ProtocolError(f"placeOrder {order_id}: {len(f) - r.i} fields left over after field {r.i}: {f[r.i:r.i + 5]}")
    o.orderId = order_id
    return PlaceOrder(order_id, c, o)


# placeOrder's order fields at version 178, in Client.placeOrder's order (optional blocks apart)
_PLACE_HEAD = (
    "action", "totalQuantity", "orderType", "lmtPrice", "auxPrice", "tif", "ocaGroup", "account", "openClose",
    "origin", "orderRef", "transmit", "parentId", "blockOrder", "sweepToFill", "displaySize", "triggerMethod",
    "outsideRth", "hidden",
)  # fmt: skip
_PLACE_FA = ("discretionaryAmt", "goodAfterTime", "goodTillDate", "faGroup", "faMethod", "faPercentage")
_PLACE_MAIN = (
    "modelCode", "shortSaleSlot", "designatedLocation", "exemptCode", "ocaType", "rule80A", "settlingFirm",
    "allOrNone", "minQty", "percentOffset", "eTradeOnly", "firmQuoteOnly", "nbboPriceCap", "auctionStrategy",
    "startingPrice", "stockRefPrice", "delta", "stockRangeLower", "stockRangeUpper",
    "overridePercentageConstraints", "volatility", "volatilityType", "deltaNeutralOrderType",
    "deltaNeutralAuxPrice",
)  # fmt: skip
_PLACE_DELTA_NEUTRAL = (
    "deltaNeutralConId", "deltaNeutralSettlingFirm", "deltaNeutralClearingAccount", "deltaNeutralClearingIntent",
    "deltaNeutralOpenClose", "deltaNeutralShortSale", "deltaNeutralShortSaleSlot", "deltaNeutralDesignatedLocation",
)  # fmt: skip
_PLACE_CONTINUOUS = (
    "continuousUpdate", "referencePriceType", "trailStopPrice", "trailingPercent", "scaleInitLevelSize",
    "scaleSubsLevelSize", "scalePriceIncrement",
)  # fmt: skip
_PLACE_SCALE = (
    "scalePriceAdjustValue", "scalePriceAdjustInterval", "scaleProfitOffset", "scaleAutoReset",
    "scaleInitPosition", "scaleInitFillQty", "scaleRandomPercent",
)  # fmt: skip
_PLACE_ACTIVE = ("scaleTable", "activeStartTime", "activeStopTime", "hedgeType")
_PLACE_CLEARING = ("optOutSmartRouting", "clearingAccount", "clearingIntent", "notHeld")
_PLACE_PEG_BENCH = (
    "referenceContractId", "isPeggedChangeAmountDecrease", "peggedChangeAmount", "referenceChangeAmount",
    "referenceExchangeId",
)  # fmt: skip
_PLACE_ADJUSTED = (
    "adjustedOrderType", "triggerPrice", "lmtPriceOffset", "adjustedStopPrice", "adjustedStopLimitPrice",
    "adjustedTrailingAmount", "adjustableTrailingUnit", "extOperator",
)  # fmt: skip
_PLACE_TAIL = (
    "cashQty", "mifid2DecisionMaker", "mifid2DecisionAlgo", "mifid2ExecutionTrader", "mifid2ExecutionAlgo",
    "dontUseAutoPriceForHedge", "isOmsContainer", "discretionaryUpToLimitPrice", "usePriceMgmtAlgo",
    "duration", "postToAts", "autoCancelParent", "advancedErrorOverride", "manualOrderTime",
)  # fmt: skip


class _Reader:
    """Reads request fields in order into ``obj``'s attributes; an empty field keeps the attribute's
    default (Client.send writes IB's unset values as empty), others are converted by the default's type."""

    def __init__(self, f: list[str], i: int, obj):
        self.f, self.i, self.obj = f, i, obj

    def str(self) -> str:
        v = self.f[self.i]
        self.i += 1
        return v

    def int(self) -> int:
        return _int(self.str())

    def float(self) -> float:
        return _value(self.str(), 0.0)

    def bool(self) -> bool:
        return _bool(self.str())

    def take(self, *names: str, obj=None) -> None:
        target = self.obj if obj is None else obj
        for name in names:
            text = self.str()
            if text != "":
                setattr(target, name, _value(text, getattr(target, name)))

    def condition(self) -> OrderCondition:
        cond = OrderCondition.createClass(_int(self.f[self.i]))()
        self.take(*(fld.name for fld in fields(cond)), obj=cond)
        return cond


def _value(text: str, like):
    """``text`` as the type of ``like`` (an attribute's default)."""
    if isinstance(like, bool):
        return _bool(text)
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float):
        return math.inf if text == "Infinite" else _float(text)
    return text


def _tags(text: str) -> list[TagValue]:
    """``tag=value;tag=value;`` (Client.send's form of a TagValue list)."""
    return [TagValue(*item.split("=", 1)) for item in text.split(";") if item]


@dataclass
class HistoricalRequest:
    req_id: int
    contract: Contract
    end: str
    bar_size: str
    duration: str
    use_rth: bool
    what_to_show: str
    format_date: int
    keep_up_to_date: bool

    def key(self) -> tuple:
        c = self.contract
        return (c.conId, c.symbol, c.secType, self.end, self.bar_size, self.duration, self.what_to_show, self.use_rth)


def decode_historical_request(f: list[str]) -> HistoricalRequest:
    """reqHistoricalData (20): no version field; BAG contracts (legs) are not supported."""
    c = _contract12(f, 2)
    include_expired, end, bar_size, duration, use_rth, what, fmt = f[14:21]
    keep = f[21] if len(f) > 21 else "0"
    return HistoricalRequest(int(f[1]), c, end, bar_size, duration, _bool(use_rth), what, _int(fmt, 1), _bool(keep))


@dataclass
class ExecutionFilterRequest:
    req_id: int
    client_id: int
    account: str
    time: str
    symbol: str
    sec_type: str
    exchange: str
    side: str


def decode_req_executions(f: list[str]) -> ExecutionFilterRequest:
    _, _, req_id, client_id, acct, time, symbol, sec_type, exchange, side = f[:10]
    return ExecutionFilterRequest(int(req_id), _int(client_id), acct, time, symbol, sec_type, exchange, side)


@dataclass
class Request:
    """Any decoded request: its id, name and raw fields."""

    msg_id: int
    fields: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return REQUEST_NAMES.get(self.msg_id, f"msg{self.msg_id}")
