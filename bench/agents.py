"""Per-agent throughput on the real data, and the replay cost of all agents against momentum alone.

Usage: python bench/agents.py [--config configs/default.yaml] [--stream-rows N]
Batch: one compute over the whole history by a fresh instance (fitted agents fit every window;
bars = rows x instruments). Streaming: the history grows one session at a time and the same
instance recomputes, as the signal-agent actor does at batch 1 (over the first --stream-rows
sessions). Then two full replays through Ray at batch 256: every
registered agent enabled, and momentum alone.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import ray

from firm.config import load_config
from firm.data.market import load_market_data
from firm.pipeline import run, start_ray
from strategies import registry
from strategies.base import Panel


def _head(panel: Panel, k: int) -> Panel:
    return Panel(
        panel.ts[:k],
        panel.symbols,
        *(getattr(panel, f)[:k] for f in ("open", "high", "low", "close", "volume")),
        reference={name: v[:k] for name, v in panel.reference.items()},
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--stream-rows", type=int, default=500)
    args = ap.parse_args()
    cfg = load_config(args.config)
    panel = load_market_data(cfg.data).panel
    bars = int(np.count_nonzero(~np.isnan(panel.close)))
    print(f"{len(panel.ts):,} sessions x {len(panel.symbols)} instruments = {bars:,} bars")
    for name in sorted(registry.shipped()):
        params = cfg.agents[name].params if name in cfg.agents else None
        registry.create(name, params).compute(_head(panel, 600))  # JIT compilation, paid once per process
        strategy = registry.create(name, params)  # a fresh instance: fitted agents start with no fits
        t0 = time.perf_counter()
        strategy.compute(panel)
        batch_s = time.perf_counter() - t0
        strategy = registry.create(name, params)
        rows = min(args.stream_rows, len(panel.ts))
        t0 = time.perf_counter()
        for k in range(1, rows + 1):
            strategy.compute(_head(panel, k))
        stream_s = time.perf_counter() - t0
        print(
            f"{name:16s} batch {bars / batch_s:>12,.0f} bars/s ({batch_s * 1e3:6.1f} ms)   "
            f"streaming {rows * len(panel.symbols) / stream_s:>9,.0f} bars/s over the first {rows} sessions"
        )

    out = tempfile.mkdtemp(prefix="firm-bench-agents-")
    base = load_config(args.config, {"run.output_dir": out, "run.progress_every_s": 3600, "run.batch": 256})
    start_ray(base, None)
    every = {name: {"enabled": True, "params": base.agents[name].params if name in base.agents else {}}
             for name in registry.shipped()}
    alone = {name: {"enabled": name == "momentum", "params": spec["params"]} for name, spec in every.items()}
    times = {}
    for label, agents in (("all agents", every), ("momentum alone", alone)):
        cfg = load_config(args.config, {"run.output_dir": out, "run.progress_every_s": 3600, "run.batch": 256,
                                        "agents": agents})
        res = run(cfg, config_name=label.replace(" ", "-"), progress=False)
        times[label] = res.replay_s
        print(f"replay, {label:15s} ({len(cfg.enabled_agents())} agents): {res.replay_s:.2f} s, "
              f"{res.stats.bars / res.replay_s:,.0f} bars/s, orders {res.stats.orders:,}")
    print(f"all agents / momentum alone: {times['all agents'] / times['momentum alone']:.2f}x")
    ray.shutdown()


if __name__ == "__main__":
    main()
