"""What a run looks like from outside: the CIO's read-only snapshot of the book, the equity curve, the
recent signals and the decision counts, kept batch by batch as the CIO commits them.

It counts exactly as the run's summary does (``firm.summary.RunStats``): a decision is every validated
decision, a rejection every verdict that refused one, keyed ``validator/rule``; the equity curve has one
point per committed session, stamped with the session's close. Signals are bounded: the last
``signal_rows`` sessions of each agent. Every read returns plain copies (lists, dicts, numpy arrays) that
travel through Ray; :mod:`firm.attach` turns them into pandas objects.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from firm.batches import Bars, Committed, SignalBatch
from firm.portfolio import Book

RECENT_SIGNAL_ROWS = 256


@dataclass
class RecentSignals:
    ts: np.ndarray  # (k,) int64 ns UTC, the sessions' closes
    strength: np.ndarray  # (k, m); NaN: the agent abstained
    confidence: np.ndarray  # (k, m)


@dataclass
class RunView:
    symbols: tuple[str, ...]
    agents: tuple[str, ...]
    info: dict  # config name, run directory, namespace, data section: what the driver says about the run
    book: Book
    signal_rows: int = RECENT_SIGNAL_ROWS
    state: str = "running"  # running | finished (a dead driver's run reads as abandoned: see actors/cio.py)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    last_batch_at: float | None = None
    batch_started_at: float | None = None  # a batch is in progress since then
    batches: int = 0
    sessions: int = 0
    decisions: int = 0
    rejections: Counter = field(default_factory=Counter)  # "validator/rule" -> n
    orders: int = 0
    fills: int = 0
    equity_ts: list[int] = field(default_factory=list)
    equity: list[float] = field(default_factory=list)
    late: Counter = field(default_factory=Counter)  # agent -> batches it missed
    signals: dict[str, RecentSignals] = field(default_factory=dict)

    def add_signals(self, bars: Bars, signals: list[SignalBatch], missing: tuple[str, ...]) -> None:
        """The signals that made this batch's barrier; keeps each agent's last ``signal_rows`` sessions."""
        ts = np.asarray(bars.panel.ts, dtype=np.int64)
        for s in signals:
            old = self.signals.get(s.agent)
            new = RecentSignals(ts, np.asarray(s.strength, dtype=float), np.asarray(s.confidence, dtype=float))
            if old is not None:
                new = RecentSignals(*(np.concatenate([a, b]) for a, b in zip(
                    (old.ts, old.strength, old.confidence), (new.ts, new.strength, new.confidence))))
            k = self.signal_rows
            self.signals[s.agent] = RecentSignals(
                new.ts[-k:].copy(), new.strength[-k:].copy(), new.confidence[-k:].copy()
            )
        self.late.update(missing)

    def add_committed(self, bars: Bars, part: Committed) -> None:
        """Rows ``part.start .. part.stop`` of ``bars`` as execution committed them."""
        for row in part.validated:
            for vd in row:
                self.decisions += 1
                for v in vd.verdicts:
                    if not v.approved:
                        self.rejections[f"{v.validator}/{v.rule}"] += 1
        self.orders += sum(len(r) for r in part.orders)
        self.fills += sum(len(r) for r in part.fills)
        self.equity.extend(float(e) for e in part.equity)
        self.equity_ts.extend(int(t) for t in bars.panel.ts[part.start : part.stop])
        self.sessions += part.stop - part.start
        self.book = part.book

    def start_batch(self) -> None:
        self.batch_started_at = time.time()

    def end_batch(self) -> None:
        self.batches += 1
        self.last_batch_at = time.time()
        self.batch_started_at = None

    def finish(self) -> None:
        self.state = "finished"
        self.finished_at = time.time()

    # reads ----------------------------------------------------------------------------------------------

    def status(self) -> dict:
        now = time.time()
        return {
            "state": self.state,
            "config": self.info.get("config_name", ""),
            "run_dir": self.info.get("run_dir", ""),
            "namespace": self.info.get("namespace", ""),
            "data": self.info.get("data"),
            "symbols": list(self.symbols),
            "agents": list(self.agents),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "last_batch_at": self.last_batch_at,
            "idle_s": None if self.last_batch_at is None else now - self.last_batch_at,
            "in_batch_s": None if self.batch_started_at is None else now - self.batch_started_at,
            "batches": self.batches,
            "sessions": self.sessions,
            "last_session": self.equity_ts[-1] if self.equity_ts else None,
            "equity": self.book.equity,
        }

    def counts(self) -> dict:
        return {
            "decisions": self.decisions,
            "rejections": dict(sorted(self.rejections.items())),
            "orders": self.orders,
            "fills": self.fills,
            "late_batches_by_agent": dict(sorted(self.late.items())),
        }

    def positions(self) -> dict:
        """The book by instrument (columns of equal length) and its totals."""
        b = self.book
        rows = []
        for j, symbol in enumerate(b.symbols):
            value = b.position_value(j)
            unrealized = value - b.cost_basis[j]  # as the run's summary counts it
            rows.append(
                {
                    "symbol": symbol,
                    "position": int(b.positions[j]),
                    "working": int(b.working(j)),
                    "last_close": float(b.last_close[j]),
                    "market_value": float(value),
                    "weight": float(value / b.equity) if b.equity else math.nan,
                    "avg_price": float(b.cost_basis[j] / b.positions[j]) if b.positions[j] else math.nan,
                    "realized_pnl": float(b.realized[j]),
                    "unrealized_pnl": float(unrealized),
                }
            )
        totals = {"cash": b.cash, "equity": b.equity, "peak_equity": b.peak_equity, "drawdown": b.drawdown,
                  "commissions": b.commissions}  # fmt: skip
        return {"rows": rows, "totals": totals}

    def equity_curve(self) -> tuple[list[int], list[float]]:
        return list(self.equity_ts), list(self.equity)

    def recent_signals(self, agent: str | None = None) -> dict[str, RecentSignals]:
        names = [agent] if agent is not None else sorted(self.signals)
        unknown = [a for a in names if a not in self.agents]
        if unknown:
            raise KeyError(f"no agent {unknown[0]!r} in this run; agents: {', '.join(self.agents)}")
        return {a: self.signals[a] for a in names if a in self.signals}
