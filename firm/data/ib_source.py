"""Daily bars from Interactive Brokers: the warm-up history and, in live mode, each session's new bar.

:class:`IBBarSource` opens its own IB connection (``ib_async``; client id = the broker's + 1 by default,
since IB allows one connection per client id and the execution actor owns the broker's), with the same
host/port/account rules as :mod:`firm.broker.endpoint`. Like :class:`firm.broker.ib.IBBroker` it runs
``ib_async`` on its own event loop in a daemon thread; every public method is synchronous.

- :meth:`IBBarSource.history` asks for ``1 day`` ``TRADES`` bars with ``useRTH`` for the ``sessions``
  sessions of the calendar ending at ``end`` and returns them validated (:mod:`firm.data.validate`):
  clean bars in the frame shape of the other sources (DatetimeIndex "date", float64 open, high, low,
  close, volume) and the quarantined ones with their reason. A bad bar from IB never reaches the
  clean frames.
- :meth:`IBBarSource.poll_new_bars` returns the daily bars completed (their session closed) since the
  last poll or history, validated the same way. Live mode at batch 1 calls it after each session close.

Price scale (``what_to_show``). The shipped data is adjusted backwards for splits and dividends (every
past price scaled by the adjusted close over the close); IB's ``TRADES`` bars are adjusted for splits
only. Live runs (firm/live.py) ask for ``ADJUSTED_LAST``: IB's split- and dividend-adjusted bars, adjusted
backwards from the latest one, whose own prices are the traded ones. So the warm-up history is on the same
scale as the shipped data and continues without a gap into the first live bar, and each later bar is at
the prices orders trade at. IB refuses an end date with ``ADJUSTED_LAST`` (321, "End date not supported
with adjusted last"), so :meth:`history` asks up to now and trims to the sessions wanted. A dividend or a
split that goes ex during a run re-scales IB's history but not the agents' (they keep what they have
seen): :meth:`poll_new_bars` notices it, because the last bar it already had comes back at another
price, and reports it in ``IBBars.adjustments``.
- Pacing (:class:`firm.broker.circuit.RateLimiter`): at most ``historical_per_10min`` requests per
  10 minutes, and never two identical requests within ``historical_identical_s``. An identical
  request for a window that has already closed (an explicit ``end``) within that time is served from
  the cache without asking IB; a request ending "now" (a poll), whose answer can change, waits
  instead. A 162 (pacing violation) anyway blocks historical requests for the penalty
  (``RateLimiter.pacing_violation``); the request is retried once after it, and a second 162 raises
  :class:`HistoricalDataError`.

Clocks and sleeps are injectable (``clock``, ``sleep``, ``now``), so the pacing is tested on a
virtual clock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from ib_async import IB, Contract, Stock

from firm.broker.circuit import RateLimiter
from firm.broker.endpoint import Endpoint, mask_account
from firm.config import IBConfig
from firm.data.source import COLUMNS, DataSource
from firm.data.validate import Quarantined, get_calendar, sort_quarantine, validate

log = logging.getLogger("firm.data.ib_source")

PACING_VIOLATION = 162
NO_SECURITY = 200
REFUSED = frozenset({321})  # request refused as invalid (e.g. an end date with ADJUSTED_LAST); ib_async only warns
BAR_SIZE = "1 day"


class HistoricalDataError(RuntimeError):
    """IB did not deliver the historical bars asked for (pacing violation after the retry, unknown
    contract, another error, a timeout)."""


@dataclass
class IBBars:
    """What one history or poll returned: clean bars per symbol and what validation quarantined."""

    bars: dict[str, pd.DataFrame]
    quarantined: list[Quarantined] = field(default_factory=list)
    adjustments: list[tuple[str, str, float]] = field(default_factory=list)  # (symbol, session, new / old close)

    def sessions(self) -> pd.DatetimeIndex:
        """Every session with a clean bar of some symbol, sorted."""
        idx = [f.index for f in self.bars.values() if len(f)]
        return pd.DatetimeIndex(np.unique(np.concatenate([i.asi8 for i in idx])).view("datetime64[ns]")) if idx else pd.DatetimeIndex([])


def _empty() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in COLUMNS}, index=pd.DatetimeIndex([], name="date"))
    return frame


def _duration(days: int) -> str:
    """IB's durationStr for ``days`` calendar days: ``N D`` up to 365, whole years beyond (IB's rule)."""
    days = max(1, days)
    return f"{days} D" if days <= 365 else f"{math.ceil(days / 365)} Y"


class IBBarSource(DataSource):
    def __init__(
        self,
        symbols: tuple[str, ...],
        cfg: IBConfig,
        ep: Endpoint,
        calendar: str = "XNYS",
        client_id: int | None = None,
        what_to_show: str = "TRADES",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        now: Callable[[], pd.Timestamp] | None = None,
        request_timeout_s: float = 60.0,
        connect: bool = True,
    ):
        self._symbols = tuple(symbols)
        self.cfg = cfg
        self.ep = ep
        self.client_id = ep.client_id + 1 if client_id is None else client_id
        self.calendar = get_calendar(calendar)
        self.what_to_show = what_to_show
        self.limiter = RateLimiter(
            messages_per_s=cfg.messages_per_s,
            historical_per_10min=cfg.historical_per_10min,
            historical_identical_s=cfg.historical_identical_s,
            clock=clock,
        )
        self.clock = clock
        self._sleep = sleep or asyncio.sleep
        self._now = now or (lambda: pd.Timestamp.now(tz="UTC"))
        self.request_timeout_s = request_timeout_s
        self.contracts: dict[str, Contract] = {}
        self.last_session: dict[str, pd.Timestamp] = {}  # per symbol: the last session delivered
        self.last_close: dict[str, tuple[pd.Timestamp, float]] = {}  # per symbol: the last clean close delivered
        self.requests: list[tuple] = []  # every historical request sent to IB (its key)
        self.cache_hits = 0
        self.retries = 0
        self.waited_s = 0.0  # pacing waits (on ``clock``)
        self.errors: list[tuple[int, int, str]] = []
        self._cache: dict[Hashable, tuple[float, pd.DataFrame]] = {}
        self._raw: dict[str, pd.DataFrame] = {}
        self._asof = pd.Timestamp(0, tz="UTC")  # ``now`` as of the public call in progress
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="ib-bars", daemon=True)
        self._thread.start()
        self._call(self._init(), 10)
        if connect:
            self.connect()

    # plumbing -----------------------------------------------------------------------------------------

    def _call(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _init(self) -> None:
        self.ib = IB()
        self.ib.errorEvent += self._on_error

    def _on_error(self, req_id: int, code: int, message: str, contract) -> None:
        self.errors.append((req_id, code, message))
        if code == PACING_VIOLATION:
            self.limiter.pacing_violation()
            log.warning("IB pacing violation (162) on historical request %s: held back", req_id)

    async def _wait(self, delay: float) -> None:
        if delay > 0:
            self.waited_s += delay
            await self._sleep(delay)

    # connection ---------------------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect with the source's client id and qualify the symbols' stock contracts. Refused
        (CapabilityError) in a process attached read-only and in Ray workers other than execution."""
        from firm.capability import check_broker_owner

        check_broker_owner(f"IB bar source connection to {self.ep.host}:{self.ep.port}")
        self._call(self._connect(), self.cfg.connect_timeout_s + 30)

    async def _connect(self) -> None:
        try:
            await self.ib.connectAsync(
                self.ep.host, self.ep.port, clientId=self.client_id,
                timeout=self.cfg.connect_timeout_s, readonly=True, account=self.ep.account or "",
            )  # fmt: skip
        except (ConnectionError, OSError, asyncio.TimeoutError, TimeoutError) as err:
            raise ConnectionError(
                f"cannot connect the IB bar source to {self.ep.host}:{self.ep.port} client {self.client_id} "
                f"(account {mask_account(self.ep.account)}): {type(err).__name__}: {err}"
            ) from None
        missing = [s for s in self._symbols if s not in self.contracts]
        for sym in missing:
            await self._wait(self.limiter.reserve_message())
            (c,) = await self.ib.qualifyContractsAsync(Stock(sym, "SMART", "USD"))
            if c is None or not c.conId:
                raise HistoricalDataError(f"IB has no US stock contract for {sym!r} on SMART")
            self.contracts[sym] = c

    def close(self) -> None:
        async def shutdown():
            self.ib.disconnect()

        try:
            self._call(shutdown(), 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    def __enter__(self) -> IBBarSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # DataSource -----------------------------------------------------------------------------------------

    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    def load(self, symbol: str) -> pd.DataFrame:
        """Raw bars of ``symbol`` from the last :meth:`history` (as IB sent them, before validation)."""
        self._check_known(symbol)
        return self._raw.get(symbol, _empty()).copy()

    # requests -------------------------------------------------------------------------------------------

    def _key(self, sym: str, end: str, duration: str) -> tuple:
        c = self.contracts[sym]
        return (c.conId, sym, end, BAR_SIZE, duration, self.what_to_show, True)

    async def _request(self, sym: str, end: str, duration: str) -> pd.DataFrame:
        """One paced historical request (``end`` '' = now); raw bars as a frame."""
        key = self._key(sym, end, duration)
        if end:  # a closed window: an identical answer within the identical-request time comes from the cache
            hit = self._cache.get(key)
            if hit is not None and self.clock() - hit[0] < self.limiter.historical_identical_s:
                self.cache_hits += 1
                return hit[1].copy()
        for attempt in (1, 2):
            await self._wait(self.limiter.reserve_historical(key))
            self.requests.append(key)
            seen = len(self.errors)
            bars = await self._ask(sym, end, duration, seen)
            # requests go one at a time: an error with a request id since ``seen`` is this request's
            codes = [code for rid, code, _ in self.errors[seen:] if rid != -1]
            if PACING_VIOLATION in codes:
                if attempt == 1:
                    self.retries += 1
                    log.warning("historical request for %s paced out (162): retrying after the penalty", sym)
                    continue
                raise HistoricalDataError(
                    f"IB refused historical bars for {sym} twice with pacing violation 162 "
                    f"(the second after a {self.limiter.pacing_penalty_s:g} s penalty): {key}"
                )
            if codes:
                msgs = "; ".join(f"{c} {m}" for rid, c, m in self.errors[seen:] if rid != -1)
                raise HistoricalDataError(f"IB historical request for {sym} failed: {msgs}")
            if bars is None or (not bars and not self.ib.isConnected()):
                raise HistoricalDataError(f"IB historical request for {sym} got no answer (connected: {self.ib.isConnected()})")
            frame = self._frame(bars)
            self._cache[key] = (self.clock(), frame)
            return frame.copy()
        raise AssertionError("unreachable")

    async def _ask(self, sym: str, end: str, duration: str, seen: int):
        """reqHistoricalData; ib_async takes IB's refusal of a request as invalid (321) for a warning and would wait
        out its timeout: such a refusal ends the wait (None)."""
        task = asyncio.ensure_future(self.ib.reqHistoricalDataAsync(
            self.contracts[sym], end, duration, BAR_SIZE, self.what_to_show, True,
            formatDate=1, timeout=self.request_timeout_s,
        ))  # fmt: skip
        while not task.done():
            await asyncio.wait({task}, timeout=0.05)
            if not task.done() and any(rid != -1 and code in REFUSED for rid, code, _ in self.errors[seen:]):
                task.cancel()
                return None
        return task.result()

    @staticmethod
    def _frame(bars) -> pd.DataFrame:
        if not bars:
            return _empty()
        index = pd.DatetimeIndex([pd.Timestamp(b.date).tz_localize(None).normalize() for b in bars], name="date")
        values = {c: np.array([float(getattr(b, c)) for b in bars], dtype="float64") for c in COLUMNS}
        return pd.DataFrame(values, index=index)

    def _completed(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Only sessions whose close has passed (IB sends today's bar while the session is still open)."""
        if raw.empty:
            return raw
        now = self._asof
        closes = self.calendar.closes.reindex(raw.index.normalize())
        keep = np.array([pd.isna(c) or c <= now for c in closes], dtype=bool)  # not a session: validate reports it
        return raw[keep]

    # public -------------------------------------------------------------------------------------------

    def history(self, symbols: tuple[str, ...] | list[str] | None, end, sessions: int) -> IBBars:
        """The last ``sessions`` sessions of the calendar up to ``end`` (inclusive; a date; None: the last
        session whose close has passed), validated. ``ADJUSTED_LAST`` is asked up to now (IB allows no end
        date with it) and trimmed."""
        syms = tuple(symbols or self._symbols)
        for s in syms:
            self._check_known(s)
        if sessions < 1:
            raise ValueError("sessions must be >= 1")
        self._asof = self._now_utc()  # ``now`` is read here, off the IB loop: it may ask the gateway itself
        if end is None:
            last = self.last_completed_session()
        else:
            last = self.calendar.date_to_session(pd.Timestamp(end).normalize(), direction="previous")
        first = self.calendar.sessions_window(last, -sessions)[0]
        if self.what_to_show == "ADJUSTED_LAST":
            end_text, duration = "", _duration((self._today(self._asof) - first).days + 1)
        else:
            end_text, duration = f"{last:%Y%m%d} 23:59:59 US/Eastern", _duration((last - first).days + 1)
        return self._call(self._history(syms, first, last, end_text, duration), self._timeout(len(syms)))

    def current_time(self) -> pd.Timestamp:
        """The gateway's clock (reqCurrentTime), UTC: market time for a live run."""

        async def ask():
            await self._wait(self.limiter.reserve_message())
            return await self.ib.reqCurrentTimeAsync()

        return pd.Timestamp(self._call(ask(), self.request_timeout_s)).tz_convert("UTC")

    def _now_utc(self) -> pd.Timestamp:
        now = pd.Timestamp(self._now())
        return now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")

    @staticmethod
    def _today(now: pd.Timestamp) -> pd.Timestamp:
        return now.tz_convert("America/New_York").tz_localize(None).normalize()

    def last_completed_session(self) -> pd.Timestamp:
        """The last session of the calendar whose close has passed (``now``)."""
        now = self._now_utc()
        done = self.calendar.closes.index[(self.calendar.closes <= now).to_numpy()]
        if not len(done):
            raise ValueError(f"no session of {self.calendar.name} has closed by {now}")
        return pd.Timestamp(done[-1])

    def _timeout(self, n: int) -> float:
        return n * (2 * self.request_timeout_s + self.limiter.pacing_penalty_s + 2 * 600.0) + 30

    async def _history(self, syms, first, last, end_text, duration) -> IBBars:
        out = IBBars({})
        for sym in syms:
            raw = self._completed(await self._request(sym, end_text, duration))
            self._raw[sym] = raw
            clean, problems = validate(sym, raw, self.calendar, first, last)
            out.bars[sym] = clean
            out.quarantined.extend(problems)
            if len(clean):
                prev = self.last_session.get(sym)
                if prev is None or clean.index[-1] >= prev:
                    self.last_session[sym] = clean.index[-1]
                    self.last_close[sym] = (clean.index[-1], float(clean["close"].iloc[-1]))
        out.quarantined = sort_quarantine(out.quarantined)
        return out

    def poll_new_bars(self) -> IBBars:
        """The daily bars completed since the last poll (or history) of each symbol, validated.

        A symbol never seen before gets its last completed session. Sessions in between without a
        clean bar are reported as ``missing_session``; a quarantined bar is never returned, but it
        counts as seen, so it is reported once.
        """
        self._asof = self._now_utc()
        return self._call(self._poll(), self._timeout(len(self._symbols)))

    async def _poll(self) -> IBBars:
        out = IBBars({})
        today = self._today(self._asof)
        for sym in self._symbols:
            since = self.last_session.get(sym)
            days = 7 if since is None else max(7, (today - since).days + 2)
            raw = self._completed(await self._request(sym, "", _duration(days)))
            if since is not None:
                raw = raw[raw.index >= since]  # the last seen bar anchors the missing-session check
                anchor = raw["close"][raw.index == since]
                had = self.last_close.get(sym)
                if len(anchor) and had and had[0] == since and anchor.iloc[0] > 0 and abs(anchor.iloc[0] / had[1] - 1) > 1e-6:
                    factor = float(anchor.iloc[0] / had[1])
                    out.adjustments.append((sym, since.date().isoformat(), factor))
                    log.warning("%s: IB re-adjusted its history (close of %s now x%.6f): a dividend or split went ex",
                                sym, since.date(), factor)  # fmt: skip
            elif len(raw):
                raw = raw[raw.index >= raw.index.max()]
            clean, problems = validate(sym, raw, self.calendar, since, None)
            if since is not None:
                clean = clean[clean.index > since]
                problems = [q for q in problems if pd.Timestamp(q.date) > since]
            out.bars[sym] = clean
            out.quarantined.extend(problems)
            seen = raw.index[raw.index.notna()]
            if len(seen):
                self.last_session[sym] = max(seen.max(), since) if since is not None else seen.max()
            if len(clean):
                self.last_close[sym] = (clean.index[-1], float(clean["close"].iloc[-1]))
        out.quarantined = sort_quarantine(out.quarantined)
        return out
