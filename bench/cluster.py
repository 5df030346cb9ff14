"""Throughput on a local multi-node Ray: the stress batch on 1, 2 and 3 nodes, the replay on 1 and 3 nodes.

Usage: python bench/cluster.py [--repeat 3] [--sessions N] [--niceness 0]

The cluster is ``ray.cluster_utils.Cluster`` on this machine: a head and up to two worker nodes, each a real
raylet with its own object store and ``num_cpus=1``, so that adding a node adds one CPU Ray may schedule on;
the third node offers ``ib_gateway: 1``, where the 3-node replay's execution actor runs
(``ray.execution_resource``).

* Stress: the 100 heavy scans of ``bench/stress.py`` (``worst_<h>d``, 10-25 ms each) as Ray tasks
  (``actors.stress.run(mode="ray")``, one CPU each, chunked from the measured cost), best of ``--repeat``
  after an untimed round that warms the new node's workers; results checked equal to the loop's.
* Replay: ``firm.pipeline.run`` at batch 256 on the default config (``--sessions`` to cut it), with the
  order-log hash of each run: it must not depend on the number of nodes.

On a machine with fewer cores than nodes the nodes share the cores: the figures then say what the
scheduling costs, not what more machines would give.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import tempfile
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from actors import stress as T
from firm.config import load_config
from firm.data.source import SampleDataSource
from firm.pipeline import run
from risk import stress as S

ROOT = Path(__file__).resolve().parent.parent


def _stress_jobs() -> list[S.ScenarioJob]:
    spec = importlib.util.spec_from_file_location("bench_stress", ROOT / "bench" / "stress.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    history = S.load_history(["AAPL", "MSFT", "IBM", "GOOG", "SPX", "COMP"], [SampleDataSource()])
    return mod.heavy(mod.book(history), history)


def _same(a: list[S.ScenarioResult], b: list[S.ScenarioResult]) -> bool:
    return len(a) == len(b) and all(x.to_dict() == y.to_dict() for x, y in zip(a, b))


def bench_stress(nodes: int, jobs: list[S.ScenarioJob], reference: list[S.ScenarioResult], repeat: int) -> float:
    got, _ = T.run(jobs, mode="ray")  # warm: the new node's workers import and load the kernels
    assert _same(got, reference), "Ray results differ from the loop"
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        got, plan = T.run(jobs, mode="ray")
        times.append(time.perf_counter() - t0)
        assert _same(got, reference), "Ray results differ from the loop"
    best = min(times)
    print(
        f"stress  {nodes} node(s), {plan.cpus} CPUs: {len(jobs)} scenarios in {best * 1e3:7.1f} ms "
        f"-> {len(jobs) / best:6.1f} scenarios/s ({plan.tasks} tasks x <= {plan.chunk}); results identical",
        flush=True,
    )
    return best


def bench_replay(nodes: int, base, out_dir: str, resource: str | None) -> tuple[float, str]:
    cfg = base.model_copy(
        update={
            "run": base.run.model_copy(update={"output_dir": out_dir, "progress_every_s": 3600, "batch": 256}),
            "ray": base.ray.model_copy(update={"execution_resource": resource}),
        }
    )
    t0 = time.perf_counter()
    res = run(cfg, config_name=f"cluster-{nodes}n", progress=False)
    wall = time.perf_counter() - t0
    s = res.stats
    rate = s.bars / res.replay_s
    print(
        f"replay  {nodes} node(s), batch 256: {s.bars:,} bars in {res.replay_s:.2f} s -> {rate:,.0f} bars/s "
        f"({wall:.1f} s with actor start-up); orders {s.orders:,}; order log sha256 {s.order_log_sha256[:16]}",
        flush=True,
    )
    return rate, s.order_log_sha256


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=0, help="limit the replay to the first N sessions (0: all)")
    ap.add_argument("--niceness", type=int, default=0, help="Ray workers' niceness (Ray's default is 15)")
    args = ap.parse_args()
    os.environ["RAY_worker_niceness"] = str(args.niceness)  # inherited by every node this script starts
    cache = os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))

    base = load_config(ROOT / "configs" / "default.yaml")
    if args.sessions:
        import pandas as pd

        from firm.data.market import load_market_data

        ts = load_market_data(base.data).panel.ts
        end = pd.Timestamp(ts[min(args.sessions, len(ts)) - 1]).date()
        base = base.model_copy(update={"data": base.data.model_copy(update={"end": end})})
    jobs = _stress_jobs()
    S.run_local(jobs[:2])
    reference = S.run_local(jobs)
    loop_s = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        S.run_local(jobs)
        loop_s = min(loop_s, time.perf_counter() - t0)
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}; worker niceness {args.niceness}")
    print(f"stress  loop in this process: {len(jobs)} scenarios in {loop_s * 1e3:7.1f} ms -> "
          f"{len(jobs) / loop_s:6.1f} scenarios/s", flush=True)

    out_dir = tempfile.mkdtemp(prefix="firm-bench-cluster-")
    with socket.socket() as sock:  # the head still claims a dashboard port: a free one, not an 8265 another Ray holds
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False, "dashboard_port": port})
    try:
        ray.init(address=cluster.address, namespace="firm-bench", logging_level="WARNING",
                 runtime_env={"env_vars": {"NUMBA_CACHE_DIR": cache}})
        stress_s = {1: bench_stress(1, jobs, reference, args.repeat)}
        rates, hashes = {}, {}
        rates[1], hashes[1] = bench_replay(1, base, out_dir, None)
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        stress_s[2] = bench_stress(2, jobs, reference, args.repeat)
        cluster.add_node(num_cpus=1, resources={"ib_gateway": 1})
        cluster.wait_for_nodes()
        stress_s[3] = bench_stress(3, jobs, reference, args.repeat)
        rates[3], hashes[3] = bench_replay(3, base, out_dir, "ib_gateway")
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(
        "stress speed-up vs 1 node: "
        + ", ".join(f"{n} nodes {stress_s[1] / s:.2f}x" for n, s in stress_s.items() if n > 1)
        + f"; replay 3 nodes vs 1: {rates[3] / rates[1]:.2f}x"
    )
    print("identical order logs on 1 and 3 nodes:", hashes[1] == hashes[3], f"(sha256 {hashes[1][:16]})")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
