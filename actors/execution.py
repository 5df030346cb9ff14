"""Execution actor: owns the broker connection and the order write-ahead log. Only it sends orders."""

from __future__ import annotations

import warnings
from pathlib import Path

import ray

from firm import capability as cap
from firm import kill_switch
from firm.batches import Bars, Execution, Opened, Review
from firm.broker.sim import SimulatedBroker
from firm.config import Config
from firm.events import KillSwitchEvent
from firm.execution import ExecutionEngine
from firm.journal import OrderLog, read_order_log
from firm.portfolio import Book, Costs


def actor_options(cfg: Config) -> dict:
    """Ray options of the execution actor by broker: with IB it is restarted up to
    ``broker.ib.actor_max_restarts`` times and the call in flight is retried on the restarted actor;
    with the simulator (whose state lives only in the actor) never."""
    if cfg.broker.kind == "sim":
        return {}
    n = cfg.broker.ib.actor_max_restarts
    return {"max_restarts": n, "max_task_retries": n}


@ray.remote(num_cpus=0, max_restarts=0)
class ExecutionActor:
    """Ray restarts it with the IB brokers (``actor_options``): a restarted actor reads its write-ahead log,
    rebuilds the order map, reconciles it with IB before sending anything, and resumes the ``execute``
    it died in (Ray retries it). The simulated broker's state lives only here: it is not restarted."""

    def __init__(self, cfg: Config, symbols: tuple[str, ...], wal_path: str, *, capability: str | None = None):
        self._capability = capability  # the run's order capability (firm.capability): execute, open_bar, close
        with warnings.catch_warnings():  # Ray 2.60 warns about an API it uses inside this property
            warnings.simplefilter("ignore", DeprecationWarning)
            restarted = ray.get_runtime_context().was_current_actor_reconstructed
        costs = Costs.from_config(cfg.broker, cfg.run.seed)
        wal = OrderLog(wal_path, fsync=cfg.journal.fsync)  # cuts a torn last line first
        records = read_order_log(wal_path) if restarted else None
        if cfg.broker.kind == "sim":
            broker = SimulatedBroker(symbols, cfg.broker.initial_cash, costs)
        else:  # the one IB connection of the run (paper by default; live was confirmed by the CLI)
            from firm.broker.endpoint import endpoint
            from firm.broker.ib import IBBroker

            ep = endpoint(cfg.broker.ib, cfg.broker.kind)
            broker = IBBroker(symbols, cfg.broker.initial_cash, costs, cfg.broker.ib, ep, seed=cfg.run.seed, connect=False)
            if records is not None:
                broker.restore(records)
            broker.connect()
            if cfg.live.feed == "ib" and records is None:  # live: the warm-up runs on the account's equity
                broker.fund_from_account(broker.read_account())
        self.kill_switch_path = cfg.kill_switch_path()
        self.run_dir = Path(wal_path).parent
        self.engine = ExecutionEngine(broker, wal, self._persist_kill_switch, recovered=records)

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

    def open_bar(self, bars: Bars, *, capability: str | None = None) -> Opened:
        """Live: the session's fills from the broker before the CIO decides it (ExecutionEngine.open_bar)."""
        cap.check(capability, self._capability, "execution.open_bar")
        return self.engine.open_bar(bars)

    def adopt_account(self, ts, *, capability: str | None = None):
        """Live, before the first session: the book becomes the broker's account (ExecutionEngine.adopt_account);
        the AccountSnapshotEvent to journal, or None with the simulator."""
        cap.check(capability, self._capability, "execution.adopt_account")
        return self.engine.adopt_account(ts)

    def execute(self, review: Review, bars: Bars, *, capability: str | None = None) -> Execution:
        cap.check(capability, self._capability, "execution.execute")
        return Execution(*self.engine.execute(review, bars))

    def close(self, *, capability: str | None = None) -> None:
        cap.check(capability, self._capability, "execution.close")
        self.engine.wal.close()
        close = getattr(self.engine.broker, "close", None)
        if close is not None:
            close()
