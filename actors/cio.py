"""The CIO: the singleton named actor and the only decision authority.

For each batch it waits for the agents' signals with ``ray.wait(..., timeout=...)`` as the barrier,
leaves out what is late, decides, and sends every decision through risk -> compliance -> execution.
``set_agent_enabled`` switches an agent on or off from the next batch the CIO starts (journaled as an
AgentToggleEvent); a required agent (``cio.required_agents``) that is missing for a batch leaves its rows
to the exit rules alone (journaled as a RequiredAgentMissingEvent).
"""

from __future__ import annotations

import time

import ray
from ray.exceptions import RayError

from firm.batches import Bars, BatchResult, SignalBatch
from firm.cio import Allocator
from firm.config import CIOConfig
from firm.events import AgentToggleEvent, Event, RequiredAgentMissingEvent


@ray.remote(num_cpus=0, max_restarts=0)
class CIOActor:
    def __init__(
        self, cfg: CIOConfig, weights: dict[str, float], symbols: tuple[str, ...], risk, compliance, execution,
        drawdown_tiers=(), exposure_limits: tuple[float, float] | None = None,
    ):
        self.cfg = cfg
        self.allocator = Allocator(cfg, weights, tuple(symbols), drawdown_tiers, exposure_limits)
        self.risk = risk
        self.compliance = compliance
        self.execution = execution
        self.book = ray.get(execution.book.remote())
        self.toggles: list[tuple[str, bool, str]] = []

    def set_agent_enabled(self, agent: str, enabled: bool, reason: str = "") -> None:
        """Enable or disable ``agent``'s signals in the blend from the next batch this CIO starts."""
        self.toggles.append((agent, bool(enabled), reason))

    def disabled_agents(self) -> list[str]:
        return sorted(self.allocator.disabled)

    def _start_events(self, bars: Bars, agents: list[str], missing: tuple[str, ...]) -> tuple[list[Event], bool]:
        """Apply pending toggles; check the required agents. Returns the events and whether rows are exits-only."""
        events: list[Event] = []
        stamp, ts = bars.stamps[0], bars.closes_at[0]
        for i, (agent, enabled, reason) in enumerate(self.toggles):
            self.allocator.set_enabled(agent, enabled)
            events.append(
                AgentToggleEvent(
                    id=f"toggle:{agent}:{stamp}:{i}", ts=ts, agent=agent, enabled=enabled, reason=reason or "operator"
                )
            )
        self.toggles = []
        absent = sorted(
            a for a in self.cfg.required_agents if a in missing or a in self.allocator.disabled or a not in agents
        )
        if absent:
            why = [
                f"{a} " + ("disabled" if a in self.allocator.disabled else "late or failed" if a in missing else "absent")
                for a in absent
            ]
            events.append(
                RequiredAgentMissingEvent(
                    id=f"required:{stamp}",
                    ts=ts,
                    agents=tuple(absent),
                    bars=len(bars),
                    reason="; ".join(why) + ": no new risk in these rows, exits still apply",
                )
            )
        return events, bool(absent)

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
        events, exits_only = self._start_events(bars, agents, missing)

        committed = []
        decide_s = chain_s = 0.0
        start = 0
        while start < len(bars):
            t1 = time.perf_counter()
            proposal = self.allocator.propose(bars, start, self.book, signals, missing, exits_only)
            t2 = time.perf_counter()
            review = self.risk.review.remote(proposal, bars)
            review = self.compliance.review.remote(review)
            done = ray.get(self.execution.execute.remote(review, bars))
            chain_s += time.perf_counter() - t2
            decide_s += t2 - t1
            committed.append(done.committed)
            self.book = done.book
            self.allocator.commit(done.stop)
            for column, direction in done.rejected:
                self.allocator.on_rejected(column, direction, bars.offset + done.stop - 1)
            start = done.stop
        timing = {
            "barrier_s": waited,
            "decide_s": decide_s,
            "validate_execute_s": chain_s,
            "cio_total_s": time.perf_counter() - t0,
        }
        return BatchResult(bars.offset, signals, late, failed, waited, committed, timing, events)
