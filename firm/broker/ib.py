"""Interactive Brokers behind the same :class:`~firm.broker.base.Broker` interface as the simulator.

One :class:`IBBroker` owns the one IB connection of the execution actor. ib_async is asyncio; the
actor's methods are synchronous (the engine's WAL-then-send sequence is sequential by design), so the
broker runs its own event loop in a daemon thread and every operation is a coroutine submitted to it
(``run_coroutine_threadsafe``) and awaited with a timeout. The loop keeps running between calls, so IB's
messages (fills, status, errors, a dropped socket) are processed as they come, not only while the actor
is inside a call; all state (ib_async's and the order map) is touched only on that thread. (A Ray async
actor would run ib_async on Ray's own loop instead; a thread keeps the actor, the engine and the
simulator unchanged and keeps IB's callbacks off the loop that serves Ray calls.)

- ``submit``: the ExecutionEngine has already written and fsynced the order to the WAL. The order goes
  into the actor's own order map (keyed by its orderRef; a second submit of a ref raises DuplicateOrder)
  and to IB as a market order with ``orderRef`` set, through the rate limiter. Not connected: it waits
  in the map as pending and is sent after the reconnect's reconciliation.
- state: openOrder / orderStatus / execDetails / commissionReport / error events drive each order's state
  machine (:mod:`firm.broker.orders`); ib.fills() is re-read too, so a commission report that ib_async
  attaches without an event (executions from reqExecutions) is not missed.
- ``on_bar``: (after ``market_time``, which in a replay rehearsal advances the fake gateway's clock via
  :mod:`firm.broker.ibreplay` once every sent order is acknowledged) waits until every working order
  whose instrument has an open in this bar is settled (terminal, all executions and commissions in) or
  ``fill_timeout_s`` passes, then books the new executions as Fills, with IB's prices and commissions,
  on the same :class:`~firm.portfolio.Book` arithmetic as the simulator, and marks it to the closes.
- disconnect: ib_async clears its state and does not reconnect; the broker keeps its order map and
  reconnects with exponential backoff behind a circuit breaker, then reconciles against IB's open
  orders, completed orders and executions (by orderRef) before anything is sent again; only orders IB
  never saw are (re)sent, once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from ib_async import IB, ExecutionFilter, MarketOrder, Order, Stock

from firm.broker.base import Broker, DuplicateOrder
from firm.capability import check_broker_owner
from firm.broker.circuit import CircuitBreaker, RateLimiter
from firm.broker.endpoint import Endpoint, mask_account
from firm.broker.orders import IBExecution, IBOrder, ManagedOrder, OrderMap, State, reconcile
from firm.config import IBConfig
from firm.events import OrderEvent, Side
from firm.portfolio import Book, Costs, Fill, PendingOrder

log = logging.getLogger("firm.broker.ib")

PACING_VIOLATION = 162


class IBBroker(Broker):
    def __init__(
        self,
        symbols: tuple[str, ...],
        cash: float,
        costs: Costs,
        cfg: IBConfig,
        ep: Endpoint,
        seed: int = 0,
        on_log: Callable[[str], None] | None = None,
        connect: bool = True,
    ):
        self.cfg = cfg
        self.ep = ep
        self._book = Book.new(symbols, cash, costs)
        self.orders = OrderMap()
        self.limiter = RateLimiter(
            orders_per_minute=cfg.orders_per_minute,
            min_order_spacing_s=cfg.min_order_spacing_s,
            messages_per_s=cfg.messages_per_s,
            historical_per_10min=cfg.historical_per_10min,
            historical_identical_s=cfg.historical_identical_s,
        )
        self.breaker = CircuitBreaker(
            failure_threshold=cfg.breaker_failures,
            cooldown_s=cfg.breaker_cooldown_s,
            base_delay_s=cfg.backoff_base_s,
            max_delay_s=cfg.backoff_max_s,
            seed=seed,
        )
        self.on_log = on_log
        self.lines: list[str] = []  # what the broker logged (masked), for the run's record and tests
        self.reconnects = 0
        self.reconciliations: list = []
        self.errors: list[tuple[int, int, str]] = []
        self._last_exec_time: dt.datetime | None = None
        self._closing = False
        self._reconnecting: asyncio.Task | None = None
        self.replay = None
        if cfg.replay_control:
            from firm.broker.ibreplay import ReplayClock

            self.replay = ReplayClock(cfg.replay_control, cfg.fill_timeout_s)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="ib-broker", daemon=True)
        self._thread.start()
        self._call(self._init(), 10)
        if connect:
            self.connect()

    # plumbing ---------------------------------------------------------------------------------------

    def _call(self, coro, timeout: float | None = None):
        """Run ``coro`` on the broker's loop and wait for it (from the actor's thread)."""
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def _log(self, msg: str) -> None:
        self.lines.append(msg)
        log.info(msg)
        if self.on_log:
            self.on_log(msg)

    async def _init(self) -> None:
        self.ib = IB()
        self.ready = asyncio.Event()  # connected and reconciled
        self.changed = asyncio.Event()
        ib = self.ib
        ib.openOrderEvent += self._on_trade
        ib.orderStatusEvent += self._on_trade
        ib.execDetailsEvent += self._on_exec
        ib.commissionReportEvent += self._on_commission
        ib.errorEvent += self._on_error
        ib.disconnectedEvent += self._on_disconnected

    async def _until(self, pred: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(left, 0.05))
            except asyncio.TimeoutError:
                pass
        return True

    # Broker interface ---------------------------------------------------------------------------------

    @property
    def book(self) -> Book:
        return self._book

    def connect(self) -> None:
        """First connection (raises ConnectionError if IB cannot be reached within connect_timeout_s).
        Refused (CapabilityError) anywhere but in the run's execution actor or a process of its own."""
        check_broker_owner(f"IB connection to {self.ep}")
        ok = self._call(self._connect_loop(self.cfg.connect_timeout_s), self.cfg.connect_timeout_s + 15)
        if not ok:
            raise ConnectionError(f"cannot connect to IB at {self.ep} within {self.cfg.connect_timeout_s:g} s")

    def market_time(self, ts: dt.datetime) -> None:
        """Market time moves to the bar opening at ``ts``. Live: nothing to do. Replay rehearsal: once every
        order sent is acknowledged by the fake, advance its clock to that session."""
        if self.replay is None:
            return
        self._call(self._acknowledged(), self.cfg.fill_timeout_s + 5)
        self.replay.step_to(ts)

    def on_bar(self, opens: np.ndarray, closes: np.ndarray) -> list[Fill]:
        fills = self._call(self._collect(opens), self.cfg.fill_timeout_s * 2 + 10)
        self._book.mark(closes)
        return fills

    def submit(self, order: OrderEvent) -> None:
        qty = order.quantity if order.side is Side.BUY else -order.quantity
        j = self._book.symbols.index(order.symbol)
        adopted = self._call(self._adopt(order.order_ref), 10)
        if adopted is not None:  # recovered from the WAL: IB has it, or reconciliation sent it once
            book = self._book
            book.pending = [p for p in book.pending if p.order_ref != order.order_ref]
            if adopted > 0:
                book.submit(PendingOrder(order.order_ref, j, qty // abs(qty) * adopted, order.decision_id))
            return
        self._book.submit(PendingOrder(order.order_ref, j, qty, order.decision_id))
        mo = ManagedOrder(order.order_ref, order.symbol, qty, order.decision_id)
        self._call(self._submit(mo), self.cfg.fill_timeout_s + 70)

    def restore(self, records: list[dict]) -> None:
        """A restarted actor: rebuild the order map and the book from the write-ahead log's records,
        before connecting (whose reconciliation then adopts what IB has and sends, once, what it never
        got). The book is the WAL's fills at their recorded prices; ``rewind`` makes it exact."""
        if self.ib.isConnected():
            raise RuntimeError("restore the order map from the WAL before connecting to IB")
        self.orders = OrderMap.from_wal(records)
        book = self._book
        for r in records:
            if r.get("kind") == "account":  # a live run's starting account (ExecutionEngine.adopt_account)
                book.cash = float(r["cash"])
                for symbol, (q, avg) in r["positions"].items():
                    j = book.symbols.index(symbol)
                    book.positions[j], book.cost_basis[j] = int(q), q * avg
            if r.get("kind") == "fill" and r.get("order_ref") in self.orders:
                book._apply(book.symbols.index(r["symbol"]), int(r["quantity"]), float(r["price"]), float(r["commission"]))
        for o in self.orders.working():
            left = o.total - int(round(o.booked))
            book.submit(PendingOrder(o.order_ref, book.symbols.index(o.symbol), (1 if o.quantity > 0 else -1) * left, o.decision_id))
        counts = {s.value: sum(o.state is s for o in self.orders.values()) for s in State}
        self._log(f"restored {len(self.orders)} orders from the WAL: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v))

    def rewind(self, book: Book, booked: dict[str, float]) -> None:
        """Resume at an earlier committed point: ``book`` is the account there and ``booked`` the shares
        of each order it holds; every execution after those is booked again (as Fills) by the next bars."""

        async def rewind():
            self._book = book.copy()
            working = {p.order_ref for p in book.pending}
            for o in self.orders.values():
                o.rewind(booked.get(o.order_ref, 0.0))
                # in the book already (working or with fills) or not yet submitted again (its fills wait)
                o.recovered = not (o.order_ref in working or o.booked > 0)

        self._call(rewind(), 10)

    def cancel_all(self) -> list[str]:
        cancelled = self._call(self._cancel_all(), self.cfg.fill_timeout_s + 10)
        gone = set(cancelled) | set(self._call(self._ended(), 10))
        self._book.pending = [p for p in self._book.pending if p.order_ref not in gone]
        return cancelled

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True

        async def shutdown():
            if self._reconnecting is not None:
                self._reconnecting.cancel()
            self.ib.disconnect()

        try:
            self._call(shutdown(), 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            if self.replay is not None:
                self.replay.close()

    # the account (live runs) ---------------------------------------------------------------------------

    def read_account(self) -> "AccountState":
        """The account's positions and cash as IB reports them now (positions, account values, portfolio)."""
        return self._call(self._read_account(), self.cfg.connect_timeout_s + 10)

    async def _read_account(self) -> "AccountState":
        ib = self.ib
        await self._until(lambda: self.ready.is_set() and ib.isConnected(), self.cfg.connect_timeout_s)
        managed = ib.managedAccounts()
        account = self.ep.account or (managed[0] if len(managed) == 1 else "")
        if not account:
            raise ConnectionError(
                f"IB manages several accounts ({', '.join(mask_account(a) for a in managed)}): set broker.ib.account "
                "or FIRM_IB_ACCOUNT to the one this run trades"
            )
        await asyncio.sleep(self.limiter.reserve_message())
        positions = await asyncio.wait_for(ib.reqPositionsAsync(), self.cfg.connect_timeout_s)
        values = {(v.tag, v.currency): v.value for v in ib.accountValues(account) if not v.modelCode}
        currency = "BASE" if ("TotalCashValue", "BASE") in values else "USD"
        if ("TotalCashValue", currency) not in values:
            raise ConnectionError(f"IB reported no TotalCashValue for account {mask_account(account)}")
        held: dict[str, tuple[float, float]] = {}
        for p in positions or ib.positions(account):
            if p.account != account or not p.position:
                continue
            c = p.contract
            key = c.symbol if c.secType == "STK" else f"{c.localSymbol or c.symbol} {c.secType}"
            held[key] = (float(p.position), float(p.avgCost))
        marks = {i.contract.symbol: float(i.marketPrice) for i in ib.portfolio(account) if i.contract.secType == "STK"}
        return AccountState(account, float(values[("TotalCashValue", currency)]), currency, held, marks)

    def fund_from_account(self, state: "AccountState") -> None:
        """Before the warm-up: the book holds the account's equity in the run's symbols (cash + their positions at
        IB's market prices) as cash and no position, so the warm-up's equity path is flat and continuous with the
        account; ``adopt_account`` puts the positions in before the first live session."""
        m = [state.marks.get(s, math.nan) for s in self._book.symbols]
        value = sum(q * (m[j] if math.isfinite(m[j]) else avg) for j, (q, avg) in _held(state, self._book.symbols))
        self._book = Book.new(self._book.symbols, state.cash + value, self._book.costs)

    def adopt_account(self, state: "AccountState") -> Book:
        """The book becomes the account: cash as reported, the shares and cost basis (IB's average cost) of each
        position in the run's symbols, marked to the book's last closes (IB's market price where it has none);
        that equity is the run's first peak. Positions in other symbols stay outside the book."""
        book = self._book
        if book.pending or any(book.positions):
            raise RuntimeError("the account is adopted before the run's first order, on an empty book")
        book.cash = state.cash
        for j, (q, avg) in _held(state, book.symbols):
            book.positions[j] = int(round(q))
            book.cost_basis[j] = q * avg
            if not math.isfinite(book.last_close[j]):
                book.last_close[j] = state.marks.get(book.symbols[j], avg)
        book.equity = book.cash + sum(book.position_value(j) for j in range(len(book.symbols)))
        book.peak_equity, book.prev_drawdown = book.equity, 0.0
        return book.copy()

    # introspection (tests, summary) --------------------------------------------------------------------

    def _refs(self) -> set[str]:
        async def refs():
            return set(self.orders.orders)

        return self._call(refs(), 10)

    def order_states(self) -> dict[str, str]:
        async def states():
            return {o.order_ref: o.state.value for o in self.orders.values()}

        return self._call(states(), 10)

    def ib_positions(self) -> dict[str, float]:
        async def positions():
            return {p.contract.symbol: p.position for p in self.ib.positions()}

        return self._call(positions(), 10)

    def is_ready(self) -> bool:
        async def ready():
            return self.ready.is_set() and self.ib.isConnected()

        return self._call(ready(), 10)

    def wait_ready(self, timeout: float) -> bool:
        return self._call(self._until(lambda: self.ready.is_set(), timeout), timeout + 5)

    # connection -----------------------------------------------------------------------------------------

    async def _connect_once(self) -> None:
        await self.ib.connectAsync(
            self.ep.host,
            self.ep.port,
            clientId=self.ep.client_id,
            timeout=self.cfg.connect_timeout_s,
            account=self.ep.account or "",
        )
        accounts = self.ib.managedAccounts()
        if self.ep.account and self.ep.account not in accounts:
            self.ib.disconnect()
            raise ConnectionError(f"account {mask_account(self.ep.account)} is not managed by this login")

    async def _connect_loop(self, deadline_s: float | None) -> bool:
        """Connect (reconnect) with backoff behind the breaker, then reconcile; False at the deadline."""
        end = None if deadline_s is None else time.monotonic() + deadline_s
        while not self._closing:
            if end is not None and time.monotonic() >= end:
                return False
            if not self.breaker.allow():
                await asyncio.sleep(max(0.01, min(self.breaker.retry_in(), 1.0)))
                continue
            try:
                await self._connect_once()
            except (ConnectionError, OSError, asyncio.TimeoutError, TimeoutError) as err:
                self.breaker.record_failure()
                delay = self.breaker.backoff()
                self._log(f"IB connect to {self.ep} failed ({type(err).__name__}: {err}); breaker "
                          f"{self.breaker.state.value}, next attempt in {delay:.2f} s")  # fmt: skip
                if self.ib.isConnected():
                    self.ib.disconnect()
                await asyncio.sleep(delay)
                continue
            self.breaker.record_success()
            accounts = ", ".join(mask_account(a) for a in self.ib.managedAccounts())
            self._log(f"IB connected: {self.ep} (managed accounts {accounts})")
            try:
                await self._reconcile()
            except (ConnectionError, asyncio.TimeoutError) as err:
                self._log(f"reconciliation interrupted ({err!r}); reconnecting")
                continue
            self.ready.set()
            self.changed.set()
            await self._send_held()
            return True
        return False

    def _on_disconnected(self) -> None:
        self.ready.clear()
        self.changed.set()
        if self._closing:
            return
        self._log(f"IB disconnected from {self.ep}; reconnecting behind the circuit breaker")
        if self._reconnecting is None or self._reconnecting.done():
            self.reconnects += 1
            self._reconnecting = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        await asyncio.sleep(self.breaker.backoff())
        await self._connect_loop(None)

    async def _reconcile(self) -> None:
        """Rebuild the order map's view from IB before anything is sent again."""
        ib = self.ib
        await asyncio.sleep(self.limiter.reserve_message())
        open_trades = await asyncio.wait_for(ib.reqOpenOrdersAsync(), self.cfg.connect_timeout_s)
        await asyncio.sleep(self.limiter.reserve_message())
        completed = await asyncio.wait_for(ib.reqCompletedOrdersAsync(False), self.cfg.connect_timeout_s)
        since = ""
        if self._last_exec_time is not None:
            since = (self._last_exec_time - dt.timedelta(seconds=1)).astimezone(dt.timezone.utc).strftime("%Y%m%d-%H:%M:%S")
        await asyncio.sleep(self.limiter.reserve_message())
        fills = await asyncio.wait_for(ib.reqExecutionsAsync(ExecutionFilter(time=since)), self.cfg.connect_timeout_s)
        open_views = [_order_view(t) for t in [*open_trades, *ib.openTrades()]]
        done_views = [_order_view(t) for t in completed]
        exec_views = [_exec_view(f) for f in [*fills, *ib.fills()]]
        rec = reconcile(self.orders, open_views, done_views, exec_views)
        # a restarted gateway may hand out a nextValidId it has used before: never reuse an order id
        top = max([o.order_id for o in self.orders.values()] + [v.order_id for v in open_views + done_views] + [0])
        ib.client.updateReqId(top + 1)
        self.reconciliations.append(rec)
        self._log(f"reconciled with IB: {rec.summary()}")
        for ref in rec.lost:
            self._log(f"order {ref} lost: {self.orders[ref].reason}")
        for ref in rec.foreign:
            self._log(f"IB reports order {ref} that this run did not send: left alone")
        for ref in rec.resend:
            o = self.orders[ref]
            self._log(f"order {ref} never reached IB: sending it" + (" again (once)" if o.sends else ""))
            await self._send(o)
        self._sync_fills()

    # orders ---------------------------------------------------------------------------------------------

    async def _adopt(self, ref: str) -> int | None:
        """A submit of ``ref``: None if it is new; if the WAL had it (a restart), the shares it still
        has to fill, once; a second submit of it, like any other repeat, is a DuplicateOrder."""
        o = self.orders.orders.get(ref)
        if o is None:
            return None
        if not o.recovered:
            raise DuplicateOrder(f"order {ref} was already sent")
        o.recovered = False
        self._log(f"order {ref} is in the WAL from before the restart ({o.state.value}): adopted, not sent again")
        return o.total - int(round(o.booked))

    async def _ended(self) -> list[str]:
        return [o.order_ref for o in self.orders.values() if o.state in (State.CANCELLED, State.REJECTED)]

    async def _submit(self, mo: ManagedOrder) -> None:
        self.orders.add(mo)
        if self.ready.is_set() and self.ib.isConnected():
            await self._send(mo)
        else:
            self._log(f"order {mo.order_ref} held: not connected; it is sent after the reconnect's reconciliation")

    async def _send(self, mo: ManagedOrder) -> None:
        if mo.in_flight:  # already waiting for its slot in the rate limiter: that send goes out, not this
            return
        mo.in_flight = True
        try:
            delay = self.limiter.reserve_order()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self.ib.isConnected():
                return  # reconciliation after the reconnect sends it
            self._place(mo)
        finally:
            mo.in_flight = False

    def _place(self, mo: ManagedOrder) -> None:
        order = MarketOrder(
            "BUY" if mo.quantity > 0 else "SELL",
            mo.total,
            orderRef=mo.order_ref,
            tif=self.cfg.order_tif,
            account=self.ep.account or "",
        )
        mo.sends += 1
        try:
            trade = self.ib.placeOrder(Stock(mo.symbol, "SMART", "USD"), order)
        except ConnectionError:
            mo.sends -= 1  # nothing went out
            return
        self.orders.bind(mo.order_ref, order_id=trade.order.orderId)

    async def _acknowledged(self) -> None:
        ok = await self._until(
            lambda: self.ready.is_set()
            and all(o.state is not State.PENDING or not o.sends for o in self.orders.values()),
            self.cfg.fill_timeout_s,
        )
        if not ok:
            self._log("some orders were not acknowledged by IB in time")

    async def _collect(self, opens: np.ndarray) -> list[Fill]:
        symbols = self._book.symbols

        def expected() -> list[ManagedOrder]:
            return [
                o
                for o in self.orders.values()
                if not o.settled and not o.recovered and math.isfinite(float(opens[symbols.index(o.symbol)]))
            ]

        self._sync_fills()
        ok = await self._until(lambda: self.ready.is_set() and not expected(), self.cfg.fill_timeout_s)
        if not ok:
            waiting = ", ".join(f"{o.order_ref} ({o.state.value})" for o in expected()) or "the connection"
            self._log(f"bar closed while waiting for {waiting}: their fills count at a later bar")
        return self._book_fills()

    def _book_fills(self) -> list[Fill]:
        book = self._book
        fills: list[Fill] = []
        done: set[str] = set()
        remaining: dict[str, int] = {}
        for o in self.orders.values():
            if o.recovered:  # from the WAL, not yet submitted again by the resumed engine: not in the book yet
                continue
            new = o.take_fills()
            j = book.symbols.index(o.symbol)
            sign = 1 if o.quantity > 0 else -1
            for ex in new:
                qty = sign * int(round(ex.shares))
                book._apply(j, qty, ex.price, ex.commission)
                fills.append(Fill(o.order_ref, j, qty, ex.price, ex.commission, o.decision_id))
            if o.terminal and o.settled:
                done.add(o.order_ref)
            elif new:
                remaining[o.order_ref] = sign * int(round(o.remaining))
        if done or remaining:
            book.pending = [
                p if p.order_ref not in remaining else PendingOrder(p.order_ref, p.symbol, remaining[p.order_ref], p.decision_id)
                for p in book.pending
                if p.order_ref not in done
            ]
        return fills

    async def _cancel_all(self) -> list[str]:
        targets = self.orders.working()
        for o in targets:
            if not o.sends or not o.order_id or not self.ib.isConnected():
                if not o.sends:
                    o.on_status("Cancelled")  # never left the actor
                continue
            await asyncio.sleep(self.limiter.reserve_message())
            self.ib.cancelOrder(Order(orderId=o.order_id, clientId=self.ep.client_id, permId=o.perm_id))
        await self._until(lambda: all(o.terminal for o in targets), self.cfg.fill_timeout_s)
        return [o.order_ref for o in targets if o.state is State.CANCELLED]

    # IB events (on the broker's loop) ------------------------------------------------------------------

    def _find(self, order) -> ManagedOrder | None:
        oid = order.orderId if order.clientId in (0, self.ep.client_id) else 0
        return self.orders.find(order.orderRef, order.permId, oid)

    def _on_trade(self, trade) -> None:
        o = self._find(trade.order)
        if o is not None:
            self.orders.bind(o.order_ref, trade.order.orderId, trade.order.permId)
            o.on_status(trade.orderStatus.status, trade.orderStatus.filled or None)
        self._sync_fills()
        self.changed.set()

    def _on_exec(self, trade, fill) -> None:
        self._sync_fills()
        self.changed.set()

    def _on_commission(self, trade, fill, report) -> None:
        self._sync_fills()
        self.changed.set()

    def _sync_fills(self) -> None:
        """Feed every execution and commission ib_async holds into the order map (idempotent by execId)."""
        for f in self.ib.fills():
            ex = f.execution
            o = self.orders.find(ex.orderRef, ex.permId, ex.orderId if ex.clientId == self.ep.client_id else 0)
            if o is None:
                continue
            o.on_execution(ex.execId, ex.shares, ex.price, str(f.time))
            if f.commissionReport.execId:
                o.on_commission(ex.execId, f.commissionReport.commission)
            if isinstance(f.time, dt.datetime) and (self._last_exec_time is None or f.time > self._last_exec_time):
                self._last_exec_time = f.time

    def _on_error(self, req_id: int, code: int, message: str, contract) -> None:
        self.errors.append((req_id, code, message))
        if code == PACING_VIOLATION:
            self.limiter.pacing_violation()
            self._log(f"IB pacing violation (162) on request {req_id}: historical requests held back")
        elif code in (1100, 1101, 1102):
            self._log(f"IB connectivity {code}: {message}")
            if code == 1101:  # restored, data lost: rebuild the view before sending more
                self.ready.clear()
                asyncio.ensure_future(self._resync())
        elif req_id > 0:
            o = self.orders.find(order_id=req_id)
            if o is not None and o.on_error(code, message):
                self._log(f"order {o.order_ref}: IB error {code} {message} -> {o.state.value}")
        self.changed.set()

    async def _resync(self) -> None:
        try:
            await self._reconcile()
        finally:
            if self.ib.isConnected():
                self.ready.set()
                self.changed.set()
                await self._send_held()

    async def _send_held(self) -> None:
        """Orders submitted while reconciliation was sending (not ready, so held) and not in its resend
        list: they never left the actor; send them now, once."""
        for o in list(self.orders.values()):
            if o.state is State.PENDING and not o.sends and not o.perm_id and self.ready.is_set():
                self._log(f"order {o.order_ref} was held during reconciliation: sending it")
                await self._send(o)


@dataclass(frozen=True)
class AccountState:
    """The account as IB reported it: ``account`` is the full id (never printed: ``mask_account``)."""

    account: str
    cash: float  # TotalCashValue
    currency: str  # of ``cash``: BASE (the account's base currency) where IB reports it, else USD
    positions: dict[str, tuple[float, float]]  # symbol (non-stocks: "local symbol SECTYPE") -> (shares, average cost)
    marks: dict[str, float]  # symbol -> IB's market price (portfolio)

    def split(self, symbols: tuple[str, ...]) -> tuple[dict[str, int], dict[str, float]]:
        """(positions in ``symbols``, positions outside them)."""
        inside = {s: int(round(q)) for s, (q, _) in self.positions.items() if s in symbols}
        return inside, {s: q for s, (q, _) in self.positions.items() if s not in symbols}


def _held(state: AccountState, symbols: tuple[str, ...]) -> list[tuple[int, tuple[float, float]]]:
    return [(symbols.index(s), qa) for s, qa in state.positions.items() if s in symbols]


def _order_view(trade) -> IBOrder:
    return IBOrder(
        order_ref=trade.order.orderRef or "",
        order_id=trade.order.orderId,
        perm_id=trade.order.permId,
        status=trade.orderStatus.status,
        filled=float(trade.orderStatus.filled or 0.0),
    )


def _exec_view(fill) -> IBExecution:
    ex, report = fill.execution, fill.commissionReport
    return IBExecution(
        exec_id=ex.execId,
        order_ref=ex.orderRef or "",
        order_id=ex.orderId,
        perm_id=ex.permId,
        shares=float(ex.shares),
        price=float(ex.price),
        time=str(fill.time),
        commission=report.commission if report.execId else None,
    )
