"""Pricing from the order book: rounding to the book's steps, never crossing, the book's limits, exits, dust."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain import Book, OrderBook, PriceLevel, Side
from bot.execution.pricing import (
    Priced,
    Skip,
    check_limits,
    fmt,
    is_flat,
    marketable_price,
    price_order,
    round_down,
    round_up,
    sell_amount,
)

D = Decimal
BUY, SELL = Side.BUY, Side.SELL


def make_book(
    name: str = "btc-mxn",
    *,
    minimum_amount: str = "0.00001",
    maximum_amount: str = "50",
    minimum_price: str = "1000",
    maximum_price: str = "100000000",
    minimum_value: str = "10",
    maximum_value: str = "20000000",
    amount_step: str = "0.00000001",
    price_step: str = "0.01",
) -> Book:
    return Book(
        name, D(minimum_amount), D(maximum_amount), D(minimum_price), D(maximum_price), D(minimum_value),
        D(maximum_value), D(amount_step), D(price_step), D("0.075"), D("0.15"),
    )


BTC_MXN = make_book()
# Coarse steps, like CoinBTR's eth-btc amounts, to make amount rounding visible.
ETH_BTC = make_book("eth-btc", minimum_amount="0.001", maximum_amount="1000", minimum_price="0.00001",
                    maximum_price="10", minimum_value="0.00001", maximum_value="100", amount_step="0.0001",
                    price_step="0.00000001")


def ob(bids: list[tuple[str, str]], asks: list[tuple[str, str]], name: str = "btc-mxn") -> OrderBook:
    return OrderBook(name, [PriceLevel(D(p), D(a)) for p, a in asks], [PriceLevel(D(p), D(a)) for p, a in bids])


SPREAD = ob([("1500000.00", "1"), ("1499990.00", "1")], [("1500100.00", "1"), ("1500110.00", "1")])
ONE_STEP = ob([("1500000.00", "1")], [("1500000.01", "1")])
OFF_STEP = ob([("1500000.005", "1")], [("1500100.005", "1")])


# ---- price_order: price ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "order_book", "offset", "price", "why"),
    [
        (BUY, SPREAD, 0, "1500000.00", "a buy joins the best bid"),
        (SELL, SPREAD, 0, "1500100.00", "a sell joins the best ask"),
        (BUY, SPREAD, 2, "1500000.02", "two steps inside the spread"),
        (SELL, SPREAD, 2, "1500099.98", "two steps inside the spread"),
        (BUY, SPREAD, 10_000, "1500099.99", "a big offset stops one step below the ask"),
        (SELL, SPREAD, 10_000, "1500000.01", "a big offset stops one step above the bid"),
        (BUY, ONE_STEP, 3, "1500000.00", "no room in a one-step spread: join the bid"),
        (SELL, ONE_STEP, 3, "1500000.01", "no room in a one-step spread: join the ask"),
        (BUY, OFF_STEP, 0, "1500000.00", "an off-step bid: a buy rounds down"),
        (SELL, OFF_STEP, 0, "1500100.01", "an off-step ask: a sell rounds up"),
        (BUY, ob([("1500000", "1")], []), 5, "1500000.05", "no asks: nothing to cross, the offset applies"),
        (SELL, ob([], [("1500100", "1")]), 5, "1500099.95", "no bids: nothing to cross, the offset applies"),
        (BUY, ob([("1499990", "1"), ("1500000", "1")], [("1500110", "1"), ("1500100", "1")]), 0, "1500000.00",
         "levels out of order: the best price is still found"),
    ],
)
def test_price_order_prices(side: Side, order_book: OrderBook, offset: int, price: str, why: str) -> None:
    priced = price_order(side, BTC_MXN, order_book, D("0.01"), offset)
    assert isinstance(priced, Priced), why
    assert priced.price == D(price), why
    assert priced.side is side and priced.market == "btc-mxn"


@pytest.mark.parametrize(
    ("side", "order_book", "reason"),
    [
        (BUY, ob([], [("1500100", "1")]), "btc-mxn order book has no bids to price a buy from"),
        (SELL, ob([("1500000", "1")], []), "btc-mxn order book has no asks to price a sell from"),
        (BUY, ob([], []), "btc-mxn order book has no bids to price a buy from"),
        (SELL, ob([("1500100", "1")], [("1500000", "1")]),
         "btc-mxn order book is crossed or locked (bid 1500100 >= ask 1500000)"),
        (BUY, ob([("1500000", "1")], [("1500000", "1")]),
         "btc-mxn order book is crossed or locked (bid 1500000 >= ask 1500000)"),
    ],
)
def test_price_order_skips_an_unusable_book(side: Side, order_book: OrderBook, reason: str) -> None:
    assert price_order(side, BTC_MXN, order_book, D("0.01"), 0) == Skip(reason)


# ---- price_order: amount and limits -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("book", "order_book", "side", "amount", "expected"),
    [
        (BTC_MXN, SPREAD, BUY, "0.123456789", "0.12345678"),  # rounded down to the step
        (BTC_MXN, SPREAD, SELL, "0.00001", "0.00001"),  # exactly the minimum
        (BTC_MXN, SPREAD, BUY, "13.33333333", "13.33333333"),  # value 19,999,999.99: just under the maximum
        (ETH_BTC, ob([("0.05", "1")], [("0.051", "1")], "eth-btc"), BUY, "0.00109", "0.0010"),
        (BTC_MXN, SPREAD, BUY, "0.000001",
         "amount 0.000001 below the book's minimum 0.00001"),
        (ETH_BTC, ob([("0.05", "1")], [("0.051", "1")], "eth-btc"), BUY, "0.00099",
         "amount 0.0009 (rounded down from 0.00099 to the step 0.0001) below the book's minimum 0.001"),
        (BTC_MXN, SPREAD, BUY, "0.000000009",
         "amount 0 (rounded down from 0.000000009 to the step 0.00000001) below the book's minimum 0.00001"),
        (BTC_MXN, SPREAD, BUY, "0", "amount 0 below the book's minimum 0.00001"),
        (BTC_MXN, SPREAD, SELL, "-1", "amount -1 below the book's minimum 0.00001"),
        (BTC_MXN, SPREAD, BUY, "50.00000001", "amount 50.00000001 above the book's maximum 50"),
        (BTC_MXN, ob([("999.99", "1")], [("1001", "1")]), BUY, "1", "price 999.99 below the book's minimum 1000"),
        (BTC_MXN, ob([("99999999", "1")], [("100000001", "1")]), SELL, "0.00001",
         "price 100000001 above the book's maximum 100000000"),
        (BTC_MXN, ob([("100000", "1")], [("100001", "1")]), BUY, "0.00001",
         "value 1 (0.00001 at 100000) below the book's minimum 10"),
        (BTC_MXN, SPREAD, SELL, "20", "value 30002000 (20 at 1500100) above the book's maximum 20000000"),
    ],
)
def test_price_order_amount_and_limits(
    book: Book, order_book: OrderBook, side: Side, amount: str, expected: str
) -> None:
    result = price_order(side, book, order_book, D(amount), 0)
    if expected[0].isdigit():
        assert isinstance(result, Priced)
        assert result.amount == D(expected)
        assert result.value == result.price * result.amount
    else:
        # Only a value under the book's minimum says so (what a sell cannot place for that reason is dust).
        assert result == Skip(expected, below_minimum_value=expected.startswith("value") and " below " in expected)


def test_price_order_rejects_caller_bugs() -> None:
    with pytest.raises(ValueError, match="order book is 'eth-btc'"):
        price_order(BUY, BTC_MXN, ob([("1", "1")], [("2", "1")], "eth-btc"), D(1), 0)
    with pytest.raises(ValueError, match="offset_steps"):
        price_order(BUY, BTC_MXN, SPREAD, D(1), -1)


@pytest.mark.parametrize(
    ("price", "amount", "reason"),
    [
        ("1500000.00", "0.01", None),
        ("1500000.001", "0.01", "price 1500000.001 is not a multiple of the book's step 0.01"),
        ("1500000", "0.000000001", "amount 0.000000001 is not a multiple of the book's step 0.00000001"),
    ],
)
def test_check_limits_wants_values_on_the_steps(price: str, amount: str, reason: str | None) -> None:
    assert check_limits(BTC_MXN, D(price), D(amount)) == (Skip(reason) if reason else None)


# ---- marketable_price -----------------------------------------------------------------------------------

DEEP = ob([("1500000.00", "0.3"), ("1499000.00", "0.3"), ("1498000.00", "0.4")],
          [("1500100.00", "0.3"), ("1501000.00", "0.3"), ("1502000.00", "0.4")])


@pytest.mark.parametrize(
    ("side", "order_book", "amount", "expected"),
    [
        (BUY, DEEP, "0.1", "1500100.00"),
        (BUY, DEEP, "0.3", "1500100.00"),  # the first level holds exactly enough
        (BUY, DEEP, "0.30000001", "1501000.00"),
        (BUY, DEEP, "1", "1502000.00"),  # all of it
        (SELL, DEEP, "0.5", "1499000.00"),
        (SELL, DEEP, "1", "1498000.00"),
        (BUY, ob([], [("1502000", "1"), ("1500100", "0.3")]), "0.5", "1502000.00"),  # unsorted levels
        (SELL, ob([("1498000", "1"), ("1500000", "0.3")], []), "0.5", "1498000.00"),
        (BUY, ob([], [("1500100.005", "1")]), "0.5", "1500100.01"),  # off-step: a buy rounds up to reach it
        (SELL, ob([("1499999.995", "1")], []), "0.5", "1499999.99"),  # off-step: a sell rounds down
        (BUY, DEEP, "1.00000001", "btc-mxn asks hold 1 in 3 levels, less than the 1.00000001 to buy"),
        (SELL, ob([("1500000", "0.2")], []), "0.5", "btc-mxn bids hold 0.2 in 1 level, less than the 0.5 to sell"),
        (BUY, ob([("1500000", "1")], []), "0.1", "btc-mxn order book has no asks to buy into"),
        (SELL, ob([], [("1500000", "1")]), "0.1", "btc-mxn order book has no bids to sell into"),
        (SELL, DEEP, "0", "amount 0 is not positive"),
        (SELL, ob([("999", "1")], []), "0.1", "price 999 below the book's minimum 1000"),
        (BUY, ob([], [("100000000.01", "1")]), "0.1", "price 100000000.01 above the book's maximum 100000000"),
    ],
)
def test_marketable_price(side: Side, order_book: OrderBook, amount: str, expected: str) -> None:
    result = marketable_price(side, order_book, D(amount), BTC_MXN)
    if expected[0].isdigit():
        assert result == D(expected)
    else:
        assert isinstance(result, Skip)
        assert result == Skip(expected)


# ---- sell_amount and is_flat ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("book", "held", "amount", "flat"),
    [
        (BTC_MXN, "0.5", "0.5", False),
        (BTC_MXN, "0.123456789", "0.12345678", False),
        (BTC_MXN, "0.00001", "0.00001", False),  # exactly the minimum: sellable
        (BTC_MXN, "0.000009999", "0.00000999", True),  # dust
        (BTC_MXN, "0", "0", True),
        (BTC_MXN, "-0.1", "0", True),  # never a negative amount
        (ETH_BTC, "0.00199", "0.0019", False),
        (ETH_BTC, "0.00099", "0.0009", True),
        (ETH_BTC, "1234.56789", "1234.5678", False),  # above the maximum: price_order skips it, not sell_amount
    ],
)
def test_sell_amount_and_dust(book: Book, held: str, amount: str, flat: bool) -> None:
    assert sell_amount(D(held), book) == D(amount)
    assert is_flat(D(held), book) is flat


@pytest.mark.parametrize(
    ("value", "step", "down", "up"),
    [
        ("100.005", "0.01", "100.00", "100.01"),
        ("100", "0.01", "100.00", "100.00"),
        ("7.2", "0.5", "7.0", "7.5"),
        ("-1.5", "1", "-2", "-1"),
        ("0.99999999999999999999999999999999", "0.00000001", "0.99999999", "1.00000000"),  # past 28 digits
        ("0", "0.01", "0.00", "0.00"),
    ],
)
def test_rounding_to_a_step_is_exact(value: str, step: str, down: str, up: str) -> None:
    assert str(round_down(D(value), D(step))) == down
    assert str(round_up(D(value), D(step))) == up


@pytest.mark.parametrize(("value", "text"), [("0.00001", "0.00001"), ("1.5E+6", "1500000"), ("0.00", "0"),
                                             ("100.10", "100.1")])
def test_fmt_is_plain(value: str, text: str) -> None:
    assert fmt(D(value)) == text


# ---- properties ------------------------------------------------------------------------------------------

STEPS = st.sampled_from([D("0.01"), D("0.5"), D("1"), D("0.00000001"), D("25")])
AMOUNT_STEPS = st.sampled_from([D("0.00000001"), D("0.0001"), D("0.1"), D("1")])


def _dec(lo: str, hi: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(D(lo), D(hi), places=places, allow_nan=False, allow_infinity=False)


@st.composite
def markets(draw: st.DrawFn) -> tuple[Book, OrderBook]:
    step, astep = draw(STEPS), draw(AMOUNT_STEPS)
    book = make_book(minimum_amount=str(astep * draw(st.integers(1, 100))), maximum_amount="1000",
                     minimum_price="0.01", maximum_price="100000000", minimum_value="0.01",
                     maximum_value="1000000000", amount_step=str(astep), price_step=str(step))
    bid = draw(_dec("0.01", "10000000", 3))
    ask = bid + draw(_dec("0.001", "100000", 3))
    bids = [PriceLevel(bid, D(1))] if draw(st.integers(0, 9)) else []
    asks = [PriceLevel(ask, D(1))] if draw(st.integers(0, 9)) else []
    return book, OrderBook("btc-mxn", asks, bids)


@settings(max_examples=300, deadline=None)
@given(markets(), st.sampled_from([BUY, SELL]), _dec("0", "2000", 9), st.integers(0, 10_000))
def test_priced_orders_are_on_the_steps_inside_the_limits_and_never_cross(
    market: tuple[Book, OrderBook], side: Side, amount: Decimal, offset: int
) -> None:
    book, order_book = market
    result = price_order(side, book, order_book, amount, offset)
    if isinstance(result, Skip):
        assert result.reason
        return
    bid = order_book.bids[0].price if order_book.bids else None
    ask = order_book.asks[0].price if order_book.asks else None
    assert result.price % book.price_step == 0
    assert result.amount % book.amount_step == 0
    assert 0 <= amount - result.amount < book.amount_step
    assert check_limits(book, result.price, result.amount) is None
    if side is BUY:
        assert bid is not None and result.price >= round_down(bid, book.price_step)
        assert ask is None or result.price < ask
    else:
        assert ask is not None and result.price <= round_up(ask, book.price_step)
        assert bid is None or result.price > bid
    # Never more aggressive than asked: one step less offset never prices past this one.
    if offset:
        fewer = price_order(side, book, order_book, amount, offset - 1)
        assert isinstance(fewer, Priced | Skip)
        if isinstance(fewer, Priced):
            assert fewer.price <= result.price if side is BUY else fewer.price >= result.price


@st.composite
def depths(draw: st.DrawFn) -> list[PriceLevel]:
    prices = draw(st.lists(_dec("1000", "2000000", 2), min_size=1, max_size=8, unique=True))
    return [PriceLevel(p, draw(_dec("0.00000001", "2", 8))) for p in prices]


@settings(max_examples=300, deadline=None)
@given(depths(), st.sampled_from([BUY, SELL]), _dec("0.00000001", "10", 8))
def test_marketable_price_is_the_least_aggressive_price_that_fills(
    levels: list[PriceLevel], side: Side, amount: Decimal
) -> None:
    order_book = OrderBook("btc-mxn", levels, []) if side is BUY else OrderBook("btc-mxn", [], levels)
    result = marketable_price(side, order_book, amount, BTC_MXN)
    reachable = sum(lv.amount for lv in levels)
    if isinstance(result, Skip):
        assert reachable < amount
        return
    assert result % BTC_MXN.price_step == 0
    within = [lv for lv in levels if (lv.price <= result if side is BUY else lv.price >= result)]
    better = [lv for lv in levels if (lv.price < result if side is BUY else lv.price > result)]
    assert sum(lv.amount for lv in within) >= amount  # fills
    assert sum(lv.amount for lv in better) < amount  # and no less aggressive price would


@settings(max_examples=200, deadline=None)
@given(_dec("-1", "100", 12), AMOUNT_STEPS, st.integers(1, 1000))
def test_sell_amount_rounds_down_and_dust_is_what_cannot_be_sold(held: Decimal, step: Decimal, k: int) -> None:
    book = make_book(amount_step=str(step), minimum_amount=str(step * k))
    sold = sell_amount(held, book)
    assert sold % step == 0 and sold >= 0
    assert sold <= max(held, D(0)) < sold + step
    assert is_flat(held, book) is (sold < book.minimum_amount)
    assert is_flat(held, book) is (held < book.minimum_amount)  # the minimum is a multiple of the step
