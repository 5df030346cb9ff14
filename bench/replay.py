"""Replay throughput through the full pipeline at batch 1 and batch 256, and Ray start-up time.

Usage: python bench/replay.py [--config configs/default.yaml] [--sessions N] [--batches 1 256]
Prints bars per second (a bar is one instrument's daily bar), the per-batch latency at batch 1
(p50/p99, submit to committed result, one batch in flight) and the time ray.init took.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

import numpy as np
import ray

from firm.config import load_config
from firm.pipeline import run, start_ray


def ray_startup_s(config: str) -> float:
    """ray.init in a fresh interpreter, as a user's first command pays it."""
    code = (
        "import time, ray; from firm.config import load_config; from firm.pipeline import start_ray;"
        f"cfg = load_config({config!r}); print(start_ray(cfg, None)); ray.shutdown()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--sessions", type=int, default=0, help="limit the replay to the first N sessions (0: all)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    args = ap.parse_args()

    print(f"ray.init (fresh process): {ray_startup_s(args.config):.2f} s")
    base = load_config(args.config)
    out_dir = tempfile.mkdtemp(prefix="firm-bench-")
    overrides = {"output_dir": out_dir, "progress_every_s": 3600}
    if args.sessions:
        import pandas as pd

        from firm.data.market import load_market_data

        ts = load_market_data(base.data).panel.ts
        end = pd.Timestamp(ts[min(args.sessions, len(ts)) - 1]).date()
        base = base.model_copy(update={"data": base.data.model_copy(update={"end": end})})
    start_ray(base, None)
    rates, hashes = {}, {}
    for batch in args.batches:
        cfg = base.model_copy(update={"run": base.run.model_copy(update={**overrides, "batch": batch})})
        t0 = time.perf_counter()
        res = run(cfg, config_name=f"bench-b{batch}", progress=False, in_flight=1 if batch == 1 else 2)
        wall = time.perf_counter() - t0
        s = res.stats
        rates[batch] = s.bars / res.replay_s
        hashes[batch] = s.order_log_sha256
        line = (
            f"batch {batch:>5}: {s.bars:,} bars ({s.rows:,} sessions) in {res.replay_s:.2f} s replay "
            f"({wall:.2f} s with actor start) -> {rates[batch]:,.0f} bars/s, {s.rows / res.replay_s:,.0f} sessions/s; "
            f"sub-batches {s.subbatches:,}, orders {s.orders:,}"
        )
        t = s.timing
        line += (
            f"\n    in the CIO: barrier wait {t['barrier_s']:.2f} s, decide {t['decide_s']:.2f} s, "
            f"risk->compliance->execution {t['validate_execute_s']:.2f} s of {t['cio_total_s']:.2f} s"
        )
        if batch == 1:
            lat = np.asarray(res.latencies_s) * 1e3
            line += f"; latency per session p50 {np.percentile(lat, 50):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms"
        print(line, flush=True)
    if 1 in rates:
        for batch in args.batches:
            if batch != 1:
                print(f"speed-up batch {batch} vs batch 1: {rates[batch] / rates[1]:.1f}x")
    print("order-log sha256 per batch size: " + ", ".join(f"{b}: {h[:16]}" for b, h in hashes.items()))
    print("identical orders across batch sizes:", len(set(hashes.values())) == 1)
    ray.shutdown()


if __name__ == "__main__":
    main()
