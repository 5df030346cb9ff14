"""Where firm's actors run on a Ray cluster.

* Signal agents are spread over the nodes (``SPREAD``); one that dies with its node is restarted by Ray on
  a live node (``cio.agent_max_restarts``).
* The decision chain (CIO, risk, compliance) and the pipeline's bars archive are pinned to the head node,
  so that losing a worker never loses a decision, a validator or the history a restarted agent rebuilds from.
  They take no CPU (``num_cpus=0``), and Ray's default placement would put them on any node: the pin is
  a hard node affinity to the node Ray marks as the head.
* Execution runs on the node that reaches the broker: with ``ray.execution_resource`` set it takes one
  whole unit of that custom resource (start that node with ``--resources='{"ib_gateway": 1}'``), so one
  unit admits one execution actor, whatever its namespace; otherwise it is pinned to the head with the chain.
  A name or resource that is already taken refuses the run instead of leaving an actor pending forever.
"""

from __future__ import annotations

import time

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from firm.config import RayConfig

HEAD_RESOURCE = "node:__internal_head__"  # Ray gives this resource to the head node only
EXECUTION_NAME = "execution"


class PlacementError(RuntimeError):
    """The cluster cannot host the actors of a run as configured; the message names the key or the actor."""


def head_node_id() -> str:
    """The id of the cluster's head node (the driver's node if no live node is marked as the head)."""
    for node in ray.nodes():
        if node["Alive"] and HEAD_RESOURCE in node["Resources"]:
            return node["NodeID"]
    return ray.get_runtime_context().get_node_id()


def on_node(node_id: str) -> dict:
    """Actor options that pin an actor to ``node_id`` (it fails with the node rather than move)."""
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)}


def refuse_second(name: str, what: str, namespace: str) -> None:
    """Raise if an actor called ``name`` is alive in the current namespace."""
    try:
        ray.get_actor(name)
    except ValueError:
        return
    raise PlacementError(f"an actor named {name!r} already runs in namespace {namespace!r}; {what}")


def execution_options(cfg: RayConfig, head: str, wait_s: float = 30.0) -> dict:
    """Placement options of the execution actor, checked against the cluster before it is created.

    With ``cfg.execution_resource`` set: the resource must exist on some node, and a unit of it must be
    free within ``wait_s`` (a run that just ended may still be releasing it); otherwise a PlacementError
    that names the key.
    """
    refuse_second(EXECUTION_NAME, "there is one execution actor, the only sender of orders", cfg.namespace)
    name = cfg.execution_resource
    if name is None:
        return on_node(head)
    total = ray.cluster_resources().get(name, 0.0)
    if total < 1:
        raise PlacementError(
            f"ray.execution_resource = {name!r}: no node of the cluster offers it (has {total:g}); start the node "
            f"that reaches the broker with --resources='{{\"{name}\": 1}}', or set ray.execution_resource: null "
            "to run execution on the head"
        )
    deadline = time.monotonic() + wait_s
    while ray.available_resources().get(name, 0.0) < 1:
        if time.monotonic() > deadline:
            raise PlacementError(
                f"ray.execution_resource = {name!r}: every unit is held ({total:g} in the cluster) after {wait_s:g} s; "
                "another firm run's execution actor holds it (one broker connection per gateway node)"
            )
        time.sleep(0.1)
    return {"resources": {name: 1}}
