"""CoinBTR wire format (`shared/contracts/coinbtr.md`): routes, request keys, field maps, error codes.

Everything that names a CoinBTR path, query/body key or response field is in the tables at the top of
this module; the contract's *(assumed)* parts are marked there, so a correction for the real service is
a one-line change. `unwrap` reads the envelope (`msg` or `message`, the `success` flag even on HTTP 200)
and `error_for` maps the venue's codes and HTTP statuses to typed errors. The parsers that turn `data`
into domain objects are in `bot.clients.coinbtr_parsers`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bot.domain import Side
from bot.errors import (
    AuthError,
    BotError,
    MalformedResponse,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    TemporaryError,
)

# ------------------------------------------------------------------------------ wire format (contract)
SERVICE = "coinbtr"
AUTH_HEADER, AUTH_SCHEME = "Authorization", "Token"
API = "/api/v1"


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: method and path; `assumed` when the seed gives no path or method for it."""

    method: str
    path: str
    assumed: bool = False


R_PROFILE = Route("GET", f"{API}/wallet/user/profile")
R_SESSION = Route("GET", f"{API}/user/session")
R_DEPOSIT_ADDRESS = Route("POST", f"{API}/wallet/getdepositaddress")  # seed heading: GET (?coin=)
R_WITHDRAW = Route("POST", f"{API}/wallet/withdraw")  # seed heading misspells it `whithdraw`
R_WITHDRAW_SEED_SPELLING = Route("POST", f"{API}/wallet/whithdraw")  # accepted by servers, never sent
R_BALANCES = Route("GET", f"{API}/wallet/listbalances")
# listbalances shows each amount to 8 decimals, rounded down, while fills and fees are kept to more (a price
# times an amount): a total read there (available + frozen) is short of the exact one by less than this.
BALANCE_RESOLUTION = Decimal("0.00000002")
R_BALANCE = Route("GET", f"{API}/wallet/getbalance")  # (assumed) query `?coin=`
R_WITHDRAWS = Route("GET", f"{API}/wallet/listwithdraws")
R_DEPOSITS = Route("GET", f"{API}/wallet/listdeposits")
# (assumed) place body `{market, amount, price}`; cancel body `{id}`; listopenorders body `{}`/`{market}`/`{id}`.
R_PLACE = {Side.BUY: Route("POST", f"{API}/trading/place/buylimit"),
           Side.SELL: Route("POST", f"{API}/trading/place/selllimit")}
R_CANCEL = Route("POST", f"{API}/trading/cancel/buylimit")  # the seed's one path cancels either side
R_OPEN_ORDERS = Route("POST", f"{API}/trading/listopenorders")  # a read, though POST
R_TRANSACTIONS = Route("GET", f"{API}/trading/listtransactions", assumed=True)
R_TRANSACTION = Route("GET", f"{API}/trading/gettransaction", assumed=True)
R_BOOKS = Route("GET", f"{API}/market/listbooks")
R_ORDER_BOOK = Route("GET", f"{API}/market/getorderbook")
R_TICKER = Route("GET", f"{API}/market/gettiker")  # sic
R_VOLUME = Route("GET", f"{API}/market/get24hvolume")
R_CURRENCIES = Route("GET", f"{API}/market/getcurrencies")

# Request keys (query or JSON body). Amounts and prices are sent as decimal strings.
Q_COIN, Q_BOOK, Q_MARKET, Q_SINCE, Q_ID = "coin", "book", "market", "since", "id"
B_COIN, B_ADDRESS, B_AMOUNT, B_PRICE, B_MARKET, B_ID = "coin", "address", "amount", "price", "market", "id"

# Envelope. The seed says `msg` on most endpoints and `message` on listbalances: both are read.
E_SUCCESS, E_DATA, E_MSG_KEYS, E_ERROR, E_CODE = "success", "data", ("msg", "message"), "error", "code"

# Error codes (assumed) and the typed error each becomes; see `error_for`.
INVALID_PARAMS, INSUFFICIENT_FUNDS, NOT_FOUND, OUT_OF_LIMITS = 1001, 1002, 1003, 1004
RATE_LIMITED, BAD_ADDRESS, PERMISSION_DENIED, INTERNAL_ERROR = 1005, 1006, 1007, 1500

# Response field maps: domain attribute -> wire name. Fields marked (assumed) in the contract are all of
# them except listbalances' `balance/available/pending/depositAddress` and the withdraw answer's.
F_PROFILE = {"email": "email", "username": "username", "level": "level"}
F_SESSION = {"username": "username", "ip": "ip", "token": "token", "expires": "expires",
             "permissions": "permissions", "trade": "trade", "withdraw": "withdraw", "deposit": "deposit"}
F_ADDRESS = {"coin": "coin", "address": "address"}
F_BALANCES_ROW = {"coin": "coin", "available": "available", "pending": "pending", "frozen": "frozen",
                  "deposit_address": "depositAddress"}
F_BALANCE = {"coin": "coin", "balances": "balances", "available": "available", "frozen": "frozen",
             "pending": "pending"}
F_WITHDRAW_ANSWER = {"id": "id", "coin": "coin", "txid": "txid", "status": "status", "date": "date"}
F_WITHDRAWAL = {"id": "id", "coin": "coin", "address": "address", "amount": "amount",
                "fee_amount": "fee_amount", "txid": "txid", "status": "status", "date": "date"}
F_DEPOSIT = {"id": "id", "coin": "coin", "address": "address", "amount": "amount", "txid": "txid",
             "confirmations": "confirmations", "confirmed": "confirmed", "date": "date"}
F_PLACED = {"id": "id"}
F_ORDER = {"order_id": "order_id", "market": "market", "side": "side", "price": "price",
           "initial_amount": "initial_amount", "amount": "amount", "filled": "filled",
           "fee_percent": "fee_percent", "created_at": "created_at", "is_open": "is_open"}
F_FILL = {"id": "id", "order_id": "order_id", "market": "market", "side": "side", "price": "price",
          "amount": "amount", "fee_amount": "fee_amount", "fee_coin": "fee_coin", "filled_as": "filled_as",
          "created_at": "created_at"}
MAKER = "maker"  # `filled_as` is "maker" or "taker"
F_BOOK = {"name": "book", "minimum_amount": "minimum_amount", "maximum_amount": "maximum_amount",
          "minimum_price": "minimum_price", "maximum_price": "maximum_price",
          "minimum_value": "minimum_value", "maximum_value": "maximum_value", "amount_step": "amount_step",
          "price_step": "price_step", "maker_fee": "maker_fee", "taker_fee": "taker_fee"}
F_ORDER_BOOK = {"book": "book", "asks": "asks", "bids": "bids", "updated_at": "updated_at",
                "price": "price", "amount": "amount"}
F_TICKER = {"book": "book", "last": "last", "bid": "bid", "ask": "ask", "high": "high", "low": "low",
            "volume": "volume", "vwap": "vwap", "created_at": "created_at"}
F_VOLUME = {"book": "book", "volume": "volume"}
F_CURRENCY = {"coin": "coin", "name": "name", "decimals": "decimals", "withdrawal_fee": "withdrawal_fee",
              "minimum_withdrawal": "minimum_withdrawal"}
# ------------------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------- errors


class VenueRejection(Rejected):
    """A CoinBTR refusal with a specific code; counted as `rejected` like its parent."""

    @property
    def kind(self) -> str:
        return "rejected"


class InvalidParams(VenueRejection):
    """CoinBTR 1001: the request's parameters were refused."""


class InsufficientFunds(VenueRejection):
    """CoinBTR 1002: not enough available funds for the order or withdrawal."""


class OutsideLimits(VenueRejection):
    """CoinBTR 1004: amount, price or value outside the book's limits, or not on its steps."""


class BadAddress(VenueRejection):
    """CoinBTR 1006: the withdrawal's destination address is not valid."""


_REJECTIONS: dict[int, type[Rejected]] = {
    INVALID_PARAMS: InvalidParams, INSUFFICIENT_FUNDS: InsufficientFunds, NOT_FOUND: NotFound,
    OUT_OF_LIMITS: OutsideLimits, BAD_ADDRESS: BadAddress,
}


def error_for(status: int, code: int | None, text: str | None, *, mutating: bool,
              body: bytes | None = None) -> BotError:
    """The typed error for a CoinBTR failure: the venue's code first, the HTTP status as a fallback.

    1005/429 rate limited; 1007/401/403 auth; 1500/5xx temporary on a read but *outcome unknown* on a
    mutating call (the exchange may have acted); 1002, 1004, 1006, 1001 rejected (subclasses); 1003/404
    not found; anything else rejected. The code is kept on the error as `.code`."""
    kw: dict[str, Any] = {"service": SERVICE, "status": status, "code": code, "body": body}
    message = text or f"HTTP {status}"
    if code == RATE_LIMITED or status == 429:
        return RateLimited(message, **kw)
    if code == PERMISSION_DENIED or status in (401, 403):
        return AuthError(message, **kw)
    if code == INTERNAL_ERROR or status >= 500:
        return OutcomeUnknown(message, **kw) if mutating else TemporaryError(message, **kw)
    if code is not None and code in _REJECTIONS:
        return _REJECTIONS[code](message, **kw)
    if status == 404:
        return NotFound(message, **kw)
    return Rejected(message, **kw)


def _code(value: Any) -> int | None:
    """An error code sent as a JSON integer or a digit string; anything else is no code."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) < 10:
        return int(value)
    return None


def _error_detail(body: dict[str, Any]) -> tuple[int | None, str | None]:
    """`(code, text)` from the envelope's `msg` (or `message`): an object `{error, code}` or a string."""
    for key in E_MSG_KEYS:
        msg = body.get(key)
        if isinstance(msg, dict):
            raw_code, text = msg.get(E_CODE), msg.get(E_ERROR)
            code = _code(raw_code)
            return code, text[:200] if isinstance(text, str) else None
        if isinstance(msg, str) and msg:
            return None, msg[:200]
    return None, None


def body_code(raw: bytes) -> int | None:
    """The venue's code in a raw error body, for the errors `HttpService` raises itself (429, 5xx): e.g.
    1500 in a 500's `{"success": false, "msg": {"error": ..., "code": 1500}}`. None if there is none."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None  # a proxy's HTML 502/503 page
    return _error_detail(body)[0] if isinstance(body, dict) else None


def unwrap(status: int, body: Any, raw: bytes | None = None, *, mutating: bool = False,
           need_data: bool = True) -> Any:
    """The envelope's `data`, or the typed error its `success: false` (HTTP 200 included) stands for.

    A 2xx body without a boolean `success` is malformed (on a mutating call: outcome unknown, since the
    request was accepted and we cannot tell what it did)."""
    ok = 200 <= status < 300
    if not isinstance(body, dict) or not isinstance(body.get(E_SUCCESS), bool):
        if ok:
            cls = OutcomeUnknown if mutating else MalformedResponse
            raise cls("answer has no success flag", service=SERVICE, status=status, body=raw)
        raise error_for(status, None, None, mutating=mutating, body=raw)
    if body[E_SUCCESS] and ok:
        if need_data and E_DATA not in body:
            cls = OutcomeUnknown if mutating else MalformedResponse
            raise cls(f"answer has no {E_DATA!r}", service=SERVICE, status=status, body=raw)
        return body.get(E_DATA)
    code, text = _error_detail(body)
    raise error_for(status, code, text, mutating=mutating, body=raw)


def decimal_text(value: Decimal) -> str:
    """A decimal as the plain string CoinBTR expects in requests (no exponent, no float)."""
    if not value.is_finite():
        raise ValueError("not a finite decimal")
    return format(value, "f")
