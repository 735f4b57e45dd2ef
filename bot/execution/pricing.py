"""Pricing a limit order from the CoinBTR order book, rounded to the book's steps and checked against its limits.

Pure: no I/O, no clock. Every amount and price is a `Decimal`. Rounding always favours the bot and the
exchange's rules: a passive buy is rounded down and a passive sell up (never paying more, never crossing);
an amount is rounded down (never more than asked or held). Whatever cannot be placed on the book comes back
as `Skip` with a reason a person can read, never as an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from bot.domain import Book, OrderBook, PriceLevel, Side

ZERO = Decimal(0)
_PREC = 120  # digits for exact step arithmetic (the default context keeps 28)


@dataclass(frozen=True, slots=True)
class Priced:
    """A limit order ready for the risk check: price and amount on the book's steps, inside its limits."""

    market: str
    side: Side
    price: Decimal
    amount: Decimal
    best_bid: Decimal | None
    best_ask: Decimal | None

    @property
    def value(self) -> Decimal:
        """`price * amount`, in the quote coin."""
        return self.price * self.amount


@dataclass(frozen=True, slots=True)
class Skip:
    """No order: `reason` says why, for the log and the evaluation record; `below_minimum_value` when the
    order was worth less than the book's minimum value (what cannot be sold for that reason is dust)."""

    reason: str
    below_minimum_value: bool = False


def fmt(value: Decimal) -> str:
    """A decimal as plain text without exponent or trailing zeros (`0.00001`, `1500000`)."""
    return f"{value.normalize():f}" if value else "0"


def round_down(value: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of `step` not above `value`, written with `step`'s decimal places. Exact."""
    with localcontext() as ctx:
        ctx.prec = _PREC  # exact remainder and difference however many digits the inputs carry
        rest = value % step  # exact; takes the sign of `value`
        down = value - rest - (step if rest < 0 else ZERO)
        return down.quantize(step)


def round_up(value: Decimal, step: Decimal) -> Decimal:
    """The smallest multiple of `step` not below `value`, written with `step`'s decimal places. Exact."""
    up = round_down(value.copy_negate(), step).copy_negate()
    return up if up else up.copy_abs()  # 0, not -0


def best_bid(order_book: OrderBook) -> Decimal | None:
    """The highest bid, or None when there are no bids."""
    return max((level.price for level in order_book.bids), default=None)


def best_ask(order_book: OrderBook) -> Decimal | None:
    """The lowest ask, or None when there are no asks."""
    return min((level.price for level in order_book.asks), default=None)


def price_order(
    side: Side, book: Book, order_book: OrderBook, amount: Decimal, offset_steps: int = 0
) -> Priced | Skip:
    """A passive limit order for `amount` on `book`: at the best price of its own side, or inside the spread.

    A buy goes at the best bid plus `offset_steps` price steps, a sell at the best ask minus as many, but
    never crossing: a buy stays at least one step below the best ask and a sell one step above the best bid
    (with a one-step spread the offset has no room and the order joins the best price). A buy price is
    rounded down to the price step, a sell price up; the amount is rounded down to the amount step. Then
    amount, price and value (`price * amount`) are checked against the book's minimums and maximums.

    `Skip` when the side it prices from is empty, the book is crossed, or a limit cannot be met. Raises
    `ValueError` when `order_book` is not `book`'s or `offset_steps` is negative (caller bugs).
    """
    _same_book(book, order_book)
    if offset_steps < 0:
        raise ValueError(f"offset_steps must be >= 0, got {offset_steps}")
    bid, ask = best_bid(order_book), best_ask(order_book)
    if bid is not None and ask is not None and bid >= ask:
        return Skip(f"{book.name} order book is crossed or locked (bid {fmt(bid)} >= ask {fmt(ask)})")
    step = book.price_step
    if side is Side.BUY:
        if bid is None:
            return Skip(f"{book.name} order book has no bids to price a buy from")
        price = round_down(bid + offset_steps * step, step)
        if ask is not None:
            price = min(price, round_up(ask, step) - step)  # the highest price strictly below the ask
    else:
        if ask is None:
            return Skip(f"{book.name} order book has no asks to price a sell from")
        price = round_up(ask - offset_steps * step, step)
        if bid is not None:
            price = max(price, round_down(bid, step) + step)  # the lowest price strictly above the bid
    rounded = round_down(amount, book.amount_step)
    problem = check_limits(book, price, rounded, asked=amount)
    return problem or Priced(book.name, side, price, rounded, bid, ask)


def check_limits(book: Book, price: Decimal, amount: Decimal, *, asked: Decimal | None = None) -> Skip | None:
    """None when an order of `amount` at `price` fits the book's limits, else `Skip` naming the first miss.

    `price` and `amount` must already be on the book's steps (else `Skip` too); `asked` (the amount before
    rounding) only makes the reason clearer when rounding is what took the amount below the minimum.
    """
    if amount % book.amount_step:
        return Skip(f"amount {fmt(amount)} is not a multiple of the book's step {fmt(book.amount_step)}")
    if price % book.price_step:
        return Skip(f"price {fmt(price)} is not a multiple of the book's step {fmt(book.price_step)}")
    if amount <= 0 or amount < book.minimum_amount:
        rounded = f" (rounded down from {fmt(asked)} to the step {fmt(book.amount_step)})" if (
            asked is not None and asked != amount) else ""
        return Skip(f"amount {fmt(amount)}{rounded} below the book's minimum {fmt(book.minimum_amount)}")
    if amount > book.maximum_amount:
        return Skip(f"amount {fmt(amount)} above the book's maximum {fmt(book.maximum_amount)}")
    if price <= 0 or price < book.minimum_price:
        return Skip(f"price {fmt(price)} below the book's minimum {fmt(book.minimum_price)}")
    if price > book.maximum_price:
        return Skip(f"price {fmt(price)} above the book's maximum {fmt(book.maximum_price)}")
    value = price * amount
    if value < book.minimum_value:
        return Skip(f"value {fmt(value)} ({fmt(amount)} at {fmt(price)}) below the book's minimum "
                    f"{fmt(book.minimum_value)}", below_minimum_value=True)
    if value > book.maximum_value:
        return Skip(f"value {fmt(value)} ({fmt(amount)} at {fmt(price)}) above the book's maximum "
                    f"{fmt(book.maximum_value)}")
    return None


def marketable_price(side: Side, order_book: OrderBook, amount: Decimal, book: Book) -> Decimal | Skip:
    """The limit price that crosses the spread far enough to fill `amount` now (stop-loss, take-profit exits).

    Walks the opposite side from its best level (a buy the asks upwards, a sell the bids downwards) until
    the levels hold `amount`; the price of the last level needed is the limit, rounded so that it still
    reaches that level (a buy up, a sell down, to the price step). `Skip` when that side is empty, holds
    less than `amount`, `amount` is not positive, or the price is outside the book's price limits. The
    amount itself is not rounded or checked here (see `sell_amount` and `check_limits`).
    """
    _same_book(book, order_book)
    if amount <= 0:
        return Skip(f"amount {fmt(amount)} is not positive")
    levels: Sequence[PriceLevel]
    if side is Side.BUY:
        levels, name = sorted(order_book.asks, key=lambda lv: lv.price), "asks"
    else:
        levels, name = sorted(order_book.bids, key=lambda lv: lv.price, reverse=True), "bids"
    if not levels:
        return Skip(f"{book.name} order book has no {name} to {side.value} into")
    total = ZERO
    limit: Decimal | None = None
    for level in levels:
        total += level.amount
        if total >= amount:
            limit = level.price
            break
    if limit is None:
        where = f"{len(levels)} level" + ("s" if len(levels) > 1 else "")
        return Skip(f"{book.name} {name} hold {fmt(total)} in {where}, less than the "
                    f"{fmt(amount)} to {side.value}")
    price = round_up(limit, book.price_step) if side is Side.BUY else round_down(limit, book.price_step)
    if price <= 0 or price < book.minimum_price:
        return Skip(f"price {fmt(price)} below the book's minimum {fmt(book.minimum_price)}")
    if price > book.maximum_price:
        return Skip(f"price {fmt(price)} above the book's maximum {fmt(book.maximum_price)}")
    return price


def sell_amount(held: Decimal, book: Book) -> Decimal:
    """What a long instance holding `held` base coin can sell: `held` rounded down to the amount step (>= 0).

    The book's maximum amount is not applied: `price_order` skips an amount above it.
    """
    return max(ZERO, round_down(held, book.amount_step))


def is_flat(held: Decimal, book: Book) -> bool:
    """Whether `held` is dust: what could be sold of it is below the book's minimum amount.

    When the minimum is a multiple of the amount step (as on CoinBTR) this is `held < minimum_amount`.
    """
    return sell_amount(held, book) < book.minimum_amount


def _same_book(book: Book, order_book: OrderBook) -> None:
    if order_book.book.lower() != book.name.lower():
        raise ValueError(f"order book is {order_book.book!r}, expected {book.name!r}")
