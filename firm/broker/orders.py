"""Orders at IB, as the execution actor tracks them: a state machine per order, the map keyed by
orderRef, and the reconciliation after a reconnect. Pure: no I/O, no ib_async objects.

States: pending (in the WAL, not acknowledged by IB), submitted, partially filled, filled, cancelled,
rejected. They are driven by IB's orderStatus strings (``on_status``), its executions
(``on_execution``, keyed by execId so a replayed execution is counted once), commission reports
(``on_commission``, before or after their execution) and error codes (``on_error``). Executions are
facts: the filled quantity is the sum of the executions seen, whatever the status strings say. An
illegal transition (a stale ``Submitted`` after ``Filled``, say) is logged and ignored, never raised.

Never duplicated, never lost: an orderRef is sent once; after a reconnect :func:`reconcile` matches
IB's open orders, completed orders and executions by orderRef and only an order IB does not know at
all (it never reached IB) may be sent again, exactly once. An order IB still does not know after its
resend is declared lost (rejected, with the reason), never sent a third time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum

from firm.broker.base import DuplicateOrder

log = logging.getLogger("firm.broker.orders")


class State(str, Enum):
    PENDING = "pending"
    SUBMITTED = "submitted"
    PARTIAL = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


TERMINAL = frozenset({State.FILLED, State.CANCELLED, State.REJECTED})

# IB orderStatus strings (ib_async.OrderStatus) -> our state; executions decide partial vs filled
IB_STATUS = {
    "ApiPending": State.PENDING,
    "PendingSubmit": State.PENDING,
    "PreSubmitted": State.SUBMITTED,
    "Submitted": State.SUBMITTED,
    "ApiUpdate": State.SUBMITTED,
    "PendingCancel": State.SUBMITTED,  # still working until IB says Cancelled
    "Filled": State.FILLED,
    "Cancelled": State.CANCELLED,
    "ApiCancelled": State.CANCELLED,
    "Inactive": State.REJECTED,
    "ValidationError": State.REJECTED,
}

_ALLOWED = {
    State.PENDING: {State.SUBMITTED, State.PARTIAL, State.FILLED, State.CANCELLED, State.REJECTED},
    State.SUBMITTED: {State.SUBMITTED, State.PARTIAL, State.FILLED, State.CANCELLED, State.REJECTED},
    State.PARTIAL: {State.PARTIAL, State.FILLED, State.CANCELLED},
    State.FILLED: set(),
    State.CANCELLED: set(),
    State.REJECTED: set(),
}

# error codes that end an order: rejections, and 202 (cancel confirmed)
REJECT_CODES = frozenset({103, 104, 105, 106, 107, 109, 110, 135, 200, 201, 203, 321, 382, 383, 387})
CANCEL_CODE = 202


@dataclass
class Execution:
    exec_id: str
    shares: float  # unsigned
    price: float
    time: str = ""
    commission: float | None = None
    reported: bool = False  # handed to the book (a Fill) already


@dataclass
class ManagedOrder:
    order_ref: str
    symbol: str
    quantity: int  # signed: + buy, - sell
    decision_id: str
    state: State = State.PENDING
    order_id: int = 0
    perm_id: int = 0
    sends: int = 0  # placeOrder calls for this orderRef (at most 2: the send and one resend)
    ib_filled: float = 0.0  # cumulative filled quantity IB reported in orderStatus
    executions: dict[str, Execution] = field(default_factory=dict)
    early_commissions: dict[str, float] = field(default_factory=dict)  # report before its execution
    reason: str = ""
    history: list[str] = field(default_factory=list)
    booked: float = 0.0  # shares the book already holds from before a restart (fill records in the WAL)
    recovered: bool = False  # rebuilt from the WAL by a restarted actor; not yet claimed by a submit
    in_flight: bool = False  # a send is waiting for the rate limiter (not yet counted in ``sends``)

    # quantities ------------------------------------------------------------------------------------

    @property
    def total(self) -> int:
        return abs(self.quantity)

    @property
    def filled(self) -> float:
        return sum(e.shares for e in self.executions.values())

    @property
    def remaining(self) -> float:
        return self.total - self.filled

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def settled(self) -> bool:
        """Terminal, every execution IB counted is here, and every execution has its commission."""
        return (
            self.terminal
            and self.filled >= self.ib_filled
            and all(e.commission is not None for e in self.executions.values())
        )

    # transitions -------------------------------------------------------------------------------------

    def _move(self, new: State, why: str) -> bool:
        if new == self.state and new not in TERMINAL:
            return True
        if new not in _ALLOWED[self.state]:
            msg = f"{self.order_ref}: ignored {self.state.value} -> {new.value} ({why})"
            self.history.append(msg)
            log.warning(msg)
            return False
        self.history.append(f"{self.state.value} -> {new.value} ({why})")
        self.state = new
        return True

    def on_status(self, status: str, filled: float | None = None) -> bool:
        """An orderStatus (or openOrder/completedOrder state). Returns False if it was ignored."""
        if filled is not None and filled > self.ib_filled:
            self.ib_filled = filled
        new = IB_STATUS.get(status)
        if new is None:
            self.history.append(f"unknown IB status {status!r}")
            log.warning("%s: unknown IB status %r", self.order_ref, status)
            return False
        if new is State.PENDING:
            return self.state is State.PENDING
        if new is State.SUBMITTED and 0 < self.filled < self.total:
            new = State.PARTIAL
        if new is State.FILLED and self.state is State.FILLED:
            return True
        if new is State.CANCELLED and self.state is State.CANCELLED:
            return True
        return self._move(new, f"status {status}")

    def on_execution(self, exec_id: str, shares: float, price: float, time: str = "") -> bool:
        """An execution; False if this execId was seen already (replayed by reqExecutions)."""
        if exec_id in self.executions:
            return False
        ex = Execution(exec_id, float(shares), float(price), time)
        if exec_id in self.early_commissions:
            ex.commission = self.early_commissions.pop(exec_id)
        self.executions[exec_id] = ex
        self.ib_filled = max(self.ib_filled, self.filled)
        if self.filled > self.total:
            self.history.append(f"overfilled: {self.filled:g} of {self.total}")
            log.error("%s: executions add up to %g, more than the order's %d", self.order_ref, self.filled, self.total)
        if self.filled >= self.total:
            if self.state is not State.FILLED:
                if self.terminal:  # a fill racing a cancel: the execution is a fact
                    self.history.append(f"{self.state.value} -> filled (execution {exec_id} after {self.state.value})")
                    log.warning("%s: execution %s after %s: filled", self.order_ref, exec_id, self.state.value)
                    self.state = State.FILLED
                else:
                    self._move(State.FILLED, f"execution {exec_id}")
        elif not self.terminal:
            self._move(State.PARTIAL, f"execution {exec_id}")
        else:
            self.history.append(f"execution {exec_id} after {self.state.value}")
        return True

    def on_commission(self, exec_id: str, commission: float) -> None:
        ex = self.executions.get(exec_id)
        if ex is None:
            self.early_commissions[exec_id] = float(commission)
        elif ex.commission is None:
            ex.commission = float(commission)

    def on_error(self, code: int, message: str) -> bool:
        if code == CANCEL_CODE:
            return self.on_status("Cancelled")
        if code in REJECT_CODES and not self.filled:
            self.reason = f"{code}: {message}"
            if self.state is State.CANCELLED:  # ib_async marks a rejected trade Cancelled before the error
                self.history.append(f"cancelled -> rejected (error {code})")
                self.state = State.REJECTED
                return True
            return self._move(State.REJECTED, f"error {code}")
        return False

    def take_fills(self) -> list[Execution]:
        """Executions with their commission not yet handed to the book; marks them handed. The first
        ``booked`` shares of executions (in arrival order) are the book's already: marked, not returned."""
        out = []
        for e in self.executions.values():
            if e.reported:
                continue
            if self.booked > 0:
                if self.booked + 1e-9 < e.shares:
                    log.error("%s: execution %s (%g) straddles the %g shares booked before the restart",
                              self.order_ref, e.exec_id, e.shares, self.booked)  # fmt: skip
                self.booked = max(0.0, self.booked - e.shares)
                e.reported = True
                continue
            if e.commission is None:
                continue
            e.reported = True
            out.append(e)
        return out

    def rewind(self, booked: float) -> None:
        """The book went back to a point where it held ``booked`` shares of this order: hand every
        execution after those to it again."""
        self.booked = booked
        for e in self.executions.values():
            e.reported = False


class OrderMap:
    """The actor's own order map, keyed by orderRef (ib_async forgets its trades on a disconnect)."""

    def __init__(self) -> None:
        self.orders: dict[str, ManagedOrder] = {}
        self._by_perm: dict[int, str] = {}
        self._by_id: dict[int, str] = {}

    def __contains__(self, ref: str) -> bool:
        return ref in self.orders

    def __getitem__(self, ref: str) -> ManagedOrder:
        return self.orders[ref]

    def __len__(self) -> int:
        return len(self.orders)

    def values(self):
        return self.orders.values()

    def add(self, order: ManagedOrder) -> ManagedOrder:
        if order.order_ref in self.orders:
            raise DuplicateOrder(f"order {order.order_ref} was already sent")
        self.orders[order.order_ref] = order
        return order

    def bind(self, ref: str, order_id: int = 0, perm_id: int = 0) -> None:
        """Record the ids IB gave ``ref`` (order ids change if it is resent on a new connection)."""
        o = self.orders[ref]
        if order_id:
            o.order_id = order_id
            self._by_id[order_id] = ref
        if perm_id:
            o.perm_id = perm_id
            self._by_perm[perm_id] = ref

    def find(self, order_ref: str = "", perm_id: int = 0, order_id: int = 0) -> ManagedOrder | None:
        """By orderRef first, then permId, then orderId (of this connection's client id)."""
        ref = order_ref if order_ref in self.orders else self._by_perm.get(perm_id) or self._by_id.get(order_id)
        return self.orders.get(ref) if ref else None

    def working(self) -> list[ManagedOrder]:
        return [o for o in self.orders.values() if not o.terminal]

    @classmethod
    def from_wal(cls, records: list[dict]) -> "OrderMap":
        """The order map a restarted actor rebuilds from its write-ahead log, before it asks IB anything.

        Every order record becomes an order counted as sent once (written to the WAL, so it may have
        reached IB); its fill records are shares already booked; one filled in full per the WAL is
        filled, one with a cancel record cancelled, one with some fills partially filled. The rest are
        pending until reconciliation: what IB reports is adopted, what it does not know is sent once.
        """
        om = cls()
        cancelled: set[str] = set()
        for r in records:
            kind, ref = r.get("kind"), r.get("order_ref", "")
            if kind == "order":
                if ref in om:
                    log.error("order %s appears twice in the WAL: the second record is ignored", ref)
                    continue
                qty = int(r["quantity"]) * (1 if str(r["side"]).upper() == "BUY" else -1)
                om.add(ManagedOrder(ref, r["symbol"], qty, r["decision_id"], sends=1, recovered=True))
            elif kind == "fill":
                if ref not in om:
                    log.error("the WAL has a fill of %s before (or without) its order record", ref)
                    continue
                om[ref].booked += abs(float(r["quantity"]))
            elif kind == "cancel":
                cancelled.add(ref)
        for o in om.values():
            o.history.append(f"rebuilt from the WAL ({o.booked:g} of {o.total} booked)")
            if o.booked >= o.total:
                o.state = State.FILLED
            elif o.order_ref in cancelled:
                o.state = State.CANCELLED
            elif o.booked > 0:
                o.state = State.PARTIAL
        return om


# reconciliation ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IBOrder:
    """An order as IB reports it (openOrder or completedOrder)."""

    order_ref: str
    order_id: int
    perm_id: int
    status: str
    filled: float = 0.0


@dataclass(frozen=True)
class IBExecution:
    exec_id: str
    order_ref: str
    order_id: int
    perm_id: int
    shares: float
    price: float
    time: str = ""
    commission: float | None = None


@dataclass
class Reconciliation:
    live: list[str] = field(default_factory=list)  # working at IB
    filled: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)  # cancelled or rejected at IB
    resend: list[str] = field(default_factory=list)  # unknown to IB: never reached it; safe to send (once)
    lost: list[str] = field(default_factory=list)  # unknown to IB after its one resend: never sent again
    foreign: list[str] = field(default_factory=list)  # orderRefs IB knows that are not in the map
    new_executions: int = 0

    def summary(self) -> str:
        parts = [f"{k} {len(v)}" for k, v in vars(self).items() if isinstance(v, list) and v]
        return ", ".join(parts + [f"new executions {self.new_executions}"])


def reconcile(
    orders: OrderMap,
    open_orders: list[IBOrder],
    completed: list[IBOrder],
    executions: list[IBExecution],
    prefix: str = "firm-",
) -> Reconciliation:
    """Bring ``orders`` up to date with what IB reports after a (re)connect, and say what to do.

    Every order IB reports is matched by orderRef (its ids are refreshed: a new connection may number
    differently); executions are added once by execId. A pending order in the map that IB knows
    nowhere and never acknowledged never reached IB: ``resend`` if it was sent at most once, else
    ``lost``. Nothing IB knows or ever acknowledged is in ``resend``.
    """
    rec = Reconciliation()
    known: set[str] = set()
    for ib_order, is_open in [(o, True) for o in open_orders] + [(o, False) for o in completed]:
        o = orders.find(ib_order.order_ref, ib_order.perm_id, ib_order.order_id if is_open else 0)
        if o is None:
            if ib_order.order_ref.startswith(prefix):
                rec.foreign.append(ib_order.order_ref)
            continue
        known.add(o.order_ref)
        orders.bind(o.order_ref, ib_order.order_id if is_open else 0, ib_order.perm_id)
        o.on_status(ib_order.status, ib_order.filled)
    for ex in executions:
        o = orders.find(ex.order_ref, ex.perm_id, 0)
        if o is None:
            continue
        known.add(o.order_ref)
        if o.on_execution(ex.exec_id, ex.shares, ex.price, ex.time):
            rec.new_executions += 1
        if ex.commission is not None:
            o.on_commission(ex.exec_id, ex.commission)
    for o in orders.values():
        if o.order_ref in known:
            bucket = {State.FILLED: rec.filled, State.CANCELLED: rec.cancelled, State.REJECTED: rec.cancelled}
            bucket.get(o.state, rec.live).append(o.order_ref)
        elif not o.terminal:
            if o.state is State.PENDING and not o.perm_id and o.sends <= 1:
                rec.resend.append(o.order_ref)
            else:
                o.reason = (
                    "unknown to IB after its resend: lost before it reached IB"
                    if o.state is State.PENDING and not o.perm_id
                    else "acknowledged by IB once, no longer reported by it: never resent"
                )
                o._move(State.REJECTED, "lost")
                rec.lost.append(o.order_ref)
    return rec
