"""``firm status``: the health of every firm actor in firm's namespace and of the cluster's nodes.

Read from Ray's state API (``ray.util.state``, served by the head's dashboard) without joining the cluster as a
driver. The actors are listed by name (``agent:<name>``, the CIO, ``risk``, ``compliance``, ``execution``;
an unnamed one such as the bars archive by its class in parentheses) with their state (ALIVE,
PENDING_CREATION, RESTARTING, DEAD, ...), node, restarts and pid. Ray keeps dead actors of earlier jobs;
by default a name shows its live instance, or its most recent one if none is alive, and unnamed actors of
earlier jobs only while alive.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

STATE_TIMEOUT_S = 15
CONNECT_TIMEOUT_S = 3.0


class ClusterUnreachable(Exception):
    """No Ray cluster answers at the address, or it refuses us; the message says what to do."""


@dataclass(frozen=True)
class ActorRow:
    name: str  # the actor's name, or "(ClassName)" when it has none
    class_name: str
    state: str
    node_id: str
    node_ip: str
    restarts: int
    pid: int | None
    job_id: str
    detached: bool
    death: str  # why a DEAD actor died, else ""


@dataclass(frozen=True)
class NodeRow:
    node_id: str
    ip: str
    head: bool
    state: str
    resources: dict[str, float]


@dataclass(frozen=True)
class Status:
    address: str
    namespace: str
    nodes: list[NodeRow]
    actors: list[ActorRow]


def resolve_address(address: str | None, configured: str | None = None) -> str:
    """``--address``, else the config's ``ray.address``, else ``RAY_ADDRESS``, else the local cluster ('auto'):
    the order ``firm run`` joins a cluster in."""
    return address or configured or os.environ.get("RAY_ADDRESS") or "auto"


def bootstrap_address(address: str) -> str:
    """host:port of the cluster's GCS; raises ClusterUnreachable if nothing listens there."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        resolved = canonicalize_bootstrap_address(address)
    except (ValueError, ConnectionError, OSError) as err:
        raise ClusterUnreachable(f"no Ray cluster at {address!r}: {err}") from None
    if resolved is None:
        raise ClusterUnreachable(
            f"no Ray cluster found for address {address!r}: none is running on this machine; "
            "give --address HOST:PORT of the head (or set RAY_ADDRESS)"
        )
    host, _, port = resolved.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except (OSError, ValueError) as err:
        where = resolved if resolved == address else f"{address} ({resolved})"
        raise ClusterUnreachable(f"no Ray cluster reachable at {where}: {err}") from None
    return resolved


def collect(address: str, namespace: str, all_instances: bool = False) -> Status:
    """The nodes and firm's actors of the cluster at ``address`` (host:port, 'auto' or RAY_ADDRESS)."""
    from ray.exceptions import AuthenticationError, RayError
    from ray.util.state import list_actors, list_nodes
    from ray.util.state.exception import RayStateApiException

    gcs = bootstrap_address(address)
    try:
        nodes = list_nodes(address=gcs, detail=True, timeout=STATE_TIMEOUT_S, raise_on_missing_output=False)
        actors = list_actors(
            address=gcs,
            filters=[("ray_namespace", "=", namespace)],
            detail=True,
            limit=10_000,
            timeout=STATE_TIMEOUT_S,
            raise_on_missing_output=False,
        )
    except AuthenticationError:
        raise ClusterUnreachable(
            f"the Ray cluster at {gcs} requires token authentication: set RAY_AUTH_MODE=token and provide the "
            "cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)"
        ) from None
    except (RayStateApiException, ConnectionError) as err:
        raise ClusterUnreachable(
            f"the Ray cluster at {gcs} does not answer state queries (is its dashboard running? the head needs "
            f"--include-dashboard=true): {str(err).strip().splitlines()[0][:300]}"
        ) from None
    except RayError as err:
        raise ClusterUnreachable(f"the Ray cluster at {gcs} failed the query: {err}") from None
    ips = {n.node_id: n.node_ip for n in nodes}
    rows = [
        ActorRow(
            name=a.name or f"({a.class_name})",
            class_name=a.class_name,
            state=a.state,
            node_id=a.node_id or "",
            node_ip=ips.get(a.node_id, ""),
            restarts=int(a.num_restarts or 0),
            pid=a.pid or None,
            job_id=a.job_id or "",
            detached=bool(a.is_detached),
            death=_death(a.death_cause) if a.state == "DEAD" else "",
        )
        for a in actors
    ]
    node_rows = [
        NodeRow(n.node_id, n.node_ip, bool(n.is_head_node), n.state, dict(n.resources_total or {})) for n in nodes
    ]
    node_rows.sort(key=lambda n: (not n.head, n.state != "ALIVE", n.ip, n.node_id))
    return Status(gcs, namespace, node_rows, rows if all_instances else current(rows))


def current(rows: list[ActorRow]) -> list[ActorRow]:
    """Per name the live instance, else the most recent one; unnamed actors alive or of the latest job."""
    latest_job = max((_job(r.job_id) for r in rows), default=-1)
    by_name: dict[str, ActorRow] = {}
    unnamed: list[ActorRow] = []
    for r in rows:
        if r.name.startswith("("):
            if r.state != "DEAD" or _job(r.job_id) == latest_job:
                unnamed.append(r)
            continue
        kept = by_name.get(r.name)
        if kept is None or _rank(r) > _rank(kept):
            by_name[r.name] = r
    return sorted([*by_name.values(), *unnamed], key=lambda r: (r.name.startswith("("), r.name, r.job_id))


def _rank(r: ActorRow) -> tuple[bool, int, int]:
    return r.state != "DEAD", _job(r.job_id), r.restarts


def _job(job_id: str) -> int:
    """Ray's job ids are little-endian counters in hex: a later job has a larger number."""
    try:
        return int.from_bytes(bytes.fromhex(job_id), "little")
    except ValueError:
        return -1


def _death(cause: dict | None) -> str:
    if not cause:
        return ""
    ctx = cause.get("actor_died_error_context") or next(iter(cause.values()), {})
    if not isinstance(ctx, dict):
        return str(ctx)[:120]
    return str(ctx.get("reason") or ctx.get("error_message", ""))[:120]


def render(status: Status) -> str:
    lines = [f"Ray cluster {status.address}: {len(status.nodes)} node(s)"]
    for n in status.nodes:
        lines.append(
            f"  {n.node_id[:12]}  {n.ip:15s} {'head  ' if n.head else 'worker'} {n.state:6s} {_resources(n.resources)}"
        )
    if not status.actors:
        lines.append(f"\nno firm actors in namespace {status.namespace!r}")
        return "\n".join(lines)
    width = max(len("actor"), *(len(a.name) for a in status.actors))
    lines += [
        f"\nfirm actors in namespace {status.namespace!r}:",
        f"  {'actor':{width}s}  {'state':16s} {'node':28s} {'restarts':>8s} {'pid':>8s}  job",
    ]
    for a in status.actors:
        node = f"{a.node_id[:12]} {a.node_ip}" if a.node_id else "-"
        extra = (" detached" if a.detached else "") + (f"  ({a.death})" if a.death else "")
        lines.append(
            f"  {a.name:{width}s}  {a.state:16s} {node:28s} {a.restarts:>8d} {a.pid or '-':>8}  {a.job_id}{extra}"
        )
    counts: dict[str, int] = {}
    for a in status.actors:
        counts[a.state] = counts.get(a.state, 0) + 1
    lines.append("  " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return "\n".join(lines)


def _resources(res: dict[str, float]) -> str:
    """CPU, GPU, memory and custom resources (such as ib_gateway); Ray's per-node bookkeeping left out."""
    parts = []
    for key in sorted(res, key=lambda k: (k not in ("CPU", "GPU"), k)):
        if key.startswith("node:") or key in ("object_store_memory",) or key.startswith("accelerator_type"):
            continue
        value = res[key]
        if key == "memory":
            parts.append(f"memory {value / 2**30:.1f} GiB")
        else:
            parts.append(f"{key} {value:g}")
    return ", ".join(parts)
