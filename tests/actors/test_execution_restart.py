"""The execution actor killed in the middle of a run through IB (``ray.kill(..., no_restart=False)``), against
the fake gateway on loopback: Ray restarts it (``broker.ib.actor_max_restarts``) and retries the call it died
in; the restarted actor rebuilds its order map from the write-ahead log, reconciles it with IB before it
sends anything, and resumes. The run's order log is the uninterrupted run's, byte for byte: no order
duplicated, none lost, every fill the same, so the final position is the same."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
import ray

from firm.broker.ibreplay import BackgroundGateway
from firm.broker.ibsim import IBSim, IBSimConfig, load_replay
from firm.config import load_config
from firm.journal import read_jsonl
from firm.pipeline import run

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"
SPAN = {"data.start": "2008-01-02", "data.end": "2008-03-31", "run.progress_every_s": 3600, "run.batch": 32,
        "broker.slippage_bps": 0.0, "broker.slippage_noise_bps": 0.0}  # fmt: skip

logging.getLogger("ib_async").setLevel(logging.CRITICAL)


def orders_in(path: Path) -> int:
    if not path.exists():
        return 0
    return sum('"kind":"order"' in line for line in path.read_text().splitlines())


def position(wal: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in wal:
        if r["kind"] == "fill":
            out[r["symbol"]] = out.get(r["symbol"], 0) + r["quantity"]
    return {s: q for s, q in out.items() if q}


@pytest.mark.usefixtures("ray_local")
def test_execution_actor_killed_mid_run_resumes_from_its_wal_with_no_order_duplicated_or_lost(tmp_path):
    sim_run = run(load_config(DEFAULT_CONFIG, {"run.output_dir": str(tmp_path / "sim"), **SPAN}), config_name="sim", progress=False)
    clean = read_jsonl(sim_run.run_dir / "orders.wal.jsonl")
    n_orders = sum(r["kind"] == "order" for r in clean)
    assert n_orders >= 10  # 14 on this span

    symbols = load_config(DEFAULT_CONFIG, SPAN).data.symbols
    g = BackgroundGateway(IBSim(load_replay(symbols), "2008-01-02", IBSimConfig()))
    said: list[str] = []
    g.sim.on_log = said.append
    kills: list[int] = []
    done = threading.Event()

    def kill_when_half_sent():
        """Kill the execution actor once half the run's orders are in its WAL (so, mid-execute)."""
        while not done.is_set():
            wals = list((tmp_path / "ib").glob("*/orders.wal.jsonl"))
            if wals and orders_in(wals[0]) >= n_orders // 2:
                kills.append(orders_in(wals[0]))
                ray.kill(ray.get_actor("execution"), no_restart=False)
                return
            done.wait(0.01)

    killer = threading.Thread(target=kill_when_half_sent, daemon=True)
    try:
        ib_cfg = load_config(
            DEFAULT_CONFIG,
            {"run.output_dir": str(tmp_path / "ib"), **SPAN, "broker.kind": "ib-paper",
             "broker.ib.port": g.sim.port, "broker.ib.replay_control": f"127.0.0.1:{g.control_port}",
             "broker.ib.orders_per_minute": 10_000, "broker.ib.min_order_spacing_s": 0.0,
             "broker.ib.backoff_base_s": 0.05, "broker.ib.breaker_cooldown_s": 0.5},
        )  # fmt: skip
        killer.start()
        ib_run = run(ib_cfg, config_name="ib", progress=False)
    finally:
        done.set()
        killer.join(5)
        g.stop()
    assert kills and n_orders // 2 <= kills[0] < n_orders  # killed once, mid-run, after orders were sent
    assert sum("client 1 connected" in line for line in said) == 2  # the first actor, then the restarted one
    ib_wal = read_jsonl(ib_run.run_dir / "orders.wal.jsonl")
    assert ib_wal == clean  # every order once and every fill (price, commission), in the same order
    assert ib_run.stats.order_log_sha256 == sim_run.stats.order_log_sha256
    refs = sorted(so.order.orderRef for so in g.sim.orders.values())
    assert refs == sorted(r["order_ref"] for r in clean if r["kind"] == "order")  # zero duplicated, zero lost at IB
    at_ib = {s: int(g.sim.position_of(s)) for s in symbols if g.sim.position_of(s)}
    assert at_ib == position(clean)  # the final position is the uninterrupted run's
