"""`LiveBroker`: the `Broker` that trades on the real CoinBTR account through the shared client.

Thin on purpose: every call is one client call, and errors pass through exactly as the client raises them
(`Rejected` and its coded subclasses, `TemporaryError`, `OutcomeUnknown` for a place or cancel that may
have been applied). The only state is the books (limits, steps, fees), read once and kept, since they
change rarely (`books(refresh=True)` reads them again), and each market's order book, shared by the callers
of one moment (`bot.execution.snapshots`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.clients.coinbtr import CoinbtrClient
from bot.clock import Clock
from bot.domain import Balance, Book, ExchangeOrder, Fill, OrderBook, Side
from bot.execution.snapshots import Snapshots, mids


class LiveBroker:
    """Trading on the CoinBTR account of the client's token (see `bot.execution.broker.Broker`)."""

    kind = "live"

    def __init__(self, client: CoinbtrClient, clock: Clock) -> None:
        self._client = client
        self._books: dict[str, Book] | None = None
        self._order_books = Snapshots(clock, client.market.order_book)

    async def books(self, *, refresh: bool = False) -> dict[str, Book]:
        """Every market's limits, steps and fees, by market name: read once, again with `refresh`."""
        if self._books is None or refresh:
            self._books = {b.name.lower(): b for b in await self._client.market.books()}
        return dict(self._books)

    async def order_book(self, market: str, *, max_age_s: float | None = None) -> OrderBook:
        """The market's current bids and asks, one read shared by the callers of one moment (`Snapshots`)."""
        return await self._order_books.get(market.lower(), max_age_s)

    async def place(self, market: str, side: Side, price: Decimal, amount: Decimal) -> int:
        """Place a limit order (sent once; `OutcomeUnknown` is resolved with `find_order`)."""
        return await self._client.trading.place(market, side, amount, price)

    async def cancel(self, order_id: int) -> None:
        """Cancel an open order; `NotFound` when it is not open any more."""
        await self._client.trading.cancel(order_id)

    async def open_orders(self, market: str | None = None) -> list[ExchangeOrder]:
        """The account's open orders (all, or of one market)."""
        return await self._client.trading.open_orders(market)

    async def order_fills(self, market: str, order_id: int, since: datetime) -> list[Fill]:
        """Every fill of one order at or after `since`, oldest first, each once."""
        return await self._client.trading.order_fills(market, order_id, since)

    async def find_order(self, market: str, side: Side, price: Decimal, amount: Decimal, placed_after: datetime,
                         exclude_ids: Collection[int] = ()) -> int | None:
        """The id of the one order an unknown-outcome place created, or None when none is visible (several
        candidates raise `OutcomeUnknown`: see `TradingApi.find_order`)."""
        match = await self._client.trading.find_order(market, side, price, amount, placed_after,
                                                      exclude_ids=exclude_ids)
        return match.order_id if match is not None else None

    async def balances(self) -> dict[str, Balance]:
        """Available, frozen and pending per coin (lower-case coin names)."""
        return {b.coin.lower(): b for b in await self._client.wallet.balances()}

    async def observe(self) -> None:
        """Nothing to do: the exchange fills live orders by itself."""

    def marks(self) -> dict[str, Decimal]:
        """The mid of each market's order book as last read (no request): what positions are marked at."""
        return mids(self._order_books.latest())

    def status(self) -> dict[str, Any]:
        """The live broker's part of `/status`."""
        return {"kind": self.kind, "books_cached": len(self._books or {}),
                "order_book_reads": self._order_books.reads, "order_book_reused": self._order_books.reused}
