"""How a limit order fills against an observed market: one pure model for every simulated venue.

Shared by the CoinBTR simulator (`bot.sandbox.exchange`), the paper broker and the backtest's `limit` fill
model, so the three can never disagree about what an order would have got:

* `fill` — a **resting** limit order (a maker) during one observation of the market: a minute bar, or an
  estimate of what traded since the last look. A buy fills when the traded low reaches its price
  (`low <= price`), a sell when the traded high reaches it (`high >= price`): touching counts, the order
  was there at that price. It gets at most `participation` of the volume traded (the rest of the volume
  belongs to other orders at and through the price), never more than it has left, rounded **down** to the
  book's amount step (a fraction of a step is not a valid amount, so it does not fill).
* `take` — an order that **crosses** the spread when it is placed (a taker): it walks the opposite side of
  the book from the best level up to its limit price, each piece at the level's price. What it does not
  take rests, and from then on fills through `fill`.

Decimal only; no clock, no I/O, no state. An observation is what the caller says it is: a caller that looks
at a minute several times while it trades (the simulator's partial current minute) passes the minute so far
and subtracts what that minute already filled, which is exact because `fill` is monotone in volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_DOWN, Decimal

from bot.domain import PriceLevel, Side

__all__ = ["fill", "reaches", "round_down", "take"]

ZERO = Decimal(0)


def round_down(amount: Decimal, step: Decimal) -> Decimal:
    """`amount` rounded down to a whole number of `step`s (`step` must be positive)."""
    if step <= 0:
        raise ValueError(f"amount step must be positive, got {step}")
    return (amount / step).to_integral_value(rounding=ROUND_DOWN) * step


def reaches(side: Side, price: Decimal, low: Decimal, high: Decimal) -> bool:
    """Whether a traded range reached a resting order's price: a buy's when `low <= price`, a sell's when
    `high >= price`."""
    return low <= price if side is Side.BUY else high >= price


def fill(
    side: Side,
    price: Decimal,
    remaining: Decimal,
    low: Decimal,
    high: Decimal,
    volume: Decimal,
    participation: Decimal,
    amount_step: Decimal,
) -> Decimal:
    """The amount of a resting limit order that fills during one observation of the market.

    `low`, `high` and `volume` describe what traded during the observation (`volume` in the base coin);
    `participation` is the share of that volume the order may take (0.05 means 5%). The result is
    `min(remaining, participation * volume)` rounded down to `amount_step` when the range reaches `price`
    (see `reaches`), and 0 otherwise, or when nothing is left, nothing traded or the share is not positive.
    """
    if remaining <= 0 or volume <= 0 or participation <= 0 or not reaches(side, price, low, high):
        return ZERO
    return round_down(min(remaining, participation * volume), amount_step)


def take(side: Side, price: Decimal, amount: Decimal, levels: Sequence[PriceLevel]) -> list[tuple[Decimal, Decimal]]:
    """The taker fills of an order of `amount` limited at `price` that crosses the book when placed.

    `levels` is the opposite side of the book, best first (asks ascending for a buy, bids descending for a
    sell). The walk takes each level's amount (all of it, or what is still wanted) at the level's price and
    stops at the first level beyond the limit (an ask above a buy's price, a bid below a sell's) or when
    the amount is taken. Returns `[(level price, amount taken), ...]` in the order taken; whatever is not
    taken rests. Levels with no amount are skipped.
    """
    out: list[tuple[Decimal, Decimal]] = []
    left = amount
    for level in levels:
        if left <= 0:
            break
        if (side is Side.BUY and level.price > price) or (side is Side.SELL and level.price < price):
            break
        if level.amount <= 0:
            continue
        got = min(left, level.amount)
        out.append((level.price, got))
        left -= got
    return out
