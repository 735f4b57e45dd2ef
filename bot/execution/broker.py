"""The broker interface: the only thing that differs between paper and live trading.

`LiveBroker` (bot/execution/live.py) sends to CoinBTR through the shared client; `PaperBroker`
(bot/execution/paper.py) reads the same public market data and simulates fills with the fill model shared
with the simulated exchange and the backtest, never sending a private request. The order manager sees only
this interface, so both modes run the same code path.

Errors tell the manager what happened to a `place`: `Rejected` (the venue refused: REJECTED), `TemporaryError`
(provably never sent: the intent is closed as not placed), `OutcomeUnknown` (maybe placed: UNKNOWN, resolved
by `find_order`, never resent). `cancel` raises `NotFound` when the order is not open any more (filled or
cancelled already): the fills decide which.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from bot.domain import Balance, Book, ExchangeOrder, Fill, OrderBook, Side


class Broker(Protocol):
    """Trading on one CoinBTR account, live or on paper."""

    kind: str  # "live" | "paper"

    async def books(self) -> dict[str, Book]:
        """Every market's limits, steps and fees, by market name."""
        ...

    async def order_book(self, market: str, *, max_age_s: float | None = None) -> OrderBook:
        """The market's current bids and asks (`max_age_s`: an answer this many clock seconds old will do)."""
        ...

    async def place(self, market: str, side: Side, price: Decimal, amount: Decimal) -> int:
        """Place a limit order; returns its exchange id (see the module docstring for the errors)."""
        ...

    async def cancel(self, order_id: int) -> None:
        """Cancel an open order; `NotFound` when it is not open any more."""
        ...

    async def open_orders(self, market: str | None = None) -> list[ExchangeOrder]:
        """The account's open orders (all, or of one market)."""
        ...

    async def order_fills(self, market: str, order_id: int, since: datetime) -> list[Fill]:
        """Every fill of one order at or after `since`, oldest first, each once."""
        ...

    async def find_order(self, market: str, side: Side, price: Decimal, amount: Decimal, placed_after: datetime,
                         exclude_ids: Collection[int] = ()) -> int | None:
        """The one order an unknown-outcome place created, or None when none is visible."""
        ...

    async def balances(self) -> dict[str, Balance]:
        """Available, frozen and pending per coin."""
        ...

    async def observe(self) -> None:
        """Paper: account what traded since the last look (resting fills). Live: nothing."""
        ...

    def marks(self) -> dict[str, Decimal]:
        """Each market's order-book mid as last read (no request)."""
        ...

    def status(self) -> dict[str, Any]:
        """This broker's part of `/status` (secret-free)."""
        ...
