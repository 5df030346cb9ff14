"""Execution actor: owns the broker connection and the order write-ahead log. Only it sends orders."""

from __future__ import annotations

from pathlib import Path

import ray

from firm import kill_switch
from firm.batches import Bars, Execution, Review
from firm.broker.sim import SimulatedBroker
from firm.config import Config
from firm.events import KillSwitchEvent
from firm.execution import ExecutionEngine
from firm.journal import OrderLog
from firm.portfolio import Book, Costs


@ray.remote(num_cpus=0, max_restarts=0)
class ExecutionActor:
    def __init__(self, cfg: Config, symbols: tuple[str, ...], wal_path: str):
        costs = Costs.from_config(cfg.broker, cfg.run.seed)
        if cfg.broker.kind == "sim":
            broker = SimulatedBroker(symbols, cfg.broker.initial_cash, costs)
        else:  # the one IB connection of the run (paper by default; live was confirmed by the CLI)
            from firm.broker.endpoint import endpoint
            from firm.broker.ib import IBBroker

            ep = endpoint(cfg.broker.ib, cfg.broker.kind)
            broker = IBBroker(symbols, cfg.broker.initial_cash, costs, cfg.broker.ib, ep, seed=cfg.run.seed)
        self.kill_switch_path = cfg.kill_switch_path()
        self.run_dir = Path(wal_path).parent
        self.engine = ExecutionEngine(broker, OrderLog(wal_path, fsync=cfg.journal.fsync), self._persist_kill_switch)

    def _persist_kill_switch(self, event: KillSwitchEvent) -> None:
        """A trip committed in this run: engaged on disk before any cancel or flatten order is sent."""
        kill_switch.engage(
            self.kill_switch_path,
            event.reason,
            trigger=event.trigger,
            by=f"risk ({kill_switch.whoami()})",
            market_ts=event.ts.isoformat(),
            run=str(self.run_dir),
            flatten=event.flatten,
        )

    def book(self) -> Book:
        return self.engine.broker.book.copy()

    def execute(self, review: Review, bars: Bars) -> Execution:
        return Execution(*self.engine.execute(review, bars))

    def close(self) -> None:
        self.engine.wal.close()
        close = getattr(self.engine.broker, "close", None)
        if close is not None:
            close()
