"""firm on a multi-node Ray on this machine: ``ray.cluster_utils.Cluster``, a head and two worker nodes of one
CPU each, one worker offering ``ib_gateway: 1`` (real raylets on loopback, not mocks).

On 2008 (253 sessions, batch 32, the default config and seed, nine of its agents) it shows: the execution resource is checked
before anything is created; the agents are spread over the nodes; the CIO, risk and compliance stay on the head
and execution goes to the ``ib_gateway`` node; a second execution actor is refused; the order log is byte-identical
to the one-node run; and killing a worker that hosts agents in the middle of a run makes them miss the barrier
(journaled), Ray restarts them on a live node, they speak again, and no order is lost or duplicated. The killed
run's order log need not equal the clean run's: its agents were missing for some batches.

The module needs its own Ray: it shuts down the session's local Ray (``ray_local``) if it is up, and restores it
after its cluster is gone.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster
from ray.util.state import list_actors

from firm import placement
from firm.config import ConfigError, load_config
from firm.journal import read_jsonl
from firm.pipeline import run
from tests.conftest import DEFAULT_CONFIG, ROOT, start_local_ray

NAMESPACE = "firm-multinode"
# 2008, batch 32: 8 batches. regime and options_vol are off: they abstain all through 2008 (warm-ups of 526 and
# 506 sessions) and their model fits are the dearest part of an agent's start and restart.
WINDOW = {"data.start": "2008-01-02", "data.end": "2008-12-31", "run.batch": 32, "run.progress_every_s": 3600,
          "agents.regime.enabled": False, "agents.options_vol.enabled": False}
AGENTS = 9
KILL_AFTER_BATCHES = 2
RESTART_WAIT_S = 180
DECISION_CHAIN = ("cio", "risk", "compliance")


def _config(out: Path, **overrides):
    return load_config(DEFAULT_CONFIG, {"run.output_dir": str(out), **WINDOW, **overrides})


def _actors() -> dict[str, object]:
    """This module's firm actors by name: node, state and restarts, from Ray's state API."""
    listed = list_actors(filters=[("ray_namespace", "=", NAMESPACE)], detail=True, limit=10_000, raise_on_missing_output=False)
    return {a.name: a for a in listed if a.name and a.state != "DEAD"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    restore = ray.is_initialized()
    ray.shutdown()
    cache = os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    # The dashboard serves Ray's state API (where each actor runs); on a free port, not another Ray's 8265.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": True, "dashboard_port": port})
    try:
        ray.init(address=c.address, namespace=NAMESPACE, logging_level="WARNING",
                 runtime_env={"env_vars": {"NUMBA_CACHE_DIR": cache}})
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        if restore:
            start_local_ray()


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The runs of the module, in order, on one cluster that grows from one node to three, then loses one."""
    out = tmp_path_factory.mktemp("runs")
    got: dict = {}
    head = cluster.head_node.node_id

    # One node, no ib_gateway anywhere: a config that asks for it is refused before any actor exists.
    with pytest.raises(placement.PlacementError) as refused:
        run(_config(out, **{"ray.execution_resource": "ib_gateway"}), config_name="refused", progress=False)
    got["refused"] = str(refused.value)
    got["after_refusal"] = _actors()
    got["one"] = run(_config(out), config_name="one-node", progress=False)

    gateway = cluster.add_node(num_cpus=1, resources={"ib_gateway": 1})
    plain = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    got["nodes"] = {"head": head, "gateway": gateway.node_id, "plain": plain.node_id}
    three = _config(out, **{"ray.execution_resource": "ib_gateway"})

    def advice(result) -> dict:
        return {(result.offset, b.agent): (b.strength, b.confidence) for b in result.signals}

    got["clean_advice"], got["killed_advice"] = {}, {}

    def clean_batch(bars, result):
        got["clean_advice"].update(advice(result))
        if "placed" in got:
            return
        got["placed"] = {name: a.node_id for name, a in _actors().items()}
        try:  # a second execution actor while this run's is alive
            placement.execution_options(three.ray, head, wait_s=0.5)
        except placement.PlacementError as err:
            got["second_refused"] = str(err)
        try:
            from actors.execution import ExecutionActor

            ExecutionActor.options(name=placement.EXECUTION_NAME).remote(three, ("AAPL",), str(out / "x.wal"))
        except ValueError as err:  # Ray's own refusal of a taken name
            got["second_name_taken"] = str(err)

    got["three"] = run(three, config_name="three-nodes", progress=False, on_batch=clean_batch)

    batches_seen = []

    def kill_batch(bars, result):
        batches_seen.append((bars.closes_at[0], sorted([*result.late, *result.failed]), result.offset))
        got["killed_advice"].update(advice(result))
        if len(batches_seen) == KILL_AFTER_BATCHES:
            got["on_killed_node"] = sorted(n for n, a in _actors().items() if a.node_id == plain.node_id)
            got["killed_at"] = time.monotonic()
            cluster.remove_node(plain)
        elif len(batches_seen) == KILL_AFTER_BATCHES + 1:
            # The replay is paced like a live feed here: the next batches wait (up to RESTART_WAIT_S) for Ray
            # to restart the lost agents, so that the rest of the run shows them rejoining.
            deadline = time.monotonic() + RESTART_WAIT_S
            while time.monotonic() < deadline:
                now = _actors()
                if all(now[n].state == "ALIVE" for n in got["on_killed_node"]):
                    break
                time.sleep(0.5)
            got["restarted_after_s"] = time.monotonic() - got["killed_at"]
        if len(batches_seen) > KILL_AFTER_BATCHES:
            got["after_kill"] = _actors()  # the last batch's view wins

    got["killed"] = run(three, config_name="killed", progress=False, on_batch=kill_batch)
    got["kill_batches"] = batches_seen

    # The gateway's unit held by someone else (another namespace's execution actor, say): refused, not pending.
    holder = _Holder.options(resources={"ib_gateway": 1}).remote()
    ray.get(holder.ready.remote())
    deadline = time.monotonic() + 30
    while ray.available_resources().get("ib_gateway", 0.0) >= 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        placement.execution_options(three.ray, head, wait_s=1.0)
    except placement.PlacementError as err:
        got["held"] = str(err)
    ray.kill(holder)
    return got


@ray.remote(num_cpus=0)
class _Holder:
    def ready(self) -> bool:
        return True


def test_missing_execution_resource_is_refused_naming_the_key(runs):
    msg = runs["refused"]
    assert "ray.execution_resource" in msg and "'ib_gateway'" in msg and "no node" in msg
    assert not runs["after_refusal"], "the refusal must come before any actor is created"


def test_agents_spread_over_nodes_and_the_chain_is_placed(runs):
    placed, nodes = runs["placed"], runs["nodes"]
    agents = {n: node for n, node in placed.items() if n.startswith("agent:")}
    assert len(agents) == AGENTS
    assert len(set(agents.values())) >= 2, agents
    assert set(agents.values()) <= set(nodes.values())
    for name in DECISION_CHAIN:
        assert placed[name] == nodes["head"], (name, placed[name], nodes)
    assert placed["execution"] == nodes["gateway"]


def test_a_second_execution_actor_is_refused(runs):
    assert "'execution' already runs" in runs["second_refused"]
    assert "execution" in runs["second_name_taken"]
    held = runs["held"]
    assert "ray.execution_resource = 'ib_gateway'" in held and "every unit is held" in held


def test_execution_resource_must_be_a_custom_resource():
    for bad in ("CPU", "node:__internal_head__"):
        with pytest.raises(ConfigError, match=r"ray\.execution_resource"):
            load_config(DEFAULT_CONFIG, {"ray.execution_resource": bad})
    assert load_config(DEFAULT_CONFIG).ray.execution_resource is None


def test_order_log_is_identical_to_the_one_node_run(runs):
    one, three = runs["one"].stats, runs["three"].stats
    assert one.orders > 5
    assert three.order_log_sha256 == one.order_log_sha256
    assert (runs["three"].run_dir / "orders.wal.jsonl").read_bytes() == (runs["one"].run_dir / "orders.wal.jsonl").read_bytes()


def test_killed_node_agents_miss_the_barrier_restart_and_rejoin(runs):
    nodes = runs["nodes"]
    killed = runs["on_killed_node"]
    assert killed and all(n.startswith("agent:") for n in killed), "only agents may live on a worker"
    agents = {n.removeprefix("agent:") for n in killed}
    journal = read_jsonl(runs["killed"].run_dir / "journal.jsonl")
    late = [r for r in journal if r["type"] == "LateSignalEvent"]
    assert {r["agent"] for r in late} == agents, (killed, late)
    after = runs["after_kill"]
    for name in killed:
        a = after[name]
        assert a.state == "ALIVE" and a.num_restarts >= 1 and a.node_id in (nodes["head"], nodes["gateway"]), a
    for name in (*DECISION_CHAIN, "execution"):
        assert after[name].num_restarts == 0 and after[name].node_id != nodes["plain"]
    # they rejoin: the batches after the last one they missed are whole, and there the restarted agents'
    # signals (rebuilt from the bars archive) are line for line those of the clean run
    batches = runs["kill_batches"]
    missed = [i for i, (_, missing, _) in enumerate(batches) if missing]
    assert missed and missed[0] >= KILL_AFTER_BATCHES and missed[-1] < len(batches) - 2, batches
    resumed = batches[missed[-1] + 1][0]

    def signals(records):
        return [r for r in records if r["type"] == "SignalEvent" and r["agent"] in agents
                and datetime.fromisoformat(r["ts"]) >= resumed]

    clean = read_jsonl(runs["three"].run_dir / "journal.jsonl")
    assert signals(journal), "the restarted agents never spoke again"
    assert signals(journal) == signals(clean)
    for _, _, offset in batches[missed[-1] + 1 :]:  # abstentions included (NaN where the clean run abstained)
        for agent in agents:
            for after_restart, clean_run in zip(runs["killed_advice"][offset, agent], runs["clean_advice"][offset, agent]):
                np.testing.assert_array_equal(after_restart, clean_run)


def test_killed_node_run_loses_and_duplicates_no_order(runs):
    run_dir = runs["killed"].run_dir
    journal = read_jsonl(run_dir / "journal.jsonl")
    wal = read_jsonl(run_dir / "orders.wal.jsonl")
    orders = [r for r in journal if r["type"] == "OrderEvent"]
    fills = [r for r in journal if r["type"] == "FillEvent"]
    assert orders, "the killed run still trades"
    ids = Counter(r["id"] for r in orders)
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]
    refs = Counter(r["order_ref"] for r in orders)
    assert max(refs.values()) == 1
    wal_orders = Counter(r["order_ref"] for r in wal if r["kind"] == "order")
    assert wal_orders == refs, "every WAL order once, and exactly the journal's orders"
    assert {r["order_ref"] for r in fills} <= set(refs), "every fill has its order"
    wal_fills = Counter(r["order_ref"] for r in wal if r["kind"] == "fill")
    assert wal_fills == Counter(r["order_ref"] for r in fills)
    s = runs["killed"].stats
    assert s.orders == len(orders) and s.fills == len(fills)
