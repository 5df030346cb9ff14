"""100 stress scenarios as Ray tasks against a local loop, heavy and light.

Usage: python bench/stress.py [--cpus 2] [--repeat 3]

The book: AAPL, MSFT, IBM, GOOG long, SPX long, COMP short, with cash, valued at 2013-03-01.
Heavy: 100 scans ``worst_<h>d`` over 1999-2018, h = 500, 505, .. 995 sessions (every start date of the
5,031 sessions tried; the stocks outside their data follow the S&P 500 proxy): 10-25 ms each.
Light: 60 rolling 20-session historical windows (one every 80 sessions from 1999) and 40 hypothetical
shocks (equity -2% .. -40% x beta, volatility x1.25 .. x5, half with correlations to 1): tens of
microseconds each.
The jobs are prepared once (pandas, not timed); the loop is ``risk.stress.run_local``; Ray is
``actors.stress.run`` on a local Ray of ``--cpus`` CPUs with warm workers (one untimed round first),
``mode="ray"`` (tasks always, chunked from the measured cost) and ``mode="auto"`` (the loop where Ray
cannot win). Every Ray result is checked equal to the loop's. Best of ``--repeat`` runs.

Ray starts its workers at niceness 15 (``RAY_worker_niceness``): on a machine busy with other work they get
a small fraction of the CPU a nice-0 loop gets, and the comparison measures the scheduler, not the tasks.
``--niceness`` (default 0, the loop's) sets it for this benchmark; on an idle machine it changes nothing.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import ray

from firm.data.source import SampleDataSource
from risk import stress as S
from actors import stress as T

ROOT = Path(__file__).resolve().parent.parent


def book(history: S.History) -> S.Portfolio:
    positions = [("AAPL", "value", 150_000.0), ("MSFT", "value", 120_000.0), ("IBM", "value", 100_000.0),
                 ("GOOG", "quantity", 200.0), ("SPX", "value", 300_000.0), ("COMP", "value", -150_000.0)]
    return S.build_portfolio(positions, 400_000.0, "2013-03-01", history, "bench book")


def heavy(pf: S.Portfolio, history: S.History) -> list[S.ScenarioJob]:
    return [S.prepare(S.scan_scenario(h), pf, history) for h in range(500, 1000, 5)]


def light(pf: S.Portfolio, history: S.History) -> list[S.ScenarioJob]:
    idx = history.proxy.index
    scenarios = [
        S.Scenario(f"window_{idx[i].date()}", "historical", "rolling 20-session window", str(idx[i].date()),
                   str(idx[i + 20].date()), source="bench")
        for i in range(0, 80 * 60, 80)
    ]
    for k in range(20):
        scenarios.append(S.Scenario(f"equity_{k}", "hypothetical", "grid", equity_shock=-0.02 * (k + 1)))
    for k in range(20):
        scenarios.append(S.Scenario(f"vol_{k}", "hypothetical", "grid", vol_mult=1.25 + 0.25 * (k // 2),
                                    correlation_one=bool(k % 2)))
    return [S.prepare(s, pf, history) for s in scenarios]


def _same(a: list[S.ScenarioResult], b: list[S.ScenarioResult]) -> bool:
    return all(x.to_dict() == y.to_dict() for x, y in zip(a, b)) and len(a) == len(b)


def bench(label: str, jobs: list[S.ScenarioJob], repeat: int) -> None:
    S.run_local(jobs[:2])  # kernels loaded in this process
    loop_s, ray_s, auto_s = [], [], []
    reference = S.run_local(jobs)
    T.run(jobs, mode="ray")  # warm workers: imports and kernels
    for _ in range(repeat):
        t0 = time.perf_counter()
        S.run_local(jobs)
        loop_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        got, plan = T.run(jobs, mode="ray")
        ray_s.append(time.perf_counter() - t0)
        assert _same(got, reference), f"{label}: Ray results differ from the loop"
        t0 = time.perf_counter()
        got_auto, auto = T.run(jobs, mode="auto")
        auto_s.append(time.perf_counter() - t0)
        assert _same(got_auto, reference), f"{label}: auto results differ from the loop"
    lo, ra, au = min(loop_s), min(ray_s), min(auto_s)
    print(
        f"{label:6s} {len(jobs)} scenarios, {plan.cost_s * 1e3:8.3f} ms each (measured)   loop {lo * 1e3:8.1f} ms   "
        f"Ray tasks {ra * 1e3:8.1f} ms ({plan.tasks} tasks x <= {plan.chunk}) speedup {lo / ra:5.2f}x   "
        f"auto [{auto.mode}] {au * 1e3:8.1f} ms speedup {lo / au:5.2f}x   results identical"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--niceness", type=int, default=0, help="Ray workers' niceness (Ray's default is 15)")
    args = ap.parse_args()
    os.environ["RAY_worker_niceness"] = str(args.niceness)
    cache = os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    history = S.load_history(["AAPL", "MSFT", "IBM", "GOOG", "SPX", "COMP"], [SampleDataSource()])
    pf = book(history)
    t0 = time.perf_counter()
    heavy_jobs, light_jobs = heavy(pf, history), light(pf, history)
    print(f"prepared {len(heavy_jobs) + len(light_jobs)} jobs in {time.perf_counter() - t0:.2f} s (not timed below); "
          f"{os.cpu_count()} cores, Ray with {args.cpus} CPUs, worker niceness {args.niceness}; "
          f"load average {os.getloadavg()[0]:.1f}")
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"NUMBA_CACHE_DIR": cache}})
    try:
        bench("heavy", heavy_jobs, args.repeat)
        bench("light", light_jobs, args.repeat)
    finally:
        ray.shutdown()
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
