"""CoinBTR simulator wire format: envelopes, JSON with exact decimals, and each object's field map.

Number types on the wire are deliberate and fixed, like a real API that grew over time (clients must
accept both, per the contract):

| object                  | JSON numbers                              | decimal strings                    |
|-------------------------|-------------------------------------------|------------------------------------|
| listbalances entry      | balance, available, pending, frozen (8dp) | -                                  |
| getbalance `balances`   | -                                         | available, frozen, pending         |
| withdrawal              | fee_amount                                | amount                             |
| deposit                 | confirmations (int)                       | amount                             |
| order (listopenorders)  | order_id (int)                            | price, amounts, filled, fee_percent|
| fill (listtransactions) | id, order_id (int), price                 | amount, fee_amount                 |
| listbooks               | -                                         | every limit, step and fee          |
| getorderbook level      | amount                                    | price                              |
| gettiker                | -                                         | every value                        |
| get24hvolume            | volume                                    | -                                  |
| getcurrencies           | decimals (int), minimum_withdrawal        | withdrawal_fee                     |

Order and fill prices and amounts are printed with exactly the decimals of the book's steps.
Coins are upper-case in listbalances and in the withdraw answer (as in the seed's examples) and lower-case
everywhere else. Sides are `BUY`/`SELL`. Times are ISO 8601 with milliseconds and `Z`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from aiohttp import web

from bot.clock import iso_z
from bot.sandbox.exchange import SimFill, SimOrder
from bot.sandbox.exchange_rules import BOOKS, BookSpec, CoinSpec, Level
from bot.sandbox.exchange_wallet import SimDeposit, SimWithdrawal

EIGHT_DP = Decimal("0.00000001")


@dataclass(frozen=True, slots=True)
class Num:
    """A decimal to be written as a JSON number with its exact digits (never through float)."""

    value: Decimal


def s(value: Decimal) -> str:
    """A decimal as a plain decimal string (no exponent)."""
    return format(value, "f")


def on_step(value: Decimal, step: Decimal) -> str:
    """A decimal string with exactly the decimals of `step` (how orders and fills print amounts/prices)."""
    return s(value.quantize(step))


def n(value: Decimal) -> Num:
    return Num(value)


def n8(value: Decimal) -> Num:
    """A JSON number rounded down to 8 decimals (how listbalances shows amounts)."""
    return Num(value.quantize(EIGHT_DP, rounding=ROUND_DOWN))


def dumps(obj: Any) -> str:
    """JSON text where `Num` becomes a bare number with exact digits; a bare `Decimal` is a bug here."""
    if isinstance(obj, Num):
        return format(obj.value, "f")
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ", ".join(dumps(v) for v in obj) + "]"
    if isinstance(obj, datetime):
        return json.dumps(iso_z(obj))
    if isinstance(obj, Decimal):
        raise TypeError("choose s() or n() for every decimal on the wire")
    return json.dumps(obj)


def respond(payload: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(text=dumps(payload), status=status, content_type="application/json")


def ok(data: Any, msg_key: str = "msg") -> web.Response:
    """The success envelope; listbalances passes `msg_key="message"` like the real service."""
    return respond({"success": True, msg_key: "", "data": data})


def error(status: int, code: int, message: str) -> web.Response:
    """The error envelope `{"success": false, "msg": {"error", "code"}}` with `status`."""
    return respond({"success": False, "msg": {"error": message, "code": code}}, status=status)


def order_json(o: SimOrder) -> dict[str, Any]:
    book = BOOKS[o.book]
    return {
        "order_id": o.id,
        "market": o.book,
        "side": o.side.value.upper(),
        "price": on_step(o.price, book.price_step),
        "initial_amount": on_step(o.initial_amount, book.amount_step),
        "amount": on_step(o.remaining, book.amount_step),
        "filled": on_step(o.filled, book.amount_step),
        "fee_percent": s(o.fee_percent),
        "created_at": o.created_at,
        "is_open": o.is_open,
    }


def fill_json(f: SimFill) -> dict[str, Any]:
    return {
        "id": f.id,
        "order_id": f.order_id,
        "market": f.book,
        "side": f.side.value.upper(),
        "price": n(f.price),
        "amount": on_step(f.amount, BOOKS[f.book].amount_step),
        "fee_amount": s(f.fee_amount),
        "fee_coin": f.fee_coin,
        "filled_as": "maker" if f.maker else "taker",
        "created_at": f.created_at,
    }


def withdrawal_json(w: SimWithdrawal) -> dict[str, Any]:
    return {
        "id": w.id,
        "coin": w.coin,
        "address": w.address,
        "amount": s(w.amount),
        "fee_amount": n(w.fee_amount),
        "txid": w.txid,
        "status": w.status,
        "date": w.date,
    }


def deposit_json(d: SimDeposit) -> dict[str, Any]:
    return {
        "id": d.id,
        "coin": d.coin,
        "address": d.address,
        "amount": s(d.amount),
        "txid": d.txid,
        "confirmations": d.confirmations,
        "confirmed": d.confirmed,
        "date": d.date,
    }


def book_json(b: BookSpec) -> dict[str, Any]:
    return {
        "book": b.book,
        "minimum_amount": s(b.minimum_amount),
        "maximum_amount": s(b.maximum_amount),
        "minimum_price": s(b.minimum_price),
        "maximum_price": s(b.maximum_price),
        "minimum_value": s(b.minimum_value),
        "maximum_value": s(b.maximum_value),
        "amount_step": s(b.amount_step),
        "price_step": s(b.price_step),
        "maker_fee": s(b.maker_fee),
        "taker_fee": s(b.taker_fee),
    }


def level_json(lv: Level) -> dict[str, Any]:
    return {"price": s(lv.price), "amount": n(lv.amount)}


def currency_json(c: CoinSpec) -> dict[str, Any]:
    return {
        "coin": c.coin,
        "name": c.name,
        "decimals": c.decimals,
        "withdrawal_fee": s(c.withdrawal_fee),
        "minimum_withdrawal": n(c.minimum_withdrawal),
    }
