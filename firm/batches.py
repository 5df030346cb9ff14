"""What the pipeline stages hand each other for one batch of bars.

A batch is processed in sub-batches: the CIO proposes decisions for rows ``start..n`` on its
projection of the book; risk and compliance stop after the first row where they reject anything
(later rows were decided on a book that will not exist); execution commits rows ``start..stop``
and returns the authoritative book, from which the next sub-batch starts. With batch size 1 every
sub-batch is one row, so any batch size gives the same orders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

import numpy as np
import pandas as pd

from firm.events import DecisionEvent, FillEvent, OrderEvent, RiskAlertEvent, ValidatedDecisionEvent
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
    def stamps(self) -> list[str]:
        """Compact UTC stamps of the bar closes, used in event ids."""
        return list(pd.to_datetime(self.panel.ts, utc=True).strftime("%Y%m%dT%H%M"))

    @cached_property
    def closes_at(self) -> list[datetime]:
        return list(pd.to_datetime(self.panel.ts, utc=True).to_pydatetime())

    @cached_property
    def opens_at(self) -> list[datetime]:
        return list(pd.to_datetime(self.session_open, utc=True).to_pydatetime())


@dataclass
class SignalBatch:
    """One agent's advice for every row of a ``Bars``; NaN strength means the agent abstains."""

    agent: str
    offset: int
    strength: np.ndarray  # (n, m)
    confidence: np.ndarray  # (n, m)
    rationale: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Proposal:
    """CIO -> risk: decisions per row from ``start``, and the book they were decided on."""

    bars: Bars
    start: int
    book: Book  # authoritative book before row ``start``
    decisions: list[list[DecisionEvent]]  # index k is row start + k
    fingerprints: list[tuple]  # CIO's book fingerprint at each row's decision time


@dataclass
class Review:
    """Risk / compliance -> next stage: rows ``start..stop`` are consistent."""

    proposal: Proposal
    stop: int
    validated: list[list[ValidatedDecisionEvent]]  # per row start..stop
    alerts: list[list[RiskAlertEvent]]


@dataclass
class Execution:
    """Execution -> CIO: rows ``start..stop`` are committed."""

    review: Review
    orders: list[list[OrderEvent]]
    fills: list[list[FillEvent]]
    equity: list[float]
    book: Book  # authoritative after row stop - 1
    rejected: list[tuple[int, int]]  # (column, direction) rejected in row stop - 1

    @property
    def start(self) -> int:
        return self.review.proposal.start

    @property
    def stop(self) -> int:
        return self.review.stop


@dataclass
class BatchResult:
    """CIO -> driver: everything committed for one batch."""

    bars: Bars
    signals: list[SignalBatch]  # the ones that made the barrier
    late: list[str]  # agents whose signals missed the barrier
    failed: dict[str, str]  # agent -> error, for agents whose call raised
    barrier_wait_s: float
    executions: list[Execution]
