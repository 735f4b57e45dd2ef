"""The balance cache execution and the wallet share: one request for concurrent readers, the newest kept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bot.clock import ManualClock
from bot.domain import Balance
from bot.execution.balances import BalanceCache


class Account:
    """The exchange side of `Broker.balances`: counts requests, answers when let through."""

    def __init__(self) -> None:
        self.requests = 0
        self.gate = asyncio.Event()
        self.btc = Decimal("1")

    async def balances(self) -> dict[str, Balance]:
        self.requests += 1
        await self.gate.wait()
        return {"BTC": Balance("btc", self.btc, Decimal(0), Decimal(0))}


async def test_concurrent_readers_share_one_request_and_see_when_it_was_read() -> None:
    clock = ManualClock(datetime(2026, 3, 2, 9, tzinfo=UTC))
    account = Account()
    cache = BalanceCache(account, clock)  # type: ignore[arg-type]  # only `balances` is used
    assert cache.read_at is None and cache.value == {}
    readers: list[Any] = [asyncio.create_task(cache.read()) for _ in range(3)]
    await asyncio.sleep(0)
    started = clock.now()
    clock.advance(5)
    account.gate.set()
    results = await asyncio.gather(*readers)
    assert account.requests == 1 and all(r["btc"].available == 1 for r in results)
    assert cache.read_at == started  # the request's start: what was placed after it is not in the answer
    account.btc = Decimal("0.5")
    await cache.read()
    assert account.requests == 2 and cache.value["btc"].available == Decimal("0.5") and cache.reads == 2
