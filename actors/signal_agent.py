"""The one generic signal-agent actor: any registered strategy, fed the bars it has seen so far."""

from __future__ import annotations

import numpy as np
import pandas as pd
import ray

from firm.batches import Bars, SignalBatch
from firm.data.validate import get_calendar
from firm.journal import signal_lines
from strategies import registry
from strategies.base import Panel

_FIELDS = ("open", "high", "low", "close", "volume")

# Signals are rounded to 1e-9 so that a last-bit difference in a transcendental function between
# two machines' math libraries cannot change a decision, and with it the order log.
SIGNAL_DECIMALS = 9


class _History:
    """Append-only bar history with amortised O(1) appends."""

    def __init__(self, symbols: tuple[str, ...], capacity: int = 1024):
        self.symbols = symbols
        self.n = 0
        self.ts = np.empty(capacity, dtype=np.int64)
        self.data = {f: np.empty((capacity, len(symbols))) for f in _FIELDS}
        self.reference: dict[str, np.ndarray] = {}

    def extend(self, panel: Panel) -> None:
        k = len(panel.ts)
        if self.n and panel.ts[0] <= self.ts[self.n - 1]:
            raise ValueError("bars must arrive in time order, without repeats")
        if set(panel.reference) != set(self.reference) and self.n:
            raise ValueError("the reference series changed in the middle of the history")
        if self.n + k > len(self.ts):
            cap = max(2 * len(self.ts), self.n + k)
            self.ts = np.resize(self.ts, cap)
            self.data = {f: np.resize(a, (cap, a.shape[1])) for f, a in self.data.items()}
            self.reference = {name: np.resize(a, cap) for name, a in self.reference.items()}
        for name in panel.reference:
            self.reference.setdefault(name, np.empty(len(self.ts)))
        self.ts[self.n : self.n + k] = panel.ts
        for f in _FIELDS:
            self.data[f][self.n : self.n + k] = getattr(panel, f)
        for name, values in panel.reference.items():
            self.reference[name][self.n : self.n + k] = values
        self.n += k

    def panel(self) -> Panel:
        n = self.n
        return Panel(
            self.ts[:n],
            self.symbols,
            *(self.data[f][:n] for f in _FIELDS),
            reference={name: a[:n] for name, a in self.reference.items()},
        )


@ray.remote(num_cpus=0)
class BarsArchive:
    """The object refs of every batch of the run, in order: what a restarted agent rebuilds its history from."""

    def __init__(self):
        self.batches: list[tuple[int, list[ray.ObjectRef]]] = []

    def add(self, offset: int, refs: list[ray.ObjectRef]) -> None:
        self.batches.append((offset, refs))

    def before(self, offset: int) -> list[tuple[int, list[ray.ObjectRef]]]:
        return [(o, refs) for o, refs in self.batches if o < offset]


@ray.remote(num_cpus=0, max_restarts=0)
class SignalAgent:
    """One strategy's agent. With an ``archive`` (the pipeline's), an agent whose history does not reach the
    batch it is given (Ray restarted it after a crash or a kill) first rebuilds the history from the archive,
    and abstains on the whole batch (NaN, no journal lines) while it cannot: it never speaks on a partial history."""

    def __init__(
        self,
        name: str,
        params: dict,
        symbols: tuple[str, ...],
        calendar: str = "XNYS",
        archive=None,
        strategy_cls: type | None = None,
    ):
        self.name = name
        self.strategy = strategy_cls(params) if strategy_cls is not None else registry.create(name, params)
        self.history = _History(tuple(symbols))
        self.archive = archive
        self.rebuilt_rows = 0  # rows taken from the archive after a restart
        self._compile(len(symbols), calendar)

    def _compile(self, m: int, calendar: str) -> None:
        """Run the strategy once on a synthetic random walk over real sessions of ``calendar``, so JIT
        compilation and calendar set-up happen before the replay, not inside the first barrier."""
        rng = np.random.default_rng(0)
        n = max(64, 2 * self.strategy.warmup + 8)
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, m)), axis=0))
        ts = pd.DatetimeIndex(get_calendar(calendar).closes.iloc[:n]).as_unit("ns").asi8
        self.strategy.compute(Panel(ts, self.history.symbols, close, close * 1.01, close * 0.99, close, np.ones((n, m))))

    def ready(self) -> str:
        return self.name

    def _rebuild(self, offset: int) -> None:
        """Extend the history with the archived batches it lacks before row ``offset`` (in order, contiguous)."""
        try:
            archived = ray.get(self.archive.before.remote(offset))
            for o, (ref,) in archived:
                if o < self.history.n:
                    continue
                if o != self.history.n:
                    return  # a gap in the archive: stay incomplete
                bars: Bars = ray.get(ref)
                self.history.extend(bars.panel)
                self.rebuilt_rows += len(bars)
        except ray.exceptions.RayError:
            return

    def status(self) -> dict:
        return {"name": self.name, "rows": self.history.n, "rebuilt_rows": self.rebuilt_rows}

    def on_bars(self, bars: Bars) -> SignalBatch:
        if self.archive is not None and self.history.n < bars.offset:
            self._rebuild(bars.offset)
            if self.history.n != bars.offset:
                return _abstain(self.name, bars)
        self.history.extend(bars.panel)
        advice = self.strategy.compute(self.history.panel())
        k = len(bars)
        new = slice(self.history.n - k, self.history.n)
        strength = advice.strength[new]
        finite = strength[~np.isnan(strength)]
        if finite.size and (finite.min() < -1 or finite.max() > 1):
            raise ValueError(f"agent {self.name}: strength outside [-1, 1]")
        strength = np.round(strength, SIGNAL_DECIMALS)
        confidence = np.round(np.clip(advice.confidence[new], 0.0, 1.0), SIGNAL_DECIMALS)
        rationale = {key: np.ascontiguousarray(v[new]) for key, v in advice.rationale.items()}
        return SignalBatch(
            agent=self.name,
            offset=bars.offset,
            strength=strength,
            confidence=confidence,
            rationale=rationale,
            journal=signal_lines(
                self.name, self.history.symbols, bars.stamps, bars.closes_at, strength, confidence, rationale
            ),
        )


def _abstain(agent: str, bars: Bars) -> SignalBatch:
    shape = bars.panel.close.shape
    return SignalBatch(
        agent=agent,
        offset=bars.offset,
        strength=np.full(shape, np.nan),
        confidence=np.zeros(shape),
        rationale={},
        journal=[""] * shape[0],
    )
