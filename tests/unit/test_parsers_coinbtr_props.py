"""CoinBTR parsers, envelope and error mapping: random and malformed payloads give only typed errors.

Every parser is fed arbitrary JSON and mutated copies of a valid payload (a field removed or replaced by
anything); the only exception allowed out is `MalformedResponse`. The envelope (`unwrap`) may raise any
`BotError` and nothing else. Valid payloads parse to the same `Decimal`s whether numbers arrive as JSON
strings or JSON numbers.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.clients import coinbtr_parsers as p
from bot.clients.coinbtr import decode
from bot.clients.coinbtr_wire import (
    BadAddress,
    InsufficientFunds,
    InvalidParams,
    OutsideLimits,
    error_for,
    unwrap,
)
from bot.domain import Side, TransferStatus
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

D = Decimal
T = "2026-11-20T12:00:00.000Z"
ORDER = {"order_id": 1001, "market": "btc-mxn", "side": "BUY", "price": "1000000.00",
         "initial_amount": "0.00100000", "amount": "0.00100000", "filled": "0.00000000",
         "fee_percent": "0.075", "created_at": T, "is_open": True}
FILL = {"id": 5001, "order_id": 1001, "market": "btc-mxn", "side": "SELL", "price": 1000000.5,
        "amount": "0.00100000", "fee_amount": "0.75", "fee_coin": "mxn", "filled_as": "maker", "created_at": T}
BOOK = {"book": "btc-mxn", "minimum_amount": "0.00001", "maximum_amount": "50", "minimum_price": "1000",
        "maximum_price": "100000000", "minimum_value": "10", "maximum_value": "20000000",
        "amount_step": "0.00000001", "price_step": "0.01", "maker_fee": "0.075", "taker_fee": "0.15"}
SAMPLES: dict[Callable[[Any], Any], Any] = {
    p.parse_profile: {"email": "a@b.c", "username": "paper", "level": 2},
    p.parse_session: {"username": "paper", "ip": "127.0.0.1", "token": {
        "expires": T, "permissions": {"withdraw": True, "deposit": False, "trade": True}}},
    p.parse_deposit_address: {"coin": "btc", "address": "bc1qxyz"},
    p.parse_balances: [{"coin": "BTC", "balance": 1.5, "available": 1.25, "pending": 0, "frozen": 0.25,
                        "depositAddress": "bc1qxyz"}],
    p.parse_balance: {"coin": "btc", "coin_name": "Bitcoin",
                      "balances": {"available": "1.25", "frozen": "0.25", "pending": "0"}},
    p.parse_withdraw_answer: {"id": 301, "coin": "BTC", "txid": None, "status": "pending", "date": T},
    p.parse_withdrawal: {"id": 301, "coin": "btc", "address": "bc1qxyz", "amount": "0.2", "fee_amount": 0.0001,
                         "txid": "ab" * 32, "status": "signed", "date": T},
    p.parse_deposit: {"id": 701, "coin": "btc", "address": "bc1qxyz", "amount": "0.25", "txid": "cd" * 32,
                      "confirmations": 2, "confirmed": False, "date": T},
    p.parse_placed: {"id": 1001},
    p.parse_orders: [ORDER],
    p.parse_fills: [FILL],
    p.parse_fill: FILL,
    p.parse_books: [BOOK],
    p.parse_order_book: {"book": "btc-mxn", "asks": [{"price": "100.01", "amount": 0.5}],
                         "bids": [{"price": "99.99", "amount": 1}], "updated_at": T},
    p.parse_ticker: {"book": "btc-mxn", "last": "100", "bid": "99.99", "ask": "100.01", "high": "101",
                     "low": "98", "volume": "12.5", "vwap": "99.5", "created_at": T},
    p.parse_volumes: [{"book": "btc-mxn", "volume": 12.5}],
    p.parse_currencies: [{"coin": "btc", "name": "Bitcoin", "decimals": 8, "withdrawal_fee": "0.0001",
                          "minimum_withdrawal": 0.001}],
}
PARSERS = list(SAMPLES)
NAMES = [f.__name__ for f in PARSERS]

scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
           | st.decimals() | st.sampled_from(["", "1.5", "BUY", "sell", "maker", T, "NaN", "1e999999", "12abc",
                                              "pending", "-0", "²", "٣"]))
JSON = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=25)


def only_malformed(parser: Callable[[Any], Any], payload: Any) -> None:
    try:
        parser(payload)
    except MalformedResponse as exc:
        assert exc.service == "coinbtr"


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every dict key and list index path inside `obj`."""
    out: list[tuple[Any, ...]] = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, value in items:
        out.append((*prefix, key))
        out.extend(paths(value, (*prefix, key)))
    return out


def mutate(obj: Any, path: tuple[Any, ...], replacement: Any, delete: bool) -> Any:
    out = copy.deepcopy(obj)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return out


@pytest.mark.parametrize("parser", PARSERS, ids=NAMES)
def test_every_sample_parses(parser: Callable[[Any], Any]) -> None:
    assert parser(SAMPLES[parser]) is not None


@pytest.mark.parametrize("parser", PARSERS, ids=NAMES)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(payload=JSON)
def test_random_payloads_raise_only_malformed(parser: Callable[[Any], Any], payload: Any) -> None:
    only_malformed(parser, payload)


@pytest.mark.parametrize("parser", PARSERS, ids=NAMES)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data(), replacement=JSON, delete=st.booleans())
def test_mutated_valid_payloads_raise_only_malformed(
    parser: Callable[[Any], Any], data: st.DataObject, replacement: Any, delete: bool
) -> None:
    sample = SAMPLES[parser]
    path = data.draw(st.sampled_from(paths(sample)))
    only_malformed(parser, mutate(sample, path, replacement, delete))


@pytest.mark.parametrize("parser", PARSERS, ids=NAMES)
@settings(max_examples=60)
@given(data=st.data())
def test_numbers_as_strings_or_json_numbers_parse_the_same(parser: Callable[[Any], Any], data: st.DataObject) -> None:
    """Flip any decimal field between `"1.25"` and the JSON number 1.25 (as `decode` reads it): same result."""
    sample = SAMPLES[parser]

    def flip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: flip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [flip(v) for v in value]
        if isinstance(value, str) and value.replace(".", "", 1).isdigit() and data.draw(st.booleans()):
            return decode(value.encode())  # the JSON number with the same digits
        if isinstance(value, float) and data.draw(st.booleans()):
            return repr(value)  # the string with the same digits
        return value

    assert parser(flip(sample)) == parser(sample)


@given(payload=JSON, status=st.sampled_from([200, 201, 204, 400, 401, 403, 404, 429, 500, 502, 503]),
       mutating=st.booleans(), need_data=st.booleans())
@settings(max_examples=400)
def test_unwrap_raises_only_bot_errors(payload: Any, status: int, mutating: bool, need_data: bool) -> None:
    for body in (payload, {"success": False, "msg": payload}, {"success": False, "message": payload},
                 {"success": True, "data": payload}):
        try:
            unwrap(status, body, b"", mutating=mutating, need_data=need_data)
        except BotError as exc:
            assert not isinstance(exc, MalformedResponse) or not mutating or not 200 <= status < 300


@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@settings(max_examples=300)
def test_decode_never_raises(raw: bytes) -> None:
    decode(raw)


def test_truncated_json_is_malformed_on_reads_and_unknown_on_mutations() -> None:
    raw = json.dumps({"success": True, "msg": "", "data": {"id": 1001}}).encode()
    cut = raw[: len(raw) // 2]
    assert decode(cut) is None
    with pytest.raises(MalformedResponse):
        unwrap(200, decode(cut), cut)
    with pytest.raises(OutcomeUnknown):
        unwrap(200, decode(cut), cut, mutating=True)


def test_decode_reads_json_numbers_as_exact_decimals() -> None:
    assert decode(b'{"a": 1234567890.12345678, "b": 7}') == {"a": D("1234567890.12345678"), "b": 7}


# ------------------------------------------------------------------------------------------------ envelope


@pytest.mark.parametrize("key", ["msg", "message"])
def test_success_envelope_with_msg_or_message(key: str) -> None:
    assert unwrap(200, {"success": True, key: "", "data": [1]}) == [1]
    assert unwrap(200, {"success": True, key: "Order closed"}, need_data=False) is None


@pytest.mark.parametrize("key", ["msg", "message"])
def test_success_false_with_http_200_is_an_error_with_its_code(key: str) -> None:
    with pytest.raises(InsufficientFunds) as err:
        unwrap(200, {"success": False, key: {"error": "insufficient btc funds", "code": 1002}})
    assert (err.value.status, err.value.code, err.value.message) == (200, 1002, "insufficient btc funds")
    with pytest.raises(NotFound) as nf:
        unwrap(200, {"success": False, key: {"error": "gone", "code": "1003"}})  # code as a string
    assert nf.value.code == 1003


def test_success_without_data_is_malformed() -> None:
    with pytest.raises(MalformedResponse):
        unwrap(200, {"success": True, "msg": ""})
    with pytest.raises(MalformedResponse):
        unwrap(200, {"ok": True, "data": []})


@pytest.mark.parametrize(
    ("status", "code", "mutating", "expected"),
    [
        (400, 1001, False, InvalidParams),
        (200, 1001, False, InvalidParams),
        (400, 1002, True, InsufficientFunds),
        (404, 1003, True, NotFound),
        (400, 1004, True, OutsideLimits),
        (429, 1005, False, RateLimited),
        (200, 1005, True, RateLimited),
        (400, 1006, True, BadAddress),
        (403, 1007, True, AuthError),
        (401, 1007, False, AuthError),
        (401, None, False, AuthError),
        (403, None, True, AuthError),
        (500, 1500, False, TemporaryError),
        (200, 1500, False, TemporaryError),
        (500, 1500, True, OutcomeUnknown),
        (200, 1500, True, OutcomeUnknown),
        (502, None, False, TemporaryError),
        (503, None, True, OutcomeUnknown),
        (404, None, False, NotFound),
        (400, None, False, Rejected),
        (400, 4242, True, Rejected),
    ],
)
def test_error_codes_map_to_typed_errors(status: int, code: int | None, mutating: bool,
                                         expected: type[BotError]) -> None:
    err = error_for(status, code, "why", mutating=mutating)
    assert type(err) is expected
    assert (err.status, err.code, err.service) == (status, code, "coinbtr")


def test_venue_rejections_count_as_rejected() -> None:
    for cls in (InvalidParams, InsufficientFunds, OutsideLimits, BadAddress):
        err = cls("x")
        assert isinstance(err, Rejected) and err.kind == "rejected"


# ------------------------------------------------------------------------------------------------ values


def test_parsed_values_are_domain_objects_with_decimals() -> None:
    [order] = p.parse_orders(SAMPLES[p.parse_orders])
    assert (order.side, order.price, order.amount, order.market) == (Side.BUY, D("1000000.00"), D("0.001"), "btc-mxn")
    fill = p.parse_fill(FILL)
    assert (fill.side, fill.price, fill.maker) == (Side.SELL, D("1000000.5"), True)
    [bal] = p.parse_balances(SAMPLES[p.parse_balances])
    assert (bal.coin, bal.available, bal.frozen, bal.total) == ("btc", D("1.25"), D("0.25"), D("1.5"))
    w = p.parse_withdrawal(SAMPLES[p.parse_withdrawal])
    assert (w.status, w.fee_amount) == (TransferStatus.SIGNED, D("0.0001"))
    s = p.parse_session(SAMPLES[p.parse_session])
    assert (s.permissions.trade, s.permissions.withdraw, s.permissions.deposit) == (True, True, False)
    assert p.parse_volumes(SAMPLES[p.parse_volumes]) == {"btc-mxn": D("12.5")}
