"""Simulated broker: market orders fill at the next bar's open plus slippage, IB-style commission."""

from __future__ import annotations

import numpy as np

from firm.broker.base import Broker, DuplicateOrder
from firm.events import OrderEvent, Side
from firm.portfolio import Book, Costs, Fill, PendingOrder


class SimulatedBroker(Broker):
    """Fills use only the open of the bar after the order: never a price the order could not get."""

    def __init__(self, symbols: tuple[str, ...], cash: float, costs: Costs):
        self._book = Book.new(symbols, cash, costs)
        self._sent: set[str] = set()

    @property
    def book(self) -> Book:
        return self._book

    def on_bar(self, opens: np.ndarray, closes: np.ndarray) -> list[Fill]:
        fills = self._book.fill_at_open(opens)
        self._book.mark(closes)
        return fills

    def submit(self, order: OrderEvent) -> None:
        if order.order_ref in self._sent:
            raise DuplicateOrder(f"order {order.order_ref} was already sent")
        self._sent.add(order.order_ref)
        qty = order.quantity if order.side is Side.BUY else -order.quantity
        self._book.submit(PendingOrder(order.order_ref, self._book.symbols.index(order.symbol), qty, order.decision_id))

    def cancel_all(self) -> list[str]:
        return [o.order_ref for o in self._book.cancel_all()]
