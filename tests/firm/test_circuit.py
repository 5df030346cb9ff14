"""Circuit breaker and IB rate limits on a fake clock: no sleeps, no timed assertions."""

from __future__ import annotations

import pytest

from firm.broker.circuit import BreakerState, CircuitBreaker, RateLimiter


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def test_breaker_opens_after_threshold_then_half_open_trial():
    clock = Clock()
    b = CircuitBreaker(failure_threshold=3, cooldown_s=30, clock=clock)
    for _ in range(2):
        assert b.allow()
        b.record_failure()
    assert b.state is BreakerState.CLOSED
    assert b.allow()
    b.record_failure()
    assert b.state is BreakerState.OPEN and not b.allow() and b.retry_in() == 30
    clock.advance(29.9)
    assert not b.allow()
    clock.advance(0.1)
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow() and not b.allow()  # one trial at a time
    b.record_failure()  # trial failed: open again, a full cool-down
    assert b.state is BreakerState.OPEN and b.retry_in() == 30
    clock.advance(30)
    assert b.allow()
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.failures == 0 and b.allow()
    assert [(a, z) for _, a, z in b.transitions] == [
        ("closed", "open"), ("open", "half_open"), ("half_open", "open"),
        ("open", "half_open"), ("half_open", "closed"),
    ]  # fmt: skip


def test_backoff_is_exponential_capped_and_deterministic_with_jitter():
    a = CircuitBreaker(base_delay_s=1, max_delay_s=8, jitter=0.25, seed=42, clock=Clock())
    b = CircuitBreaker(base_delay_s=1, max_delay_s=8, jitter=0.25, seed=42, clock=Clock())
    da = [a.backoff() for _ in range(6)]
    assert da == [b.backoff() for _ in range(6)]
    for d, nominal in zip(da, [1, 2, 4, 8, 8, 8]):
        assert nominal * 0.75 <= d <= nominal * 1.25
    assert len(set(da)) == 6  # jittered
    a.record_success()
    assert 0.75 <= a.backoff() <= 1.25  # reset by a success
    c = CircuitBreaker(base_delay_s=1, jitter=0.0, clock=Clock())
    assert [c.backoff() for _ in range(3)] == [1, 2, 4]


def test_breaker_rejects_bad_threshold():
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)


def send_orders(lim: RateLimiter, clock: Clock, n: int) -> list[float]:
    """Reserve n orders back to back, sleeping (on the fake clock) as told; the send times."""
    times = []
    for _ in range(n):
        clock.advance(lim.reserve_order())
        times.append(clock.t)
    return times


def test_orders_per_minute_and_spacing():
    clock = Clock(0.0)
    lim = RateLimiter(orders_per_minute=10, min_order_spacing_s=0.1, clock=clock)
    times = send_orders(lim, clock, 25)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 0.1 - 1e-9
    for i in range(len(times) - 10):
        assert times[i + 10] - times[i] >= 60 - 1e-9  # never 11 in a minute
    assert times[9] == pytest.approx(0.9) and times[10] == pytest.approx(60.0)


def test_message_budget_50_per_second():
    clock = Clock(0.0)
    lim = RateLimiter(messages_per_s=50, clock=clock)
    waits = [lim.reserve_message() for _ in range(120)]  # all asked at t=0
    assert waits[:50] == [0.0] * 50
    assert waits[50] == pytest.approx(1.0) and waits[100] == pytest.approx(2.0)
    sends = sorted(waits)
    for i in range(len(sends) - 50):
        assert sends[i + 50] - sends[i] >= 1.0 - 1e-9


def test_historical_pacing_identical_and_sixty_per_ten_minutes():
    clock = Clock(0.0)
    lim = RateLimiter(historical_per_10min=60, historical_identical_s=15, clock=clock)
    assert lim.reserve_historical(("AAPL", "1 Y")) == 0
    clock.advance(1)
    assert lim.reserve_historical(("AAPL", "1 Y")) == pytest.approx(14)  # identical within 15 s
    assert lim.reserve_historical(("MSFT", "1 Y")) == 0
    clock2 = Clock(0.0)
    lim2 = RateLimiter(historical_per_10min=60, clock=clock2)
    sends = []
    for i in range(130):
        clock2.advance(lim2.reserve_historical(("X", i)))
        sends.append(clock2.t)
    for i in range(len(sends) - 60):
        assert sends[i + 60] - sends[i] >= 600 - 1e-9
    assert sends[49] == 0 and sends[50] == 1  # the 50 messages/s budget applies too
    assert sends[60] == 600


def test_pacing_violation_blocks_historical_requests():
    clock = Clock(0.0)
    lim = RateLimiter(pacing_penalty_s=60, clock=clock)
    lim.pacing_violation()
    assert lim.reserve_historical("a") == 60 and lim.violations == 1
    assert lim.reserve_order() == 0  # orders are not held back by a historical pacing violation
