"""The CoinBTR simulator's rules: books, coins, error codes and the pure decisions of the exchange.

Everything here is a table or a pure function (placement limits, fee arithmetic, the synthetic order book,
address formats) so it can be tested with tables and reused by the stateful engine in `bot.sandbox.exchange`
without any I/O or clock. What an order fills (resting or crossing) is not decided here but by the model
every simulated venue shares, `bot.execution.fill_model`.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal
from typing import Protocol

from bot.domain import PriceLevel, Side

# Error codes of the contract (shared/contracts/coinbtr.md, "Conventions").
INVALID_PARAMS = 1001
INSUFFICIENT_FUNDS = 1002
NOT_FOUND = 1003
OUT_OF_LIMITS = 1004
RATE_LIMITED = 1005
BAD_ADDRESS = 1006
PERMISSION_DENIED = 1007
INTERNAL_ERROR = 1500

_DEFAULT_STATUS = {
    INVALID_PARAMS: 400,
    INSUFFICIENT_FUNDS: 400,
    NOT_FOUND: 404,
    OUT_OF_LIMITS: 400,
    RATE_LIMITED: 429,
    BAD_ADDRESS: 400,
    PERMISSION_DENIED: 403,
    INTERNAL_ERROR: 500,
}


class ExchangeError(Exception):
    """A refusal the simulator answers with the error envelope: contract `code` and HTTP `status`."""

    def __init__(self, code: int, message: str, status: int | None = None) -> None:
        self.code = code
        self.message = message
        self.status = status if status is not None else _DEFAULT_STATUS.get(code, 400)
        super().__init__(f"{code}: {message}")


class BarLike(Protocol):
    """The parts of a `bot.sandbox.market.Bar` the exchange reads."""

    @property
    def time(self) -> datetime: ...
    @property
    def low(self) -> Decimal: ...
    @property
    def high(self) -> Decimal: ...
    @property
    def volume(self) -> Decimal: ...
    @property
    def vwap(self) -> Decimal: ...
    @property
    def partial(self) -> bool: ...


class WindowStatsLike(Protocol):
    """An aggregate of a window of bars (`bot.sandbox.market.WindowStats` fits)."""

    @property
    def bars(self) -> int: ...
    @property
    def high(self) -> Decimal: ...
    @property
    def low(self) -> Decimal: ...
    @property
    def volume(self) -> Decimal: ...
    @property
    def vwap(self) -> Decimal: ...


class MarketView(Protocol):
    """What the exchange needs from the simulated market (`bot.sandbox.market.SimMarket` fits)."""

    def bars(self, instrument: str, start: datetime, end: datetime) -> Sequence[BarLike]: ...

    def price(self, instrument: str, at: datetime | None = None) -> Decimal: ...

    def stats(self, instrument: str, start: datetime, end: datetime) -> WindowStatsLike | None: ...

    def range_after(self, instrument: str, since: datetime, until: datetime) -> tuple[Decimal, Decimal] | None: ...


@dataclass(frozen=True, slots=True)
class BookSpec:
    """A book and its placement limits. Fees are percentages: `0.075` means 0.075%."""

    book: str
    minimum_amount: Decimal
    maximum_amount: Decimal
    minimum_price: Decimal
    maximum_price: Decimal
    minimum_value: Decimal
    maximum_value: Decimal
    amount_step: Decimal
    price_step: Decimal
    maker_fee: Decimal
    taker_fee: Decimal
    depth_unit: Decimal  # typical size of one synthetic book level, in the base coin

    @property
    def base(self) -> str:
        return self.book.split("-")[0]

    @property
    def quote(self) -> str:
        return self.book.split("-")[1]


@dataclass(frozen=True, slots=True)
class CoinSpec:
    """A currency: display name, decimals, and what a withdrawal of it costs."""

    coin: str
    name: str
    decimals: int
    withdrawal_fee: Decimal
    minimum_withdrawal: Decimal
    confirmations_needed: int
    confirmations_per_minute: int


D = Decimal
BOOKS: dict[str, BookSpec] = {
    "btc-mxn": BookSpec(
        "btc-mxn", D("0.00001"), D("50"), D("1000"), D("100000000"), D("10"), D("20000000"),
        D("0.00000001"), D("0.01"), D("0.075"), D("0.15"), D("0.05"),
    ),
    "eth-btc": BookSpec(
        "eth-btc", D("0.001"), D("1000"), D("0.00001"), D("10"), D("0.00001"), D("100"),
        D("0.0001"), D("0.00000001"), D("0.1"), D("0.2"), D("1"),
    ),
    "eth-mxn": BookSpec(
        "eth-mxn", D("0.0001"), D("1000"), D("100"), D("10000000"), D("10"), D("20000000"),
        D("0.00000001"), D("0.01"), D("0.075"), D("0.15"), D("1"),
    ),
}
COINS: dict[str, CoinSpec] = {
    "btc": CoinSpec("btc", "Bitcoin", 8, D("0.0001"), D("0.001"), 3, 1),
    "eth": CoinSpec("eth", "Ethereum", 8, D("0.002"), D("0.01"), 12, 4),
    "mxn": CoinSpec("mxn", "Peso mexicano", 2, D("0"), D("100"), 1, 1),
}
# Half the bid/ask spread and the distance between synthetic levels, as fractions of the last price.
HALF_SPREAD = D("0.0005")
LEVEL_GAP = D("0.0003")
BOOK_LEVELS = 50


def quantize_down(value: Decimal, step: Decimal) -> Decimal:
    """`value` rounded down to a multiple of `step`."""
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def quantize_up(value: Decimal, step: Decimal) -> Decimal:
    """`value` rounded up to a multiple of `step`."""
    return (value / step).to_integral_value(rounding=ROUND_UP) * step


def is_multiple(value: Decimal, step: Decimal) -> bool:
    """True when `value` is a whole number of `step`s."""
    return (value % step) == 0


def check_placement(book: BookSpec, amount: Decimal, price: Decimal) -> ExchangeError | None:
    """Why an order of `amount` at `price` may not be placed on `book` (1001/1004), or None."""
    if amount <= 0 or price <= 0:
        return ExchangeError(INVALID_PARAMS, "amount and price must be positive")
    if not is_multiple(amount, book.amount_step):
        return ExchangeError(OUT_OF_LIMITS, f"amount must be a multiple of {book.amount_step}")
    if not is_multiple(price, book.price_step):
        return ExchangeError(OUT_OF_LIMITS, f"price must be a multiple of {book.price_step}")
    if not book.minimum_amount <= amount <= book.maximum_amount:
        return ExchangeError(
            OUT_OF_LIMITS, f"amount must be between {book.minimum_amount} and {book.maximum_amount}"
        )
    if not book.minimum_price <= price <= book.maximum_price:
        return ExchangeError(
            OUT_OF_LIMITS, f"price must be between {book.minimum_price} and {book.maximum_price}"
        )
    value = amount * price
    if not book.minimum_value <= value <= book.maximum_value:
        return ExchangeError(
            OUT_OF_LIMITS, f"value must be between {book.minimum_value} and {book.maximum_value}"
        )
    return None


def frozen_for(book: BookSpec, side: Side, amount: Decimal, price: Decimal) -> tuple[str, Decimal]:
    """The coin and amount a new order freezes.

    A buy freezes `amount * price` of the quote coin and a sell `amount` of the base coin, exactly. No fee
    headroom is needed: fees are charged in the coin received, out of what the fill delivers.
    """
    if side is Side.BUY:
        return book.quote, amount * price
    return book.base, amount


def fee_amount(received: Decimal, fee_percent: Decimal, decimals: int) -> Decimal:
    """The fee on `received` at `fee_percent` percent, rounded half-up to the coin's decimals."""
    exact = received * fee_percent / 100
    return exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class Settlement:
    """What one fill moves: the payer's frozen coin leaves, the received coin arrives net of the fee."""

    paid_coin: str
    paid: Decimal  # taken out of frozen
    released: Decimal  # frozen handed back to available (a buy filled below its limit)
    received_coin: str
    received: Decimal  # gross, before the fee
    fee: Decimal


def settle(
    book: BookSpec, side: Side, limit: Decimal, fill_price: Decimal, amount: Decimal, maker: bool
) -> Settlement:
    """The balance movements of filling `amount` at `fill_price` for an order limited at `limit`."""
    pct = book.maker_fee if maker else book.taker_fee
    if side is Side.BUY:
        paid = amount * fill_price
        released = amount * limit - paid
        fee = fee_amount(amount, pct, COINS[book.base].decimals)
        return Settlement(book.quote, paid, released, book.base, amount, fee)
    received = amount * fill_price
    fee = fee_amount(received, pct, COINS[book.quote].decimals)
    return Settlement(book.base, amount, Decimal(0), book.quote, received, fee)


# One synthetic order-book level: the domain's `PriceLevel`, so the book feeds `fill_model.take` as it is.
Level = PriceLevel


def synthetic_depth(
    book: BookSpec, last: Decimal, seed: int, minute: datetime, levels: int = BOOK_LEVELS
) -> tuple[list[Level], list[Level]]:
    """Asks (ascending) and bids (descending) around `last`, the same for a given seed, book and minute."""
    rng = random.Random(f"{seed}:{book.book}:{minute.isoformat()}")
    asks: list[Level] = []
    bids: list[Level] = []
    for i in range(levels):
        gap = HALF_SPREAD + LEVEL_GAP * i
        size = book.depth_unit * Decimal(str(round(0.5 + rng.random(), 4))) * (1 + Decimal(i) / 10)
        ask_price = quantize_up(last * (1 + gap), book.price_step)
        bid_price = quantize_down(last * (1 - gap), book.price_step)
        size_ask = max(book.amount_step, quantize_down(size, book.amount_step))
        size_bid = max(book.amount_step, quantize_down(size * Decimal("0.9"), book.amount_step))
        # Rounding to the price step can merge neighbouring levels on coarse books; keep prices strict.
        if not asks or ask_price > asks[-1].price:
            asks.append(Level(ask_price, size_ask))
        if bid_price > 0 and (not bids or bid_price < bids[-1].price):
            bids.append(Level(bid_price, size_bid))
    return asks, bids


_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_ADDRESS_FORMATS = {
    "btc": re.compile(rf"^(bc1[{_BECH32}]{{25,59}}|[13][{_BASE58}]{{25,34}}|[2mn][{_BASE58}]{{25,34}})$"),
    "eth": re.compile(r"^0x[0-9a-fA-F]{40}$"),
    "mxn": re.compile(r"^\d{18}$"),  # a CLABE
}


def valid_address(coin: str, address: str) -> bool:
    """Whether `address` has the shape of a destination for `coin` (bech32/base58, 0x-hex, CLABE)."""
    pattern = _ADDRESS_FORMATS.get(coin)
    return bool(pattern and pattern.match(address))


def deposit_address(seed: int, username: str, coin: str) -> str:
    """A stable, well-formed deposit address for a user and coin."""
    digest = hashlib.sha256(f"{seed}:{username}:{coin}".encode()).digest()
    if coin == "btc":
        return "bc1q" + "".join(_BECH32[b % 32] for b in digest[:32])[:38]
    if coin == "eth":
        return "0x" + digest[:20].hex()
    return "".join(str(b % 10) for b in digest[:18])


def txid_for(seed: int, kind: str, ident: int) -> str:
    """A stable 64-hex transaction id."""
    return hashlib.sha256(f"{seed}:{kind}:{ident}".encode()).hexdigest()
