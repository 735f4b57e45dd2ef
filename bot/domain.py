"""Domain objects shared by clients, market data, execution and recording.

Money and quantities are `Decimal` everywhere here. `to_decimal` is the one parser for wire values (JSON
strings or numbers); it never goes through `float` for strings, and converts JSON floats via `repr`, which
is exact for the decimal text the server sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any


def to_decimal(value: Any, *, field_name: str = "value") -> Decimal:
    """Parse a wire value into `Decimal`. Raises `ValueError` naming the field on anything else."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"{field_name}: expected a decimal, got a boolean")
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{field_name}: not a decimal: {value[:40]!r}") from None
    else:
        raise ValueError(f"{field_name}: expected a decimal, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{field_name}: not a finite decimal")
    return result


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLCV candle. `time` is the start of its period (aware UTC); `period` is in seconds."""

    time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    period: int = 60
    trades: int | None = None
    vwap: Decimal | None = None
    partial: bool = False

    @property
    def end(self) -> datetime:
        from datetime import timedelta

        return self.time + timedelta(seconds=self.period)


@dataclass(frozen=True, slots=True)
class SensorReading:
    """One Atmotube reading. Measurements absent or null on the wire are `None`, never zero."""

    time: datetime
    values: dict[str, float | None]
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True, slots=True)
class Book:
    """A CoinBTR book with its placement limits. Fees are percentages (`0.075` means 0.075%)."""

    name: str
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

    @property
    def base(self) -> str:
        return self.name.split("-")[0]

    @property
    def quote(self) -> str:
        return self.name.split("-")[1]


@dataclass(frozen=True, slots=True)
class PriceLevel:
    price: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class OrderBook:
    book: str
    asks: list[PriceLevel]
    bids: list[PriceLevel]
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Ticker:
    book: str
    last: Decimal
    bid: Decimal
    ask: Decimal
    high: Decimal
    low: Decimal
    volume: Decimal
    vwap: Decimal
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    coin: str
    available: Decimal
    frozen: Decimal
    pending: Decimal = Decimal(0)
    deposit_address: str | None = None

    @property
    def total(self) -> Decimal:
        return self.available + self.frozen


@dataclass(frozen=True, slots=True)
class ExchangeOrder:
    """An open order as the exchange reports it."""

    order_id: int
    market: str
    side: Side
    price: Decimal
    initial_amount: Decimal
    amount: Decimal  # still open
    filled: Decimal
    fee_percent: Decimal
    created_at: datetime
    is_open: bool = True


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of (part of) an order."""

    id: int
    order_id: int
    market: str
    side: Side
    price: Decimal
    amount: Decimal
    fee_amount: Decimal
    fee_coin: str
    maker: bool
    created_at: datetime


class TransferStatus(enum.StrEnum):
    PENDING = "pending"
    SIGNED = "signed"
    SENT = "sent"
    CONFIRMED = "confirmed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Withdrawal:
    id: int
    coin: str
    address: str
    amount: Decimal
    fee_amount: Decimal
    txid: str | None
    status: TransferStatus
    date: datetime


@dataclass(frozen=True, slots=True)
class Deposit:
    id: int
    coin: str
    address: str
    amount: Decimal
    txid: str | None
    confirmations: int
    confirmed: bool
    date: datetime


class Action(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"
    HOLD = "hold"


@dataclass(frozen=True, slots=True)
class Signal:
    """What a strategy decided on one closed candle, why, and the indicator values behind it."""

    action: Action
    reason: str
    values: dict[str, float] = field(default_factory=dict)
    time: datetime | None = None
    strategy: str | None = None


@dataclass(frozen=True, slots=True)
class Intent:
    """An order the bot intends to place: priced, rounded to the book and checked, not yet sent."""

    strategy: str
    market: str
    side: Side
    amount: Decimal
    price: Decimal
    ttl_seconds: int
    reason: str = ""
