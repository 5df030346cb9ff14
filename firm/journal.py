"""The run's audit trail: a JSONL journal of every event and a write-ahead log of orders."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from firm.events import Event


def event_line(event: Event) -> str:
    """One journal line: ``{"type": <event class>, ...fields}``; deterministic for equal events."""
    body = event.model_dump_json()
    return f'{{"type":"{type(event).__name__}",{body[1:]}\n'


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

    def record(self, kind: str, **fields: Any) -> None:
        """A journal line that is not an event (run start/end, barrier reports)."""
        self._file.write(json.dumps({"type": kind, **fields}, sort_keys=True, default=str) + "\n")
        self.count += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class OrderLog:
    """Write-ahead log of orders: a record is on disk (flushed, optionally fsynced) before the send."""

    def __init__(self, path: str | os.PathLike[str], fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self._file = open(self.path, "a", encoding="utf-8")

    def append_many(self, records: list[dict[str, Any]], sync: bool = True) -> None:
        """Write ``records``; when ``sync``, they are flushed (and fsynced if configured) on return."""
        self._file.write("".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in records))
        if sync:
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def sha256_file(path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
