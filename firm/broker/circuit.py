"""Reconnect circuit breaker and IB rate limits. Pure: every clock is injected, no sleeps here.

:class:`CircuitBreaker` guards the reconnects: closed (connect freely) -> open after
``failure_threshold`` consecutive failures (no attempt for ``cooldown_s``) -> half-open (one trial
attempt: success closes it, failure opens it again). Between attempts, :meth:`CircuitBreaker.backoff`
gives an exponential delay with jitter drawn from a seeded RNG, so tests are deterministic.

:class:`RateLimiter` hands out reservations: ``reserve_*`` returns how long the caller must wait
before it may send, and books the send at that time, so callers in order never exceed:

- orders: at most ``orders_per_minute`` in any 60 s window and ``min_order_spacing_s`` between two;
- messages: at most ``messages_per_s`` IB requests in any 1 s window (IB's 50/s; orders count too);
- historical data: at most ``historical_per_10min`` requests in any 600 s window and no identical
  request within ``historical_identical_s`` (IB's pacing rules; a violation is error 162). A 162 that
  comes anyway blocks every historical request for ``pacing_penalty_s`` (:meth:`pacing_violation`).
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Hashable
from enum import Enum

Clock = Callable[[], float]


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 3,
        cooldown_s: float = 30.0,
        base_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        jitter: float = 0.25,
        seed: int = 0,
        clock: Clock = time.monotonic,
    ):
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.jitter = jitter
        self.clock = clock
        self._rng = random.Random(seed)
        self._state = BreakerState.CLOSED
        self.failures = 0  # consecutive
        self.attempt = 0  # backoff exponent since the last success
        self.opened_at = 0.0
        self._trial = False  # a half-open trial is in flight
        self.transitions: list[tuple[float, str, str]] = []

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self.transitions.append((self.clock(), self._state.value, state.value))
            self._state = state

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self.clock() >= self.opened_at + self.cooldown_s:
            self._set(BreakerState.HALF_OPEN)
            self._trial = False
        return self._state

    def allow(self) -> bool:
        """May an attempt start now? In half-open, only one trial at a time."""
        st = self.state
        if st is BreakerState.CLOSED:
            return True
        if st is BreakerState.HALF_OPEN and not self._trial:
            self._trial = True
            return True
        return False

    def retry_in(self) -> float:
        """Seconds until :meth:`allow` can say yes (0 when closed or half-open)."""
        if self.state is BreakerState.OPEN:
            return max(0.0, self.opened_at + self.cooldown_s - self.clock())
        return 0.0

    def record_success(self) -> None:
        self.failures = 0
        self.attempt = 0
        self._trial = False
        self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self.failures += 1
        self._trial = False
        st = self.state
        if st is BreakerState.HALF_OPEN or (st is BreakerState.CLOSED and self.failures >= self.failure_threshold):
            self.opened_at = self.clock()
            self._set(BreakerState.OPEN)

    def backoff(self) -> float:
        """The next delay between attempts: base x 2^attempt, capped, x (1 +- jitter) from the seeded RNG."""
        delay = min(self.max_delay_s, self.base_delay_s * 2.0**self.attempt)
        self.attempt += 1
        return delay * (1.0 + self.jitter * (2.0 * self._rng.random() - 1.0))


class RateLimiter:
    def __init__(
        self,
        orders_per_minute: int = 10,
        min_order_spacing_s: float = 0.1,
        messages_per_s: int = 50,
        historical_per_10min: int = 60,
        historical_identical_s: float = 15.0,
        pacing_penalty_s: float = 60.0,
        clock: Clock = time.monotonic,
    ):
        self.orders_per_minute = orders_per_minute
        self.min_order_spacing_s = min_order_spacing_s
        self.messages_per_s = messages_per_s
        self.historical_per_10min = historical_per_10min
        self.historical_identical_s = historical_identical_s
        self.pacing_penalty_s = pacing_penalty_s
        self.clock = clock
        self._orders: deque[float] = deque()
        self._messages: deque[float] = deque()
        self._hist: deque[tuple[float, Hashable]] = deque()
        self._hist_blocked_until = float("-inf")
        self.violations = 0

    @staticmethod
    def _window(times: deque, at: float, limit: int, span: float) -> float:
        """Earliest time >= ``at`` such that fewer than ``limit`` of ``times`` fall within ``span`` before it."""
        while times and times[0] <= at - span and len(times) > limit:
            times.popleft()
        if len(times) < limit:
            return at
        return max(at, times[-limit] + span)

    def _reserve_message(self, at: float) -> float:
        t = self._window(self._messages, at, self.messages_per_s, 1.0)
        self._messages.append(t)
        return t

    def reserve_message(self) -> float:
        """Wait (s) before one IB request may be sent; the send is booked."""
        now = self.clock()
        return self._reserve_message(now) - now

    def reserve_order(self) -> float:
        """Wait (s) before the next order may be sent (orders/minute, spacing, message budget)."""
        now = self.clock()
        t = now
        if self._orders:
            t = max(t, self._orders[-1] + self.min_order_spacing_s)
        t = self._window(self._orders, t, self.orders_per_minute, 60.0)
        t = self._window(self._messages, t, self.messages_per_s, 1.0)
        self._orders.append(t)
        self._messages.append(t)
        return t - now

    def reserve_historical(self, key: Hashable) -> float:
        """Wait (s) before a historical-data request ``key`` (contract, end, duration, bar size, ...)."""
        now = self.clock()
        t = max(now, self._hist_blocked_until)
        same = [at for at, k in self._hist if k == key]
        if same:
            t = max(t, same[-1] + self.historical_identical_s)
        while self._hist and self._hist[0][0] <= t - 600.0 and len(self._hist) > self.historical_per_10min:
            self._hist.popleft()
        if len(self._hist) >= self.historical_per_10min:
            t = max(t, self._hist[-self.historical_per_10min][0] + 600.0)
        t = self._window(self._messages, t, self.messages_per_s, 1.0)
        self._hist.append((t, key))
        self._messages.append(t)
        return t - now

    def pacing_violation(self) -> None:
        """IB answered 162 anyway: no historical request for ``pacing_penalty_s``."""
        self.violations += 1
        self._hist_blocked_until = max(self._hist_blocked_until, self.clock() + self.pacing_penalty_s)
