"""The driver: replay market data through agents -> CIO -> risk -> compliance -> execution on Ray."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import ray
import yaml
from ray.exceptions import GetTimeoutError, RayError

from firm import capability as cap
from firm import kill_switch, placement
from firm.batches import BatchResult, Bars
from firm.config import Config
from firm.data.market import MarketData, load_market_data
from firm.data.validate import write_quarantine
from firm.events import Event, LateSignalEvent, MarketDataEvent, ValidatedDecisionEvent
from firm.journal import Journal
from firm.kill_switch import KillSwitchState
from firm.metrics import RunMetrics
from firm.summary import RunStats
from risk.var import trailing_book

ACTOR_READY_TIMEOUT_S = 120


@dataclass
class RunResult:
    run_dir: Path
    stats: RunStats
    ray_start_s: float = 0.0
    replay_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)


def make_run_dir(cfg: Config, config_name: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.run.output_dir)
    run_dir = base / f"{stamp}-{config_name}-seed{cfg.run.seed}"
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = base / f"{stamp}-{config_name}-seed{cfg.run.seed}-{n}"
    run_dir.mkdir(parents=True)
    return run_dir


def start_ray(cfg: Config, address: str | None) -> float:
    """Connect to (or start) Ray in firm's namespace; returns the seconds it took."""
    t0 = time.perf_counter()
    if ray.is_initialized():
        return 0.0
    address = address or cfg.ray.address or os.environ.get("RAY_ADDRESS")
    kwargs = dict(address=address, namespace=cfg.ray.namespace, configure_logging=True, logging_level="WARNING")
    if address is None:
        # A private Ray of this process, even where `ray start` runs (joining one takes --address auto).
        # One machine: the workers share one numba cache, so each kernel compiles once, not per actor.
        cache = os.environ.get("NUMBA_CACHE_DIR", str(Path(".numba_cache").resolve()))
        kwargs.update(
            address="local",
            num_cpus=cfg.ray.num_cpus,
            include_dashboard=False,
            runtime_env={"env_vars": {"NUMBA_CACHE_DIR": cache}},
        )
        if cfg.ray.execution_resource:  # one machine: it is the node that reaches the broker
            kwargs["resources"] = {cfg.ray.execution_resource: 1}
    ray.init(**kwargs)
    return time.perf_counter() - t0


class Pipeline:
    """The actors of one run, created in firm's namespace and torn down at the end."""

    def __init__(
        self, cfg: Config, symbols: tuple[str, ...], run_dir: Path, switch: KillSwitchState | None = None,
        config_name: str = "run",
    ):
        from actors.cio import CIOActor
        from actors.compliance import ComplianceActor
        from actors.execution import ExecutionActor, actor_options
        from actors.risk import RiskActor
        from actors.signal_agent import SignalAgent

        self.cfg = cfg
        agents = cfg.enabled_agents()
        self.agent_names = sorted(agents)
        namespace = ray.get_runtime_context().namespace
        replace_finished_cio(cfg.cio.name, namespace)
        # The run's order capability: only this driver can drive the CIO and execution (firm/capability.py).
        self.capability_key = cap.run_key(namespace, cfg.cio.name)
        self.capability = cap.issue(self.capability_key)
        from actors.signal_agent import BarsArchive
        from strategies import registry

        # Placement (firm/placement.py): agents spread; the decision chain and the archive on the head;
        # execution on the node with ray.execution_resource, checked before any actor is created.
        head = placement.head_node_id()
        self.on_head = placement.on_node(head)  # also for the CIO
        execution_placement = placement.execution_options(cfg.ray, head)
        # Every batch's bars, so that an agent Ray restarts (max_restarts) rebuilds its history before it speaks.
        self.archive = BarsArchive.options(**self.on_head).remote()
        self.agents = [
            SignalAgent.options(
                name=f"agent:{name}", scheduling_strategy="SPREAD", max_restarts=cfg.cio.agent_max_restarts
            ).remote(name, agents[name].params, symbols, cfg.data.calendar, self.archive, registry.get(name))
            for name in self.agent_names
        ]
        self.risk = RiskActor.options(name="risk", **self.on_head).remote(cfg.risk, symbols, switch)
        self.compliance = ComplianceActor.options(name="compliance", **self.on_head).remote(cfg.compliance)
        self.execution = ExecutionActor.options(
            name=placement.EXECUTION_NAME, **execution_placement, **actor_options(cfg)  # IB: restarted from its WAL
        ).remote(
            cfg, symbols, str(run_dir / "orders.wal.jsonl"), capability=self.capability
        )
        weights = {name: agents[name].weight for name in self.agent_names}
        # Detached: a finished run stays readable (firm.attach) after this driver ends, until the next run
        # replaces it or `firm stop` removes it.
        run_info = {"config_name": config_name, "run_dir": str(run_dir), "namespace": namespace,
                    "data": cfg.data.model_dump(mode="json")}  # fmt: skip
        self.cio = CIOActor.options(name=cfg.cio.name, lifetime="detached", **self.on_head).remote(
            cfg.cio, weights, symbols, self.risk, self.compliance, self.execution, cfg.risk.drawdown_tiers,
            (cfg.risk.max_gross_exposure, cfg.risk.max_net_exposure), capability=self.capability, run_info=run_info,
        )
        try:
            ray.get([a.ready.remote() for a in self.agents], timeout=ACTOR_READY_TIMEOUT_S)
        except BaseException:
            self._abandon()  # a detached CIO left behind would refuse every later run in this namespace
            raise

    def _abandon(self) -> None:
        """Remove every actor of a pipeline that never started, the detached CIO included."""
        cap.release(self.capability_key)
        for actor in (self.cio, *self.agents, self.risk, self.compliance, self.execution, self.archive):
            ray.kill(actor)
        _wait_names_released(
            [self.cfg.cio.name, "risk", "compliance", "execution", *(f"agent:{n}" for n in self.agent_names)]
        )

    def submit(self, bars: Bars, mode: str = "replay") -> ray.ObjectRef:
        """One batch through agents -> CIO -> risk -> compliance -> execution (``mode``: CIOActor.run_batch)."""
        bars_ref = ray.put(bars)
        self.archive.add.remote(bars.offset, [bars_ref])
        signal_refs = [agent.on_bars.remote(bars_ref) for agent in self.agents]
        return self.cio.run_batch.remote(bars_ref, self.agent_names, signal_refs, mode, capability=self.capability)

    def shutdown(self) -> None:
        """Close the order log and the broker connection and end the run's actors; the CIO stays, finished,
        serving its final snapshot read-only until the next run replaces it (or `firm stop`)."""
        try:
            ray.get(self.execution.close.remote(capability=self.capability), timeout=30)
        except (RayError, GetTimeoutError) as err:
            # Every record was flushed when written; only the file handle is left open.
            print(f"firm: could not close the order log cleanly: {err}", file=sys.stderr)
        try:
            ray.get(self.cio.finish.remote(capability=self.capability), timeout=30)
        except (RayError, GetTimeoutError) as err:
            print(f"firm: the CIO did not take the end of the run ({err}); removing it", file=sys.stderr)
            ray.kill(self.cio)
        cap.release(self.capability_key)
        for actor in (*self.agents, self.risk, self.compliance, self.execution, self.archive):
            ray.kill(actor)
        _wait_names_released(["risk", "compliance", "execution", *(f"agent:{n}" for n in self.agent_names)])


def replace_finished_cio(name: str, namespace: str) -> None:
    """Make way for a new run's CIO: a finished or abandoned one (its driver died) is removed; one whose run
    is still going refuses the new run (one decision authority per namespace)."""
    try:
        old = ray.get_actor(name)
    except ValueError:
        return
    try:
        st = ray.get(old.status.remote(), timeout=30)
    except (RayError, GetTimeoutError, AttributeError) as err:  # dead, or a CIO of another firm version
        st = {"state": f"unreadable ({type(err).__name__})"}
    if st["state"] == "running":
        idle = "no batch yet" if st.get("idle_s") is None else f"last batch {st['idle_s']:.0f} s ago"
        raise RuntimeError(
            f"a CIO named {name!r} is still running a run in namespace {namespace!r} (config "
            f"{st.get('config')!r}, {st.get('run_dir')}, {st.get('sessions', 0):,} sessions done, {idle}); "
            "there is one decision authority per namespace: wait for that run or stop its driver"
        )
    ray.kill(old)
    _wait_names_released([name])


def _wait_names_released(names: list[str], timeout_s: float = 30.0) -> None:
    """ray.kill is asynchronous: wait until the actor names can be taken again by the next run."""
    deadline = time.monotonic() + timeout_s
    for name in names:
        while time.monotonic() < deadline:
            try:
                ray.get_actor(name)
            except ValueError:
                break
            time.sleep(0.02)


def batches(data: MarketData, size: int):
    n = len(data.panel.ts)
    for i in range(0, n, size):
        yield Bars(offset=i, panel=data.slice(i, min(i + size, n)), session_open=data.session_open[i : i + size])


def journal_batch(journal: Journal, bars: Bars, result: BatchResult) -> None:
    """Write a committed batch in market-time order, row by row."""
    panel = bars.panel
    symbols = panel.symbols
    stamps = bars.stamps
    closes_at = bars.closes_at
    if result.late or result.failed:
        journal.write(
            LateSignalEvent(
                id=f"late:{agent}:{stamps[0]}",
                cause_id=None,
                ts=closes_at[0],
                agent=agent,
                bars=len(bars),
                reason=result.failed.get(agent, f"missed the {result.barrier_wait_s:.3f}s barrier"),
            )
            for agent in sorted([*result.late, *result.failed])
        )
    journal.write(result.cio_events)
    rows = {}
    for part in result.committed:
        for k in range(part.start, part.stop):
            i = k - part.start
            drift = part.drift[i] if part.drift else []
            rows[k] = (part.fills[i], part.alerts[i], part.validated[i], part.orders[i], drift)
    o, h, lo, c, v = (getattr(panel, f).tolist() for f in ("open", "high", "low", "close", "volume"))
    for k in range(len(bars)):
        fills, alerts, validated, orders, drift = rows[k]
        events: list[Event] = [*fills, *drift]
        stamp, ts = stamps[k], closes_at[k]
        for j, symbol in enumerate(symbols):
            if c[k][j] != c[k][j]:
                continue
            events.append(
                MarketDataEvent(
                    id=f"bar:{symbol}:{stamp}",
                    ts=ts,
                    symbol=symbol,
                    open=o[k][j],
                    high=h[k][j],
                    low=lo[k][j],
                    close=c[k][j],
                    volume=v[k][j],
                )
            )
        journal.write(events)
        for sig in result.signals:  # the agents wrote their SignalEvent lines (firm.journal.signal_lines)
            journal.write_lines(sig.journal[k])
        after: list[Event] = [*alerts, *(vd.decision for vd in validated)]
        for vd in validated:
            after.extend(_stages(vd))
        after.extend(orders)
        journal.write(after)


def book_var(stats: RunStats, data: MarketData, bars: Bars) -> float | None:
    """1-day 99% delta-normal VaR of the run's book at the end of ``bars`` (risk.var.trailing_book)."""
    book = stats.final_book
    return None if book is None else trailing_book(book.positions, data.panel.close, bars.offset + len(bars)).var


def _stages(vd: ValidatedDecisionEvent) -> list[ValidatedDecisionEvent]:
    """The event each validator emitted: risk's (one verdict), then compliance's (both)."""
    if len(vd.verdicts) == 1:
        return [vd]
    d = vd.decision
    risk = ValidatedDecisionEvent(
        id=f"val:risk:{d.id.removeprefix('dec:')}", cause_id=d.id, ts=d.ts, decision=d, verdicts=vd.verdicts[:1]
    )
    return [risk, vd]


class Progress:
    """A line on stderr every few seconds: where the replay is, and how it is going."""

    def __init__(self, total_rows: int, total_bars: int, every_s: float, enabled: bool):
        self.total_rows, self.total_bars = total_rows, total_bars
        self.every_s, self.enabled = every_s, enabled
        self.t0 = self.last = time.perf_counter()

    def update(self, stats: RunStats, rows_done: int, last_ts: str, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self.last < self.every_s):
            return
        self.last = now
        rate = stats.bars / max(now - self.t0, 1e-9)
        print(
            f"[{100 * rows_done / self.total_rows:5.1f}%] {last_ts}  bars {stats.bars:,}/{self.total_bars:,}  "
            f"orders {stats.orders:,}  equity {stats.last_equity:,.0f}  dd {stats.current_drawdown:.1%}  "
            f"{rate:,.0f} bars/s",
            file=sys.stderr,
            flush=True,
        )


def run(
    cfg: Config,
    *,
    config_name: str = "run",
    address: str | None = None,
    progress: bool = True,
    in_flight: int = 2,
    on_batch: Callable[[Bars, BatchResult], None] | None = None,
) -> RunResult:
    """Replay ``cfg``'s market data through the whole pipeline; returns where it wrote and what it did."""
    switch = kill_switch.load(cfg.kill_switch_path())  # unreadable: KillSwitchError, the run does not start
    if switch.engaged:
        print(
            f"firm: the kill switch is {switch.describe()}\n"
            f"firm: the run replays and journals but sends no order that increases risk; "
            f"'firm kill-switch reset' clears it ({cfg.kill_switch_path()})",
            file=sys.stderr,
            flush=True,
        )
    data = load_market_data(cfg.data)
    run_dir = make_run_dir(cfg, config_name)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    write_quarantine(data.quarantined, run_dir / "quarantine.jsonl")
    symbols = data.panel.symbols
    stats = RunStats(symbols=symbols, initial_cash=cfg.broker.initial_cash, quarantined=list(data.quarantined))
    ray_start_s = start_ray(cfg, address)
    pipeline = Pipeline(cfg, symbols, run_dir, switch, config_name=config_name)
    run_metrics = RunMetrics(run_dir.name, config_name, cfg.broker.initial_cash)  # firm_* on Ray's metrics port
    journal = Journal(run_dir / "journal.jsonl")
    progress_line = Progress(len(data.panel.ts), data.n_bars, cfg.run.progress_every_s, progress)
    latencies: list[float] = []
    t0 = time.perf_counter()
    try:
        pending: list[tuple[Bars, ray.ObjectRef, float]] = []
        rows_done = 0

        def drain_one() -> None:
            nonlocal rows_done
            bars, ref, submitted = pending.pop(0)
            result: BatchResult = ray.get(ref)
            latencies.append(time.perf_counter() - submitted)
            journal_batch(journal, bars, result)
            stats.add(bars, result)
            stats.book_var = book_var(stats, data, bars)
            run_metrics.record(stats, result, stats.book_var)
            rows_done += len(bars)
            if on_batch:
                on_batch(bars, result)
            progress_line.update(stats, rows_done, bars.stamps[-1][:8])

        for bars in batches(data, cfg.run.batch):
            pending.append((bars, pipeline.submit(bars), time.perf_counter()))
            if len(pending) >= in_flight:
                drain_one()
        while pending:
            drain_one()
        replay_s = time.perf_counter() - t0
        progress_line.update(stats, rows_done, "done", force=True)
    finally:
        journal.close()
        pipeline.shutdown()
    stats.finish(run_dir)
    return RunResult(run_dir, stats, ray_start_s, replay_s, latencies)
