"""The run's order capability: who may drive orders, and who may connect to the broker.

A run's driver draws a secret token (:func:`issue`) and hands it to the CIO and the execution actor when
it creates them. The calls that can lead to an order (the CIO's ``run_batch`` and ``set_agent_enabled``,
execution's ``execute`` and ``close``) must present it; any other caller (a notebook attached with
:mod:`firm.attach`, a second driver) is refused with a :class:`CapabilityError`. No read method returns
the token, and it is never printed or journaled.

A broker connection (:func:`check_broker_owner`) may be opened only by the execution actor (the Ray actor
named ``execution``), or by a plain process that has not attached read-only: never from a notebook that
attached, nor from any other Ray worker (a task or another actor).

This is a guard against accidents, not a security boundary: anyone who can reach the cluster can run code
on it (Ray's token authentication is what keeps strangers out).
"""

from __future__ import annotations

import hmac
import secrets

EXECUTION_ACTOR = "execution"  # the name of the run's execution actor (firm.placement.EXECUTION_NAME)

_held: dict[str, str] = {}  # key -> token issued by this process (the driver)
_read_only = False


class CapabilityError(PermissionError):
    """A call that can place orders came without the run's capability, or a broker connection from elsewhere."""


def run_key(namespace: str, cio_name: str) -> str:
    """The key a run's token is held under: its namespace and its CIO's name."""
    return f"{namespace}/{cio_name}"


def issue(key: str) -> str:
    """A fresh token for the run keyed ``key`` (e.g. namespace/cio name), held by this process only."""
    token = secrets.token_hex(32)
    _held[key] = token
    return token


def held(key: str) -> str | None:
    """The token this process issued for ``key`` (the driver's operator hooks use it), or None."""
    return _held.get(key)


def release(key: str) -> None:
    _held.pop(key, None)


def check(presented: str | None, expected: str | None, what: str) -> None:
    """Raise CapabilityError unless ``presented`` is the run's token (compared in constant time). An actor
    created without a token (``expected`` None) refuses every such call."""
    if expected is None:
        raise CapabilityError(f"{what} refused: this actor was created without a run's order capability")
    if not isinstance(presented, str) or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise CapabilityError(
            f"{what} refused: the call did not present the run's order capability. Only the driver that "
            "started the run can drive orders; a view attached with firm.attach is read-only"
        )


def mark_read_only() -> None:
    """This process attached to a running firm read-only: it may never open a broker connection."""
    global _read_only
    _read_only = True


def is_read_only() -> bool:
    return _read_only


def check_broker_owner(where: str) -> None:
    """Raise CapabilityError unless this process may open the broker connection ``where``."""
    if _read_only:
        raise CapabilityError(
            f"{where}: this process attached read-only (firm.attach); only the run's execution actor connects "
            "to the broker"
        )
    import ray

    if not ray.is_initialized():
        return
    ctx = ray.get_runtime_context()
    if ctx.worker.mode != ray.WORKER_MODE:
        return  # a driver process of its own (a test, a bench script): not a worker of someone else's run
    name = ctx.get_actor_name() if ctx.get_actor_id() else None
    if name != EXECUTION_ACTOR:
        who = f"actor {name!r}" if name else ("an unnamed actor" if ctx.get_actor_id() else "a Ray task")
        raise CapabilityError(
            f"{where}: refused in {who}; only the run's execution actor (named {EXECUTION_ACTOR!r}) connects to "
            "the broker, so there is never a second connection"
        )
