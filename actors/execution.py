"""Execution actor: owns the broker connection and the order write-ahead log. Only it sends orders."""

from __future__ import annotations

import ray

from firm.batches import Bars, Execution, Review
from firm.broker.sim import SimulatedBroker
from firm.config import Config
from firm.execution import ExecutionEngine
from firm.journal import OrderLog
from firm.portfolio import Book, Costs


@ray.remote(num_cpus=0, max_restarts=0)
class ExecutionActor:
    def __init__(self, cfg: Config, symbols: tuple[str, ...], wal_path: str):
        broker = SimulatedBroker(symbols, cfg.broker.initial_cash, Costs.from_config(cfg.broker, cfg.run.seed))
        self.engine = ExecutionEngine(broker, OrderLog(wal_path, fsync=cfg.journal.fsync))

    def book(self) -> Book:
        return self.engine.broker.book.copy()

    def execute(self, review: Review, bars: Bars) -> Execution:
        return Execution(*self.engine.execute(review, bars))

    def close(self) -> None:
        self.engine.wal.close()
