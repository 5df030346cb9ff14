"""What the pipeline stages hand each other for one batch of bars.

A batch is processed in sub-batches: the CIO proposes decisions for rows ``start..n`` on its
projection of the book; risk and compliance stop after the first row where they reject anything
(later rows were decided on a book that will not exist); execution commits rows ``start..stop``
and returns the authoritative book, from which the next sub-batch starts. With batch size 1 every
sub-batch is one row, so any batch size gives the same orders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property

import numpy as np

from firm.events import DecisionEvent, Event, FillEvent, OrderEvent, RiskAlertEvent, ValidatedDecisionEvent
from firm.portfolio import Book
from strategies.base import Panel


@dataclass(frozen=True)
class Bars:
    """Rows ``offset .. offset+len`` of the run's market data."""

    offset: int
    panel: Panel
    session_open: np.ndarray  # (n,) int64 ns UTC

    def __len__(self) -> int:
        return len(self.panel.ts)

    @cached_property
    def closes_at(self) -> list[datetime]:
        return _datetimes(self.panel.ts)

    @cached_property
    def opens_at(self) -> list[datetime]:
        return _datetimes(self.session_open)

    @cached_property
    def stamps(self) -> list[str]:
        """Compact UTC stamps of the bar closes, used in event ids."""
        return [t.strftime("%Y%m%dT%H%M") for t in self.closes_at]


def _datetimes(ns: np.ndarray) -> list[datetime]:
    """UTC datetimes of whole-second epoch nanoseconds (session opens and closes are on the minute)."""
    return [datetime.fromtimestamp(t // 1_000_000_000, tz=timezone.utc) for t in ns.tolist()]


@dataclass
class SignalBatch:
    """One agent's advice for every row of a ``Bars``; NaN strength means the agent abstains."""

    agent: str
    offset: int
    strength: np.ndarray  # (n, m)
    confidence: np.ndarray  # (n, m)
    rationale: dict[str, np.ndarray] = field(default_factory=dict)
    journal: list[str] = field(default_factory=list)  # per row, its SignalEvent lines (firm.journal.signal_lines)


@dataclass
class Proposal:
    """CIO -> risk: decisions per row from ``start`` of a batch, and the book they were decided on.

    The batch's bars travel beside the proposal, not inside it.
    """

    offset: int  # the batch's first row in the run
    start: int
    book: Book  # authoritative book before row ``start``
    decisions: list[list[DecisionEvent]]  # index k is row start + k
    fingerprints: list[tuple]  # CIO's book fingerprint at each row's decision time
    opened: bool = False  # live: ``book`` already has row ``start``'s fills and marks (the broker's, re-based)


@dataclass
class Review:
    """Risk / compliance -> next stage: rows ``start..stop`` are consistent and validated."""

    offset: int
    start: int
    stop: int
    book: Book  # the book the proposal started from
    fingerprints: list[tuple]  # the CIO's book fingerprint per row start..stop
    validated: list[list[ValidatedDecisionEvent]]  # per row start..stop
    alerts: list[list[RiskAlertEvent]]


@dataclass
class Committed:
    """Everything that happened in rows ``start..stop`` of a batch, as execution committed it."""

    start: int
    stop: int
    validated: list[list[ValidatedDecisionEvent]]
    alerts: list[list[RiskAlertEvent]]
    orders: list[list[OrderEvent]]
    fills: list[list[FillEvent]]
    equity: list[float]
    book: Book  # after row stop - 1
    drift: list[list[Event]] = field(default_factory=list)  # live: per row, where the broker's book left the projection


@dataclass
class Opened:
    """Execution -> CIO, live: a session's fills taken from the broker before the CIO decides it."""

    book: Book  # the broker's book after the fills, marked to the session's close
    fills: list[FillEvent]
    drift: list[Event]  # a ProjectionDriftEvent where the broker's book differs from the projection


@dataclass
class Execution:
    """Execution -> CIO: what was committed, and what was rejected in its last row."""

    committed: Committed
    rejected: list[tuple[int, int]]  # (column, direction) rejected in row stop - 1

    @property
    def stop(self) -> int:
        return self.committed.stop

    @property
    def book(self) -> Book:
        return self.committed.book


@dataclass
class BatchResult:
    """CIO -> driver: one batch's signals and what each of its sub-batches committed."""

    offset: int
    signals: list[SignalBatch]  # the ones that made the barrier
    late: list[str]  # agents whose signals missed the barrier
    failed: dict[str, str]  # agent -> error, for agents whose call raised
    barrier_wait_s: float
    committed: list[Committed]
    timing: dict[str, float] = field(default_factory=dict)  # seconds spent in the CIO, by phase
    cio_events: list[Event] = field(default_factory=list)  # agent toggles, required agents missing
