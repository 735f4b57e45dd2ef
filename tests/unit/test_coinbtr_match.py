"""The pure rule that recognises the order an unknown-outcome CoinBTR place request created."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from bot.clients.coinbtr_match import match_orders
from bot.domain import ExchangeOrder, Fill, Side

D = Decimal
SENT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
INTENT: dict[str, Any] = {"market": "btc-mxn", "side": Side.BUY, "price": D("100.00"), "amount": D("0.5"),
                          "placed_after": SENT}


def order(order_id: int = 7, *, market: str = "btc-mxn", side: Side = Side.BUY, price: str = "100.00",
          initial: str = "0.5", filled: str = "0", at: datetime = SENT) -> ExchangeOrder:
    return ExchangeOrder(order_id=order_id, market=market, side=side, price=D(price), initial_amount=D(initial),
                         amount=D(initial) - D(filled), filled=D(filled), fee_percent=D("0.075"), created_at=at)


def fill(order_id: int = 7, amount: str = "0.5", price: str = "100.00", *, side: Side = Side.BUY,
         market: str = "btc-mxn", at: datetime = SENT, fill_id: int = 1) -> Fill:
    return Fill(id=fill_id, order_id=order_id, market=market, side=side, price=D(price), amount=D(amount),
                fee_amount=D(0), fee_coin="btc", maker=True, created_at=at)


def ids(orders: list[ExchangeOrder], fills: list[Fill], **over: Any) -> list[int]:
    return [m.order_id for m in match_orders(orders, fills, **{**INTENT, **over})]


@pytest.mark.parametrize(
    ("candidate", "matches"),
    [
        (order(), True),
        (order(filled="0.2"), True),  # partly filled, still open
        (order(market="eth-mxn"), False),
        (order(side=Side.SELL), False),
        (order(price="100.01"), False),
        (order(initial="0.4"), False),
        (order(at=SENT - timedelta(seconds=1)), False),  # older than the request
    ],
)
def test_open_order_must_match_every_field(candidate: ExchangeOrder, matches: bool) -> None:
    assert ids([candidate], []) == ([7] if matches else [])


def test_market_name_case_does_not_matter() -> None:
    assert ids([order()], [], market="BTC-MXN") == [7]


def test_open_order_carries_its_fills_and_is_not_counted_twice() -> None:
    [m] = match_orders([order(filled="0.2")], [fill(amount="0.2")], **INTENT)
    assert (m.is_open, m.filled, len(m.fills), m.order is not None) == (True, D("0.2"), 1, True)


@pytest.mark.parametrize(
    ("fills", "matches"),
    [
        ([fill()], True),  # one taker fill at the limit
        ([fill(amount="0.2", price="99.50"), fill(amount="0.3", price="99.90", fill_id=2)], True),  # better
        ([fill(price="100.01")], False),  # worse than a buy's limit: not this order
        ([fill(amount="0.2")], False),  # closed with less than the amount: cannot tell it from an old order
        ([fill(amount="0.2"), fill(amount="0.2", fill_id=2)], False),
        ([fill(side=Side.SELL)], False),
        ([fill(market="eth-mxn")], False),
        ([fill(at=SENT - timedelta(seconds=1))], False),  # before the request
    ],
)
def test_closed_order_matches_only_when_its_fills_add_up_at_the_limit_or_better(
    fills: list[Fill], matches: bool
) -> None:
    assert ids([], fills) == ([7] if matches else [])


def test_sell_fills_must_be_at_or_above_the_limit() -> None:
    assert ids([], [fill(price="100.50", side=Side.SELL)], side=Side.SELL) == [7]
    assert ids([], [fill(price="99.99", side=Side.SELL)], side=Side.SELL) == []


def test_known_and_older_ids_are_left_out_and_the_rest_sorted() -> None:
    orders = [order(9), order(5), order(7)]
    assert ids(orders, []) == [5, 7, 9]
    assert ids(orders, [], exclude_ids={5, 9}) == [7]
    assert ids(orders, [fill(11)], after_order_id=7) == [9, 11]
