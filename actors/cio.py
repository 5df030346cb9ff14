"""The CIO: the singleton named actor and the only decision authority.

For each batch it waits for the agents' signals with ``ray.wait(..., timeout=...)`` as the barrier,
leaves out what is late, decides, and sends every decision through risk -> compliance -> execution.
"""

from __future__ import annotations

import time

import ray
from ray.exceptions import RayError

from firm.batches import Bars, BatchResult, SignalBatch
from firm.cio import Allocator
from firm.config import CIOConfig


@ray.remote(num_cpus=0, max_restarts=0)
class CIOActor:
    def __init__(self, cfg: CIOConfig, weights: dict[str, float], symbols: tuple[str, ...], risk, compliance, execution):
        self.cfg = cfg
        self.allocator = Allocator(cfg, weights, tuple(symbols))
        self.risk = risk
        self.compliance = compliance
        self.execution = execution
        self.book = ray.get(execution.book.remote())

    def run_batch(self, bars: Bars, agents: list[str], signal_refs: list[ray.ObjectRef]) -> BatchResult:
        """Decide one batch: barrier on the agents' signals, then decisions through the validators."""
        t0 = time.perf_counter()
        ready, _ = ray.wait(signal_refs, num_returns=len(signal_refs), timeout=self.cfg.barrier_timeout_s)
        waited = time.perf_counter() - t0
        ready_set = set(ready)
        signals: list[SignalBatch] = []
        late: list[str] = []
        failed: dict[str, str] = {}
        for name, ref in zip(agents, signal_refs):
            if ref not in ready_set:
                late.append(name)
                continue
            try:
                batch: SignalBatch = ray.get(ref)
            except RayError as err:
                cause = getattr(err, "cause", None) or err
                failed[name] = f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1][:300]}"
                continue
            if batch.offset != bars.offset or batch.strength.shape != bars.panel.close.shape:
                failed[name] = f"signals for rows {batch.offset}+{batch.strength.shape}, not this batch"
                continue
            signals.append(batch)
        missing = tuple(sorted([*late, *failed]))

        committed = []
        decide_s = chain_s = 0.0
        start = 0
        while start < len(bars):
            t1 = time.perf_counter()
            proposal = self.allocator.propose(bars, start, self.book, signals, missing)
            t2 = time.perf_counter()
            review = self.risk.review.remote(proposal, bars)
            review = self.compliance.review.remote(review)
            done = ray.get(self.execution.execute.remote(review, bars))
            chain_s += time.perf_counter() - t2
            decide_s += t2 - t1
            committed.append(done.committed)
            self.book = done.book
            for column, direction in done.rejected:
                self.allocator.on_rejected(column, direction, bars.offset + done.stop - 1)
            start = done.stop
        timing = {
            "barrier_s": waited,
            "decide_s": decide_s,
            "validate_execute_s": chain_s,
            "cio_total_s": time.perf_counter() - t0,
        }
        return BatchResult(bars.offset, signals, late, failed, waited, committed, timing)
