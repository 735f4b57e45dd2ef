"""Clocks. Everything that needs the time is handed one of these; nothing calls `datetime.now` itself.

`WallClock` is real time. `AcceleratedClock` runs `speed` times faster than wall time from an anchor, which
is how the offline demo lets a simulated market move an hour per wall minute while the bot stays
consistent with it. `ManualClock` only moves when told to (or when every task is asleep on it), for tests.

Each clock gives two readings: `now()`, the calendar time (what candles, orders and logs are stamped
with), and `monotonic()`, seconds that only ever go forward, in the clock's own seconds. Durations that
must not be bent by a jump of the calendar time (rate-limit windows) are measured on `monotonic()`;
an accelerated clock's monotonic seconds are simulated seconds, so a window of 60 is one simulated minute.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

# How many event-loop turns a `ManualClock` lets pass before it moves time to the next sleeper's
# deadline: enough for tasks that were just woken (or just created) to run up to their next `sleep`,
# so concurrent sleepers are all registered before time jumps. Pure asyncio work needs a handful;
# the margin covers chains of futures and in-process loopback I/O.
_SETTLE_TURNS = 20


class Clock(Protocol):
    """Source of the current UTC time, a monotonic reading and (possibly accelerated) sleeps."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds of this clock's time from an arbitrary origin; never goes backwards, and is not moved
        by a jump of the calendar time. Compare only differences."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` of this clock's time."""
        ...

    @property
    def speed(self) -> float:
        """Clock seconds per wall second."""
        ...


class WallClock:
    """Real UTC time."""

    speed = 1.0

    def now(self) -> datetime:
        """The system's UTC time (may jump when the system clock is set)."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """`time.monotonic()`: immune to the system clock being set."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """`asyncio.sleep` (the event loop's clock is monotonic too)."""
        await asyncio.sleep(max(0.0, seconds))


class AcceleratedClock:
    """Time that runs `speed` times faster than wall time, starting at `start` (default: now)."""

    def __init__(self, speed: float, start: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._speed = float(speed)
        self._start = start or datetime.now(UTC)
        self._mono0 = time.monotonic()

    @property
    def speed(self) -> float:
        """Clock seconds per wall second."""
        return self._speed

    def now(self) -> datetime:
        """`start` plus the simulated seconds elapsed since the clock was made."""
        return self._start + timedelta(seconds=self.monotonic())

    def monotonic(self) -> float:
        """Simulated seconds since the clock was made: wall monotonic time elapsed times `speed`."""
        return (time.monotonic() - self._mono0) * self._speed

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` simulated seconds, i.e. `seconds / speed` wall seconds."""
        await asyncio.sleep(max(0.0, seconds) / self._speed)


class ManualClock:
    """A clock for tests: time moves only when told to, or when tasks sleep on it.

    `advance` and `set` move time forward and wake every sleeper whose deadline has come; `jump` steps
    the calendar reading alone (an NTP step: `monotonic()` and sleepers are untouched). `sleep(s)` wakes
    at its own deadline, the clock time it was called plus `s`, as real time would: when sleepers are
    pending, the clock lets the running tasks settle, then moves straight to the earliest deadline and
    wakes that sleeper (ties in call order), then the next, and so on. So a `sleep(10)` and a `sleep(5)`
    started together wake at +5 and +10, and time ends at +10 (not +15). Work that is neither asleep on
    this clock nor runnable (a socket read) takes no clock time only if it finishes before the jump.
    """

    speed = 1.0

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._now = start
        self._elapsed = 0.0  # monotonic seconds: every second advanced, never a jump
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []  # heap: (deadline, seq, wakeup)
        self._seq = itertools.count()
        self._driver: asyncio.Task[None] | None = None

    def now(self) -> datetime:
        """The current (manual) time."""
        return self._now

    def monotonic(self) -> float:
        """Seconds advanced since the clock was made (`jump` does not count)."""
        return self._elapsed

    def advance(self, seconds: float) -> None:
        """Move time forward `seconds` and wake the sleepers that are due."""
        if seconds < 0:
            raise ValueError("a clock does not advance backwards; use jump() to step the calendar time")
        self._move_to(self._elapsed + seconds)

    def set(self, when: datetime) -> None:
        """Make it `when`: forward is `advance` (time passes, sleepers wake), backward is `jump`."""
        if when >= self._now:
            self.advance((when - self._now).total_seconds())
        else:
            self.jump(when)

    def jump(self, when: datetime) -> None:
        """Step the calendar time to `when` without any time passing: `monotonic()` and sleepers are
        untouched, as when a system clock is set by hand or by NTP."""
        if when.tzinfo is None:
            raise ValueError("when must be timezone-aware")
        self._now = when

    async def sleep(self, seconds: float) -> None:
        """Wake at `monotonic() + seconds` (see the class docstring for how time gets there)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        wakeup: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._elapsed + seconds, next(self._seq), wakeup))
        if self._driver is None or self._driver.done() or self._driver.get_loop() is not loop:
            self._driver = loop.create_task(self._drive(), name="manual-clock")
        await wakeup  # a cancelled sleeper leaves a cancelled future the driver skips

    def _move_to(self, deadline: float) -> None:
        if deadline > self._elapsed:
            # Set the monotonic reading exactly (no float drift from repeated additions).
            self._now += timedelta(seconds=deadline - self._elapsed)
            self._elapsed = deadline
        while self._sleepers and self._sleepers[0][0] <= self._elapsed:
            _, _, wakeup = heapq.heappop(self._sleepers)
            if not wakeup.done():
                wakeup.set_result(None)

    async def _drive(self) -> None:
        """Move time to each pending deadline in turn, once the running tasks have settled."""
        while self._sleepers:
            for _ in range(_SETTLE_TURNS):
                await asyncio.sleep(0)
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)  # cancelled sleepers
            if self._sleepers:
                self._move_to(max(self._elapsed, self._sleepers[0][0]))


def floor_minute(t: datetime) -> datetime:
    """`t` truncated to the start of its minute."""
    return t.replace(second=0, microsecond=0)


def floor_period(t: datetime, period_s: int) -> datetime:
    """`t` truncated to the start of its `period_s`-second period (aligned to the unix epoch)."""
    ts = int(t.timestamp())
    return datetime.fromtimestamp(ts - ts % period_s, UTC)


def parse_iso(text: str) -> datetime:
    """Parse ISO 8601 with `Z` or an offset into an aware UTC datetime. Naive input is taken as UTC."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def iso_fixed(t: datetime) -> str:
    """Fixed-width UTC ISO text with microseconds (`2026-11-20T12:00:00.000000+00:00`): stored times that
    compare correctly as strings. Naive datetimes are refused (ambiguous)."""
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t.isoformat()}; an aware one is needed")
    return t.astimezone(UTC).isoformat(timespec="microseconds")


def iso_z(t: datetime, millis: bool = True) -> str:
    """Format an aware datetime as `YYYY-MM-DDTHH:MM:SS.sssZ` (or without millis)."""
    t = t.astimezone(UTC)
    if millis:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")
