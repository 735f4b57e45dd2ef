"""The account's balances as last read: one cache shared by execution (risk) and the wallet watcher.

Execution reads the balances at start-up and after fills and cancels (what changes them), the wallet
watcher at each of its polls; whoever reads, both see the newest answer and when it was read, so neither
spends a request the other just made. Concurrent readers share one request. Risk reserves whatever the
answer cannot show yet (orders intended or placed after `read_at`). `read_marker` is what the optional
`marker` (the journal's write count) said when the kept answer was asked for: the wallet compares it with
the journal's count now to know whether the orders it sees are the ones the answer reflects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from bot.clock import Clock
from bot.domain import Balance
from bot.execution.broker import Broker


class BalanceCache:
    """The newest `broker.balances()` answer and the clock time its request started."""

    def __init__(self, broker: Broker, clock: Clock, marker: Callable[[], int] | None = None) -> None:
        self._broker = broker
        self._clock = clock
        self._marker = marker  # e.g. the journal's write count: what the bot knew when a read was asked
        self.read_marker: int | None = None
        self.value: dict[str, Balance] = {}
        self.read_at: datetime | None = None
        self.reads = 0
        self._inflight: asyncio.Task[dict[str, Balance]] | None = None

    async def read(self) -> dict[str, Balance]:
        """Read the balances now (or join the read in flight) and keep the answer."""
        if self._inflight is None:
            mark = self._marker() if self._marker is not None else None
            self._inflight = asyncio.get_running_loop().create_task(self._read(self._clock.now(), mark))
        task = self._inflight
        try:
            return dict(await asyncio.shield(task))
        finally:
            if task.done() and self._inflight is task:
                self._inflight = None

    async def _read(self, started: datetime, mark: int | None) -> dict[str, Balance]:
        value = {c.lower(): b for c, b in (await self._broker.balances()).items()}
        self.reads += 1
        if self.read_at is None or started >= self.read_at:
            self.value, self.read_at, self.read_marker = value, started, mark
        return value
