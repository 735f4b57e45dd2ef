"""Public market data read once per moment and shared: order books and tickers per market.

One closed candle can hand twenty instances to the order manager at once. Each of them needs the market's
order book (to price, to mark the day's PnL, and on paper to decide whether the limit crosses), and reading
it twenty times would spend the CoinBTR request budget twenty times over and put a round trip before every
place. A `Snapshots` keeps each market's newest answer for `max_age_s` seconds of the daemon's clock;
callers asking meanwhile get that answer, and callers asking while a read is in flight wait for that same
read instead of starting another. A failed read is not kept: the next caller reads again.

`max_age_s` is short (`BOOK_MAX_AGE_S`): a batch of hand-offs of one candle shares one read, the next
candle reads again, and `follow` (every 20 clock seconds) always sees a new book.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Generic, TypeVar

from bot.clock import Clock
from bot.domain import OrderBook

T = TypeVar("T")

BOOK_MAX_AGE_S = 2.0  # clock seconds an order book or ticker answer is reused for
# Clock seconds an order book may be old to mark a position for the daily loss limit (a candle's length): the
# check before each order marks every market the day moved, not only the one it prices, and a fresh read of
# each would put a round trip per market before every place.
MARK_MAX_AGE_S = 60.0


class Snapshots(Generic[T]):
    """The newest answer of `read(market)` per market, reused for `max_age_s` clock seconds."""

    def __init__(self, clock: Clock, read: Callable[[str], Awaitable[T]], max_age_s: float = BOOK_MAX_AGE_S) -> None:
        self._clock = clock
        self._read = read
        self._max_age_s = max_age_s
        self._kept: dict[str, tuple[float, T]] = {}
        self._inflight: dict[str, asyncio.Future[T]] = {}
        self.reads = 0
        self.reused = 0

    async def get(self, market: str, max_age_s: float | None = None) -> T:
        """The market's answer: kept if fresh (`max_age_s`, else the default), else the read in flight, else a
        new read."""
        kept = self._kept.get(market)
        fresh_s = self._max_age_s if max_age_s is None else max_age_s
        if kept is not None and self._clock.monotonic() - kept[0] <= fresh_s:
            self.reused += 1
            return kept[1]
        pending = self._inflight.get(market)
        if pending is not None:
            self.reused += 1
            return await asyncio.shield(pending)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[market] = future
        try:
            self.reads += 1
            value = await self._read(market)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        else:
            self._kept[market] = (self._clock.monotonic(), value)
            future.set_result(value)
            return value
        finally:
            self._inflight.pop(market, None)

    def latest(self) -> dict[str, T]:
        """The newest answer kept per market, however old (for display: never a request)."""
        return {m: v for m, (_, v) in self._kept.items()}

    def forget(self, market: str | None = None) -> None:
        """Drop what is kept (one market, or all): the next caller reads again."""
        if market is None:
            self._kept.clear()
        else:
            self._kept.pop(market, None)


def mids(books: dict[str, OrderBook]) -> dict[str, Decimal]:
    """The mid (best bid + best ask) / 2 of each order book that has both sides."""
    return {m: (ob.bids[0].price + ob.asks[0].price) / 2 for m, ob in books.items() if ob.bids and ob.asks}
