"""Snapshots: one read per market per moment, shared by concurrent callers; failures are not kept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from bot.clock import ManualClock
from bot.execution.snapshots import Snapshots


class Source:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gate = asyncio.Event()
        self.fail = False

    async def read(self, market: str) -> str:
        self.calls.append(market)
        await self.gate.wait()
        if self.fail:
            raise RuntimeError("down")
        return f"{market}#{len(self.calls)}"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 2, 9, tzinfo=UTC))


async def test_concurrent_callers_share_one_read_and_a_fresh_answer_is_reused(clock: ManualClock) -> None:
    src = Source()
    snaps = Snapshots(clock, src.read, max_age_s=2.0)
    waiting = [asyncio.create_task(snaps.get("btc-mxn")) for _ in range(5)]
    await asyncio.sleep(0)
    src.gate.set()
    assert await asyncio.gather(*waiting) == ["btc-mxn#1"] * 5
    assert src.calls == ["btc-mxn"]
    clock.advance(2.0)
    assert await snaps.get("btc-mxn") == "btc-mxn#1"  # still within max_age
    assert await snaps.get("eth-mxn") == "eth-mxn#2"  # markets are kept apart
    clock.advance(0.5)
    assert await snaps.get("btc-mxn") == "btc-mxn#3"  # too old: read again
    assert (snaps.reads, snaps.reused) == (3, 5)


async def test_a_failed_read_reaches_every_waiter_and_is_not_kept(clock: ManualClock) -> None:
    src = Source()
    src.fail = True
    snaps = Snapshots(clock, src.read)
    waiting = [asyncio.create_task(snaps.get("btc-mxn")) for _ in range(3)]
    await asyncio.sleep(0)
    src.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results) and len(src.calls) == 1
    src.fail = False
    assert await snaps.get("btc-mxn") == "btc-mxn#2"  # the next caller reads again
    snaps.forget("btc-mxn")
    assert await snaps.get("btc-mxn") == "btc-mxn#3"


async def test_a_caller_that_accepts_an_older_answer_gets_it_and_the_others_still_read_fresh(
        clock: ManualClock) -> None:
    src = Source()
    src.gate.set()
    snaps = Snapshots(clock, src.read, max_age_s=2.0)
    assert await snaps.get("eth-mxn") == "eth-mxn#1"
    clock.advance(30.0)
    assert await snaps.get("eth-mxn", max_age_s=60.0) == "eth-mxn#1"  # marking a position: a minute will do
    assert await snaps.get("eth-mxn") == "eth-mxn#2"  # pricing an order: fresh
    clock.advance(61.0)
    assert await snaps.get("eth-mxn", max_age_s=60.0) == "eth-mxn#3"  # too old even for a mark
