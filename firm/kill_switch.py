"""The kill switch's persisted state: engaged until a person resets it, across runs and restarts.

One JSON file (``Config.kill_switch_path()``: ``risk.kill_switch.state_file``, by default
``<run.output_dir>/state/kill_switch.json``) holds the current state: engaged or not, why, which
trigger, who and when (wall clock, UTC) and, for a trip inside a run, the market time and the run.
It is replaced atomically (written to a temporary file in the same directory, fsynced, renamed,
directory fsynced), so a crash leaves either the old state or the new one. Every change is also
appended to ``kill_switch.log.jsonl`` beside it: the audit trail of engages and resets.

A missing file means disengaged. A file that cannot be read is an error, never "disengaged": the
run refuses to start until it is repaired or reset (``firm kill-switch reset``).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path


class KillSwitchError(RuntimeError):
    """The state file exists but cannot be used."""


@dataclass(frozen=True)
class KillSwitchState:
    engaged: bool = False
    reason: str = ""
    trigger: str = ""  # manual, drawdown_tier, daily_loss
    by: str = ""  # user@host, or "risk (run <dir>)"
    at: str = ""  # wall-clock UTC of the change
    market_ts: str | None = None  # market time of a trip inside a run
    run: str | None = None
    flatten: bool = False

    def describe(self) -> str:
        if not self.engaged:
            return f"disengaged (reset by {self.by} at {self.at}: {self.reason})" if self.at else "disengaged"
        where = f", market time {self.market_ts}" if self.market_ts else ""
        run = f", run {self.run}" if self.run else ""
        return f"ENGAGED by {self.by} at {self.at} ({self.trigger}{where}{run}): {self.reason}"


def whoami() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no login name (container without passwd entry)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def load(path: str | os.PathLike[str]) -> KillSwitchState:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return KillSwitchState()
    except (OSError, ValueError) as err:
        raise KillSwitchError(f"{path}: kill switch state unreadable ({err}); fix it or run 'firm kill-switch reset'") from None
    try:
        return KillSwitchState(**raw)
    except TypeError as err:
        raise KillSwitchError(f"{path}: kill switch state has unexpected fields ({err})") from None


def save(path: str | os.PathLike[str], state: KillSwitchState) -> None:
    """Atomically replace the state file, then append the change to the audit log beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(asdict(state), indent=2, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".kill_switch.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    with open(audit_log(path), "a") as log:
        log.write(json.dumps({"action": "engage" if state.engaged else "reset", **asdict(state)}, sort_keys=True) + "\n")
        log.flush()
        os.fsync(log.fileno())


def audit_log(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".log.jsonl")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def engage(
    path: str | os.PathLike[str],
    reason: str,
    *,
    trigger: str = "manual",
    by: str | None = None,
    market_ts: str | None = None,
    run: str | None = None,
    flatten: bool = False,
) -> KillSwitchState:
    state = KillSwitchState(
        engaged=True,
        reason=reason,
        trigger=trigger,
        by=by or whoami(),
        at=now_utc(),
        market_ts=market_ts,
        run=run,
        flatten=flatten,
    )
    save(path, state)
    return state


def reset(path: str | os.PathLike[str], reason: str, *, by: str | None = None) -> tuple[KillSwitchState, KillSwitchState]:
    """Disengage; returns (previous, new). A corrupt state file is replaced (the reset is the repair)."""
    try:
        before = load(path)
    except KillSwitchError:
        before = KillSwitchState(engaged=True, reason="unreadable state file", trigger="unknown")
    state = KillSwitchState(engaged=False, reason=reason, trigger="reset", by=by or whoami(), at=now_utc())
    save(path, state)
    return before, state
