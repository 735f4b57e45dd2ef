"""The CoinBTR simulator's pure rules: placement limits, fees, settlement, depth, addresses.

What orders fill is the shared model's (`bot.execution.fill_model`, tested in `test_fill_model.py`)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot.domain import PriceLevel, Side
from bot.execution.fill_model import take
from bot.sandbox.exchange_rules import (
    BOOKS,
    INVALID_PARAMS,
    OUT_OF_LIMITS,
    BookSpec,
    Level,
    check_placement,
    deposit_address,
    fee_amount,
    settle,
    synthetic_depth,
    valid_address,
)
from tests.conftest import T0

D = Decimal
BTC_MXN = BOOKS["btc-mxn"]
ETH_BTC = BOOKS["eth-btc"]


# ---- pure rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("book", "amount", "price", "code"),
    [
        (BTC_MXN, "0.001", "1500000.00", None),
        (BTC_MXN, "0.000000001", "1500000", OUT_OF_LIMITS),  # amount not a multiple of the step
        (BTC_MXN, "0.001", "1500000.005", OUT_OF_LIMITS),  # price not a multiple of the step
        (BTC_MXN, "0.000001", "1500000", OUT_OF_LIMITS),  # below minimum amount
        (BTC_MXN, "51", "1500000", OUT_OF_LIMITS),  # above maximum amount
        (BTC_MXN, "0.001", "999.99", OUT_OF_LIMITS),  # below minimum price
        (BTC_MXN, "0.00001", "1000", OUT_OF_LIMITS),  # value 0.01 MXN below minimum value
        (BTC_MXN, "20", "1500000", OUT_OF_LIMITS),  # value 30M above maximum value
        (BTC_MXN, "0", "1500000", INVALID_PARAMS),
        (BTC_MXN, "0.001", "-1", INVALID_PARAMS),
        (ETH_BTC, "0.00105", "0.037", OUT_OF_LIMITS),  # eth-btc amount step is 0.0001
        (ETH_BTC, "0.0100", "0.037000", None),
    ],
)
def test_check_placement_table(book: BookSpec, amount: str, price: str, code: int | None) -> None:
    problem = check_placement(book, D(amount), D(price))
    assert (problem.code if problem else None) == code


@pytest.mark.parametrize(
    ("received", "pct", "decimals", "fee"),
    [
        ("0.5", "0.075", 8, "0.00037500"),
        ("1234.567", "0.15", 2, "1.85"),  # 1.8518505 rounds half-up to cents
        ("0.00000001", "0.075", 8, "0.00000000"),
        ("1000", "0.075", 2, "0.75"),
        ("3.3333", "0.2", 2, "0.01"),  # 0.0066666 → 0.01
    ],
)
def test_fee_amount_table(received: str, pct: str, decimals: int, fee: str) -> None:
    result = fee_amount(D(received), D(pct), decimals)
    assert result == D(fee)
    assert format(result, "f") == fee


def test_settle_buy_below_limit_releases_the_difference_and_charges_fee_in_base() -> None:
    s = settle(BTC_MXN, Side.BUY, D("1500000"), D("1499000"), D("0.1"), maker=False)
    assert (s.paid_coin, s.paid, s.released) == ("mxn", D("149900.0"), D("100.0"))
    assert (s.received_coin, s.received, s.fee) == ("btc", D("0.1"), D("0.00015000"))


def test_settle_sell_charges_maker_fee_in_quote() -> None:
    s = settle(BTC_MXN, Side.SELL, D("1500000"), D("1500000"), D("0.01"), maker=True)
    assert (s.paid_coin, s.paid, s.released) == ("btc", D("0.01"), D(0))
    assert (s.received_coin, s.received, s.fee) == ("mxn", D("15000.00"), D("11.25"))


def test_synthetic_depth_is_ordered_bounded_and_deterministic() -> None:
    asks, bids = synthetic_depth(BTC_MXN, D("1500000"), 42, T0)
    assert 0 < len(asks) <= 50 and 0 < len(bids) <= 50
    assert [a.price for a in asks] == sorted(a.price for a in asks)
    assert [b.price for b in bids] == sorted((b.price for b in bids), reverse=True)
    assert bids[0].price < D("1500000") < asks[0].price
    assert (asks, bids) == synthetic_depth(BTC_MXN, D("1500000"), 42, T0)
    assert (asks, bids) != synthetic_depth(BTC_MXN, D("1500000"), 43, T0)


def test_synthetic_depth_feeds_the_shared_take_model() -> None:
    # The book's levels are the domain's `PriceLevel`: a crossing order walks them with `fill_model.take`.
    asks, bids = synthetic_depth(BTC_MXN, D("1500000"), 42, T0)
    assert Level is PriceLevel
    want = asks[0].amount + asks[1].amount + D("1")
    assert take(Side.BUY, asks[1].price, want, asks) == [(asks[0].price, asks[0].amount),
                                                          (asks[1].price, asks[1].amount)]
    assert take(Side.SELL, bids[0].price, D("0.001"), bids) == [(bids[0].price, D("0.001"))]


@pytest.mark.parametrize(
    ("coin", "address", "ok"),
    [
        ("btc", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", True),
        ("btc", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", True),
        ("btc", "0x52908400098527886E0F7030069857D2E4169EE7", False),
        ("btc", "not-an-address", False),
        ("eth", "0x52908400098527886E0F7030069857D2E4169EE7", True),
        ("eth", "0x5290840009852", False),
        ("mxn", "012180001234567897", True),
        ("doge", "DLxcEt3AatMyr2NTatzjsfHNoB9NT62HiF", False),
    ],
)
def test_valid_address_table(coin: str, address: str, ok: bool) -> None:
    assert valid_address(coin, address) is ok


@pytest.mark.parametrize("coin", ["btc", "eth", "mxn"])
def test_deposit_addresses_are_valid_and_stable(coin: str) -> None:
    address = deposit_address(42, "paper", coin)
    assert valid_address(coin, address)
    assert address == deposit_address(42, "paper", coin) != deposit_address(42, "reader", coin)
