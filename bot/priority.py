"""Orders first on the one event loop: work that can wait a moment yields to orders already decided.

Everything the daemon does shares one event loop, which runs whatever is ready in turn. An order decided on
one stream's candle awaits the exchange (the order book, then the place request), and while it does, the
next streams' candles arrive and are evaluated; when the exchange answers, the order's next step waits
until those evaluations are done. Under load (many streams polled close together, or a sped-up sandbox)
that wait was the latency tail of a closed candle's order: in `bench/daemon.py` the orders that waited behind
other streams' candles had a p99 of 215 ms, the others 30 ms.

`OrdersFirst` lets the order path say "a batch of orders is on its way" (`hold()`, released once the batch's
orders are sent), and work that can wait (a stream's strategy evaluation) `await defer()` first: it waits
until no batch is on its way, for at most `max_defer_s` of wall time each time, so a slow exchange delays one
evaluation by that much at most. The order path holds only while its task runs (see `OrderManager`): a
hand-off queued while it does not (start-up's catch-up, a restart after a crash) holds nothing back.
"""

from __future__ import annotations

import asyncio
import time


class Hold:
    """One batch's claim on the loop; `release()` (idempotent) ends it."""

    def __init__(self, owner: OrdersFirst) -> None:
        self._owner: OrdersFirst | None = owner

    def release(self) -> None:
        if self._owner is not None:
            self._owner._released()
            self._owner = None


class OrdersFirst:
    """See the module docstring. Not thread-safe: the event loop's own."""

    def __init__(self, max_defer_s: float = 0.05) -> None:
        self.max_defer_s = max_defer_s
        self._holds = 0
        self._free = asyncio.Event()
        self._free.set()
        self.deferred = 0  # times work waited
        self.deferred_s = 0.0  # wall seconds it waited in all
        self.gave_up = 0  # times it stopped waiting at `max_defer_s`

    def status(self) -> dict[str, object]:
        return {"held": self.held, "deferred": self.deferred, "deferred_s": round(self.deferred_s, 3),
                "gave_up": self.gave_up}

    @property
    def held(self) -> bool:
        return self._holds > 0

    def hold(self) -> Hold:
        self._holds += 1
        self._free.clear()
        return Hold(self)

    def _released(self) -> None:
        self._holds -= 1
        if self._holds == 0:
            self._free.set()

    async def defer(self) -> None:
        """Return at once when no order batch is on its way; else when it is sent, or after `max_defer_s`."""
        if self._holds == 0:
            return
        began = time.monotonic()
        try:
            async with asyncio.timeout(self.max_defer_s):  # no task per wait; a cancel is never swallowed
                await self._free.wait()
        except TimeoutError:
            self.gave_up += 1
        self.deferred += 1
        self.deferred_s += time.monotonic() - began
