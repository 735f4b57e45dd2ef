"""Clocks: monotonic readings in clock seconds, and a manual clock whose concurrent sleepers wake in
deadline order like real time (not one after the other)."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import timedelta

import pytest

from bot.clock import AcceleratedClock, ManualClock, WallClock
from tests.conftest import T0


async def _sleep_and_note(clock: ManualClock, seconds: float, name: str, woke: list[tuple[str, float]]) -> None:
    await clock.sleep(seconds)
    woke.append((name, clock.monotonic()))


async def test_concurrent_sleeps_wake_at_their_own_deadlines_in_order(clock: ManualClock) -> None:
    woke: list[tuple[str, float]] = []
    await asyncio.gather(_sleep_and_note(clock, 10, "ten", woke), _sleep_and_note(clock, 5, "five", woke))
    assert woke == [("five", 5.0), ("ten", 10.0)]
    assert clock.now() == T0 + timedelta(seconds=10)  # the latest deadline, not the sum


async def test_a_sleep_started_later_wakes_at_its_start_plus_its_duration(clock: ManualClock) -> None:
    woke: list[tuple[str, float]] = []

    async def later() -> None:
        await clock.sleep(3)
        await _sleep_and_note(clock, 2, "later", woke)

    await asyncio.gather(_sleep_and_note(clock, 10, "long", woke), later())
    assert woke == [("later", 5.0), ("long", 10.0)]


async def test_many_seeded_sleepers_wake_sorted_and_time_never_moves_back(clock: ManualClock) -> None:
    rng = random.Random(11)
    durations = [round(rng.uniform(0.1, 100.0), 3) for _ in range(40)]
    woke: list[tuple[str, float]] = []
    seen: list[float] = []

    async def watch() -> None:
        while len(woke) < len(durations):
            seen.append(clock.monotonic())
            await clock.sleep(1)

    await asyncio.gather(watch(), *(_sleep_and_note(clock, d, str(i), woke) for i, d in enumerate(durations)))
    assert [t for _, t in woke] == sorted(durations)
    assert [t for _, t in woke] == [durations[int(name)] for name, _ in woke]  # each at its own deadline
    assert seen == sorted(seen)
    assert clock.monotonic() <= max(durations) + 1


async def test_ties_wake_in_call_order(clock: ManualClock) -> None:
    woke: list[tuple[str, float]] = []
    await asyncio.gather(*(_sleep_and_note(clock, 7, str(i), woke) for i in range(5)))
    assert woke == [(str(i), 7.0) for i in range(5)]


async def test_advance_wakes_due_sleepers_and_time_does_not_go_back_to_their_deadline(
    clock: ManualClock,
) -> None:
    woke: list[tuple[str, float]] = []
    task = asyncio.create_task(_sleep_and_note(clock, 30, "a", woke))
    await asyncio.sleep(0)  # the sleeper registers
    clock.advance(40)
    await task
    assert woke == [("a", 40.0)] and clock.now() == T0 + timedelta(seconds=40)


async def test_a_cancelled_sleeper_does_not_hold_time_or_the_others(clock: ManualClock) -> None:
    woke: list[tuple[str, float]] = []
    doomed = asyncio.create_task(clock.sleep(3))
    other = asyncio.create_task(_sleep_and_note(clock, 8, "other", woke))
    await asyncio.sleep(0)
    doomed.cancel()
    await other
    assert woke == [("other", 8.0)] and doomed.cancelled()


def test_manual_monotonic_counts_advances_but_not_calendar_jumps(clock: ManualClock) -> None:
    clock.advance(12.5)
    assert clock.monotonic() == 12.5
    clock.jump(T0 + timedelta(hours=3))  # the calendar reading is set forward: no time passed
    assert clock.monotonic() == 12.5 and clock.now() == T0 + timedelta(hours=3)
    clock.set(T0)  # backwards: a jump too
    assert clock.monotonic() == 12.5 and clock.now() == T0
    clock.set(T0 + timedelta(seconds=60))  # forward: time passes
    assert clock.monotonic() == 72.5
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_accelerated_monotonic_counts_simulated_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    wall = iter([1000.0, 1000.5, 1002.0])  # wall monotonic readings: made, then +0.5 s, then +2 s
    monkeypatch.setattr(time, "monotonic", lambda: next(wall))  # bot.clock reads time.monotonic
    accelerated = AcceleratedClock(60, start=T0)
    assert accelerated.monotonic() == 30.0  # half a wall second at speed 60
    assert accelerated.now() == T0 + timedelta(seconds=120)  # now() and monotonic() agree


def test_wall_monotonic_never_goes_back() -> None:
    wall = WallClock()
    readings = [wall.monotonic() for _ in range(1000)]
    assert readings == sorted(readings)
