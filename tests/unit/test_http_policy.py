"""Retry predicate, backoff, Retry-After and the clock-driven limiters of `bot.http`, tested as tables."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from bot.clock import ManualClock
from bot.errors import (
    AuthError,
    BotError,
    MalformedResponse,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    StateError,
    TemporaryError,
)
from bot.http import (
    FixedWindowLimiter,
    Pause,
    Priority,
    RollingWindowLimiter,
    ServiceMetrics,
    backoff_delay,
    parse_retry_after,
    pause_after_429,
    should_retry,
)
from tests.conftest import T0

# ------------------------------------------------------------------------------------------- should_retry

RETRY_TABLE: list[tuple[BotError, int, bool, bool]] = [
    # error, attempt, idempotent, expected
    (TemporaryError("x"), 1, True, True),
    (TemporaryError("x"), 3, True, True),
    (TemporaryError("x"), 4, True, False),  # attempts exhausted (default 4)
    (TemporaryError("refused before sending"), 1, False, True),  # only raised when nothing was sent
    (RateLimited("x"), 1, True, True),
    (RateLimited("x", retry_after=5), 2, False, True),  # a 429 was refused before anything happened
    (RateLimited("x"), 4, True, False),
    (MalformedResponse("truncated"), 1, True, True),
    (MalformedResponse("truncated"), 1, False, False),
    (OutcomeUnknown("dropped after send"), 1, False, False),
    (OutcomeUnknown("dropped after send"), 1, True, False),
    (Rejected("bad params"), 1, True, False),
    (AuthError("401"), 1, True, False),
    (NotFound("404"), 1, True, False),
    (StateError("bug"), 1, True, False),
]


@pytest.mark.parametrize(("error", "attempt", "idempotent", "expected"), RETRY_TABLE)
def test_should_retry_table(error: BotError, attempt: int, idempotent: bool, expected: bool) -> None:
    assert should_retry(error, attempt, idempotent) is expected


def test_should_retry_respects_max_attempts() -> None:
    assert should_retry(TemporaryError("x"), 1, True, max_attempts=1) is False
    assert should_retry(TemporaryError("x"), 9, True, max_attempts=10) is True


# ------------------------------------------------------------------------------------------- backoff


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(1, 0.25, 0.5), (2, 0.5, 1.0), (3, 1.0, 2.0), (4, 2.0, 4.0), (7, 15.0, 30.0), (30, 15.0, 30.0)],
)
def test_backoff_grows_exponentially_with_equal_jitter_and_a_cap(
    attempt: int, low: float, high: float
) -> None:
    rng = random.Random(7)
    delays = [backoff_delay(attempt, None, rng) for _ in range(200)]
    assert all(low <= d <= high for d in delays)
    assert len({round(d, 6) for d in delays}) > 100  # jittered, not constant


@pytest.mark.parametrize(("retry_after", "attempt"), [(0.0, 1), (5.0, 1), (61.0, 3), (2.5, 9)])
def test_backoff_honours_retry_after_plus_small_jitter(retry_after: float, attempt: int) -> None:
    rng = random.Random(1)
    for _ in range(50):
        d = backoff_delay(attempt, retry_after, rng, base=0.5)
        assert retry_after <= d <= retry_after + 0.5


def test_backoff_is_deterministic_for_a_seed() -> None:
    a = [backoff_delay(n, None, random.Random(3)) for n in range(1, 6)]
    b = [backoff_delay(n, None, random.Random(3)) for n in range(1, 6)]
    assert a == b


NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Fri, 20 Nov 2026 12:00:30 GMT", 30.0),
        ("Fri, 20 Nov 2026 11:59:00 GMT", 0.0),  # in the past: go now
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


# ------------------------------------------------------------------------------------------- limiters


async def _burst(limiter: RollingWindowLimiter | FixedWindowLimiter, n: int) -> list[datetime]:
    """Acquire and immediately release `n` slots in sequence; return the clock time of each grant."""
    times = []
    for _ in range(n):
        slot = await limiter.acquire()
        times.append(limiter.clock.now())
        limiter.release(slot)
    return times


def _max_in_rolling(times: list[datetime], window: float) -> int:
    return max(sum(1 for u in times if t - timedelta(seconds=window) < u <= t) for t in times)


@pytest.mark.parametrize(("limit", "requests"), [(20, 20), (20, 21), (20, 65), (3, 10), (60, 200)])
async def test_rolling_limiter_never_exceeds_limit_in_any_window(clock: ManualClock, limit: int,
                                                                requests: int) -> None:
    limiter = RollingWindowLimiter(clock, limit)
    times = await _burst(limiter, requests)
    assert _max_in_rolling(times, 60.0) <= limit
    if requests <= limit:
        assert clock.now() == T0  # no wait while the window has room
    else:
        assert clock.now() > T0 + timedelta(seconds=60)
        # Bursts released together free together: one wait per further burst of `limit`.
        assert limiter.snapshot()["waits"] == -(-requests // limit) - 1


async def test_rolling_limiter_counts_from_finish_time_not_grant_time(clock: ManualClock) -> None:
    limiter = RollingWindowLimiter(clock, 2, margin_s=0.0)
    first = await limiter.acquire()
    clock.advance(10)  # a slow request: the server may have stamped it as late as this
    limiter.release(first)
    limiter.release(await limiter.acquire())
    assert limiter.delay(clock.monotonic()) == pytest.approx(60.0)  # until first's finish + 60


async def test_rolling_limiter_waits_for_in_flight_slots(clock: ManualClock) -> None:
    limiter = RollingWindowLimiter(clock, 1)
    slot = await limiter.acquire()
    assert limiter.delay(clock.monotonic()) is None  # only an in-flight slot: wait for release
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()
    limiter.release(slot)
    second = await asyncio.wait_for(waiter, 1)
    assert second.granted >= 60  # monotonic clock seconds


async def test_fixed_limiter_resets_at_the_clock_minute(clock: ManualClock) -> None:
    clock.advance(45)  # 12:00:45
    limiter = FixedWindowLimiter(clock, 3)
    times = await _burst(limiter, 7)
    minutes = [t.replace(second=0, microsecond=0) for t in times]
    assert minutes.count(T0) == 3
    assert minutes.count(T0 + timedelta(minutes=1)) == 3
    assert minutes.count(T0 + timedelta(minutes=2)) == 1
    assert times[3] < T0 + timedelta(minutes=1, seconds=1)  # waited only to the boundary, not 60 s


async def test_fixed_limiter_counts_a_request_straddling_the_boundary_in_both_minutes(
    clock: ManualClock,
) -> None:
    clock.advance(59.9)
    limiter = FixedWindowLimiter(clock, 1)
    slot = await limiter.acquire()
    clock.advance(0.2)  # finished in the next minute: the server may have counted it there
    limiter.release(slot)
    assert limiter.delay(clock.monotonic()) == pytest.approx(59.9, abs=0.01)


@pytest.mark.parametrize(
    ("limiter_kind", "retry_after", "expected_wait"),
    [("rolling", None, 60.05), ("rolling", 7.0, 7.0), ("fixed", None, 30.05), ("fixed", 3.0, 3.0)],
)
async def test_pause_after_429_blocks_until_the_window_surely_allows(
    clock: ManualClock, limiter_kind: str, retry_after: float | None, expected_wait: float
) -> None:
    clock.advance(30)
    limiter = (RollingWindowLimiter if limiter_kind == "rolling" else FixedWindowLimiter)(clock, 20)
    start = clock.now()
    limiter.pause(retry_after)
    await limiter.acquire()
    assert (clock.now() - start).total_seconds() == pytest.approx(expected_wait, abs=1e-3)


# ------------------------------------------------------------------------------------------- 429 policy

PAUSE_TABLE: list[tuple[float | None, int, Pause | None]] = [
    # Retry-After, 429s within the window (this one included), what the whole service does
    (None, 1, None),  # a lone 429: only that request backs off
    (None, 2, Pause(None)),  # repeated: our count is off, pause until the window surely allows
    (None, 7, Pause(None)),
    (7.0, 1, Pause(7.0)),  # the server said how long: everyone waits that long
    (0.0, 1, Pause(0.0)),
    (3.0, 4, Pause(3.0)),  # the server's figure beats our guess
]


@pytest.mark.parametrize(("retry_after", "recent", "expected"), PAUSE_TABLE)
def test_pause_after_429_table(retry_after: float | None, recent: int, expected: Pause | None) -> None:
    assert pause_after_429(retry_after, recent) == expected


def test_pause_after_429_threshold_is_a_parameter() -> None:
    assert pause_after_429(None, 2, repeated=3) is None
    assert pause_after_429(None, 3, repeated=3) == Pause(None)


async def test_only_429s_repeated_within_one_window_pause_the_limiter(clock: ManualClock) -> None:
    limiter = RollingWindowLimiter(clock, 20)
    assert limiter.throttled(None) is False
    assert limiter.delay(clock.monotonic()) == 0.0  # the service carries on
    clock.advance(61)
    assert limiter.throttled(None) is False  # the first one is a window ago: still a lone 429
    clock.advance(30)
    assert limiter.throttled(None) is True
    assert limiter.delay(clock.monotonic()) == pytest.approx(60.05)
    assert limiter.snapshot()["pauses"] == 1


async def test_a_429_with_retry_after_pauses_the_limiter_that_long(clock: ManualClock) -> None:
    limiter = RollingWindowLimiter(clock, 20)
    assert limiter.throttled(12.0) is True
    assert limiter.delay(clock.monotonic()) == pytest.approx(12.0)


# ------------------------------------------------------------------------------------------- priority


async def _granted_in_order(limiter: RollingWindowLimiter, order: list[str], name: str,
                            priority: Priority) -> None:
    slot = await limiter.acquire(priority)
    order.append(name)
    limiter.release(slot)


async def test_a_later_critical_request_goes_before_a_queued_low_one(clock: ManualClock) -> None:
    limiter = RollingWindowLimiter(clock, 2)
    await _burst(limiter, 2)  # the window is full for the next minute
    order: list[str] = []
    low = asyncio.create_task(_granted_in_order(limiter, order, "low", Priority.LOW))
    await asyncio.sleep(0)  # the LOW request is queued first
    critical = asyncio.create_task(_granted_in_order(limiter, order, "critical", Priority.CRITICAL))
    await asyncio.gather(low, critical)
    assert order == ["critical", "low"]
    assert clock.monotonic() == pytest.approx(60.05, abs=0.01)  # both in the next window: no extra wait


async def test_waiters_are_served_by_priority_then_first_come_first_served(clock: ManualClock) -> None:
    limiter = RollingWindowLimiter(clock, 1)
    in_flight = await limiter.acquire()
    order: list[str] = []
    tasks = []
    for name, priority in [("low-1", Priority.LOW), ("normal", Priority.NORMAL), ("low-2", Priority.LOW),
                           ("critical", Priority.CRITICAL), ("high-1", Priority.HIGH), ("high-2", Priority.HIGH)]:
        tasks.append(asyncio.create_task(_granted_in_order(limiter, order, name, priority)))
        await asyncio.sleep(0)
    assert limiter.snapshot()["queued"] == 6
    limiter.release(in_flight)
    await asyncio.gather(*tasks)
    assert order == ["critical", "high-1", "high-2", "normal", "low-1", "low-2"]
    assert limiter.snapshot()["queued"] == 0


async def test_a_cancelled_waiter_leaves_the_queue_to_the_next(clock: ManualClock) -> None:
    limiter = RollingWindowLimiter(clock, 1)
    in_flight = await limiter.acquire()
    doomed = asyncio.create_task(limiter.acquire(Priority.CRITICAL))
    await asyncio.sleep(0)
    order: list[str] = []
    waiter = asyncio.create_task(_granted_in_order(limiter, order, "low", Priority.LOW))
    await asyncio.sleep(0)
    doomed.cancel()
    limiter.release(in_flight)
    await waiter
    assert order == ["low"] and doomed.cancelled() and limiter.snapshot()["queued"] == 0


# ------------------------------------------------------------------------------------------- clock jumps


async def test_a_calendar_jump_does_not_bend_the_rolling_window(clock: ManualClock) -> None:
    limiter = RollingWindowLimiter(clock, 2)
    await _burst(limiter, 2)
    clock.jump(T0 + timedelta(hours=1))  # the calendar leaps ahead: no time passed, the window is still full
    assert limiter.delay(clock.monotonic()) == pytest.approx(60.05)
    clock.jump(T0 - timedelta(hours=1))  # and back: the window does not grow by the hour either
    clock.advance(60.05)
    assert limiter.delay(clock.monotonic()) == 0.0
    times = await _burst(limiter, 2)
    assert times == [clock.now(), clock.now()]  # granted at once


def test_limiter_rejects_nonsense_configuration(clock: ManualClock) -> None:
    with pytest.raises(ValueError):
        RollingWindowLimiter(clock, 0)
    with pytest.raises(ValueError):
        FixedWindowLimiter(clock, 5, window_s=0)


# ------------------------------------------------------------------------------------------- counters


def test_metrics_snapshot_counts_statuses_errors_and_latency() -> None:
    m = ServiceMetrics()
    for status in (200, 200, 429, 503, 404):
        m.status(status)
    m.error(RateLimited("x"))
    m.error(TemporaryError("x"))
    m.error(TemporaryError("y"))
    for s in (0.005, 0.2, 30.0):
        m.observe(s)
    snap = m.snapshot()
    assert snap["statuses"] == {"2xx": 2, "429": 1, "5xx": 1, "4xx": 1}
    assert snap["rate_limited"] == 1
    assert snap["errors"] == {"rate_limited": 1, "temporary": 2}
    assert snap["latency"]["count"] == 3
    assert snap["latency"]["max"] == 30.0
    assert snap["latency"]["buckets"]["le_0.01"] == 1
    assert snap["latency"]["buckets"]["le_0.25"] == 1
    assert snap["latency"]["buckets"]["le_inf"] == 1
