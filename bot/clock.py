"""Clocks. Everything that needs the time is handed one of these; nothing calls `datetime.now` itself.

`WallClock` is real time. `AcceleratedClock` runs `speed` times faster than wall time from an anchor, which
is how the offline demo lets a simulated market move an hour per wall minute while the bot stays
consistent with it. `ManualClock` only moves when told to, for tests.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Source of the current UTC time and of (possibly accelerated) sleeps."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
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
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
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
        return self._speed

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._mono0) * self._speed
        return self._start + timedelta(seconds=elapsed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self._speed)


class ManualClock:
    """A clock for tests: time stands still until `advance` or `set` moves it."""

    speed = 1.0

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        self._now = when

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)


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


def iso_z(t: datetime, millis: bool = True) -> str:
    """Format an aware datetime as `YYYY-MM-DDTHH:MM:SS.sssZ` (or without millis)."""
    t = t.astimezone(UTC)
    if millis:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")
