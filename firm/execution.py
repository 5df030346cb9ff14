"""The execution engine: the only code that sends orders.

The orders of a bar are written to the write-ahead log and fsynced together (group commit) before
the first of them reaches the broker; fills are appended as they are confirmed.

A restarted engine (``recovered``: the WAL's records) resumes the call it died in: Ray retries that
``execute`` on the restarted actor with the same rows, so the first call after a restart rewinds the
broker to the book those rows start from (which this engine handed out before it died) and commits the
rows again. What the WAL already holds (orders, the n-th fill of an order, cancels) is not written or
sent again: an order the WAL has is adopted by the broker (reconciled with IB, never sent twice), and
the WAL ends exactly as an uninterrupted run would have written it. Live, a restart between sessions
goes on at the next ``open_bar`` from the book the WAL's fills give (at their recorded prices); an
``execute`` killed in the middle of a live session is not replayed exactly (its ``open_bar`` is lost).
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable

from firm.batches import Bars, Committed, Opened, Review
from firm.broker.base import Broker
from firm.broker.endpoint import mask_account
from firm.cio import order_ref
from firm.events import AccountSnapshotEvent, FillEvent, KillSwitchEvent, OrderEvent, ProjectionDriftEvent, Side, ValidatedDecisionEvent
from firm.journal import OrderLog
from firm.portfolio import Book, Fill


class ProjectionMismatch(RuntimeError):
    """The CIO decided on a book the broker does not have: a defect, never traded through."""


class ExecutionEngine:
    def __init__(
        self,
        broker: Broker,
        wal: OrderLog,
        on_kill_switch: Callable[[KillSwitchEvent], None] | None = None,
        recovered: list[dict] | None = None,
    ):
        self.broker = broker
        self.wal = wal
        self.on_kill_switch = on_kill_switch  # persists the switch (firm.kill_switch) before anything is sent
        self._executions: dict[str, int] = {}  # order_ref -> executions seen, for unique fill ids
        self._opened: dict[int, Opened] = {}  # live: global row -> what open_bar took from the broker
        self._resuming = recovered is not None  # restarted: the first execute rewinds the broker
        self._recovered = list(recovered or [])  # the WAL's records at the restart
        self._logged_orders: set[str] = set()  # what the WAL holds already (a restart): never written again
        self._logged_fills: dict[str, int] = {}
        self._logged_cancels: set[str] = set()

    def execute(self, review: Review, bars: Bars) -> tuple[Committed, list[tuple[int, int]]]:
        """Commit rows ``start..stop``: fills at the open, then the approved orders, WAL first."""
        start = review.start
        panel = bars.panel
        if self._resuming:  # Ray retries the call the engine died in: back to the book its rows start from
            self._resume(review.book, bars.opens_at[start])
        if self.broker.book.fingerprint() != review.book.fingerprint():
            raise ProjectionMismatch("the proposal starts from a book the broker does not have")
        orders, fills, equity, drift = [], [], [], []
        for k in range(start, review.stop):
            opened = self._opened.pop(bars.offset + k, None)
            if opened is None:
                self.broker.market_time(bars.opens_at[k])
                raw = self.broker.on_bar(panel.open[k], panel.close[k])
                fills.append(self._fill_events(raw, bars.opens_at[k]))
                drift.append([])
            else:  # live: open_bar took this row's fills before the CIO decided it
                fills.append(opened.fills)
                drift.append(opened.drift)
            if self.broker.book.fingerprint() != review.fingerprints[k - start]:
                raise ProjectionMismatch(
                    f"row {bars.offset + k}: the CIO's projected book differs from the broker's "
                    f"(cash, positions, working orders, peak equity: {review.fingerprints[k - start]} "
                    f"projected, {self.broker.book.fingerprint()} at the broker)"
                )
            row = [self._order(vd) for vd in review.validated[k - start] if vd.approved]
            if row:
                self._log_orders(row)
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
        committed = Committed(start, review.stop, review.validated, review.alerts, orders, fills, equity, book, drift)
        return committed, rejected

    def open_bar(self, bars: Bars) -> Opened:
        """Live trading: take the fills and marks of the first row of ``bars`` from the broker before the CIO
        decides it, so the CIO projects from the broker's book, not from its own model of the fills.

        Where the broker's book differs from that model (the projection replay checks strictly: next open,
        modelled slippage and commission, every order filled), a :class:`ProjectionDriftEvent` records both
        books and why, and the run goes on from the broker's. ``execute`` then commits this row without
        asking the broker again."""
        panel = bars.panel
        opens_at = bars.opens_at[0]
        if self._resuming:  # live, restarted: the book is the WAL's (its fills at their recorded prices)
            self._resume(self.broker.book, None)
        projected = self.broker.book.copy()
        modelled = projected.fill_at_open(panel.open[0])
        projected.mark(panel.close[0])
        self.broker.market_time(opens_at)
        raw = self.broker.on_bar(panel.open[0], panel.close[0])
        events = self._fill_events(raw, opens_at)
        book = self.broker.book
        drift = []
        if book.fingerprint() != projected.fingerprint():
            drift.append(_drift_event(projected, book, modelled, raw, events, bars))
        self._opened[bars.offset] = Opened(book.copy(), events, drift)
        return self._opened[bars.offset]

    def adopt_account(self, ts: datetime) -> AccountSnapshotEvent | None:
        """Live trading, before the first session: the broker's book becomes the account as the broker reports
        it now (``IBBroker.adopt_account``), recorded in the WAL (a restarted actor starts from it) and returned
        as the event to journal. None for a broker with no account to read (the simulator)."""
        read = getattr(self.broker, "read_account", None)
        if read is None:
            return None
        state = read()
        book = self.broker.adopt_account(state)
        inside, outside = state.split(book.symbols)
        cost = {s: avg for s, (q, avg) in state.positions.items() if s in inside}
        self.wal.append_many(
            [{"kind": "account", "ts": ts.isoformat(), "cash": state.cash, "currency": state.currency,
              "positions": {s: [q, cost[s]] for s, q in inside.items()}}]  # fmt: skip
        )
        return AccountSnapshotEvent(
            id=f"account:{ts:%Y%m%dT%H%M}",
            ts=ts,
            account=mask_account(state.account),
            source=f"IB: positions, TotalCashValue ({state.currency}), market prices of the portfolio",
            cash=state.cash,
            currency=state.currency,
            positions=inside,
            average_cost=cost,
            outside=outside,
            equity=round(book.equity, 6),
        )

    def _kill_switch(self, event: KillSwitchEvent, stamp: str) -> list[OrderEvent]:
        """The kill switch tripped at this committed bar: persist it, cancel every working order and,
        for a flatten trigger, send a market order closing each position (caused by the switch)."""
        if self.on_kill_switch is not None:
            self.on_kill_switch(event)
        ts = event.ts.isoformat()
        cancelled = [ref for ref in self.broker.cancel_all() if ref not in self._logged_cancels]
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
            self._log_orders(orders)
            for order in orders:
                self.broker.submit(order)
        return orders

    def _resume(self, book: Book, start_ts: datetime | None) -> None:
        """First call after a restart: put the broker at ``book``, the account before the market opened at
        ``start_ts`` (None: after every fill in the WAL), and learn what the WAL holds."""
        rewind = getattr(self.broker, "rewind", None)
        if rewind is None:
            raise RuntimeError(f"{type(self.broker).__name__} cannot resume a run from its write-ahead log")
        booked: dict[str, float] = {}
        before: dict[str, int] = {}
        for r in self._recovered:
            ref = r.get("order_ref", "")
            if r.get("kind") == "order":
                self._logged_orders.add(ref)
            elif r.get("kind") == "cancel":
                self._logged_cancels.add(ref)
            elif r.get("kind") == "fill":
                self._logged_fills[ref] = self._logged_fills.get(ref, 0) + 1
                if start_ts is None or datetime.fromisoformat(r["ts"]) < start_ts:
                    booked[ref] = booked.get(ref, 0.0) + abs(float(r["quantity"]))
                    before[ref] = before.get(ref, 0) + 1
        rewind(book, booked)
        self._executions = before
        self._resuming, self._recovered = False, []

    def _log_orders(self, orders: list[OrderEvent]) -> None:
        new = [_wal_record(o) for o in orders if o.order_ref not in self._logged_orders]
        if new:
            self.wal.append_many(new)

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
            event = self._fill_event(fill, ts, log=n > self._logged_fills.get(fill.order_ref, 0))
            events.append(event if n == 1 else event.model_copy(update={"id": f"{event.id}:{n}"}))
        return events

    def _fill_event(self, fill: Fill, ts: datetime, log: bool = True) -> FillEvent:
        """The FillEvent of ``fill``, and its WAL record unless ``log`` is False (the WAL has it)."""
        symbol = self.broker.book.symbols[fill.symbol]
        if log:
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


def _drift_event(
    projected: Book, actual: Book, modelled: list[Fill], raw: list[Fill], events: list[FillEvent], bars: Bars
) -> ProjectionDriftEvent:
    """Both books after the first row of ``bars`` and, order by order, how the broker's fills differ from the model."""
    symbols = actual.symbols

    def totals(fills: list[Fill]) -> dict[str, tuple[int, int, float, float]]:
        out: dict[str, tuple[int, int, float, float]] = {}
        for f in fills:
            j, q, notional, fee = out.get(f.order_ref, (f.symbol, 0, 0.0, 0.0))
            out[f.order_ref] = (j, q + f.quantity, notional + f.quantity * f.price, fee + f.commission)
        return out

    model, real = totals(modelled), totals(raw)
    why = []
    for ref in [*model, *(r for r in real if r not in model)]:
        j, mq, mn, mc = model.get(ref, (real.get(ref, (0,))[0], 0, 0.0, 0.0))
        _, aq, an, ac = real.get(ref, (j, 0, 0.0, 0.0))
        mp, ap = (mn / mq if mq else 0.0), (an / aq if aq else 0.0)
        head = f"{ref} ({symbols[j]})"
        if not aq:
            why.append(f"{head}: not filled, projected {mq:+d} at {mp:.4f}")
            continue
        if not mq:
            why.append(f"{head}: filled {aq:+d} at {ap:.4f}, not projected (no open for it in this bar)")
            continue
        parts = []
        if aq != mq:
            parts.append(f"filled {aq:+d} of {mq:+d} (partial)")
        if abs(ap - mp) > 5e-5:
            parts.append(f"at {ap:.4f} not {mp:.4f} ({(ap / mp - 1) * 1e4 * (1 if mq > 0 else -1):+.1f} bps adverse)")
        if abs(ac - mc) > 0.005:
            parts.append(f"commission {ac:.2f} not {mc:.2f}")
        if parts:
            why.append(f"{head}: " + ", ".join(parts))
    why.append(f"cash {actual.cash - projected.cash:+,.2f} against the projection")
    stamp = bars.stamps[0]
    return ProjectionDriftEvent(
        id=f"drift:{stamp}",
        cause_id=events[0].id if events else None,
        ts=bars.closes_at[0],
        projected_cash=round(projected.cash, 6),
        actual_cash=round(actual.cash, 6),
        projected_equity=round(projected.equity, 6),
        actual_equity=round(actual.equity, 6),
        projected_positions={s: q for s, q in zip(symbols, projected.positions) if q},
        actual_positions={s: q for s, q in zip(symbols, actual.positions) if q},
        projected_working={o.order_ref: o.quantity for o in projected.pending},
        actual_working={o.order_ref: o.quantity for o in actual.pending},
        reason="the broker's book differs from the projection: " + "; ".join(why),
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
