"""The broker interface the execution actor drives; the simulated broker and IB implement it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

import numpy as np

from firm.events import OrderEvent
from firm.portfolio import Book, Fill


class Broker(ABC):
    @property
    @abstractmethod
    def book(self) -> Book:
        """The account as the broker reports it."""

    def market_time(self, ts: datetime) -> None:
        """Market time moves to the bar that opens at ``ts`` (called before ``on_bar``). The simulator and a
        live broker need nothing; a replay rehearsal against a fake gateway advances its clock here."""

    @abstractmethod
    def on_bar(self, opens: np.ndarray, closes: np.ndarray) -> list[Fill]:
        """Market time moved to a new bar: return the fills since the last one, mark the account."""

    @abstractmethod
    def submit(self, order: OrderEvent) -> None:
        """Send an order. Raises ``DuplicateOrder`` if its ``order_ref`` was already sent."""

    @abstractmethod
    def cancel_all(self) -> list[str]:
        """Cancel every working order (the kill switch); returns the order_refs cancelled."""


class DuplicateOrder(RuntimeError):
    pass
