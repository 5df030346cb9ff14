"""The CIO: the singleton named actor and the only decision authority.

For each batch it waits for the agents' signals with ``ray.wait(..., timeout=...)`` as the barrier,
leaves out what is late, decides, and sends every decision through risk -> compliance -> execution.
``set_agent_enabled`` switches an agent on or off from the next batch the CIO starts (journaled as an
AgentToggleEvent); a required agent (``cio.required_agents``) that is missing for a batch leaves its rows
to the exit rules alone (journaled as a RequiredAgentMissingEvent).

The CIO is a detached actor: it outlives the driver that created it so that a finished run can still be
read (``firm.attach``) until the next run replaces it or ``firm stop`` removes it. The calls that drive
orders (``run_batch``, ``set_agent_enabled``, ``finish``) need the run's capability (``firm.capability``),
which only the creating driver holds; the read methods (``status``, ``positions``, ``equity_curve``,
``signals``, ``counts``) run in their own concurrency group, so a reader never waits for a batch, and return
copies of the snapshot kept in a ``firm.run_view.RunView``. A run whose execution actor has died (its driver
crashed: execution shares the driver's fate) reads as ``abandoned``.
"""

from __future__ import annotations

import threading
import time

import ray
from ray.exceptions import RayActorError, RayError

from firm import capability as cap
from firm.batches import Bars, BatchResult, SignalBatch
from firm.cio import Allocator
from firm.config import CIOConfig
from firm.events import AgentToggleEvent, Event, RequiredAgentMissingEvent
from firm.run_view import RunView

EXECUTION_PROBE_S = 2.0  # a busy execution actor is alive; only a call that fails says it is dead


@ray.remote(num_cpus=0, max_restarts=0, concurrency_groups={"read": 2})
class CIOActor:
    def __init__(
        self, cfg: CIOConfig, weights: dict[str, float], symbols: tuple[str, ...], risk, compliance, execution,
        drawdown_tiers=(), exposure_limits: tuple[float, float] | None = None,
        *, capability: str | None = None, run_info: dict | None = None,
    ):
        self._capability = capability
        self.cfg = cfg
        self.allocator = Allocator(cfg, weights, tuple(symbols), drawdown_tiers, exposure_limits)
        self.risk = risk
        self.compliance = compliance
        self.execution = execution
        self.book = ray.get(execution.book.remote())
        self.toggles: list[tuple[str, bool, str]] = []
        self._lock = threading.Lock()  # the view is written by batches and read by the "read" group's threads
        self.view = RunView(tuple(symbols), tuple(sorted(weights)), dict(run_info or {}), self.book)

    def _authorise(self, capability: str | None, what: str) -> None:
        cap.check(capability, self._capability, f"CIO.{what}")
        if self.view.state != "running":
            raise cap.CapabilityError(f"CIO.{what} refused: the run has {self.view.state}; start a new run")

    def set_agent_enabled(self, agent: str, enabled: bool, reason: str = "", *, capability: str | None = None) -> None:
        """Enable or disable ``agent``'s signals in the blend from the next batch this CIO starts."""
        self._authorise(capability, "set_agent_enabled")
        self.toggles.append((agent, bool(enabled), reason))

    def finish(self, *, capability: str | None = None) -> None:
        """The run is over: from now on this CIO only serves its final snapshot."""
        cap.check(capability, self._capability, "CIO.finish")
        with self._lock:
            self.view.finish()
        self.risk = self.compliance = self.execution = None

    # reads: no capability, never the token, copies only -------------------------------------------------

    @ray.method(concurrency_group="read")
    def status(self) -> dict:
        """The run's config name, run directory, state (running | finished | abandoned), progress and heartbeat."""
        with self._lock:
            out = self.view.status()
        if out["state"] == "running" and not self._execution_alive():
            out["state"] = "abandoned"
        return out

    def _execution_alive(self) -> bool:
        execution = self.execution
        if execution is None:
            return False
        ref = execution.__ray_ready__.remote()
        ready, _ = ray.wait([ref], timeout=EXECUTION_PROBE_S)
        if not ready:
            return True  # busy with a batch
        try:
            ray.get(ref)
        except RayActorError:
            return False
        return True

    @ray.method(concurrency_group="read")
    def positions(self) -> dict:
        with self._lock:
            return self.view.positions()

    @ray.method(concurrency_group="read")
    def equity_curve(self) -> tuple[list[int], list[float]]:
        with self._lock:
            return self.view.equity_curve()

    @ray.method(concurrency_group="read")
    def signals(self, agent: str | None = None) -> dict:
        with self._lock:
            return self.view.recent_signals(agent)

    @ray.method(concurrency_group="read")
    def counts(self) -> dict:
        with self._lock:
            return self.view.counts()

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

    def run_batch(
        self, bars: Bars, agents: list[str], signal_refs: list[ray.ObjectRef], mode: str = "replay",
        *, capability: str | None = None,
    ) -> BatchResult:
        """Decide one batch: barrier on the agents' signals, then decisions through the validators.

        ``mode`` "live" (firm/live.py, one session per batch): execution first takes the session's fills from
        the broker, and the CIO decides on the broker's book (re-based) instead of its projection of the fills;
        a difference is journaled by execution, never raised. "warmup": history before a live run; the agents,
        the CIO's market state and risk's history advance, nothing is decided. "replay": the strict projection."""
        self._authorise(capability, "run_batch")
        with self._lock:
            self.view.start_batch()
        if mode not in ("replay", "live", "warmup"):
            raise ValueError(f"unknown mode {mode!r}")
        if mode == "live" and len(bars) != 1:
            raise ValueError(f"live batches are one session, not {len(bars)}")
        t0 = time.perf_counter()
        opened = self.execution.open_bar.remote(bars, capability=self._capability) if mode == "live" else None
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
        with self._lock:
            self.view.add_signals(bars, signals, missing)

        committed = []
        decide_s = chain_s = 0.0
        start = 0
        if opened is not None:
            self.book = ray.get(opened).book  # the broker's book after this session's fills: re-based
        while start < len(bars):
            t1 = time.perf_counter()
            proposal = self.allocator.propose(
                bars, start, self.book, signals, missing, exits_only,
                opened=opened is not None and start == 0, observe=mode == "warmup",
            )  # fmt: skip
            t2 = time.perf_counter()
            review = self.risk.review.remote(proposal, bars)
            review = self.compliance.review.remote(review)
            done = ray.get(self.execution.execute.remote(review, bars, capability=self._capability))
            chain_s += time.perf_counter() - t2
            decide_s += t2 - t1
            committed.append(done.committed)
            self.book = done.book
            with self._lock:
                self.view.add_committed(bars, done.committed)
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
        with self._lock:
            self.view.end_batch()
        return BatchResult(bars.offset, signals, late, failed, waited, committed, timing, events)
