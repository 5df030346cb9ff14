"""Live trading on Interactive Brokers' daily bars: ``firm run --feed ib``.

The same actors and functions as a replay (``firm.pipeline.Pipeline``, ``journal_batch``), fed by
:class:`firm.data.ib_source.IBBarSource` instead of the shipped data:

1. **Warm-up.** The last ``live.warmup_sessions`` completed sessions (default: the longest warm-up of the
   enabled agents + 20) from ``reqHistoricalData``, as ``live.what_to_show`` bars (``ADJUSTED_LAST``:
   adjusted for splits and dividends like the shipped data; see ``firm/data/ib_source.py`` for the price
   scale). They go through the pipeline as one batch in ``warmup`` mode: the agents' histories, the CIO's
   market state (volatility, agents' records, edge) and risk's history advance, nothing is decided, so
   the agents speak and the CIO can size from the first live bar. The warm-up is journaled like any bar.
2. **Live, batch 1.** After each session's close (+ ``live.poll_delay_s``) the feed asks IB for the bars
   completed since (``poll_new_bars``), again every ``live.poll_retry_s`` until they are there or
   ``live.poll_give_up_s`` has passed. Every bar is validated (``firm/data/validate.py``): a bad one is
   written to the run's ``quarantine.jsonl`` with its reason and logged, and its instrument has no bar in
   that row (NaN), so nothing is decided or traded on it. Each new session is one row, sent through
   ``Pipeline.submit`` in ``live`` mode: execution first books the session's fills from the broker, and
   the CIO decides on the broker's book (re-based); where it differs from the projection (real prices,
   commissions, partial fills) a ``ProjectionDriftEvent`` is journaled and the run goes on.
   With IB the book is the account's (:meth:`firm.execution.ExecutionEngine.adopt_account`): the warm-up runs
   on its equity in cash (a flat equity path), and before the first live session the positions in the run's
   symbols (shares, IB's average cost as cost basis) and the cash as reported enter the book, journaled as an
   ``AccountSnapshotEvent``; positions in other symbols are reported as outside the run and never traded.
3. **Stop** after ``live.sessions`` sessions (``--sessions N``) or on Ctrl-C (a session being processed is
   finished first), with the usual summary of the live sessions.

Market time comes from a :class:`MarketClock`: by default the gateway's own clock (:class:`GatewayClock`), which
is real time at IB and the replay clock at the fake gateway (``firm ibsim``); tests drive the fake's clock with
one that moves its market when the loop waits.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import pandas as pd
import ray
import yaml

from firm import kill_switch
from firm.batches import BatchResult, Bars
from firm.config import Config, ConfigError
from firm.data.ib_source import IBBars, IBBarSource
from firm.data.reference import load_reference
from firm.data.source import COLUMNS
from firm.data.validate import Quarantined, get_calendar, sort_quarantine, write_quarantine
from firm.events import AccountSnapshotEvent
from firm.journal import Journal
from firm.pipeline import Pipeline, RunResult, journal_batch, make_run_dir, start_ray
from firm.summary import RunStats
from strategies.base import Panel

WARMUP_MARGIN = 20  # sessions beyond the longest agent warm-up: the CIO's volatility needs vol_min_obs returns


class MarketClock(Protocol):
    """Market time for the live loop."""

    def now(self) -> pd.Timestamp:
        """The current time, UTC."""

    def wait_until(self, ts: pd.Timestamp) -> None:
        """Return once ``ts`` (UTC) has passed."""


class GatewayClock:
    """The gateway's clock (reqCurrentTime on the bar source's connection): real time at IB; at the fake
    gateway (``firm ibsim``) its replay clock, so a rehearsal waits for the fake's market to move. Waits sleep
    at most ``poll_s`` between asks (Ctrl-C stops a wait at once)."""

    def __init__(self, source: IBBarSource, poll_s: float = 2.0):
        self.source = source
        self.poll_s = poll_s

    def now(self) -> pd.Timestamp:
        return self.source.current_time()

    def wait_until(self, ts: pd.Timestamp) -> None:
        while (left := (ts - self.now()).total_seconds()) > 0:
            time.sleep(min(left, self.poll_s))


def warmup_sessions(cfg: Config) -> int:
    """``live.warmup_sessions``, or the longest warm-up of the enabled agents + WARMUP_MARGIN."""
    if cfg.live.warmup_sessions is not None:
        return cfg.live.warmup_sessions
    from strategies import registry

    longest = max(registry.create(name, a.params).warmup for name, a in cfg.enabled_agents().items())
    return longest + max(WARMUP_MARGIN, cfg.cio.vol_min_obs)


def to_bars(frames: dict[str, pd.DataFrame], symbols: tuple[str, ...], offset: int, cfg: Config) -> Bars:
    """Clean daily bars per symbol (IBBars.bars) as pipeline rows from ``offset``: one row per session with a
    bar of some symbol, stamped at the session's close, NaN where a symbol has none; reference series as
    public at each close."""
    calendar = get_calendar(cfg.data.calendar)
    stamps = [frames[s].index.asi8 for s in symbols if s in frames and len(frames[s])]
    sessions = pd.DatetimeIndex(np.unique(np.concatenate(stamps)).view("datetime64[ns]"), name="date")
    empty = pd.DataFrame(columns=list(COLUMNS), dtype="float64")
    aligned = [frames.get(s, empty).reindex(sessions) for s in symbols]
    fields = {c: np.column_stack([a[c].to_numpy(dtype="float64") for a in aligned]) for c in COLUMNS}
    closes = _utc_ns(calendar.closes.reindex(sessions))
    panel = Panel(
        ts=closes, symbols=symbols, **fields, reference=load_reference(cfg.data.reference, closes, cfg.data.calendar)
    )
    return Bars(offset=offset, panel=panel, session_open=_utc_ns(calendar.opens.reindex(sessions)))


def _utc_ns(values: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(values).tz_convert("UTC").as_unit("ns").asi8.astype(np.int64)


@dataclass
class LiveFeed:
    """IB's daily bars as pipeline rows: the warm-up, then each new session once it has closed."""

    source: IBBarSource
    cfg: Config
    clock: MarketClock
    run_dir: object
    say: Callable[[str], None] = print
    quarantined: list[Quarantined] = field(default_factory=list)
    last: pd.Timestamp | None = None  # the session of the last row handed out
    expected: pd.Timestamp | None = None  # the next session waited for
    rows: int = 0

    def __post_init__(self) -> None:
        self.calendar = get_calendar(self.cfg.data.calendar)
        self.symbols = tuple(self.cfg.data.symbols)

    def warmup(self) -> Bars:
        n = warmup_sessions(self.cfg)
        got = self.source.history(self.symbols, None, n)
        self._quarantine(got.quarantined)
        if not any(len(f) for f in got.bars.values()):
            raise RuntimeError(f"IB returned no clean bar of {', '.join(self.symbols)} for the last {n} sessions")
        bars = to_bars(got.bars, self.symbols, 0, self.cfg)
        self.rows = len(bars)
        self.last = got.sessions()[-1]
        self.expected = self.calendar.next_session(self.last)
        return bars

    def next_rows(self) -> list[Bars]:
        """Wait for the next session to close and IB to have its bars; the new sessions' rows, in order
        (empty when the session's bars never came or were all refused)."""
        close = self.calendar.session_close(self.expected)
        self.clock.wait_until(close + pd.Timedelta(seconds=self.cfg.live.poll_delay_s))
        give_up = close + pd.Timedelta(seconds=self.cfg.live.poll_give_up_s)
        while True:
            got = self.source.poll_new_bars()
            for sym, session, factor in got.adjustments:
                self.say(f"firm: {sym}: IB re-adjusted its history at {session} (x{factor:.6f}): a dividend or split "
                         "went ex; the agents keep the history they have")  # fmt: skip
            arrived = self._arrived(got)
            if arrived:
                return self._rows(got, arrived)
            if self.clock.now() >= give_up:
                self.say(f"firm: no bar from IB for the session of {self.expected.date()} by {give_up}: left out")
                self.expected = self.calendar.next_session(self.expected)
                return []
            self.clock.wait_until(self.clock.now() + pd.Timedelta(seconds=self.cfg.live.poll_retry_s))

    def _arrived(self, got: IBBars) -> list[pd.Timestamp]:
        """Sessions after the last row for which some bar came, clean or refused."""
        days = set(got.sessions())
        days |= {pd.Timestamp(q.date) for q in got.quarantined if q.reason != "missing_session"}
        return sorted(d for d in days if d > self.last)

    def _rows(self, got: IBBars, arrived: list[pd.Timestamp]) -> list[Bars]:
        late = [
            Quarantined(sym, d.date().isoformat(), "late_bar", f"arrived after the session of {self.last.date()} was "
                        "traded without it", {c: float(x) for c, x in row.items()})  # fmt: skip
            for sym, frame in got.bars.items()
            for d, row in frame[frame.index <= self.last].iterrows()
        ]
        self._quarantine([*got.quarantined, *late])
        rows = []
        for session in arrived:
            frames = {s: f[f.index == session] for s, f in got.bars.items()}
            if any(len(f) for f in frames.values()):
                rows.append(to_bars(frames, self.symbols, self.rows, self.cfg))
                self.rows += 1
        self.last = arrived[-1]
        self.expected = self.calendar.next_session(self.last)
        return rows

    def _quarantine(self, records: list[Quarantined]) -> None:
        if not records:
            return
        for q in records:
            self.say(f"firm: quarantined {q.symbol} {q.date} {q.reason}: {q.detail}")
        self.quarantined = sort_quarantine([*self.quarantined, *records])
        write_quarantine(self.quarantined, self.run_dir / "quarantine.jsonl")


class _Interrupts:
    """Ctrl-C while a session is being processed is held until it is done; while waiting, it stops at once."""

    def __init__(self):
        self.busy = False
        self.requested = False
        self._old = None

    def __enter__(self) -> _Interrupts:
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C is not ours to handle
            self._old = None
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True
        if not self.busy:
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def account_line(ev: AccountSnapshotEvent) -> str:
    """The start line of a live run on a broker account (account masked)."""
    held = ", ".join(f"{s} {q:+,}" for s, q in sorted(ev.positions.items())) or "no position"
    line = f"firm: account {ev.account}: cash {ev.cash:,.2f} {ev.currency}, {held} in the run's symbols; equity {ev.equity:,.2f}"
    if ev.outside:
        line += "; outside the run (not traded, not in its book or limits): " + ", ".join(
            f"{s} {q:+,g}" for s, q in sorted(ev.outside.items())
        )
    return line


def bar_source(cfg: Config) -> IBBarSource:
    """The run's IB market-data connection (the broker's client id + 1), asking ``live.what_to_show`` bars, on
    the gateway's clock."""
    from firm.broker.endpoint import endpoint

    kind = cfg.broker.kind if cfg.broker.kind != "sim" else "ib-paper"
    ep = endpoint(cfg.broker.ib, kind)
    holder: list[IBBarSource] = []
    source = IBBarSource(cfg.data.symbols, cfg.broker.ib, ep, cfg.data.calendar, what_to_show=cfg.live.what_to_show,
                         now=lambda: holder[0].current_time())  # fmt: skip
    holder.append(source)
    return source


def run_live(
    cfg: Config,
    *,
    config_name: str = "live",
    address: str | None = None,
    progress: bool = True,
    clock: MarketClock | None = None,
    source: IBBarSource | None = None,
    on_batch: Callable[[Bars, BatchResult], None] | None = None,
) -> RunResult:
    """Trade ``cfg`` live on IB's daily bars until ``live.sessions`` sessions or Ctrl-C; returns the run."""
    if cfg.broker.ib.replay_control:
        raise ConfigError(
            "--feed ib: broker.ib.replay_control (--replay-control) is for replay rehearsals; a live market moves by itself"
        )
    switch = kill_switch.load(cfg.kill_switch_path())
    if switch.engaged:
        print(f"firm: the kill switch is {switch.describe()}; no order that increases risk is sent", file=sys.stderr)
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if progress else (lambda line: None)
    own_source = source is None
    source = source or bar_source(cfg)
    clock = clock or GatewayClock(source)
    run_dir = make_run_dir(cfg, config_name)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    write_quarantine([], run_dir / "quarantine.jsonl")
    symbols = tuple(cfg.data.symbols)
    feed = LiveFeed(source, cfg, clock, run_dir, say)
    stats = RunStats(symbols=symbols, initial_cash=cfg.broker.initial_cash)
    pipeline = journal = None
    latencies: list[float] = []
    t0 = time.perf_counter()
    ray_start_s = 0.0
    try:
        warm = feed.warmup()
        say(f"firm: warm-up of {len(warm)} sessions to {feed.last.date()} from IB ({cfg.live.what_to_show}); "
            f"live from the session of {feed.expected.date()}")  # fmt: skip
        ray_start_s = start_ray(cfg, address)
        pipeline = Pipeline(cfg, symbols, run_dir, switch, config_name=config_name)
        journal = Journal(run_dir / "journal.jsonl")
        journal_batch(journal, warm, ray.get(pipeline.submit(warm, "warmup")))
        account = ray.get(pipeline.execution.adopt_account.remote(clock.now().to_pydatetime(), capability=pipeline.capability))
        stats.projection_drifts = 0
        if account is None:
            say(f"firm: simulated broker: the book starts from broker.initial_cash {cfg.broker.initial_cash:,.0f}")
        else:
            journal.write([account])
            stats.initial_cash, stats.account = account.equity, account
            say(account_line(account))
        sessions = 0
        with _Interrupts() as interrupts:
            try:
                while cfg.live.sessions is None or sessions < cfg.live.sessions:
                    rows = feed.next_rows()
                    interrupts.busy = True
                    for bars in rows:
                        t1 = time.perf_counter()
                        result: BatchResult = ray.get(pipeline.submit(bars, "live"))
                        latencies.append(time.perf_counter() - t1)
                        journal_batch(journal, bars, result)
                        stats.add(bars, result)
                        if on_batch:
                            on_batch(bars, result)
                        sessions += 1
                        say(f"[live] {bars.stamps[0][:8]}  orders {stats.orders:,}  fills {stats.fills:,}  "
                            f"equity {stats.last_equity:,.0f}  dd {stats.current_drawdown:.1%}")  # fmt: skip
                    interrupts.busy = False
                    if interrupts.requested:
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                say(f"firm: stopped (Ctrl-C) after {sessions} live session(s)")
    finally:
        if journal is not None:
            journal.close()
        if pipeline is not None:
            pipeline.shutdown()
        if own_source:
            source.close()
    stats.quarantined = list(feed.quarantined)
    if stats.rows:
        stats.finish(run_dir)
    return RunResult(run_dir, stats, ray_start_s, time.perf_counter() - t0, latencies)
