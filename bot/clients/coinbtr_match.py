"""Resolving a CoinBTR place request whose outcome is unknown: which order on the exchange is it?

CoinBTR has no client order id, so a place request that timed out or lost its connection after sending
can only be recognised by what it asked for. `match_orders` is the pure rule; the client's
`find_order` feeds it one read of the open orders followed by one read of the recent transactions.

Matching rule. An order matches the intent `(market, side, price, amount, placed_after)` when it is not
one of `exclude_ids` (orders the journal already owns), its id is above `after_order_id` when given
(CoinBTR order ids are assumed to increase with time), and either

* it is **open** with the same market, side, limit price and initial amount, created at or after
  `placed_after`; or
* it is **no longer open** and its fills since `placed_after` (same market and side) add up to exactly
  `amount`, each at the limit price or better (a marketable order fills as taker at the book's levels,
  which are at its limit or better). That is the order that filled completely.

Limits, which the caller must keep in mind:

* An order that was placed and then cancelled before any fill is invisible to both reads: "no match"
  is never proof that the request was not applied. Check again after a while (a request can also still
  be queued at the exchange) before treating the intent as not placed, and never resend blindly.
* A closed order that filled only partly (cancelled by someone else) does not match: its fills do not
  add up to the intent's amount, and fills alone cannot tell its creation time from an older order's.
* Two identical intents in the same window cannot be told apart: both orders match, and `find_order`
  reports the ambiguity instead of guessing. `exclude_ids` removes the ones already resolved.
* The rule assumes the bot is the only one placing orders with that exact market, side, price and
  amount on the account in the window.
* The open orders are read *before* the transactions, so an order that fills completely between the two
  reads is still seen (in the transactions); the reverse order could miss it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bot.domain import ExchangeOrder, Fill, Side, Withdrawal


@dataclass(frozen=True, slots=True)
class OrderMatch:
    """An exchange order that matches an intent. `order` is set while it is open; `fills` are the fills
    seen since `placed_after`; `filled` is the amount filled so far."""

    order_id: int
    is_open: bool
    filled: Decimal
    order: ExchangeOrder | None
    fills: tuple[Fill, ...]


def _at_limit_or_better(side: Side, limit: Decimal, fill_price: Decimal) -> bool:
    return fill_price <= limit if side is Side.BUY else fill_price >= limit


def match_orders(
    open_orders: Iterable[ExchangeOrder],
    fills: Iterable[Fill],
    *,
    market: str,
    side: Side,
    price: Decimal,
    amount: Decimal,
    placed_after: datetime,
    exclude_ids: Collection[int] = (),
    after_order_id: int | None = None,
) -> list[OrderMatch]:
    """Every order matching the intent, oldest id first (see the module docstring for the rule)."""
    market = market.lower()

    def eligible(order_id: int) -> bool:
        return order_id not in exclude_ids and (after_order_id is None or order_id > after_order_id)

    relevant = [f for f in fills if f.market == market and f.side is side and f.created_at >= placed_after]
    by_order: dict[int, list[Fill]] = defaultdict(list)
    for f in relevant:
        by_order[f.order_id].append(f)

    matches: list[OrderMatch] = []
    open_ids: set[int] = set()
    for o in open_orders:
        open_ids.add(o.order_id)
        if (eligible(o.order_id) and o.market == market and o.side is side and o.price == price
                and o.initial_amount == amount and o.created_at >= placed_after):
            matches.append(OrderMatch(o.order_id, True, o.filled, o, tuple(by_order.get(o.order_id, ()))))
    for order_id, group in by_order.items():
        if order_id in open_ids or not eligible(order_id):
            continue
        total = sum((f.amount for f in group), Decimal(0))
        if total == amount and all(_at_limit_or_better(side, price, f.price) for f in group):
            matches.append(OrderMatch(order_id, False, total, None, tuple(group)))
    return sorted(matches, key=lambda m: m.order_id)


def match_withdrawals(
    withdrawals: Iterable[Withdrawal],
    *,
    coin: str,
    address: str,
    amount: Decimal,
    requested_after: datetime,
    exclude_ids: Collection[int] = (),
) -> list[Withdrawal]:
    """Every withdrawal that a withdraw request of `amount` `coin` to `address`, sent at or after
    `requested_after`, may have created, oldest id first.

    A withdrawal matches when it is not one of `exclude_ids` (withdrawals already claimed by other sweeps),
    its coin and amount are equal, its address is exactly `address`, and it is dated at or after
    `requested_after` (the caller subtracts the clock skew it allows). Whatever its status: a failed one
    is still the request's outcome. Withdrawals, unlike orders, stay listed once made, so "none" after
    the request had time to arrive means it was not applied; two or more cannot be told apart, and the
    caller must not guess between them.
    """
    coin = coin.lower()
    found = [w for w in withdrawals
             if w.id not in exclude_ids and w.coin.lower() == coin and w.address == address
             and w.amount == amount and w.date >= requested_after]
    return sorted(found, key=lambda w: w.id)
