"""The CoinBTR simulator's engine: balances, limit orders and their fills against the simulated market.

Orders fill by the model every simulated venue shares, `bot.execution.fill_model` (the rest of the pure
parts, limits, fees and the synthetic book, live in `bot.sandbox.exchange_rules`):

* At placement an order that crosses the synthetic book (a buy at or above the best ask, a sell at or
  below the best bid) takes liquidity level by level as a *taker* (`fill_model.take`), each piece at the
  level's price, which is the limit or better. Depth taken stays taken for the rest of that minute. The
  rest rests.
* A resting order fills as a *maker*, at its own price, in every minute whose range reaches the price (a
  buy when the minute's low is at or below it, a sell when the high is at or above it), by at most
  `fill_share` (the participation) of that minute's volume, rounded down to the book's amount step
  (`fill_model.fill`, one minute being one observation). So a large order fills over several minutes, and
  the partial current minute can fill more as its volume grows (each look passes the minute so far and
  fills what it adds to the minute's earlier fills). In the minute the order was created only the volume
  and the trades after placement count (the range is that of the market's trades after the order's
  creation instant, `SimMarket.range_after`), so a move that happened before the order cannot fill it.
* Fees are charged in the coin received. A buy freezes exactly `amount * price` of the quote coin (no
  fee headroom), a sell `amount` of the base coin; a buy filled below its limit gets the difference back.

Transactions are served a page at a time (`page_size`, default 100): with `since`, the *oldest* page of
fills at or after it (so a client walks `since` forward through any number of fills); without, the newest
page. Either way the page is listed newest first, and it never splits the fills of one instant (it grows
past `page_size` instead), since a client walking `since` could not get past a full page of one instant.

Everything is measured on the injected clock; nothing here is random except through the seed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from bot.clock import Clock, floor_minute
from bot.domain import Side
from bot.execution import fill_model
from bot.sandbox.exchange_rules import (
    BOOKS,
    INSUFFICIENT_FUNDS,
    INVALID_PARAMS,
    NOT_FOUND,
    BookSpec,
    ExchangeError,
    Level,
    MarketView,
    check_placement,
    frozen_for,
    settle,
    synthetic_depth,
)

ZERO = Decimal(0)
MINUTE = timedelta(minutes=1)
DEFAULT_FILL_SHARE = Decimal("0.05")  # the participation of a resting order in a minute's volume
TRANSACTIONS_PAGE = 100  # fills per listtransactions answer


class Ledger:
    """Per-user balances: `available` and `frozen` per coin; a coin's balance is always their sum."""

    def __init__(self) -> None:
        self._available: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        self._frozen: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))

    def fund(self, username: str, balances: dict[str, Decimal]) -> None:
        """Add starting balances to a user's available funds."""
        for coin, amount in balances.items():
            self._available[username][coin.lower()] += amount

    def available(self, username: str, coin: str) -> Decimal:
        return self._available[username][coin]

    def frozen(self, username: str, coin: str) -> Decimal:
        return self._frozen[username][coin]

    def coins(self, username: str) -> list[str]:
        """Coins the user has ever held, sorted."""
        return sorted(set(self._available[username]) | set(self._frozen[username]))

    def credit(self, username: str, coin: str, amount: Decimal) -> None:
        self._available[username][coin] += amount

    def debit(self, username: str, coin: str, amount: Decimal) -> None:
        """Take `amount` from available funds; 1002 when there is not enough."""
        if self._available[username][coin] < amount:
            raise ExchangeError(INSUFFICIENT_FUNDS, f"insufficient {coin} funds")
        self._available[username][coin] -= amount

    def freeze(self, username: str, coin: str, amount: Decimal) -> None:
        """Move `amount` from available to frozen; 1002 when there is not enough."""
        self.debit(username, coin, amount)
        self._frozen[username][coin] += amount

    def unfreeze(self, username: str, coin: str, amount: Decimal) -> None:
        """Hand frozen funds back to available."""
        self._frozen[username][coin] -= amount
        self._available[username][coin] += amount

    def spend_frozen(self, username: str, coin: str, amount: Decimal) -> None:
        """Frozen funds leave the account (they paid for a fill)."""
        self._frozen[username][coin] -= amount

    def entries(self) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
        """`{(user, coin): (available, frozen)}` for every coin any user ever held (for persistence)."""
        keys = {(u, c) for u, coins in self._available.items() for c in coins}
        keys |= {(u, c) for u, coins in self._frozen.items() for c in coins}
        return {(u, c): (self._available[u][c], self._frozen[u][c]) for u, c in sorted(keys)}

    def restore(self, entries: dict[tuple[str, str], tuple[Decimal, Decimal]]) -> None:
        """Replace every balance with `entries` (the inverse of `entries()`)."""
        self._available.clear()
        self._frozen.clear()
        for (user, coin), (available, frozen) in entries.items():
            self._available[user][coin] = available
            self._frozen[user][coin] = frozen


@dataclass(slots=True)
class SimOrder:
    """A limit order as the exchange keeps it. `status` is `open`, `filled` or `cancelled`."""

    id: int
    username: str
    book: str
    side: Side
    price: Decimal
    initial_amount: Decimal
    remaining: Decimal
    created_at: datetime
    fee_percent: Decimal
    frozen_left: Decimal
    status: str = "open"
    closed_at: datetime | None = None
    # Fill progress: first minute not fully used yet, and how much of its volume share this order used.
    next_minute: datetime | None = None
    used: Decimal = ZERO
    # The creation minute's volume at placement. (Its range at placement is kept for stores written before
    # the first minute's fills were judged from the trades after placement; it is no longer read.)
    base_volume: Decimal = ZERO
    base_low: Decimal | None = None
    base_high: Decimal | None = None

    @property
    def filled(self) -> Decimal:
        return self.initial_amount - self.remaining

    @property
    def is_open(self) -> bool:
        return self.status == "open"


@dataclass(frozen=True, slots=True)
class SimFill:
    """One execution of (part of) an order."""

    id: int
    order_id: int
    username: str
    book: str
    side: Side
    price: Decimal
    amount: Decimal
    fee_amount: Decimal
    fee_coin: str
    maker: bool
    created_at: datetime


def _page(fills: list[SimFill], size: int, *, oldest: bool) -> list[SimFill]:
    """The oldest (or newest) `size` of `fills` (sorted oldest first), grown to keep every fill of the
    boundary instant: a page never splits an instant, so walking `since` forward always gets past it."""
    if oldest:
        end = size
        while end < len(fills) and fills[end].created_at == fills[end - 1].created_at:
            end += 1
        return fills[:end]
    start = len(fills) - size
    while start > 0 and fills[start - 1].created_at == fills[start].created_at:
        start -= 1
    return fills[start:]


class OrderEngine:
    """Places, cancels and fills limit orders for every user against one `MarketView`."""

    def __init__(
        self,
        market: MarketView,
        clock: Clock,
        ledger: Ledger,
        seed: int = 42,
        fill_share: Decimal = DEFAULT_FILL_SHARE,
        first_order_id: int = 1001,
        first_fill_id: int = 5001,
        page_size: int = TRANSACTIONS_PAGE,
    ) -> None:
        self.market = market
        self.clock = clock
        self.ledger = ledger
        self.seed = seed
        self.fill_share = fill_share
        self.page_size = page_size
        self.orders: dict[int, SimOrder] = {}
        self.fills: list[SimFill] = []
        self._next_order_id = first_order_id
        self._next_fill_id = first_fill_id
        # Liquidity taken from the synthetic book: (book, minute) -> price -> amount taken.
        self._taken: dict[tuple[str, datetime], dict[Decimal, Decimal]] = {}
        # When fills were last brought up to date. A fill found later is never stamped before it, so a
        # client that polls transactions `since` its last poll never misses one.
        self._processed_at: datetime | None = None

    # ---- queries -------------------------------------------------------------------------------

    def depth(self, book: BookSpec) -> tuple[list[Level], list[Level]]:
        """The synthetic book now, minus what takers already took from it this minute."""
        now = self.clock.now()
        minute = floor_minute(now)
        asks, bids = synthetic_depth(book, self.market.price(book.book, now), self.seed, minute)
        taken = self._taken.get((book.book, minute), {})
        if not taken:
            return asks, bids

        def left(levels: list[Level]) -> list[Level]:
            out = [Level(lv.price, lv.amount - taken.get(lv.price, ZERO)) for lv in levels]
            return [lv for lv in out if lv.amount > 0]

        return left(asks), left(bids)

    def open_orders(
        self, username: str, book: str | None = None, order_id: int | None = None
    ) -> list[SimOrder]:
        """The user's open orders, oldest first, optionally only one book or one id."""
        return [
            o
            for o in self.orders.values()
            if o.username == username
            and o.is_open
            and (book is None or o.book == book)
            and (order_id is None or o.id == order_id)
        ]

    def fills_of(
        self, username: str, book: str | None = None, since: datetime | None = None, *, paged: bool = True
    ) -> list[SimFill]:
        """The user's fills, newest first, one page as listtransactions answers: `page_size` of them (more
        only to keep one instant's fills together), the oldest at or after `since`, or the newest when
        there is no `since`. `paged=False`: all of them."""
        picked = sorted(
            (
                f
                for f in self.fills
                if f.username == username
                and (book is None or f.book == book)
                and (since is None or f.created_at >= since)
            ),
            key=lambda f: (f.created_at, f.id),
        )
        if paged and len(picked) > self.page_size:
            picked = _page(picked, self.page_size, oldest=since is not None)
        return picked[::-1]

    def fill(self, username: str, fill_id: int) -> SimFill:
        """One of the user's fills; 1003 when there is no such fill."""
        for f in self.fills:
            if f.id == fill_id and f.username == username:
                return f
        raise ExchangeError(NOT_FOUND, "transaction not found")

    # ---- persistence ---------------------------------------------------------------------------

    @property
    def next_order_id(self) -> int:
        return self._next_order_id

    def counters(self) -> dict[str, object]:
        """Id counters and the liquidity taken from the book this minute, as plain data."""
        taken = [[book, minute.isoformat(), str(price), str(amount)]
                 for (book, minute), levels in sorted(self._taken.items()) for price, amount in levels.items()]
        return {"next_order_id": self._next_order_id, "next_fill_id": self._next_fill_id, "taken": taken}

    def restore(self, orders: list[SimOrder], fills: list[SimFill], counters: dict[str, Any]) -> None:
        """Continue from persisted state. Fills found from now on are stamped no earlier than now (every
        answer given before the restart was given at an earlier clock time)."""
        self.orders = {o.id: o for o in sorted(orders, key=lambda o: o.id)}
        self.fills = sorted(fills, key=lambda f: f.id)
        ids = [o.id + 1 for o in orders]
        self._next_order_id = max([int(counters["next_order_id"]), self._next_order_id, *ids])
        self._next_fill_id = max([int(counters["next_fill_id"]), self._next_fill_id, *[f.id + 1 for f in fills]])
        self._taken = {}
        for book, minute, price, amount in counters.get("taken", []):
            key = (str(book), datetime.fromisoformat(minute))
            self._taken.setdefault(key, {})[Decimal(price)] = Decimal(amount)
        self._processed_at = self.clock.now()

    # ---- commands ------------------------------------------------------------------------------

    def place(self, username: str, book_name: str, side: Side, amount: Decimal, price: Decimal) -> SimOrder:
        """Check, freeze, take what crosses the book, rest the rest. Raises `ExchangeError`."""
        book = BOOKS.get(book_name.lower())
        if book is None:
            raise ExchangeError(INVALID_PARAMS, f"unknown market {book_name!r}")
        problem = check_placement(book, amount, price)
        if problem is not None:
            raise problem
        coin, need = frozen_for(book, side, amount, price)
        self.ledger.freeze(username, coin, need)
        now = self.clock.now()
        minute = floor_minute(now)
        order = SimOrder(
            id=self._next_order_id, username=username, book=book.book, side=side, price=price,
            initial_amount=amount, remaining=amount, created_at=now, fee_percent=book.maker_fee,
            frozen_left=need, next_minute=minute,
        )
        self._next_order_id += 1
        self.orders[order.id] = order
        current = [b for b in self.market.bars(book.book, minute, now) if b.time == minute]
        if current:
            order.base_volume = current[-1].volume
        asks, bids = self.depth(book)
        taken = self._taken.setdefault((book.book, minute), {})
        self._prune_taken(minute)
        for level_price, got in fill_model.take(side, price, amount, asks if side is Side.BUY else bids):
            taken[level_price] = taken.get(level_price, ZERO) + got
            self._execute(order, book, level_price, got, maker=False, at=now)
        return order

    def cancel(self, username: str, order_id: int) -> SimOrder:
        """Cancel an open order of either side, keeping what already filled; 1003 when not open."""
        order = self.orders.get(order_id)
        if order is None or order.username != username or not order.is_open:
            raise ExchangeError(NOT_FOUND, "order not found or not open")
        book = BOOKS[order.book]
        coin = book.quote if order.side is Side.BUY else book.base
        self.ledger.unfreeze(username, coin, order.frozen_left)
        order.frozen_left = ZERO
        order.status = "cancelled"
        order.closed_at = self.clock.now()
        return order

    def process(self) -> None:
        """Fill resting orders from every market minute up to the clock's now."""
        now = self.clock.now()
        floor, self._processed_at = self._processed_at, now
        by_book: dict[str, list[SimOrder]] = defaultdict(list)
        for order in self.orders.values():
            if order.is_open:
                by_book[order.book].append(order)
        for book_name, orders in by_book.items():
            book = BOOKS[book_name]
            start = min(o.next_minute or floor_minute(o.created_at) for o in orders)
            for bar in self.market.bars(book_name, start, now):
                for order in orders:
                    if order.is_open and order.next_minute is not None and bar.time >= order.next_minute:
                        self._apply_minute(
                            order, book, bar.time, bar.low, bar.high, bar.volume, bar.partial, floor
                        )

    # ---- internals -----------------------------------------------------------------------------

    def _apply_minute(
        self, order: SimOrder, book: BookSpec, minute: datetime, low: Decimal, high: Decimal,
        volume: Decimal, partial: bool, floor: datetime | None,
    ) -> None:
        if minute == floor_minute(order.created_at):
            # Only what traded after placement counts: its volume, and the range of the trades after it (the
            # minute's bar also holds the trades before the order existed).
            volume -= order.base_volume
            after = self.market.range_after(book.book, order.created_at, minute + MINUTE)
            if after is None:
                volume = ZERO
            else:
                low, high = after
        # One look at the minute so far: what the minute fills in all, less what it already filled.
        in_minute = fill_model.fill(
            order.side, order.price, order.remaining + order.used, low, high, max(volume, ZERO),
            self.fill_share, book.amount_step,
        )
        amount = max(in_minute - order.used, ZERO)
        if amount > 0:
            now = self.clock.now()
            at = max(now if partial else min(now, minute + timedelta(seconds=59)), order.created_at)
            at = max(at, floor) if floor is not None else at
            self._execute(order, book, order.price, amount, maker=True, at=at)
        if partial:
            order.next_minute, order.used = minute, order.used + amount
        else:
            order.next_minute, order.used = minute + MINUTE, ZERO

    def _execute(
        self, order: SimOrder, book: BookSpec, price: Decimal, amount: Decimal, maker: bool, at: datetime
    ) -> None:
        s = settle(book, order.side, order.price, price, amount, maker)
        user = order.username
        self.ledger.spend_frozen(user, s.paid_coin, s.paid)
        if s.released:
            self.ledger.unfreeze(user, s.paid_coin, s.released)
        self.ledger.credit(user, s.received_coin, s.received - s.fee)
        order.remaining -= amount
        order.frozen_left -= s.paid + s.released
        self.fills.append(
            SimFill(
                id=self._next_fill_id, order_id=order.id, username=user, book=order.book, side=order.side,
                price=price, amount=amount, fee_amount=s.fee, fee_coin=s.received_coin, maker=maker,
                created_at=at,
            )
        )
        self._next_fill_id += 1
        if order.remaining == 0:
            if order.frozen_left:  # exact arithmetic leaves nothing; guard against a future rounding change
                self.ledger.unfreeze(user, s.paid_coin, order.frozen_left)
                order.frozen_left = ZERO
            order.status = "filled"
            order.closed_at = at

    def _prune_taken(self, minute: datetime) -> None:
        for key in [k for k in self._taken if k[1] < minute]:
            del self._taken[key]
