"""Stress scenarios as Ray tasks: one scenario per task when each is heavy, chunks of them when they are light.

:func:`run` evaluates ``risk.stress.ScenarioJob`` s and returns the same ``ScenarioResult`` s, in the same
order and bit for bit, as ``risk.stress.run_local`` (the same kernels on the same arrays; a task only
changes where they run). How the work is cut (:func:`plan`) comes from a measured cost per scenario:

* ``cost``: the first job is evaluated in this process and timed (again, warm, if that took over 1 ms: the
  first call may load the numba kernels); its result is kept, and the rest are taken to cost the same.
* chunk size: enough scenarios that a task carries at least ``MIN_TASK_S`` (20 ms, forty times the
  ~0.5 ms a task costs Ray), but no fewer than ``TASKS_PER_CPU`` (4) tasks per CPU while there are
  scenarios enough, for load balance. A 10 ms scenario is one task; a 50 us one goes in chunks.
* the loop instead of Ray (``mode="auto"``) when the whole batch is predicted no faster on the cluster:
  ``total / cpus + ROUND_TRIP_S + tasks * SUBMIT_S >= total``, with ``ROUND_TRIP_S`` (20 ms) a pessimistic
  first-result latency of warm workers and ``SUBMIT_S`` (1 ms) per task. So Ray is used only where it wins.

The batch is put in the object store once and each task evaluates its slice of it (numpy arrays are read
in place, and the price levels the scans of one period share travel once); a task's kernels come from the ``NUMBA_CACHE_DIR`` the workers share (``firm.pipeline.start_ray``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal, Sequence

import ray

from risk.stress import ScenarioJob, ScenarioResult, evaluate, run_local

MIN_TASK_S = 0.020
TASKS_PER_CPU = 4
ROUND_TRIP_S = 0.020
SUBMIT_S = 0.001


@dataclass(frozen=True)
class Plan:
    mode: Literal["local", "ray"]
    cost_s: float  # measured seconds per scenario
    chunk: int  # scenarios per task
    tasks: int
    cpus: int
    reason: str

    def as_dict(self) -> dict:
        return {"mode": self.mode, "cost_per_scenario_ms": round(self.cost_s * 1e3, 4), "scenarios_per_task": self.chunk,
                "tasks": self.tasks, "cpus": self.cpus, "reason": self.reason}


def chunk_size(n: int, cost_s: float, cpus: int) -> int:
    """Scenarios per task: >= MIN_TASK_S of work, but >= TASKS_PER_CPU tasks per CPU when n allows."""
    by_cost = max(1, math.ceil(MIN_TASK_S / max(cost_s, 1e-9)))
    by_balance = max(1, n // (TASKS_PER_CPU * max(cpus, 1)))
    return max(1, min(by_cost, by_balance))


def plan(n: int, cost_s: float, cpus: int, mode: str = "auto") -> Plan:
    chunk = chunk_size(n, cost_s, cpus)
    tasks = math.ceil(n / chunk) if n else 0
    total = n * cost_s
    predicted = total / max(min(cpus, tasks), 1) + ROUND_TRIP_S + tasks * SUBMIT_S
    if mode == "local" or (mode == "auto" and (cpus < 2 or predicted >= total)):
        why = "asked" if mode == "local" else (
            f"one CPU" if cpus < 2 else f"predicted {predicted * 1e3:.1f} ms on Ray >= {total * 1e3:.1f} ms in the loop")
        return Plan("local", cost_s, n, 0, cpus, why)
    return Plan("ray", cost_s, chunk, tasks, cpus,
                f"{tasks} tasks of <= {chunk} scenarios (>= {MIN_TASK_S * 1e3:.0f} ms each or {TASKS_PER_CPU} per CPU)")


@ray.remote(num_cpus=1)
def _chunk_task(jobs: list[ScenarioJob], first: int, stop: int) -> list[ScenarioResult]:
    # ``jobs`` is the whole batch, put in the object store once: its arrays are read in place (zero-copy)
    # and an array shared by several jobs (a scan's price levels) travels once, whatever the chunking.
    return [evaluate(j) for j in jobs[first:stop]]


def measure(job: ScenarioJob) -> tuple[ScenarioResult, float]:
    """``evaluate(job)`` and its seconds; a call over 1 ms (which may include loading the kernels) is
    timed again warm."""
    t0 = time.perf_counter()
    result = evaluate(job)
    cost = time.perf_counter() - t0
    if cost > 1e-3:
        t0 = time.perf_counter()
        evaluate(job)
        cost = time.perf_counter() - t0
    return result, cost


def run(
    jobs: Sequence[ScenarioJob], mode: Literal["auto", "ray", "local"] = "auto", chunk: int | None = None
) -> tuple[list[ScenarioResult], Plan]:
    """Evaluate ``jobs`` (Ray must be initialised unless the plan is local); results in the jobs' order.

    ``mode="ray"`` always uses tasks (chunked by the measured cost unless ``chunk`` is given);
    ``"local"`` is ``run_local``; ``"auto"`` picks by :func:`plan`.
    """
    jobs = list(jobs)
    if not jobs:
        return [], Plan("local", 0.0, 0, 0, 0, "no scenarios")
    if mode == "local":
        return run_local(jobs), plan(len(jobs), 0.0, 1, "local")
    first, cost = measure(jobs[0])
    rest = jobs[1:]
    total = len(rest) * cost
    if mode == "auto" and total <= ROUND_TRIP_S + SUBMIT_S:
        # no number of CPUs can win: the loop, without even asking the cluster its size (an RPC)
        p = Plan("local", cost, len(rest), 0, 0, f"{total * 1e3:.2f} ms of work <= one task's round trip")
        return [first, *run_local(rest)], p
    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
    p = plan(len(rest), cost, cpus, mode)
    if p.mode == "local" or not rest:
        return [first, *run_local(rest)], p
    if chunk is not None:
        p = Plan("ray", cost, chunk, math.ceil(len(rest) / chunk), cpus, f"chunk of {chunk} given")
    batch = ray.put(rest)
    refs = [_chunk_task.remote(batch, i, min(i + p.chunk, len(rest))) for i in range(0, len(rest), p.chunk)]
    out = [first]
    for part in ray.get(refs):
        out.extend(part)
    return out, p
