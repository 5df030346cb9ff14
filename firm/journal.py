"""The run's audit trail: a JSONL journal of every event and a write-ahead log of orders."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from datetime import datetime
from typing import Any, Iterable

import numpy as np
from pydantic_core import to_json

from firm.events import Event

log = logging.getLogger("firm.journal")


def event_line(event: Event) -> str:
    """One journal line: ``{"type": <event class>, ...fields}``; deterministic for equal events."""
    body = event.model_dump_json()
    return f'{{"type":"{type(event).__name__}",{body[1:]}\n'


def signal_lines(
    agent: str,
    symbols: tuple[str, ...],
    stamps: list[str],
    closes_at: list[datetime],
    strength: np.ndarray,
    confidence: np.ndarray,
    rationale: dict[str, np.ndarray],
) -> list[str]:
    """The journal lines of one agent's ``SignalEvent``s for a batch: element k holds row k's lines (its
    instruments in order; "" where the agent abstains on all of them).

    Byte for byte ``event_line(SignalEvent(...))`` of the events the journal would otherwise build
    (tests/firm/test_journal.py), without building them: an agent writes its own lines, in its own
    process, so the cost of journaling every signal is spread over the agents instead of queued on the
    driver. Rationale values that are not finite are left out, as NaN has no JSON form.
    """
    st, cf = strength.tolist(), confidence.tolist()
    rat = [(key, values.tolist()) for key, values in rationale.items()]
    rows = []
    for k, (stamp, ts) in enumerate(zip(stamps, closes_at)):
        lines = []
        for j, symbol in enumerate(symbols):
            s = st[k][j]
            if s != s:
                continue
            reasons = {}
            for key, values in rat:
                x = values[k][j]
                if x - x == 0.0:  # finite
                    reasons[key] = x
            line = {
                "type": "SignalEvent",
                "id": f"sig:{agent}:{symbol}:{stamp}",
                "cause_id": f"bar:{symbol}:{stamp}",
                "ts": ts,
                "agent": agent,
                "symbol": symbol,
                "direction": (s > 0) - (s < 0),
                "strength": s,
                "confidence": cf[k][j],
                "rationale": reasons,
            }
            lines.append(to_json(line).decode())
        rows.append("".join(f"{line}\n" for line in lines))
    return rows


class Journal:
    """Appends events in the order the run commits them (market time within a bar's stages)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._file = open(self.path, "a", encoding="utf-8")
        self.count = 0

    def write(self, events: Iterable[Event]) -> None:
        lines = [event_line(e) for e in events]
        self._file.writelines(lines)
        self.count += len(lines)

    def write_lines(self, text: str) -> None:
        """Lines already in journal form (``signal_lines``), each ending in a newline."""
        self._file.write(text)
        self.count += text.count("\n")

    def record(self, kind: str, **fields: Any) -> None:
        """A journal line that is not an event (run start/end, barrier reports)."""
        self._file.write(json.dumps({"type": kind, **fields}, sort_keys=True, default=str) + "\n")
        self.count += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class OrderLog:
    """Write-ahead log of orders: a record is on disk (flushed, optionally fsynced) before the send.

    Opening an existing log (a restarted execution actor) first cuts a torn last line, the part of a
    record a killed process did not finish writing, so the next record starts on a line of its own.
    Such a record was never complete, so nothing it describes was sent.
    """

    def __init__(self, path: str | os.PathLike[str], fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self.torn = _cut_torn_tail(self.path)
        self._file = open(self.path, "a", encoding="utf-8")

    def append_many(self, records: list[dict[str, Any]], sync: bool = True) -> None:
        """Write ``records``; they are flushed to the OS on return (a killed process loses none of them),
        and with ``sync`` also fsynced if configured (a machine that loses power loses none)."""
        self._file.write("".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in records))
        self._file.flush()
        if sync and self.fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _cut_torn_tail(path: Path) -> str | None:
    """Truncate ``path`` after its last newline; return what was cut (None: nothing was torn)."""
    if not path.exists():
        return None
    with open(path, "rb+") as f:
        data = f.read()
        if not data or data.endswith(b"\n"):
            return None
        keep = data.rfind(b"\n") + 1
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    torn = data[keep:].decode("utf-8", "replace")
    log.warning("%s: cut a torn last line (%d bytes, never complete, never sent): %.80s", path, len(torn), torn)
    return torn


def read_order_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a write-ahead log; [] if there is none. A torn last line (one without its newline:
    the writer died in it) is logged and skipped; a line before it that is not JSON is corruption and
    raises ValueError naming the line."""
    path = Path(path)
    if not path.exists():
        return []
    *lines, tail = path.read_text(encoding="utf-8", errors="replace").split("\n")
    if tail:
        log.warning("%s: skipped a torn last line %d (never complete, never sent): %.80s", path, len(lines) + 1, tail)
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {number} of the order log is not a JSON record ({err.msg}): {line[:80]!r}") from err
    return records


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def sha256_file(path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
