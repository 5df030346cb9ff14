"""The execution engine: the only code that sends orders.

The orders of a bar are written to the write-ahead log and fsynced together (group commit) before
the first of them reaches the broker; fills are appended as they are confirmed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable

from firm.batches import Bars, Committed, Review
from firm.broker.base import Broker
from firm.cio import order_ref
from firm.events import FillEvent, KillSwitchEvent, OrderEvent, Side, ValidatedDecisionEvent
from firm.journal import OrderLog
from firm.portfolio import Fill


class ProjectionMismatch(RuntimeError):
    """The CIO decided on a book the broker does not have: a defect, never traded through."""


class ExecutionEngine:
    def __init__(
        self, broker: Broker, wal: OrderLog, on_kill_switch: Callable[[KillSwitchEvent], None] | None = None
    ):
        self.broker = broker
        self.wal = wal
        self.on_kill_switch = on_kill_switch  # persists the switch (firm.kill_switch) before anything is sent
        self._executions: dict[str, int] = {}  # order_ref -> executions seen, for unique fill ids

    def execute(self, review: Review, bars: Bars) -> tuple[Committed, list[tuple[int, int]]]:
        """Commit rows ``start..stop``: fills at the open, then the approved orders, WAL first."""
        start = review.start
        panel = bars.panel
        if self.broker.book.fingerprint() != review.book.fingerprint():
            raise ProjectionMismatch("the proposal starts from a book the broker does not have")
        orders, fills, equity = [], [], []
        for k in range(start, review.stop):
            self.broker.market_time(bars.opens_at[k])
            raw = self.broker.on_bar(panel.open[k], panel.close[k])
            fills.append(self._fill_events(raw, bars.opens_at[k]))
            if self.broker.book.fingerprint() != review.fingerprints[k - start]:
                raise ProjectionMismatch(f"row {bars.offset + k}: the CIO's projected book differs from the broker's")
            row = [self._order(vd) for vd in review.validated[k - start] if vd.approved]
            if row:
                self.wal.append_many([_wal_record(o) for o in row])
                for order in row:
                    self.broker.submit(order)
            for event in review.alerts[k - start]:
                if isinstance(event, KillSwitchEvent) and event.active and event.trigger != "persisted":
                    row.extend(self._kill_switch(event, bars.stamps[k]))
            orders.append(row)
            equity.append(self.broker.book.equity)
        symbols = self.broker.book.symbols
        rejected = [
            (symbols.index(vd.decision.symbol), 1 if vd.decision.side is Side.BUY else -1)
            for vd in review.validated[-1]
            if not vd.approved
        ]
        book = self.broker.book.copy()
        committed = Committed(start, review.stop, review.validated, review.alerts, orders, fills, equity, book)
        return committed, rejected

    def _kill_switch(self, event: KillSwitchEvent, stamp: str) -> list[OrderEvent]:
        """The kill switch tripped at this committed bar: persist it, cancel every working order and,
        for a flatten trigger, send a market order closing each position (caused by the switch)."""
        if self.on_kill_switch is not None:
            self.on_kill_switch(event)
        ts = event.ts.isoformat()
        cancelled = self.broker.cancel_all()
        if cancelled:
            self.wal.append_many(
                [{"kind": "cancel", "order_ref": ref, "ts": ts, "reason": f"kill switch: {event.id}"} for ref in cancelled]
            )
        if not event.flatten:
            return []
        book = self.broker.book
        orders = [
            OrderEvent(
                id=f"ord:flatten:{symbol}:{stamp}",
                cause_id=event.id,
                ts=event.ts,
                order_ref=f"firm-flatten-{symbol}-{stamp}",
                symbol=symbol,
                side=Side.SELL if position > 0 else Side.BUY,
                quantity=abs(position),
                decision_id=f"flatten:{symbol}:{stamp}",
            )
            for symbol, position in zip(book.symbols, book.positions)
            if position != 0
        ]
        if orders:
            self.wal.append_many([_wal_record(o) for o in orders])
            for order in orders:
                self.broker.submit(order)
        return orders

    @staticmethod
    def _order(vd: ValidatedDecisionEvent) -> OrderEvent:
        d = vd.decision
        return OrderEvent(
            id=f"ord:{d.id.removeprefix('dec:')}",
            cause_id=vd.id,
            ts=d.ts,
            order_ref=order_ref(d),
            symbol=d.symbol,
            side=d.side,
            quantity=d.quantity,
            decision_id=d.id,
        )

    def _fill_events(self, raw: list[Fill], ts: datetime) -> list[FillEvent]:
        """One FillEvent per execution. An order filled in several executions (partial fills at a real
        broker) gets ids ``fill:<ref>``, ``fill:<ref>:2``, ... numbered over the order's whole life."""
        events = []
        for fill in raw:
            n = self._executions.get(fill.order_ref, 0) + 1
            self._executions[fill.order_ref] = n
            event = self._fill_event(fill, ts)
            events.append(event if n == 1 else event.model_copy(update={"id": f"{event.id}:{n}"}))
        return events

    def _fill_event(self, fill: Fill, ts: datetime) -> FillEvent:
        symbol = self.broker.book.symbols[fill.symbol]
        self.wal.append_many(
            [
                {
                    "kind": "fill",
                    "order_ref": fill.order_ref,
                    "ts": ts.isoformat(),
                    "symbol": symbol,
                    "quantity": fill.quantity,
                    "price": f"{fill.price:.4f}",
                    "commission": f"{fill.commission:.2f}",
                }
            ],
            sync=False,
        )
        return FillEvent(
            id=f"fill:{fill.order_ref}",
            cause_id=f"ord:{fill.decision_id.removeprefix('dec:')}",
            ts=ts,
            order_ref=fill.order_ref,
            symbol=symbol,
            side=Side.BUY if fill.quantity > 0 else Side.SELL,
            quantity=abs(fill.quantity),
            price=fill.price,
            commission=fill.commission,
        )


def _wal_record(order: OrderEvent) -> dict:
    return {
        "kind": "order",
        "order_ref": order.order_ref,
        "decision_id": order.decision_id,
        "ts": order.ts.isoformat(),
        "symbol": order.symbol,
        "side": order.side.value,
        "quantity": order.quantity,
        "type": order.order_type,
    }
