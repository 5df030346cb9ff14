"""A fake IB gateway: the TWS API at server version 178 over asyncio, orders filled on replayed real bars.

``firm ibsim`` runs it on 127.0.0.1:4002 (IB Gateway's paper port) so that the whole IB path can be
rehearsed with no account; the tests connect the real ``ib_async.IB`` client to it over loopback.

What it serves, per client connection (one :class:`Session` each, keyed by client id):

- the handshake and startApi; then managedAccounts (the paper account, ``DU...``), nextValidId and
  the farm messages 2104/2106/2158; a second connection with a client id already in use gets 326
  and is closed;
- everything ``IB.connect()`` waits for: positions (61/62), open orders (5/53), completed orders
  (101/102), account updates (6/7/8/54), account updates multi (73/74), executions (11/55 then 59);
  also reqIds, reqCurrentTime, reqManagedAccts, reqAccountSummary, reqContractDetails,
  reqHistoricalData (daily bars of the replayed data up to the current bar, IB's pacing rules: 162)
  and cancelOrder / reqGlobalCancel;
- orders (MKT, LMT, STP; BUY/SELL; DAY expires after one bar, GTC rests) acknowledged as TWS does
  (openOrder + orderStatus PreSubmitted, then Submitted) and matched when the replay clock moves to
  the next bar (:meth:`IBSim.step`): market orders at the bar's open, limits at the open if it is
  through the limit else at the limit if the bar reaches it, stops at the open if it gapped through
  the stop else at the stop, then as market orders. With ``fill_share`` an order fills at most that
  share of the bar's volume per bar (partial fills; the rest rests). Commissions by IB's fixed
  schedule (:meth:`firm.portfolio.Costs.commission`), included in the average cost as IB does.
- each fill as TWS sends it: execDetails (reqId -1); orderStatus (Filled or Submitted with the
  filled quantity); openOrder Filled; commissionReport; position (61) to the sessions that called
  reqPositions; updatePortfolio (7), account values and the account time (8) to those that
  subscribed to account updates. Every bar also re-marks the portfolio to those subscribers.
- an account that may start with positions (``IBSimConfig.positions``, ``firm ibsim --positions``),
  held at the start session's close as their average cost, reported like any other position.

Scripted faults (the ``fault_*`` and ``send_*`` methods): a socket drop in the middle of an order,
the 1100/1101/1102 connectivity codes, 2103/2104 farm messages, a fill arriving after a cancel
request, execDetails with no orderStatus, a gateway restart after which nextValidId goes backwards
(reusing an id is then rejected with 103), order rejection (201) and historical-data pacing (162).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import math
import re
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from ib_async.contract import Contract
from ib_async.objects import CommissionReport, Execution
from ib_async.order import Order, OrderState
from ib_async.util import UNSET_DOUBLE

from firm.broker import ibwire as w
from firm.data.market import MarketData
from firm.portfolio import Costs

log = logging.getLogger("firm.ibsim")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4002  # IB Gateway, paper trading
DEFAULT_ACCOUNT = "DU1234567"
TZ = "America/New_York"

# real IB conIds of the shipped stocks; other symbols get a stable made-up one
_CON_IDS = {"AAPL": 265598, "MSFT": 272093, "IBM": 8314, "GOOG": 208813719}
_PRIMARY = {"AAPL": "NASDAQ", "MSFT": "NASDAQ", "GOOG": "NASDAQ", "IBM": "NYSE"}
_NAMES = {
    "AAPL": "APPLE INC",
    "MSFT": "MICROSOFT CORP",
    "IBM": "INTL BUSINESS MACHINES CORP",
    "GOOG": "ALPHABET INC-CL C",
    "SPX": "S&P 500 TRACKER (FAKE)",
    "COMP": "NASDAQ COMPOSITE TRACKER (FAKE)",
}

FARM_OK = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)
WORKING = ("PreSubmitted", "Submitted", "PendingCancel")


def stock_contract(symbol: str) -> Contract:
    """The contract the fake reports for ``symbol``: a US stock routed SMART."""
    con_id = _CON_IDS.get(symbol, 100_000_000 + zlib.crc32(symbol.encode()) % 100_000_000)
    return Contract(
        secType="STK",
        conId=con_id,
        symbol=symbol,
        exchange="SMART",
        primaryExchange=_PRIMARY.get(symbol, "ARCA"),
        currency="USD",
        localSymbol=symbol,
        tradingClass="NMS" if _PRIMARY.get(symbol) != "NYSE" else symbol,
    )


@dataclass
class IBSimConfig:
    account: str = DEFAULT_ACCOUNT
    cash: float = 1_000_000.0
    next_valid_id: int = 1
    fill_share: float | None = None  # max share of a bar's volume one order fills per bar; None: no cap
    costs: Costs = field(default_factory=lambda: Costs(slippage_bps=0.0, slippage_noise_bps=0.0))
    pacing: bool = True  # IB's historical-data pacing: no identical request within 15 s, 60 per 10 min
    first_perm_id: int = 1_500_000_001
    # the account's positions at the start (symbol -> signed shares), held at the start session's close
    positions: dict[str, float] = field(default_factory=dict)


@dataclass
class SimOrder:
    order: Order
    contract: Contract
    sym: int
    status: str = "PreSubmitted"
    filled: float = 0.0
    avg_price: float = 0.0
    last_price: float = 0.0
    commission: float = 0.0
    triggered: bool = False
    placed_bar: int = 0
    completed_time: str = ""
    completed_status: str = ""

    @property
    def remaining(self) -> float:
        return self.order.totalQuantity - self.filled

    @property
    def working(self) -> bool:
        return self.status in WORKING

    @property
    def key(self) -> tuple[int, int]:
        return (self.order.clientId, self.order.orderId)


@dataclass
class SimExecution:
    contract: Contract
    execution: Execution
    time_text: str
    report: CommissionReport


class Session(asyncio.Protocol):
    """One client connection."""

    def __init__(self, sim: IBSim):
        self.sim = sim
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.version = 0
        self.client_id: int | None = None
        self.positions_subscribed = False
        self.account_subscribed = False
        self.requests: list[str] = []  # names of the requests received, in order
        self.answered: list[str] = []  # names of the requests answered, in order
        self.unhandled: list[list[str]] = []
        self.sent: list[int] = []  # ids of the messages sent, in order (the server hello shows as its version)
        self.closed = asyncio.get_running_loop().create_future()

    # transport ------------------------------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.sim._all_sessions.add(self)

    def connection_lost(self, exc):
        self.transport = None
        self.sim._session_closed(self)
        if not self.closed.done():
            self.closed.set_result(None)

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, *messages: bytes) -> None:
        if self.open:
            for m in messages:
                self.transport.write(m)
                head = m[4 : m.index(b"\0", 4)]
                self.sent.append(int(head))

    def close(self) -> None:
        """Close politely (FIN)."""
        if self.transport is not None:
            self.transport.close()

    def drop(self) -> None:
        """Drop the connection (RST), as a network failure or a killed gateway does."""
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            if not self.version:
                versions, self.buffer = w.parse_handshake(self.buffer)
                if versions is None:
                    return
                lo, hi = versions
                if hi < w.SERVER_VERSION or lo > w.SERVER_VERSION:
                    self.sim._log(f"client speaks v{lo}..{hi}; the fake speaks {w.SERVER_VERSION} only: closing")
                    self.close()
                    return
                self.version = w.SERVER_VERSION
                now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d %H:%M:%S UTC")
                self.send(w.server_hello(self.version, now))
            messages, self.buffer = w.split_frames(self.buffer)
        except w.ProtocolError as err:
            self.sim._log(f"protocol error: {err}; closing")
            self.close()
            return
        for fields in messages:
            if not self.open:
                return
            self.sim._dispatch(self, fields)


class IBSim:
    """The fake gateway: accounts, orders, the replay clock and the sessions."""

    def __init__(self, data: MarketData, start: dt.date | str | None = None, config: IBSimConfig | None = None):
        self.cfg = config or IBSimConfig()
        self.data = data
        p = data.panel
        self.symbols = tuple(p.symbols)
        # prices to 1e-4 (as firm.portfolio.Costs fills), whole shares of volume: what IB reports
        self.ohlcv = tuple(np.round(x, 4) for x in (p.open, p.high, p.low, p.close)) + (np.round(p.volume),)
        self.contracts = {s: stock_contract(s) for s in self.symbols}
        self.dates = pd.DatetimeIndex(pd.to_datetime(p.ts, utc=True)).tz_convert(TZ).normalize().tz_localize(None)
        first = 0 if start is None else int(np.searchsorted(self.dates.values, np.datetime64(pd.Timestamp(start))))
        if first >= len(self.dates):
            raise ValueError(f"replay start {start} is after the last session of the data ({self.dates[-1].date()})")
        self.bar = first  # the last completed bar: its close is the market price; orders fill from bar + 1
        self.next_valid_id = self.cfg.next_valid_id
        self._perm = self.cfg.first_perm_id
        self._exec_seq = 0
        self.cash = float(self.cfg.cash)
        self.positions: dict[int, list[float]] = {}  # sym -> [quantity, average cost incl. commission]
        for symbol, qty in self.cfg.positions.items():
            if symbol not in self.symbols:
                raise ValueError(f"position in {symbol}: not a symbol of the replay ({', '.join(self.symbols)})")
            if qty:
                sym = self.symbols.index(symbol)
                if not math.isfinite(self.price(sym)):
                    raise ValueError(f"position in {symbol}: no close of it at or before {self.date}")
                self.positions[sym] = [float(qty), self.price(sym)]
        self.realized: dict[int, float] = {}
        self.orders: dict[tuple[int, int], SimOrder] = {}
        self.executions: list[SimExecution] = []
        self.sessions: dict[int, Session] = {}  # client id -> session (after startApi)
        self._all_sessions: set[Session] = set()
        self._hist_times: deque[tuple[float, tuple]] = deque()
        self.clock: Callable[[], float] = time.monotonic  # for historical pacing
        self.on_log: Callable[[str], None] | None = None
        # scripted faults
        self._drop_after_ack = 0
        self._rejects: deque[str] = deque()
        self._late_fill_on_cancel = 0
        self._exec_without_status = 0
        self._historical_errors: deque[tuple[int, str]] = deque()
        self._server: asyncio.base_events.Server | None = None
        self.host = ""
        self.port = 0

    # lifecycle --------------------------------------------------------------------------------------------

    async def start(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> IBSim:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Session(self), host, port)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        self._log(f"listening on {self.host}:{self.port}, server version {w.SERVER_VERSION}, account {self.cfg.account}")
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        sessions = list(self._all_sessions)
        for s in sessions:
            s.close()
        if sessions:
            await asyncio.gather(*(s.closed for s in sessions))
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> IBSim:
        return self if self._server else await self.start("127.0.0.1", 0)

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def _log(self, msg: str) -> None:
        log.info(msg)
        if self.on_log:
            self.on_log(msg)

    # the replay clock -------------------------------------------------------------------------------------

    @property
    def date(self) -> dt.date:
        """The session of the last completed bar."""
        return self.dates[self.bar].date()

    def price(self, sym: int) -> float:
        """The last close of ``sym`` at or before the current bar."""
        closes = self.ohlcv[3][: self.bar + 1, sym]
        ok = np.flatnonzero(np.isfinite(closes))
        return float(closes[ok[-1]]) if len(ok) else float("nan")

    def step(self, n: int = 1) -> int:
        """Advance the clock ``n`` bars: fill what the new bars fill, expire DAY orders, re-mark the account.

        Returns how many bars it advanced (fewer at the end of the data)."""
        done = 0
        for _ in range(n):
            if self.bar + 1 >= len(self.dates):
                break
            self.bar += 1
            done += 1
            self._match_bar()
            self._push_account()
        return done

    def _match_bar(self) -> None:
        i = self.bar
        for so in list(self.orders.values()):
            if not so.working or so.placed_bar >= i:
                continue
            o, h, lo, c, v = (float(x[i, so.sym]) for x in self.ohlcv)
            if not math.isfinite(o):
                continue  # no bar for this instrument in this session
            px, at_open = self._match(so, o, h, lo)
            if px is not None:
                qty = so.remaining
                if self.cfg.fill_share is not None:
                    qty = min(qty, max(1.0, math.floor(self.cfg.fill_share * v)))
                clock = "09:30:00" if at_open else "12:00:00"
                self._fill(so, qty, px, f"{self.dates[i]:%Y%m%d} {clock} {TZ}")
            if so.working and so.order.tif in ("", "DAY"):
                self._set_done(so, "Cancelled", "Cancelled")  # a DAY order lives one session
                self._send_status(so)

    @staticmethod
    def _match(so: SimOrder, o: float, h: float, lo: float) -> tuple[float | None, bool]:
        """The fill price of ``so`` on a bar (open, high, low), and whether it is the open; None: no fill."""
        od = so.order
        buy = od.action == "BUY"
        kind = od.orderType
        if kind == "STP" and not so.triggered:
            stop = od.auxPrice
            if (o >= stop) if buy else (o <= stop):
                so.triggered = True
                return o, True
            if (h >= stop) if buy else (lo <= stop):
                so.triggered = True
                return stop, False
            return None, False
        if kind in ("MKT", "STP"):
            return o, True
        lmt = od.lmtPrice  # LMT
        if (o <= lmt) if buy else (o >= lmt):
            return o, True
        if (lo <= lmt) if buy else (h >= lmt):
            return lmt, False
        return None, False

    # account ------------------------------------------------------------------------------------------------

    def _book(self, sym: int, qty: float, price: float, commission: float) -> float | None:
        """Apply a signed fill to cash and the position; the realized P&L if it reduced one."""
        pos, avg = self.positions.get(sym, [0.0, 0.0])
        self.cash -= qty * price + commission
        if pos == 0 or (pos > 0) == (qty > 0):
            new = pos + qty
            self.positions[sym] = [new, (pos * avg + qty * price + commission) / new]
            return None
        closed = min(abs(qty), abs(pos))
        realized = (price - avg) * closed * (1 if pos > 0 else -1) - commission
        new = pos + qty
        if new == 0:
            self.positions.pop(sym, None)
        elif (new > 0) != (pos > 0):
            self.positions[sym] = [new, price]
        else:
            self.positions[sym] = [new, avg]
        self.realized[sym] = self.realized.get(sym, 0.0) + realized
        return realized

    def position_of(self, symbol: str) -> float:
        return self.positions.get(self.symbols.index(symbol), [0.0, 0.0])[0]

    def account_values(self) -> list[tuple[str, str, str]]:
        """(tag, value, currency) of the account, as reqAccountUpdates reports them."""
        gross = sum(abs(q * self.price(s)) for s, (q, _) in self.positions.items())
        net = self.cash + sum(q * self.price(s) for s, (q, _) in self.positions.items())
        unreal = sum((self.price(s) - a) * q for s, (q, a) in self.positions.items())
        real = sum(self.realized.values())
        money = {
            "NetLiquidation": net,
            "TotalCashValue": self.cash,
            "CashBalance": self.cash,
            "GrossPositionValue": gross,
            "EquityWithLoanValue": net,
            "AvailableFunds": net - 0.25 * gross,
            "BuyingPower": 4 * (net - 0.25 * gross),
            "InitMarginReq": 0.25 * gross,
            "MaintMarginReq": 0.25 * gross,
            "UnrealizedPnL": unreal,
            "RealizedPnL": real,
        }
        out = [("AccountCode", self.cfg.account, ""), ("AccountType", "INDIVIDUAL", ""), ("Currency", "USD", "USD")]
        out += [(tag, f"{value:.2f}", "USD") for tag, value in money.items()]
        return out

    def _portfolio_msg(self, sym: int) -> bytes:
        q, avg = self.positions.get(sym, [0.0, 0.0])
        px = self.price(sym)
        return w.update_portfolio(
            self.contracts[self.symbols[sym]], q, px, round(q * px, 2), avg, round((px - avg) * q, 2),
            round(self.realized.get(sym, 0.0), 2), self.cfg.account,
        )  # fmt: skip

    def _account_msgs(self, syms) -> list[bytes]:
        msgs = [self._portfolio_msg(s) for s in syms]
        msgs += [w.update_account_value(t, v, c, self.cfg.account) for t, v, c in self.account_values()]
        msgs.append(w.update_account_time("16:00"))
        return msgs

    def _push_account(self, syms=None) -> None:
        syms = sorted(self.positions) if syms is None else syms
        for s in list(self.sessions.values()):
            if s.account_subscribed:
                s.send(*self._account_msgs(syms))

    # orders -----------------------------------------------------------------------------------------------

    def _state(self, so: SimOrder) -> OrderState:
        st = OrderState(status=so.status)
        if so.filled:
            st.commission = round(so.commission, 2)
            st.commissionCurrency = "USD"
        st.completedTime = so.completed_time
        st.completedStatus = so.completed_status
        return st

    def _open_order_msg(self, so: SimOrder) -> bytes:
        return w.open_order(so.order, so.contract, self._state(so))

    def _status_msg(self, so: SimOrder) -> bytes:
        od = so.order
        return w.order_status(
            od.orderId, so.status, so.filled, so.remaining, so.avg_price, od.permId, od.parentId,
            so.last_price, od.clientId,
        )  # fmt: skip

    def _owner(self, so: SimOrder) -> Session | None:
        s = self.sessions.get(so.order.clientId)
        return s if s is not None and s.open else None

    def _send_status(self, so: SimOrder, with_open_order: bool = False) -> None:
        s = self._owner(so)
        if s:
            s.send(*([self._open_order_msg(so)] if with_open_order else []), self._status_msg(so))

    def _set_done(self, so: SimOrder, status: str, completed_status: str) -> None:
        so.status = status
        so.completed_status = completed_status
        so.completed_time = f"{self.dates[self.bar]:%Y%m%d} 16:00:00 {TZ}"

    def _fill(self, so: SimOrder, qty: float, price: float, time_text: str) -> None:
        od = so.order
        sign = 1 if od.action == "BUY" else -1
        commission = self.cfg.costs.commission(int(qty), price)
        realized = self._book(so.sym, sign * qty, price, commission)
        so.avg_price = (so.avg_price * so.filled + price * qty) / (so.filled + qty)
        so.filled += qty
        so.last_price = price
        so.commission += commission
        if so.remaining <= 0:
            self._set_done(so, "Filled", "Filled")
        else:
            so.status = "Submitted"
        self._exec_seq += 1
        ex = Execution(
            execId=f"0000f{od.permId:08x}.{self._exec_seq:08x}.01.01",
            acctNumber=od.account,
            exchange=so.contract.primaryExchange,
            side="BOT" if sign > 0 else "SLD",
            shares=qty,
            price=price,
            permId=od.permId,
            clientId=od.clientId,
            orderId=od.orderId,
            liquidation=0,
            cumQty=so.filled,
            avgPrice=round(so.avg_price, 6),
            orderRef=od.orderRef,
            lastLiquidity=2 if time_text.split()[1] == "09:30:00" else 1,
        )
        report = CommissionReport(
            execId=ex.execId,
            commission=commission,
            currency="USD",
            realizedPNL=UNSET_DOUBLE if realized is None else round(realized, 2),
            yield_=UNSET_DOUBLE,
            yieldRedemptionDate=0,
        )
        self.executions.append(SimExecution(so.contract, ex, time_text, report))
        self._log(
            f"{self.date} fill: client {od.clientId} order {od.orderId} {od.action} {qty:g} {so.contract.symbol} "
            f"@ {price:.4f} ({so.filled:g}/{od.totalQuantity:g}, {so.status}), commission {commission:.2f}"
        )
        s = self._owner(so)
        if s:
            s.send(w.exec_details(-1, so.contract, ex, time_text))
            if self._exec_without_status:
                self._exec_without_status -= 1
                self._log(f"fault: execDetails of order {od.orderId} without orderStatus")
            else:
                s.send(self._status_msg(so))
                if so.status == "Filled":
                    s.send(self._open_order_msg(so))
            s.send(w.commission_report(report))
        q, avg = self.positions.get(so.sym, [0.0, 0.0])
        for sess in list(self.sessions.values()):
            if sess.positions_subscribed:
                sess.send(w.position(self.cfg.account, so.contract, q, avg))
        self._push_account([so.sym])

    def _reject(self, s: Session, order_id: int, code: int, message: str) -> None:
        self._log(f"client {s.client_id} order {order_id}: error {code} {message}")
        s.send(w.error(order_id, code, message))

    def _place(self, s: Session, f: list[str]) -> None:
        req = w.decode_place_order(f)
        od, oid = req.order, req.order_id
        existing = self.orders.get((s.client_id, oid))
        if existing is not None and existing.working:  # a modification
            existing.order.totalQuantity = od.totalQuantity
            existing.order.lmtPrice, existing.order.auxPrice = od.lmtPrice, od.auxPrice
            self._log(f"client {s.client_id} order {oid} modified")
            s.send(self._open_order_msg(existing), self._status_msg(existing))
            return
        if existing is not None or oid < 1:
            return self._reject(s, oid, 103, "Duplicate order id")
        self.next_valid_id = max(self.next_valid_id, oid + 1)
        sym = self._lookup(req.contract)
        if sym is None:
            return self._reject(s, oid, 200, "No security definition has been found for the request")
        if od.orderType not in ("MKT", "LMT", "STP"):
            return self._reject(s, oid, 387, f"Unsupported order type {od.orderType!r}: the fake fills MKT, LMT, STP")
        if od.action not in ("BUY", "SELL"):
            return self._reject(s, oid, 201, f"Order rejected - reason:unknown action {od.action!r}")
        if not od.totalQuantity > 0 or od.totalQuantity != int(od.totalQuantity):
            return self._reject(s, oid, 201, "Order rejected - reason:quantity must be a positive whole number")
        if od.orderType == "LMT" and not 0 < od.lmtPrice < UNSET_DOUBLE:
            return self._reject(s, oid, 201, "Order rejected - reason:a limit order needs a limit price")
        if od.orderType == "STP" and not 0 < od.auxPrice < UNSET_DOUBLE:
            return self._reject(s, oid, 201, "Order rejected - reason:a stop order needs a stop price (auxPrice)")
        if not w.encodable(od, req.contract):  # it would fill as a plain order and report as one: refuse
            return self._reject(s, oid, 201, f"Order rejected - reason:the fake gateway does not carry {w.UNENCODED}")
        order = dataclasses.replace(  # the order as the client wrote it, with what TWS assigns
            od,
            orderId=oid,
            clientId=s.client_id,
            permId=self._next_perm(),
            lmtPrice=od.lmtPrice if od.orderType == "LMT" else 0.0,
            auxPrice=od.auxPrice if od.orderType == "STP" else 0.0,
            tif=od.tif or "DAY",
            account=od.account or self.cfg.account,
            openClose="",
        )
        so = SimOrder(order, self.contracts[self.symbols[sym]], sym, placed_bar=self.bar)
        self.orders[so.key] = so
        self._log(
            f"{self.date} order: client {s.client_id} id {oid} perm {order.permId} {order.action} "
            f"{order.totalQuantity:g} {so.contract.symbol} {order.orderType}"
            + (f" {order.lmtPrice}" if order.orderType == "LMT" else f" {order.auxPrice}" if order.orderType == "STP" else "")
            + f" {order.tif}" + (f" ref {order.orderRef}" if order.orderRef else "")
        )
        s.send(self._open_order_msg(so), self._status_msg(so))
        if self._drop_after_ack:
            self._drop_after_ack -= 1
            self._log(f"fault: dropping client {s.client_id}'s socket in the middle of order {oid}")
            s.drop()
            so.status = "Submitted"
            return
        so.status = "Submitted"
        s.send(self._open_order_msg(so), self._status_msg(so))

    def _lookup(self, c: Contract) -> int | None:
        for i, sym in enumerate(self.symbols):
            k = self.contracts[sym]
            if (c.conId and c.conId == k.conId) or (not c.conId and c.symbol == sym):
                if c.secType in ("", "STK") and c.currency in ("", "USD"):
                    return i
        return None

    def _next_perm(self) -> int:
        self._perm += 1
        return self._perm

    def _cancel(self, s: Session, order_id: int) -> None:
        so = self.orders.get((s.client_id, order_id))
        if so is None:
            return self._reject(s, order_id, 135, f"Can't find order with id ={order_id}")
        if not so.working:
            state = so.status
            return self._reject(s, order_id, 10148, f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {state}.")
        if self._late_fill_on_cancel:
            self._late_fill_on_cancel -= 1
            self._log(f"fault: order {order_id} fills before its cancel request")
            so.status = "PendingCancel"
            s.send(self._status_msg(so))
            self._fill(so, so.remaining, self.price(so.sym), f"{self.dates[self.bar]:%Y%m%d} 15:59:59 {TZ}")
            return self._reject(s, order_id, 10148, f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: Filled.")
        self._set_done(so, "Cancelled", "Cancelled")
        self._log(f"{self.date} cancel: client {s.client_id} order {order_id} ({so.filled:g} filled)")
        s.send(self._status_msg(so), w.error(order_id, 202, "Order Canceled - reason:"))

    # requests ---------------------------------------------------------------------------------------------

    def _dispatch(self, s: Session, f: list[str]) -> None:
        try:
            msg_id = int(f[0])
        except (ValueError, IndexError):
            s.unhandled.append(f)
            return
        name = w.REQUEST_NAMES.get(msg_id, f"msg{msg_id}")
        s.requests.append(name)
        if s.client_id is None and msg_id != 71:
            s.unhandled.append(f)
            return
        handler = getattr(self, f"_on_{name}", None)
        if handler is None:
            s.unhandled.append(f)
            log.debug("unhandled request %s: %s", name, f)
            return
        try:
            answered = handler(s, f)
        except (ValueError, IndexError, w.ProtocolError) as err:
            self._log(f"client {s.client_id}: cannot decode {name}: {err!r}: {f}")
            s.send(w.error(-1, 320, f"Server error when reading an API client request: {name}"))
            return
        if answered is not False:
            s.answered.append(name)

    def _on_startApi(self, s: Session, f):
        client_id = int(f[2])
        other = self.sessions.get(client_id)
        if other is not None and other.open:
            self._log(f"client id {client_id} already in use: 326, closing the new connection")
            s.send(w.error(-1, 326, "Unable to connect as the client id is already in use. Retry with a unique client id."))
            s.close()
            return
        s.client_id = client_id
        self.sessions[client_id] = s
        self._log(f"client {client_id} connected (server version {s.version}); nextValidId {self.next_valid_id}")
        s.send(w.managed_accounts([self.cfg.account]), w.next_valid_id(self.next_valid_id))
        s.send(*(w.error(-1, code, msg) for code, msg in FARM_OK))

    def _on_reqIds(self, s, f):
        s.send(w.next_valid_id(self.next_valid_id))

    def _on_reqManagedAccts(self, s, f):
        s.send(w.managed_accounts([self.cfg.account]))

    def _on_reqCurrentTime(self, s, f):
        s.send(w.current_time(int(self.market_time().timestamp())))

    def market_time(self) -> pd.Timestamp:
        """The fake's market time (reqCurrentTime), UTC: a minute before the next session opens, so its last
        completed bar is the last one that closed; it moves when the replay clock does."""
        from firm.data.validate import get_calendar

        cal = get_calendar("XNYS")
        return cal.session_open(cal.next_session(pd.Timestamp(self.dates[self.bar]))) - pd.Timedelta(minutes=1)

    def _on_reqPositions(self, s, f):
        s.positions_subscribed = True
        for sym, (q, avg) in sorted(self.positions.items()):
            s.send(w.position(self.cfg.account, self.contracts[self.symbols[sym]], q, avg))
        s.send(w.position_end())

    def _on_cancelPositions(self, s, f):
        s.positions_subscribed = False

    def _client_orders(self, s: Session, every_client: bool) -> list[SimOrder]:
        return [so for so in self.orders.values() if every_client or so.order.clientId == s.client_id]

    def _on_reqOpenOrders(self, s, f, every_client=False):
        for so in self._client_orders(s, every_client or s.client_id == 0):
            if so.working:
                s.send(self._open_order_msg(so), self._status_msg(so))
        s.send(w.open_order_end())

    def _on_reqAllOpenOrders(self, s, f):
        self._on_reqOpenOrders(s, f, every_client=True)

    def _on_reqAutoOpenOrders(self, s, f):
        return None

    def _on_reqCompletedOrders(self, s, f):
        for so in self.orders.values():
            if not so.working:
                s.send(w.completed_order(so.order, so.contract, self._state(so)))
        s.send(w.completed_orders_end())

    def _on_reqAccountUpdates(self, s, f):
        subscribe, account = w._bool(f[2]), f[3]
        s.account_subscribed = subscribe
        if subscribe:
            s.send(*self._account_msgs(sorted(self.positions)), w.account_download_end(account or self.cfg.account))

    def _on_reqAccountUpdatesMulti(self, s, f):
        req_id, account, model = int(f[2]), f[3], f[4]
        for tag, value, cur in self.account_values():
            s.send(w.account_update_multi(req_id, account or self.cfg.account, model, tag, value, cur))
        s.send(w.account_update_multi_end(req_id))

    def _on_cancelAccountUpdatesMulti(self, s, f):
        return None

    def _on_reqAccountSummary(self, s, f):
        req_id = int(f[2])
        for tag, value, cur in self.account_values():
            s.send(w.account_summary(req_id, self.cfg.account, tag, value, cur))
        s.send(w.account_summary_end(req_id))

    def _on_cancelAccountSummary(self, s, f):
        return None

    def _on_reqExecutions(self, s, f):
        flt = w.decode_req_executions(f)
        chosen = [
            e for e in self.executions
            if (not flt.client_id or e.execution.clientId == flt.client_id)
            and (not flt.symbol or e.contract.symbol == flt.symbol)
            and (not flt.side or e.execution.side.startswith(flt.side[:1]))
        ]  # fmt: skip
        for e in chosen:
            s.send(w.exec_details(flt.req_id, e.contract, e.execution, e.time_text))
        s.send(w.exec_details_end(flt.req_id))
        for e in chosen:
            s.send(w.commission_report(e.report))

    def _on_placeOrder(self, s, f):
        if self._rejects:
            req = w.decode_place_order(f)
            self.next_valid_id = max(self.next_valid_id, req.order_id + 1)
            return self._reject(s, req.order_id, 201, f"Order rejected - reason:{self._rejects.popleft()}")
        self._place(s, f)

    def _on_cancelOrder(self, s, f):
        self._cancel(s, int(f[2]))

    def _on_reqGlobalCancel(self, s, f):
        for so in list(self.orders.values()):
            if so.working:
                self._set_done(so, "Cancelled", "Cancelled")
                owner = self._owner(so)
                if owner:
                    owner.send(self._status_msg(so), w.error(so.order.orderId, 202, "Order Canceled - reason:"))

    def _on_reqContractDetails(self, s, f):
        req_id = int(f[2])
        sym = self._lookup(w._contract12(f, 3))
        if sym is None:
            s.send(w.error(req_id, 200, "No security definition has been found for the request"))
            return
        symbol = self.symbols[sym]
        s.send(w.contract_details(req_id, self.contracts[symbol], _NAMES.get(symbol, symbol)), w.contract_details_end(req_id))

    def _on_reqMarketDataType(self, s, f):
        return None

    def _on_reqMktData(self, s, f):
        s.send(w.error(int(f[2]), 354, "Requested market data is not subscribed: the fake serves historical daily bars only"))

    def _on_cancelMktData(self, s, f):
        return None

    def _on_cancelHistoricalData(self, s, f):
        return None

    def _on_reqHistoricalData(self, s, f):
        req = w.decode_historical_request(f)
        if self._historical_errors:
            code, message = self._historical_errors.popleft()
            self._log(f"fault: historical request {req.req_id} answered with {code}")
            s.send(w.error(req.req_id, code, message))
            return
        now = self.clock()
        if self.cfg.pacing:
            while self._hist_times and now - self._hist_times[0][0] > 600:
                self._hist_times.popleft()
            identical = any(k == req.key() and now - t < 15 for t, k in self._hist_times)
            if identical or len(self._hist_times) >= 60:
                why = "identical request within 15 seconds" if identical else "more than 60 requests in 10 minutes"
                s.send(w.error(req.req_id, 162, f"Historical Market Data Service error message:pacing violation ({why})"))
                return
            self._hist_times.append((now, req.key()))
        sym = self._lookup(req.contract)
        if sym is None:
            s.send(w.error(req.req_id, 200, "No security definition has been found for the request"))
            return
        if req.bar_size.strip() != "1 day":
            s.send(w.error(req.req_id, 162, f"Historical Market Data Service error message:the fake serves 1 day bars only, not {req.bar_size!r}"))
            return
        # ADJUSTED_LAST (split- and dividend-adjusted) as IB serves it: only up to now. The replayed bars are
        # already adjusted (the shipped data's convention), so the fake's TRADES and ADJUSTED_LAST are the same.
        if req.what_to_show == "ADJUSTED_LAST" and req.end.strip():
            s.send(w.error(req.req_id, 321, "Error validating request.-'bX' : cause - End date not supported with adjusted last"))
            return
        try:
            end, start = _hist_window(req.end, req.duration, self.dates[self.bar])
        except ValueError as err:
            s.send(w.error(req.req_id, 321, f"Error validating request:-'{err}'"))
            return False
        bars = []
        for i in range(int(np.searchsorted(self.dates.values, np.datetime64(start))), self.bar + 1):
            if self.dates[i] > end:
                break
            o, h, lo, c, v = (float(x[i, sym]) for x in self.ohlcv)
            if math.isfinite(o):
                d = f"{self.dates[i]:%Y%m%d}"
                bars.append(w.Bar(d, o, h, lo, c, v, round((h + lo + c) / 3, 4), 0))
        s.send(w.historical_data(req.req_id, f"{start:%Y%m%d} 00:00:00", f"{end:%Y%m%d} 23:59:59", bars))

    # scripted faults ---------------------------------------------------------------------------------------

    def send_error(self, code: int, message: str, req_id: int = -1, client_id: int | None = None) -> None:
        """Send an error/warning message to one client or to all."""
        self._log(f"fault: error {code} to {'client ' + str(client_id) if client_id is not None else 'every client'}: {message}")
        for cid, s in list(self.sessions.items()):
            if client_id is None or cid == client_id:
                s.send(w.error(req_id, code, message))

    def connectivity_lost(self) -> None:
        self.send_error(1100, "Connectivity between IBKR and Trader Workstation has been lost.")

    def connectivity_restored(self, data_kept: bool = True) -> None:
        if data_kept:
            self.send_error(1102, "Connectivity between IBKR and Trader Workstation has been restored - data maintained. All data farms are connected: usfarm; ushmds; secdefnj.")
        else:
            self.send_error(1101, "Connectivity between IBKR and Trader Workstation has been restored - data lost.")

    def farm_broken(self, farm: str = "usfarm") -> None:
        self.send_error(2103, f"Market data farm connection is broken:{farm}")

    def farm_ok(self, farm: str = "usfarm") -> None:
        self.send_error(2104, f"Market data farm connection is OK:{farm}")

    def fault_drop_mid_order(self, n: int = 1) -> None:
        """The next ``n`` orders are acknowledged (PreSubmitted), then the client's socket is dropped;
        the orders stay working at the fake and fill on later bars."""
        self._drop_after_ack += n

    def fault_reject_next_order(self, reason: str = "Order rejected by the fake gateway", n: int = 1) -> None:
        """The next ``n`` orders get error 201 and never work."""
        self._rejects.extend([reason] * n)

    def fault_fill_after_cancel(self, n: int = 1) -> None:
        """The next ``n`` cancel requests lose the race: the order fills at the last close, then 10148."""
        self._late_fill_on_cancel += n

    def fault_exec_without_status(self, n: int = 1) -> None:
        """The next ``n`` fills send execDetails and commissionReport but no orderStatus/openOrder."""
        self._exec_without_status += n

    def fault_historical(self, code: int = 162, message: str | None = None, n: int = 1) -> None:
        """The next ``n`` historical requests get error ``code`` (162: pacing violation)."""
        msg = message or "Historical Market Data Service error message:pacing violation (scripted)"
        self._historical_errors.extend([(code, msg)] * n)

    def drop(self, client_id: int | None = None) -> None:
        """Drop one client's socket (or every socket)."""
        for cid, s in list(self.sessions.items()):
            if client_id is None or cid == client_id:
                self._log(f"fault: dropping client {cid}'s socket")
                s.drop()

    def restart(self, next_valid_id: int | None = None) -> None:
        """A gateway restart: every socket is dropped; orders, executions and the account survive (they
        are at IB), and with ``next_valid_id`` the next nextValidId is that, even if it goes backwards."""
        self._log(f"fault: gateway restart" + (f", nextValidId back to {next_valid_id}" if next_valid_id else ""))
        for s in list(self._all_sessions):
            s.drop()
        if next_valid_id is not None:
            self.next_valid_id = next_valid_id

    def _session_closed(self, s: Session) -> None:
        self._all_sessions.discard(s)
        if s.client_id is not None and self.sessions.get(s.client_id) is s:
            del self.sessions[s.client_id]
            self._log(f"client {s.client_id} disconnected")


_DURATION = re.compile(r"^\s*(\d+)\s*([SDWMY])\s*$")


def _hist_window(end_text: str, duration: str, current: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(end, start) sessions of a historical request: ``end_text`` '' is now (the current bar)."""
    end = current
    if end_text.strip():
        digits = re.sub(r"[^0-9]", "", end_text.strip().split(" ")[0].split("-")[0])
        if len(digits) < 8:
            raise ValueError(f"bad endDateTime {end_text!r}")
        end = min(current, pd.Timestamp(digits[:8]))
    m = _DURATION.match(duration)
    if not m:
        raise ValueError(f"bad durationStr {duration!r}")
    n, unit = int(m.group(1)), m.group(2)
    offset = {
        "S": pd.Timedelta(days=max(1, math.ceil(n / 86400))),
        "D": pd.Timedelta(days=n),
        "W": pd.Timedelta(weeks=n),
        "M": pd.DateOffset(months=n),
        "Y": pd.DateOffset(years=n),
    }[unit]
    return end, end - offset + pd.Timedelta(days=1)


def load_replay(symbols: tuple[str, ...], data_config=None) -> MarketData:
    """The validated daily bars the fake replays: the whole history of ``symbols`` from the configured
    source (the shipped sample data by default), on the exchange calendar."""
    from firm.config import DataConfig
    from firm.data.market import load_market_data

    base = data_config or DataConfig()
    cfg = base.model_copy(update={"symbols": tuple(symbols), "start": None, "end": None, "reference": ()})
    return load_market_data(cfg)
