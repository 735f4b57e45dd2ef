"""The shared fill model: resting fills from one observation of the market, taker fills from the book."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain import PriceLevel, Side
from bot.execution.fill_model import fill, reaches, round_down, take

D = Decimal
STEP = D("0.00000001")


@pytest.mark.parametrize(
    ("side", "price", "remaining", "low", "high", "volume", "participation", "step", "filled"),
    [
        (Side.BUY, "100", "1", "99", "101", "6", "0.05", STEP, "0.3"),
        (Side.BUY, "100", "1", "100", "101", "6", "0.05", STEP, "0.3"),  # touching the price fills
        (Side.BUY, "100", "1", "100.01", "101", "6", "0.05", STEP, "0"),  # the low stayed above
        (Side.BUY, "100", "0.2", "99", "101", "6", "0.05", STEP, "0.2"),  # capped by what is left
        (Side.SELL, "100", "1", "99", "101", "6", "0.05", STEP, "0.3"),
        (Side.SELL, "101", "1", "99", "101", "6", "0.05", STEP, "0.3"),  # touching the price fills
        (Side.SELL, "101.5", "1", "99", "101", "6", "0.05", STEP, "0"),  # the high stayed below
        (Side.BUY, "100", "1", "99", "101", "0", "0.05", STEP, "0"),  # nothing traded
        (Side.BUY, "100", "1", "99", "101", "6", "0", STEP, "0"),  # no participation
        (Side.BUY, "100", "0", "99", "101", "6", "0.05", STEP, "0"),  # nothing left
        (Side.BUY, "100", "1", "99", "101", "2.46913578", "0.05", STEP, "0.12345678"),  # rounded down
        (Side.BUY, "100", "1", "99", "101", "6", "0.05", "0.1", "0.3"),
        (Side.BUY, "100", "1", "99", "101", "5", "0.05", "0.1", "0.2"),  # 0.25 down to the 0.1 step
        (Side.BUY, "100", "1", "99", "101", "1", "0.05", "0.1", "0"),  # less than one step
        (Side.SELL, "100", "3", "99", "101", "6", "1", STEP, "3"),  # the whole volume, capped
    ],
)
def test_fill_table(
    side: Side, price: str, remaining: str, low: str, high: str, volume: str, participation: str,
    step: Decimal | str, filled: str,
) -> None:
    got = fill(side, D(price), D(remaining), D(low), D(high), D(volume), D(participation), D(step))
    assert got == D(filled)


@pytest.mark.parametrize(
    ("side", "price", "amount", "levels", "expected"),
    [
        (Side.BUY, "101", "0.5", [("100", "1"), ("101", "1"), ("102", "1")], [("100", "0.5")]),
        (Side.BUY, "101", "1.5", [("100", "1"), ("101", "1"), ("102", "1")], [("100", "1"), ("101", "0.5")]),
        # the 102 level is beyond the limit: 3 wanted, 2 taken, 1 rests
        (Side.BUY, "101", "3", [("100", "1"), ("101", "1"), ("102", "1")], [("100", "1"), ("101", "1")]),
        (Side.BUY, "99", "1", [("100", "1")], []),  # does not cross: everything rests
        (Side.SELL, "99", "1.5", [("99", "1"), ("98", "1")], [("99", "1")]),  # bids best first
        (Side.SELL, "97", "1.5", [("99", "1"), ("98", "1")], [("99", "1"), ("98", "0.5")]),
        (Side.SELL, "100", "1", [("99", "1")], []),
        (Side.BUY, "101", "1", [("100", "0"), ("101", "2")], [("101", "1")]),  # an empty level is skipped
        (Side.BUY, "101", "1", [], []),  # an empty book
    ],
)
def test_take_table(
    side: Side, price: str, amount: str, levels: list[tuple[str, str]], expected: list[tuple[str, str]]
) -> None:
    book = [PriceLevel(D(p), D(a)) for p, a in levels]
    assert take(side, D(price), D(amount), book) == [(D(p), D(a)) for p, a in expected]


def test_round_down_and_reaches() -> None:
    assert round_down(D("0.123456789"), STEP) == D("0.12345678")
    assert round_down(D("7"), D("2")) == D("6")
    with pytest.raises(ValueError, match="step"):
        round_down(D("1"), D("0"))
    assert reaches(Side.BUY, D("100"), D("100"), D("105")) and not reaches(Side.BUY, D("99"), D("100"), D("105"))
    assert reaches(Side.SELL, D("105"), D("100"), D("105")) and not reaches(Side.SELL, D("106"), D("100"), D("105"))


# ---- properties --------------------------------------------------------------------------------------

amounts = st.decimals(min_value=D(0), max_value=D(1000), places=8)
prices = st.decimals(min_value=D("0.01"), max_value=D(100000), places=2)
shares = st.decimals(min_value=D(0), max_value=D(1), places=4)
steps = st.sampled_from([D("0.00000001"), D("0.0001"), D("0.001"), D("0.1"), D("1")])
sides = st.sampled_from([Side.BUY, Side.SELL])


@st.composite
def observations(draw: st.DrawFn) -> tuple[Decimal, Decimal]:
    a, b = draw(prices), draw(prices)
    return min(a, b), max(a, b)


@given(sides, prices, amounts, observations(), amounts, shares, steps)
def test_fill_is_on_step_and_never_more_than_remaining_or_the_volume_share(
    side: Side, price: Decimal, remaining: Decimal, range_: tuple[Decimal, Decimal], volume: Decimal,
    participation: Decimal, step: Decimal,
) -> None:
    low, high = range_
    got = fill(side, price, remaining, low, high, volume, participation, step)
    assert D(0) <= got <= remaining
    assert got <= participation * volume
    assert got % step == 0


@given(sides, prices, amounts, observations(), amounts, amounts, shares, steps)
def test_fill_is_monotone_in_volume(
    side: Side, price: Decimal, remaining: Decimal, range_: tuple[Decimal, Decimal], v1: Decimal, v2: Decimal,
    participation: Decimal, step: Decimal,
) -> None:
    low, high = range_
    small, large = min(v1, v2), max(v1, v2)
    assert fill(side, price, remaining, low, high, small, participation, step) <= fill(
        side, price, remaining, low, high, large, participation, step)


@given(sides, prices, amounts, observations(), amounts, shares, steps)
def test_fill_is_zero_when_the_range_does_not_reach_the_price(
    side: Side, price: Decimal, remaining: Decimal, range_: tuple[Decimal, Decimal], volume: Decimal,
    participation: Decimal, step: Decimal,
) -> None:
    low, high = range_
    # Move the range just out of the order's reach: above a buy's price, below a sell's.
    width = high - low
    if side is Side.BUY:
        low, high = price + D("0.01"), price + D("0.01") + width
    else:
        low, high = price - D("0.01") - width, price - D("0.01")
    assert fill(side, price, remaining, low, high, volume, participation, step) == 0


levels_strategy = st.lists(st.tuples(st.integers(1, 50), amounts), max_size=10)


@given(sides, st.integers(1, 60), amounts, levels_strategy)
def test_take_never_takes_more_than_asked_nor_beyond_the_limit(
    side: Side, limit: int, amount: Decimal, raw: list[tuple[int, Decimal]]
) -> None:
    # A book side best first: asks ascending for a buy, bids descending for a sell, distinct prices.
    by_price = dict(raw)
    ordered = sorted(by_price, reverse=side is Side.SELL)
    levels = [PriceLevel(D(p), by_price[p]) for p in ordered]
    got = take(side, D(limit), amount, levels)
    assert sum((a for _, a in got), D(0)) <= amount
    assert all(a > 0 for _, a in got)
    assert all(p <= limit if side is Side.BUY else p >= limit for p, _ in got)
    book = {lv.price: lv.amount for lv in levels}
    assert all(a <= book[p] for p, a in got)
    # Every level better than the last one touched was taken whole (best price first).
    for p, a in got[:-1]:
        assert a == book[p]
