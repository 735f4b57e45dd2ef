"""Pure parts of the HTTP layer: priorities, retry predicate, backoff, 429 policy, rate limiters, counters.

Re-exported by `bot.http`; import from there. Kept apart so the decisions can be read and tested without
the session machinery. Limiters measure their windows on the injected clock's `monotonic()` (clock
seconds that a jump of the calendar time does not bend; simulated seconds on an accelerated clock) and
wait with `await clock.sleep()`, never on wall time, so the bot and the simulators agree at any clock
speed. Waiters are served by `Priority`, then first come first served.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import IntEnum
from typing import Any, Protocol

from bot.clock import Clock
from bot.errors import BotError, MalformedResponse, OutcomeUnknown, Rejected, TemporaryError

DEFAULT_MAX_ATTEMPTS = 4
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# This many 429s without `Retry-After` within one limiter window pause the whole service (see
# `pause_after_429`); fewer only back off the request that got them.
REPEATED_429S = 2


class Priority(IntEnum):
    """How urgently a request wants its service's next slot; higher goes first, ties first come first
    served. It orders the queue only: it never lets a request exceed the rate limit."""

    LOW = 0  # balance, wallet and transfer reads: a few seconds late costs nothing
    NORMAL = 1  # market data, the default
    HIGH = 2  # placing orders and looking them up
    CRITICAL = 3  # cancels: a late cancel can fill at a price we no longer want


# ---------------------------------------------------------------------------------------------- policy


def should_retry(
    error: BotError, attempt: int, idempotent: bool, max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> bool:
    """Whether a call that failed with `error` on its `attempt`-th try (1-based) should be tried again.

    429 is retried on any call (the server refused it before doing anything). Other temporary errors are
    retried; on mutating calls `bot.http` only raises them when nothing was sent. Malformed answers are
    retried on reads only. Rejections and unknown outcomes never are.
    """
    if attempt >= max_attempts:
        return False
    if isinstance(error, OutcomeUnknown | Rejected):
        return False
    if isinstance(error, TemporaryError):
        return True
    if isinstance(error, MalformedResponse):
        return idempotent
    return False


def backoff_delay(
    attempt: int,
    retry_after: float | None,
    rng: random.Random,
    *,
    base: float = 0.5,
    cap: float = 30.0,
) -> float:
    """Seconds to wait before retry number `attempt` (1-based): the server's `Retry-After` plus a little
    jitter if it gave one, else exponential backoff with equal jitter, capped at `cap`."""
    if retry_after is not None and retry_after >= 0:
        return retry_after + rng.uniform(0, base)
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """`Retry-After` as seconds from `now`: delta-seconds or an HTTP date; None when absent or garbage."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        return max(0.0, (when - now).total_seconds())
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return None
    return seconds


@dataclass(frozen=True, slots=True)
class Pause:
    """Hold every request of a service for `seconds`, or (None) until its window surely allows."""

    seconds: float | None = None


def pause_after_429(retry_after: float | None, recent_429s: int, repeated: int = REPEATED_429S) -> Pause | None:
    """What a 429 does to the whole service; the request that got it always backs off (`backoff_delay`).

    With `Retry-After` the server said how long: the service pauses that long. Without it one 429 is
    that request's bad luck (a window edge, the server stamping a little differently) and the service
    carries on; `repeated` of them within one window (`recent_429s` counts this one) mean our count and
    the server's disagree, so the service pauses until its window surely allows. A long pause on every
    lone 429 once cost six minutes of an eight-minute run.
    """
    if retry_after is not None and retry_after >= 0:
        return Pause(retry_after)
    if recent_429s >= repeated:
        return Pause(None)
    return None


# ---------------------------------------------------------------------------------------------- limiters


class Slot:
    """One granted request. `granted` and `done` are `clock.monotonic()` readings (`done` is None while
    the request is in flight)."""

    __slots__ = ("done", "granted")

    def __init__(self, granted: float) -> None:
        self.granted = granted
        self.done: float | None = None


class Limiter(Protocol):
    """What `HttpService` needs from a rate limiter."""

    async def acquire(self, priority: Priority = Priority.NORMAL) -> Slot:
        """Wait (on the clock) until a request may be sent, behind every waiter of higher priority and
        every earlier one of the same priority; the caller must `release` the slot."""
        ...

    def release(self, slot: Slot) -> None:
        """The request of `slot` has finished (any outcome)."""
        ...

    def pause(self, retry_after: float | None) -> None:
        """Send nothing for `retry_after` s, or (None) until the window surely allows."""
        ...

    def throttled(self, retry_after: float | None) -> bool:
        """The server answered 429: count it and pause as `pause_after_429` says; True if it paused."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """Counters and state for the status endpoint."""
        ...


class _WindowLimiter:
    """Shared machinery of the window limiters, all on the injected clock's monotonic seconds.

    A slot keeps counting from its grant until it *finished* plus the window: the server stamps a
    request when it arrives, which is after we granted it and before we saw the answer, so counting by
    finish time is what keeps latency (wall or accelerated) from ever letting us exceed the server's
    count. `margin_s` covers the server's boundary convention (`<` or `<=`) and float rounding.

    Waiters queue by (priority, arrival). Only the head of the queue watches the window; the others wait
    for something to change (a grant, a release, a waiter leaving), so a cancel that arrives while
    balance reads are queued goes first as soon as there is room.
    """

    kind = "window"

    def __init__(self, clock: Clock, limit: int, window_s: float = 60.0, margin_s: float = 0.05) -> None:
        if limit <= 0 or window_s <= 0:
            raise ValueError("limit and window must be positive")
        self.clock = clock
        self.limit = limit
        self.window_s = float(window_s)
        self.margin_s = float(margin_s)
        self._slots: list[Slot] = []
        self._paused_until = 0.0
        self._queue: list[tuple[int, int]] = []  # heap of (-priority, arrival number)
        self._arrivals = itertools.count()
        self._changed = asyncio.Event()
        self._recent_429s: list[float] = []
        self.granted = 0
        self.waits = 0
        self.waited_s = 0.0
        self.pauses = 0

    def _counts(self, slot: Slot, now: float) -> bool:
        raise NotImplementedError

    def _frees_at(self, done: float) -> float:
        raise NotImplementedError

    def _full_wait(self, now: float) -> float:
        raise NotImplementedError

    def delay(self, now: float) -> float | None:
        """Seconds to wait before the next request may go at `now` (a `clock.monotonic()` reading): 0
        means go now; None means every counted slot is still in flight, so wait for a release."""
        if now < self._paused_until:
            return self._paused_until - now
        self._slots = [s for s in self._slots if self._counts(s, now)]
        if len(self._slots) < self.limit:
            return 0.0
        frees = [self._frees_at(s.done) for s in self._slots if s.done is not None]
        if not frees:
            return None
        return max(min(frees) - now, 1e-3)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def acquire(self, priority: Priority = Priority.NORMAL) -> Slot:
        """See `Limiter.acquire`."""
        ticket = (-int(priority), next(self._arrivals))
        heapq.heappush(self._queue, ticket)
        start = self.clock.monotonic()
        waited = False
        try:
            while True:
                wait: float | None = None
                if self._queue[0] == ticket:
                    now = self.clock.monotonic()
                    wait = self.delay(now)
                    if wait == 0.0:
                        heapq.heappop(self._queue)
                        slot = Slot(now)
                        self._slots.append(slot)
                        self.granted += 1
                        if waited:
                            self.waited_s += now - start
                        self._notify()  # the next in line may fit too
                        return slot
                if not waited:
                    waited = True
                    self.waits += 1
                if wait is None:
                    await self._changed.wait()
                else:
                    await self.clock.sleep(wait)
        except BaseException:
            if ticket in self._queue:  # cancelled while queued: let the next one move up
                self._queue.remove(ticket)
                heapq.heapify(self._queue)
                self._notify()
            raise

    def release(self, slot: Slot) -> None:
        """See `Limiter.release`."""
        slot.done = max(slot.granted, self.clock.monotonic())
        self._notify()

    def pause(self, retry_after: float | None) -> None:
        """See `Limiter.pause`."""
        now = self.clock.monotonic()
        wait = retry_after if retry_after is not None else self._full_wait(now)
        self._paused_until = max(self._paused_until, now + wait)
        self.pauses += 1

    def throttled(self, retry_after: float | None) -> bool:
        """See `Limiter.throttled`."""
        now = self.clock.monotonic()
        self._recent_429s = [t for t in self._recent_429s if t > now - self.window_s] + [now]
        decision = pause_after_429(retry_after, len(self._recent_429s))
        if decision is None:
            return False
        self.pause(decision.seconds)
        return True

    def snapshot(self) -> dict[str, Any]:
        """See `Limiter.snapshot`."""
        now = self.clock.monotonic()
        in_window = sum(1 for s in self._slots if self._counts(s, now))
        return {
            "kind": self.kind, "limit": self.limit, "window_s": self.window_s, "in_window": in_window,
            "granted": self.granted, "waits": self.waits, "waited_s": round(self.waited_s, 3),
            "queued": len(self._queue), "pauses": self.pauses,
            "paused_for_s": round(max(0.0, self._paused_until - now), 3),
        }


class RollingWindowLimiter(_WindowLimiter):
    """At most `limit` requests in any rolling `window_s` of clock time (Atmos, sFOX, CoinBTR)."""

    kind = "rolling"

    def _counts(self, slot: Slot, now: float) -> bool:
        return slot.done is None or now < slot.done + self.window_s + self.margin_s

    def _frees_at(self, done: float) -> float:
        return done + self.window_s + self.margin_s

    def _full_wait(self, now: float) -> float:
        return self.window_s + self.margin_s


class FixedWindowLimiter(_WindowLimiter):
    """At most `limit` requests per clock window aligned to the epoch, i.e. per clock minute (Atmotube).

    A request still in flight, or finished within `margin_s` of a boundary, counts in the new window too,
    because the server may have stamped it there. The windows are calendar minutes (the server's), so
    their boundaries come from `clock.now()`, mapped onto the monotonic seconds the slots are kept in."""

    kind = "fixed"

    def _origin(self) -> float:
        """Calendar seconds minus monotonic seconds, now: adds to a monotonic reading to give its epoch
        time. A jump of the calendar moves the boundaries (they are the server's), not the slots."""
        return self.clock.now().timestamp() - self.clock.monotonic()

    def _counts(self, slot: Slot, now: float) -> bool:
        return slot.done is None or slot.done + self.margin_s >= now - (now + self._origin()) % self.window_s

    def _frees_at(self, done: float) -> float:
        origin = self._origin()
        return (math.floor((done + origin + self.margin_s) / self.window_s) + 1) * self.window_s - origin

    def _full_wait(self, now: float) -> float:
        return self.window_s - (now + self._origin()) % self.window_s + self.margin_s


# ---------------------------------------------------------------------------------------------- counters


@dataclass
class ServiceMetrics:
    """Counters of one service; `snapshot()` is what the status endpoint shows."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latency_count: int = 0
    latency_sum: float = 0.0
    latency_max: float = 0.0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))

    def observe(self, seconds: float) -> None:
        """Record one attempt's wall latency."""
        self.latency_count += 1
        self.latency_sum += seconds
        self.latency_max = max(self.latency_max, seconds)
        idx = next((i for i, b in enumerate(LATENCY_BUCKETS) if seconds <= b), len(LATENCY_BUCKETS))
        self.latency_buckets[idx] += 1

    def status(self, status: int) -> None:
        """Record one HTTP status by class (`2xx`, `4xx`, ...), and 429 on its own."""
        key = "429" if status == 429 else f"{status // 100}xx"
        self.statuses[key] = self.statuses.get(key, 0) + 1
        if status == 429:
            self.rate_limited += 1

    def error(self, err: BotError) -> None:
        """Record one error by kind."""
        self.errors[err.kind] = self.errors.get(err.kind, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """Plain data, safe to serialise."""
        hist = {f"le_{b:g}": n for b, n in zip(LATENCY_BUCKETS, self.latency_buckets, strict=False)}
        hist["le_inf"] = self.latency_buckets[-1]
        return {
            "requests": self.requests,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "statuses": dict(self.statuses),
            "errors": dict(self.errors),
            "latency": {
                "count": self.latency_count,
                "sum": round(self.latency_sum, 6),
                "max": round(self.latency_max, 6),
                "buckets": hist,
            },
        }
