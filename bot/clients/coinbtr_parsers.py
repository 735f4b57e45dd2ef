"""CoinBTR response parsers: decoded JSON → domain objects with `Decimal` money.

Pure functions over the envelope's `data` (see `bot.clients.coinbtr_wire.unwrap`). Field names come from
the field maps in `coinbtr_wire`; numbers are read from JSON strings or JSON numbers through
`bot.domain.to_decimal` (never `float` for strings). Every failure is a `MalformedResponse` naming the
object and field; nothing else escapes a parser.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from bot.clients.coinbtr_wire import (
    F_ADDRESS,
    F_BALANCE,
    F_BALANCES_ROW,
    F_BOOK,
    F_CURRENCY,
    F_DEPOSIT,
    F_FILL,
    F_ORDER,
    F_ORDER_BOOK,
    F_PLACED,
    F_PROFILE,
    F_SESSION,
    F_TICKER,
    F_VOLUME,
    F_WITHDRAW_ANSWER,
    F_WITHDRAWAL,
    MAKER,
    SERVICE,
)
from bot.clock import parse_iso
from bot.domain import (
    Balance,
    Book,
    Deposit,
    ExchangeOrder,
    Fill,
    OrderBook,
    PriceLevel,
    Side,
    Ticker,
    TransferStatus,
    Withdrawal,
    to_decimal,
)
from bot.errors import MalformedResponse

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------- reading


def malformed(what: str) -> MalformedResponse:
    """A `MalformedResponse` from CoinBTR saying what could not be read."""
    return MalformedResponse(what, service=SERVICE)


class Obj:
    """Typed access to one wire object; every failure is a `MalformedResponse` naming the field."""

    __slots__ = ("d", "what")

    def __init__(self, obj: Any, what: str) -> None:
        if not isinstance(obj, dict):
            raise malformed(f"{what} is not an object")
        self.d: dict[str, Any] = obj
        self.what = what

    def raw(self, key: str) -> Any:
        """The field's value as decoded; missing is malformed."""
        if key not in self.d:
            raise malformed(f"{self.what}: missing {key!r}")
        return self.d[key]

    def dec(self, key: str) -> Decimal:
        """A decimal from a JSON string or number (never through float for strings)."""
        try:
            return to_decimal(self.raw(key), field_name=key)
        except (ValueError, ArithmeticError) as exc:
            raise malformed(f"{self.what}: {str(exc)[:80]}") from None

    def integer(self, key: str) -> int:
        """An integer from a JSON integer or a digit string (ids); booleans are not integers."""
        value = self.raw(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) < 30:
            return int(value.strip())
        raise malformed(f"{self.what}: {key} is not an integer")

    def text(self, key: str) -> str:
        """A required string."""
        value = self.raw(key)
        if not isinstance(value, str):
            raise malformed(f"{self.what}: {key} is not a string")
        return value

    def opt_str(self, key: str) -> str | None:
        """A string, or None when absent or null."""
        value = self.d.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise malformed(f"{self.what}: {key} is not a string")
        return value

    def flag(self, key: str) -> bool:
        """A JSON boolean."""
        value = self.raw(key)
        if not isinstance(value, bool):
            raise malformed(f"{self.what}: {key} is not a boolean")
        return value

    def time(self, key: str) -> datetime:
        """An ISO 8601 timestamp as an aware UTC datetime."""
        value = self.raw(key)
        if not isinstance(value, str):
            raise malformed(f"{self.what}: {key} is not a timestamp")
        try:
            return parse_iso(value)
        except (ValueError, OverflowError):
            raise malformed(f"{self.what}: {key} is not an ISO timestamp") from None

    def opt_time(self, key: str) -> datetime | None:
        """A timestamp, or None when absent or null."""
        return None if self.d.get(key) is None else self.time(key)

    def obj(self, key: str) -> Obj:
        """A nested object."""
        return Obj(self.raw(key), f"{self.what}.{key}")

    def side(self, key: str) -> Side:
        """`BUY`/`SELL` (any case) as a `Side`."""
        value = self.text(key).strip().lower()
        if value not in (Side.BUY.value, Side.SELL.value):
            raise malformed(f"{self.what}: {key} is not BUY or SELL")
        return Side(value)

    def status(self, key: str) -> TransferStatus:
        """A withdrawal status; an unknown one is malformed rather than guessed."""
        value = self.text(key).strip().lower()
        try:
            return TransferStatus(value)
        except ValueError:
            raise malformed(f"{self.what}: unknown {key} {value[:20]!r}") from None


def parse_list(data: Any, item: Callable[[Any], T], what: str) -> list[T]:
    """A JSON array whose every element `item` parses."""
    if not isinstance(data, list):
        raise malformed(f"{what} is not a list")
    return [item(x) for x in data]


# ---------------------------------------------------------------------------------------------- objects


@dataclass(frozen=True, slots=True)
class Profile:
    """The account's profile."""

    email: str
    username: str
    level: int


@dataclass(frozen=True, slots=True)
class Permissions:
    """What the token may do; checked at start-up before live trading or withdrawals are enabled."""

    trade: bool
    withdraw: bool
    deposit: bool


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """Who the token belongs to, when it expires and what it may do."""

    username: str
    ip: str | None
    expires: datetime | None
    permissions: Permissions


@dataclass(frozen=True, slots=True)
class WithdrawalReceipt:
    """The withdraw call's answer (the full record comes from `list_withdrawals`)."""

    id: int
    coin: str
    txid: str | None
    status: TransferStatus
    date: datetime


@dataclass(frozen=True, slots=True)
class Currency:
    """A coin the exchange lists, with what a withdrawal of it costs."""

    coin: str
    name: str
    decimals: int
    withdrawal_fee: Decimal
    minimum_withdrawal: Decimal


# ---------------------------------------------------------------------------------------------- parsers


def parse_profile(data: Any) -> Profile:
    """The profile's `data`."""
    o, f = Obj(data, "profile"), F_PROFILE
    return Profile(email=o.text(f["email"]), username=o.text(f["username"]), level=o.integer(f["level"]))


def parse_session(data: Any) -> SessionInfo:
    """The session's `data`, with the token's permissions."""
    o, f = Obj(data, "session"), F_SESSION
    token = o.obj(f["token"])
    p = token.obj(f["permissions"])
    perms = Permissions(trade=p.flag(f["trade"]), withdraw=p.flag(f["withdraw"]), deposit=p.flag(f["deposit"]))
    return SessionInfo(username=o.text(f["username"]), ip=o.opt_str(f["ip"]),
                       expires=token.opt_time(f["expires"]), permissions=perms)


def parse_deposit_address(data: Any) -> str:
    """The deposit address from `getdepositaddress`."""
    return Obj(data, "deposit address").text(F_ADDRESS["address"])


def parse_balances_row(data: Any) -> Balance:
    """One `listbalances` row (amounts as JSON numbers; coin upper-case)."""
    o, f = Obj(data, "balance"), F_BALANCES_ROW
    # `frozen` is assumed; a row without it holds nothing in orders (`balance = available + frozen`).
    frozen = o.dec(f["frozen"]) if f["frozen"] in o.d else Decimal(0)
    return Balance(coin=o.text(f["coin"]).lower(), available=o.dec(f["available"]), frozen=frozen,
                   pending=o.dec(f["pending"]), deposit_address=o.opt_str(f["deposit_address"]))


def parse_balances(data: Any) -> list[Balance]:
    """The `listbalances` list."""
    return parse_list(data, parse_balances_row, "balances")


def parse_balance(data: Any) -> Balance:
    """The `getbalance` answer (amounts nested under `balances`)."""
    o, f = Obj(data, "balance"), F_BALANCE
    b = o.obj(f["balances"])
    return Balance(coin=o.text(f["coin"]).lower(), available=b.dec(f["available"]), frozen=b.dec(f["frozen"]),
                   pending=b.dec(f["pending"]))


def parse_withdraw_answer(data: Any) -> WithdrawalReceipt:
    """The withdraw call's answer."""
    o, f = Obj(data, "withdrawal"), F_WITHDRAW_ANSWER
    return WithdrawalReceipt(id=o.integer(f["id"]), coin=o.text(f["coin"]).lower(), txid=o.opt_str(f["txid"]),
                             status=o.status(f["status"]), date=o.time(f["date"]))


def parse_withdrawal(data: Any) -> Withdrawal:
    """One `listwithdraws` entry."""
    o, f = Obj(data, "withdrawal"), F_WITHDRAWAL
    return Withdrawal(id=o.integer(f["id"]), coin=o.text(f["coin"]).lower(), address=o.text(f["address"]),
                      amount=o.dec(f["amount"]), fee_amount=o.dec(f["fee_amount"]), txid=o.opt_str(f["txid"]),
                      status=o.status(f["status"]), date=o.time(f["date"]))


def parse_deposit(data: Any) -> Deposit:
    """One `listdeposits` entry."""
    o, f = Obj(data, "deposit"), F_DEPOSIT
    return Deposit(id=o.integer(f["id"]), coin=o.text(f["coin"]).lower(), address=o.text(f["address"]),
                   amount=o.dec(f["amount"]), txid=o.opt_str(f["txid"]),
                   confirmations=o.integer(f["confirmations"]), confirmed=o.flag(f["confirmed"]),
                   date=o.time(f["date"]))


def parse_placed(data: Any) -> int:
    """The new order's id from a place call."""
    return Obj(data, "placed order").integer(F_PLACED["id"])


def parse_order(data: Any) -> ExchangeOrder:
    """One open order (`is_open` defaults to true: the list holds open orders)."""
    o, f = Obj(data, "order"), F_ORDER
    is_open = o.flag(f["is_open"]) if f["is_open"] in o.d else True
    return ExchangeOrder(
        order_id=o.integer(f["order_id"]), market=o.text(f["market"]).lower(), side=o.side(f["side"]),
        price=o.dec(f["price"]), initial_amount=o.dec(f["initial_amount"]), amount=o.dec(f["amount"]),
        filled=o.dec(f["filled"]), fee_percent=o.dec(f["fee_percent"]), created_at=o.time(f["created_at"]),
        is_open=is_open,
    )


def parse_orders(data: Any) -> list[ExchangeOrder]:
    """The `listopenorders` list."""
    return parse_list(data, parse_order, "open orders")


def parse_fill(data: Any) -> Fill:
    """One transaction (fill)."""
    o, f = Obj(data, "transaction"), F_FILL
    return Fill(
        id=o.integer(f["id"]), order_id=o.integer(f["order_id"]), market=o.text(f["market"]).lower(),
        side=o.side(f["side"]), price=o.dec(f["price"]), amount=o.dec(f["amount"]),
        fee_amount=o.dec(f["fee_amount"]), fee_coin=o.text(f["fee_coin"]).lower(),
        maker=o.text(f["filled_as"]).strip().lower() == MAKER, created_at=o.time(f["created_at"]),
    )


def parse_fills(data: Any) -> list[Fill]:
    """The `listtransactions` list."""
    return parse_list(data, parse_fill, "transactions")


def parse_book(data: Any) -> Book:
    """One `listbooks` entry with its limits, steps and fees."""
    o, f = Obj(data, "book"), F_BOOK
    values = {attr: o.dec(wire) for attr, wire in f.items() if attr != "name"}
    return Book(name=o.text(f["name"]).lower(), **values)


def parse_books(data: Any) -> list[Book]:
    """The `listbooks` list."""
    return parse_list(data, parse_book, "books")


def _level(data: Any) -> PriceLevel:
    o = Obj(data, "level")
    return PriceLevel(price=o.dec(F_ORDER_BOOK["price"]), amount=o.dec(F_ORDER_BOOK["amount"]))


def parse_order_book(data: Any) -> OrderBook:
    """The `getorderbook` answer."""
    o, f = Obj(data, "order book"), F_ORDER_BOOK
    return OrderBook(book=o.text(f["book"]).lower(), asks=parse_list(o.raw(f["asks"]), _level, "asks"),
                     bids=parse_list(o.raw(f["bids"]), _level, "bids"), updated_at=o.opt_time(f["updated_at"]))


def parse_ticker(data: Any) -> Ticker:
    """The `gettiker` answer."""
    o, f = Obj(data, "ticker"), F_TICKER
    return Ticker(book=o.text(f["book"]).lower(), last=o.dec(f["last"]), bid=o.dec(f["bid"]),
                  ask=o.dec(f["ask"]), high=o.dec(f["high"]), low=o.dec(f["low"]), volume=o.dec(f["volume"]),
                  vwap=o.dec(f["vwap"]), created_at=o.opt_time(f["created_at"]))


def parse_volumes(data: Any) -> dict[str, Decimal]:
    """The `get24hvolume` list as `{book: volume}`."""
    def row(x: Any) -> tuple[str, Decimal]:
        o = Obj(x, "volume")
        return o.text(F_VOLUME["book"]).lower(), o.dec(F_VOLUME["volume"])

    return dict(parse_list(data, row, "24h volumes"))


def parse_currency(data: Any) -> Currency:
    """One `getcurrencies` entry."""
    o, f = Obj(data, "currency"), F_CURRENCY
    return Currency(coin=o.text(f["coin"]).lower(), name=o.text(f["name"]), decimals=o.integer(f["decimals"]),
                    withdrawal_fee=o.dec(f["withdrawal_fee"]), minimum_withdrawal=o.dec(f["minimum_withdrawal"]))


def parse_currencies(data: Any) -> list[Currency]:
    """The `getcurrencies` list."""
    return parse_list(data, parse_currency, "currencies")
