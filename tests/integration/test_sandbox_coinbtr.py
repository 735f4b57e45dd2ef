"""The CoinBTR simulator over real HTTP on loopback: every endpoint of the contract and every quirk.

Bodies are parsed with `parse_float=Decimal`, so a JSON number arrives as `Decimal` and a decimal string
as `str`; that is how these tests pin which fields are numbers and which are strings.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.clock import ManualClock, iso_z
from bot.sandbox.coinbtr import CoinbtrSim, create_app, default_tokens
from bot.sandbox.credentials import COINBTR_BALANCES, COINBTR_READONLY_TOKEN, COINBTR_TOKEN
from bot.sandbox.exchange_rules import valid_address
from bot.sandbox.faults import Faults
from bot.sandbox.market import SimMarket

D = Decimal
API = "/api/v1"
BTC_ADDR = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"


@dataclass
class Env:
    sim: CoinbtrSim
    faults: Faults
    client: TestClient[Any, Any]
    clock: ManualClock

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = COINBTR_TOKEN,
        body: Any = None,
        params: dict[str, str] | None = None,
        raw: str | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Token {token}"} if token else {}
        if raw is not None:
            headers["Content-Type"] = "application/json"
        async with self.client.request(
            method, API + path, json=body, data=raw, params=params, headers=headers
        ) as r:
            return r.status, json.loads(await r.text(), parse_float=Decimal)

    async def data(self, method: str, path: str, **kw: Any) -> Any:
        status, payload = await self.call(method, path, **kw)
        assert status == 200 and payload["success"] is True, payload
        return payload["data"]

    def minute(self, n: int = 1) -> None:
        self.clock.advance(60 * n)


@pytest.fixture
async def env(clock: ManualClock) -> AsyncIterator[Env]:
    market = SimMarket(clock, seed=42, history_days=2)
    sim = CoinbtrSim(market, clock, default_tokens(), COINBTR_BALANCES, seed=42, withdrawal_failure_rate=0.0)
    faults = Faults("coinbtr", seed=0, clock=clock)
    async with TestClient(TestServer(create_app(sim, faults))) as client:
        yield Env(sim, faults, client, clock)


def assert_error(status: int, payload: Any, http: int, code: int) -> None:
    assert (status, payload["success"], payload["msg"]["code"]) == (http, False, code), payload
    assert isinstance(payload["msg"]["error"], str)


# ---- auth, profile, session, rate limit ---------------------------------------------------------------


async def test_profile_and_session_report_user_and_token_permissions(env: Env) -> None:
    assert (await env.data("GET", "/wallet/user/profile"))["username"] == "paper"
    full = await env.data("GET", "/user/session")
    ro = await env.data("GET", "/user/session", token=COINBTR_READONLY_TOKEN)
    assert full["username"] == "paper" and ro["username"] == "reader"
    assert full["token"]["permissions"] == {"withdraw": True, "deposit": True, "trade": True}
    assert ro["token"]["permissions"] == {"withdraw": False, "deposit": False, "trade": False}
    assert full["token"]["expires"] > iso_z(env.clock.now())


@pytest.mark.parametrize("header", [None, "Token nope", f"Bearer {COINBTR_TOKEN}", COINBTR_TOKEN])
async def test_missing_or_invalid_token_answers_401_envelope(env: Env, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    async with env.client.get(f"{API}/wallet/listbalances", headers=headers) as r:
        payload = json.loads(await r.text())
    assert_error(r.status, payload, 401, 1007)


async def test_token_without_permission_cannot_trade_or_withdraw(env: Env) -> None:
    status, payload = await env.call(
        "POST", "/trading/place/buylimit", token=COINBTR_READONLY_TOKEN,
        body={"market": "btc-mxn", "amount": "0.001", "price": "1000000"},
    )
    assert_error(status, payload, 403, 1007)
    status, payload = await env.call(
        "POST", "/wallet/withdraw", token=COINBTR_READONLY_TOKEN,
        body={"coin": "btc", "address": BTC_ADDR, "amount": "0.01"},
    )
    assert_error(status, payload, 403, 1007)
    assert env.sim.orders == {} and env.sim.withdrawals == []
    # Reading is allowed with the read-only token.
    assert await env.data("GET", "/wallet/listwithdraws", token=COINBTR_READONLY_TOKEN) == []


async def test_61st_request_in_a_minute_is_429_with_code_1005(env: Env) -> None:
    for _ in range(60):
        status, _ = await env.call("GET", "/wallet/user/profile")
        assert status == 200
    status, payload = await env.call("GET", "/wallet/user/profile")
    assert_error(status, payload, 429, 1005)
    assert env.faults.snapshot()["sent_429"] == 1
    # Another token has its own budget; the limited one recovers when the window rolls on.
    assert (await env.call("GET", "/wallet/user/profile", token=COINBTR_READONLY_TOKEN))[0] == 200
    env.clock.advance(61)
    assert (await env.call("GET", "/wallet/user/profile"))[0] == 200


async def test_injected_429_and_unknown_path_use_the_coinbtr_envelope(env: Env) -> None:
    env.faults.script("429", path_prefix=f"{API}/wallet/listbalances")
    status, payload = await env.call("GET", "/wallet/listbalances")
    assert_error(status, payload, 429, 1005)
    status, payload = await env.call("GET", "/wallet/nothing-here")
    assert_error(status, payload, 404, 1001)


async def test_injected_5xx_and_truncated_bodies_reach_the_client(env: Env) -> None:
    env.faults.script("500", path_prefix=f"{API}/wallet/listbalances")
    status, payload = await env.call("GET", "/wallet/listbalances")
    assert_error(status, payload, 500, 1500)
    env.faults.script("503", path_prefix=f"{API}/wallet/listbalances")
    headers = {"Authorization": f"Token {COINBTR_TOKEN}"}
    async with env.client.get(f"{API}/wallet/listbalances", headers=headers) as r:
        assert r.status == 503 and "html" in r.content_type  # a proxy's page, not JSON
    env.faults.script("truncate", path_prefix=f"{API}/wallet/listbalances")
    with pytest.raises(aiohttp.ClientError):
        async with env.client.get(f"{API}/wallet/listbalances", headers=headers) as r:
            await r.read()


# ---- wallet -------------------------------------------------------------------------------------------


async def test_deposit_address_by_post_body_and_by_get_query(env: Env) -> None:
    posted = await env.data("POST", "/wallet/getdepositaddress", body={"coin": "btc"})
    got = await env.data("GET", "/wallet/getdepositaddress", params={"coin": "BTC"})
    assert posted == got and posted["coin"] == "btc" and valid_address("btc", posted["address"])
    status, payload = await env.call("POST", "/wallet/getdepositaddress", body={"coin": "doge"})
    assert_error(status, payload, 400, 1001)


async def test_listbalances_says_message_and_sends_numbers(env: Env) -> None:
    status, payload = await env.call("GET", "/wallet/listbalances")
    assert status == 200 and "message" in payload and "msg" not in payload
    rows = {row["coin"]: row for row in payload["data"]}
    assert set(rows) == {"BTC", "ETH", "MXN"}
    btc = rows["BTC"]
    for key in ("balance", "available", "pending", "frozen"):
        assert isinstance(btc[key], Decimal), key  # JSON numbers, not strings
    assert (btc["balance"], btc["available"], btc["frozen"]) == (D("1"), D("1"), D("0"))
    assert rows["ETH"]["available"] == D("10") and rows["MXN"]["available"] == D("2000000")
    assert valid_address("btc", btc["depositAddress"])


async def test_getbalance_sends_strings_and_bad_coin_is_success_false_with_200(env: Env) -> None:
    data = await env.data("GET", "/wallet/getbalance", params={"coin": "mxn"})
    assert data["coin"] == "mxn" and data["coin_name"]
    assert data["balances"] == {"available": "2000000", "frozen": "0", "pending": "0"}
    status, payload = await env.call("GET", "/wallet/getbalance", params={"coin": "doge"})
    assert_error(status, payload, 200, 1001)


async def test_withdrawal_statuses_progress_and_a_failed_one_is_refunded(env: Env) -> None:
    env.sim.fail_next_withdrawal()
    bad = await env.data(
        "POST", "/wallet/withdraw", body={"coin": "btc", "address": BTC_ADDR, "amount": "0.1"}
    )
    # The seed's misspelled path, and the amount as a JSON number like the seed's curl example.
    good = await env.data(
        "POST", "/wallet/whithdraw", raw=f'{{"coin": "btc", "address": "{BTC_ADDR}", "amount": 0.2}}'
    )
    assert (bad["coin"], bad["status"], bad["txid"]) == ("BTC", "pending", None)
    assert isinstance(good["id"], int) and good["id"] != bad["id"]
    history: dict[int, list[str]] = {bad["id"]: [], good["id"]: []}
    for _ in range(9):
        for w in await env.data("GET", "/wallet/listwithdraws"):
            history[w["id"]].append(w["status"])
        env.minute()
    assert history[bad["id"]] == ["pending", "signed", "signed"] + ["failed"] * 6
    assert history[good["id"]] == ["pending", "signed", "signed"] + ["sent"] * 5 + ["confirmed"]
    latest = await env.data("GET", "/wallet/listwithdraws")
    assert [w["id"] for w in latest] == [good["id"], bad["id"]]  # newest first
    assert isinstance(latest[0]["amount"], str) and isinstance(latest[0]["fee_amount"], Decimal)
    assert len(latest[0]["txid"]) == 64
    # Only the successful withdrawal and its fee left the account.
    btc = await env.data("GET", "/wallet/getbalance", params={"coin": "btc"})
    assert D(btc["balances"]["available"]) == D("1") - D("0.2") - D("0.0001")


@pytest.mark.parametrize(
    ("body", "http", "code"),
    [
        ({"coin": "btc", "address": "0x1234", "amount": "0.1"}, 400, 1006),
        ({"coin": "btc", "address": BTC_ADDR, "amount": "7"}, 400, 1002),
        ({"coin": "btc", "address": BTC_ADDR}, 400, 1001),
        ({"coin": "btc", "address": BTC_ADDR, "amount": "lots"}, 400, 1001),
    ],
)
async def test_withdrawal_rejections(env: Env, body: dict[str, str], http: int, code: int) -> None:
    status, payload = await env.call("POST", "/wallet/withdraw", body=body)
    assert_error(status, payload, http, code)
    assert env.sim.withdrawals == []


async def test_deposit_confirmations_grow_then_the_balance_is_credited(env: Env) -> None:
    env.sim.inject_deposit(COINBTR_TOKEN, "btc", D("0.25"))
    seen = []
    for _ in range(4):
        deposit = (await env.data("GET", "/wallet/listdeposits"))[0]
        btc = {r["coin"]: r for r in await env.data("GET", "/wallet/listbalances")}["BTC"]
        seen.append((deposit["confirmations"], deposit["confirmed"], btc["pending"], btc["available"]))
        env.minute()
    assert seen == [
        (0, False, D("0.25"), D("1")),
        (1, False, D("0.25"), D("1")),
        (2, False, D("0.25"), D("1")),
        (3, True, D("0"), D("1.25")),
    ]
    assert isinstance(deposit["amount"], str) and len(deposit["txid"]) == 64


# ---- trading ------------------------------------------------------------------------------------------


async def place(env: Env, side: str, market: str, amount: Any, price: Any) -> int:
    body = {"market": market, "amount": str(amount), "price": str(price)}
    data = await env.data("POST", f"/trading/place/{side}limit", body=body)
    assert isinstance(data["id"], int)
    return int(data["id"])


async def test_marketable_buy_fills_at_once_as_taker_then_cancel_answers_404_1003(env: Env) -> None:
    book = await env.data("GET", "/market/getorderbook", params={"book": "btc-mxn"}, token=None)
    best = book["asks"][0]
    amount = min(best["amount"], D("0.01"))
    order_id = await place(env, "buy", "BTC-MXN", amount, best["price"])
    fills = await env.data("GET", "/trading/listtransactions", params={"market": "btc-mxn"})
    assert len(fills) == 1
    fill = fills[0]
    assert (fill["order_id"], fill["market"], fill["side"], fill["filled_as"]) == (
        order_id, "btc-mxn", "BUY", "taker"
    )
    assert isinstance(fill["price"], Decimal) and fill["price"] == D(best["price"])
    assert D(fill["amount"]) == amount and fill["amount"].count("0") >= 1
    assert len(fill["amount"].split(".")[1]) == 8  # printed with the book's amount step
    assert (D(fill["fee_amount"]), fill["fee_coin"]) == ((amount * D("0.0015")).quantize(D("1e-8")), "btc")
    assert await env.data("GET", "/trading/gettransaction", params={"id": str(fill["id"])}) == fill
    assert await env.data("POST", "/trading/listopenorders", body={"id": order_id}) == []
    # The order filled before the cancel arrived: the cancel answers "not open".
    status, payload = await env.call("POST", "/trading/cancel/buylimit", body={"id": order_id})
    assert_error(status, payload, 404, 1003)


async def test_resting_order_fills_partly_over_several_minutes(env: Env) -> None:
    last = D((await env.data("GET", "/market/gettiker", params={"book": "btc-mxn"}, token=None))["last"])
    order_id = await place(env, "sell", "btc-mxn", "0.02", last)  # above the best bid: rests as maker
    assert await env.data("GET", "/trading/listtransactions") == []
    progress: list[Decimal] = []
    for _ in range(240):
        env.minute()
        open_now = await env.data("POST", "/trading/listopenorders", body={"id": order_id})
        if not open_now:
            break
        progress.append(D(open_now[0]["filled"]))
        assert D(open_now[0]["amount"]) + progress[-1] == D("0.02")
    assert any(D(0) < f < D("0.02") for f in progress), progress  # seen open and partly filled
    fills = await env.data("GET", "/trading/listtransactions", params={"market": "btc-mxn"})
    assert len(fills) >= 3
    assert all(f["order_id"] == order_id and f["filled_as"] == "maker" and f["price"] == last for f in fills)
    assert sum(D(f["amount"]) for f in fills) == D("0.02")
    assert [f["created_at"] for f in fills] == sorted((f["created_at"] for f in fills), reverse=True)
    expected_mxn = D("2000000") + sum(D(f["amount"]) * last - D(f["fee_amount"]) for f in fills)
    rows = {r["coin"]: r for r in await env.data("GET", "/wallet/listbalances")}
    assert rows["MXN"]["available"] == expected_mxn.quantize(D("1e-8"), rounding="ROUND_DOWN")
    assert (rows["BTC"]["available"], rows["BTC"]["frozen"]) == (D("0.98"), D(0))


async def test_order_that_filled_while_nobody_asked_answers_the_cancel_with_1003(env: Env) -> None:
    last = D((await env.data("GET", "/market/gettiker", params={"book": "btc-mxn"}, token=None))["last"])
    order_id = await place(env, "sell", "btc-mxn", "0.001", last)
    env.minute(240)  # the market trades through the price while the bot is busy elsewhere
    status, payload = await env.call("POST", "/trading/cancel/buylimit", body={"id": order_id})
    assert_error(status, payload, 404, 1003)
    fills = await env.data("GET", "/trading/listtransactions")
    assert sum(D(f["amount"]) for f in fills if f["order_id"] == order_id) == D("0.001")


async def test_cancel_of_a_partly_filled_order_keeps_the_fill_and_frees_the_rest(env: Env) -> None:
    book = await env.data("GET", "/market/getorderbook", params={"book": "btc-mxn"}, token=None)
    best = book["asks"][0]
    order_id = await place(env, "buy", "btc-mxn", best["amount"] + D("0.5"), best["price"])
    [order] = await env.data("POST", "/trading/listopenorders", body={})
    assert (order["order_id"], order["amount"]) == (order_id, "0.50000000")
    assert D(order["filled"]) == best["amount"]
    status, payload = await env.call("POST", "/trading/cancel/buylimit", body={"id": order_id})
    assert (status, payload) == (200, {"success": True, "msg": "Order closed"})
    assert await env.data("POST", "/trading/listopenorders", body={}) == []
    fills = await env.data("GET", "/trading/listtransactions")
    assert [f["order_id"] for f in fills] == [order_id]
    mxn = (await env.data("GET", "/wallet/getbalance", params={"coin": "mxn"}))["balances"]
    assert D(mxn["frozen"]) == 0
    assert D(mxn["available"]) == D("2000000") - best["amount"] * D(best["price"])


async def test_open_orders_by_market_by_id_and_with_an_empty_body(env: Env) -> None:
    a = await place(env, "buy", "btc-mxn", "0.001", "1000000.00")
    b = await place(env, "sell", "eth-mxn", "0.1", "90000.00")
    everything = await env.data("POST", "/trading/listopenorders", body={})
    assert [o["order_id"] for o in everything] == [a, b]
    assert [o["order_id"] for o in await env.data("POST", "/trading/listopenorders", raw="")] == [a, b]
    only_eth = await env.data("POST", "/trading/listopenorders", body={"market": "ETH-MXN"})
    assert [o["order_id"] for o in only_eth] == [b]
    [one] = await env.data("POST", "/trading/listopenorders", body={"id": a})
    assert one == {
        "order_id": a, "market": "btc-mxn", "side": "BUY", "price": "1000000.00",
        "initial_amount": "0.00100000", "amount": "0.00100000", "filled": "0.00000000",
        "fee_percent": "0.075", "created_at": iso_z(env.clock.now()),
        "is_open": True,
    }
    rows = {r["coin"]: r for r in await env.data("GET", "/wallet/listbalances")}
    assert (rows["MXN"]["frozen"], rows["ETH"]["frozen"]) == (D("1000"), D("0.1"))
    assert rows["MXN"]["balance"] == rows["MXN"]["available"] + rows["MXN"]["frozen"] == D("2000000")


@pytest.mark.parametrize(
    ("body", "raw", "code"),
    [
        ({"market": "btc-mxn", "amount": "2", "price": "1600000.00"}, None, 1002),  # 3.2M MXN > 2M
        ({"market": "btc-mxn", "amount": "0.000000001", "price": "1600000"}, None, 1004),
        ({"market": "btc-mxn", "amount": "0.001", "price": "1600000.001"}, None, 1004),
        ({"market": "btc-mxn", "amount": "0.000001", "price": "1600000"}, None, 1004),
        ({"market": "doge-mxn", "amount": "1", "price": "1"}, None, 1001),
        ({"market": "btc-mxn", "amount": "0.001"}, None, 1001),
        (None, "not json", 1001),
        (None, "[1, 2]", 1001),
    ],
)
async def test_place_rejections_are_400_with_the_contract_codes(
    env: Env, body: dict[str, str] | None, raw: str | None, code: int
) -> None:
    status, payload = await env.call("POST", "/trading/place/buylimit", body=body, raw=raw)
    assert_error(status, payload, 400, code)
    assert env.sim.orders == {}


async def test_transactions_since_and_bad_parameters(env: Env) -> None:
    asks = (await env.data("GET", "/market/getorderbook", params={"book": "eth-mxn"}, token=None))["asks"]
    first = await place(env, "buy", "eth-mxn", "0.01", asks[0]["price"])
    env.minute(2)
    since = iso_z(env.clock.now())
    asks = (await env.data("GET", "/market/getorderbook", params={"book": "eth-mxn"}, token=None))["asks"]
    second = await place(env, "buy", "eth-mxn", "0.01", asks[0]["price"])
    assert [f["order_id"] for f in await env.data("GET", "/trading/listtransactions")] == [second, first]
    recent = await env.data("GET", "/trading/listtransactions", params={"since": since})
    assert [f["order_id"] for f in recent] == [second]
    assert await env.data("GET", "/trading/listtransactions", params={"market": "btc-mxn"}) == []
    for params in ({"since": "yesterday"}, {"market": "doge-mxn"}):
        status, payload = await env.call("GET", "/trading/listtransactions", params=params)
        assert_error(status, payload, 200, 1001)  # success false with HTTP 200
    status, payload = await env.call("GET", "/trading/gettransaction", params={"id": "x"})
    assert_error(status, payload, 200, 1001)
    status, payload = await env.call("GET", "/trading/gettransaction", params={"id": "999999"})
    assert_error(status, payload, 404, 1003)


async def test_place_dropped_after_apply_still_created_the_order(env: Env) -> None:
    env.faults.script("drop_after", method="POST", path_prefix=f"{API}/trading/place")
    with pytest.raises(aiohttp.ClientConnectionError):
        await env.call("POST", "/trading/place/buylimit",
                       body={"market": "btc-mxn", "amount": "0.001", "price": "1000000.00"})
    orders = await env.data("POST", "/trading/listopenorders", body={"market": "btc-mxn"})
    assert [(o["price"], o["amount"]) for o in orders] == [("1000000.00", "0.00100000")]


# ---- market (public) ----------------------------------------------------------------------------------


async def test_listbooks_gives_limits_steps_and_fees_as_strings(env: Env) -> None:
    books = {b["book"]: b for b in await env.data("GET", "/market/listbooks", token=None)}
    assert set(books) == {"btc-mxn", "eth-btc", "eth-mxn"}
    assert all(isinstance(v, str) for b in books.values() for v in b.values())
    btc = books["btc-mxn"]
    assert (btc["amount_step"], btc["price_step"], btc["maker_fee"], btc["taker_fee"]) == (
        "0.00000001", "0.01", "0.075", "0.15"
    )
    assert D(btc["minimum_amount"]) < D(btc["maximum_amount"])


@pytest.mark.parametrize("book", ["btc-mxn", "eth-btc", "ETH-MXN"])
async def test_orderbook_is_sorted_bounded_and_around_the_last_price(env: Env, book: str) -> None:
    ob = await env.data("GET", "/market/getorderbook", params={"book": book}, token=None)
    asks, bids = ob["asks"], ob["bids"]
    assert ob["book"] == book.lower() and 0 < len(asks) <= 50 and 0 < len(bids) <= 50
    assert all(isinstance(lv["price"], str) and isinstance(lv["amount"], Decimal) for lv in asks + bids)
    ask_prices, bid_prices = [D(a["price"]) for a in asks], [D(b["price"]) for b in bids]
    assert ask_prices == sorted(ask_prices) and bid_prices == sorted(bid_prices, reverse=True)
    tick = await env.data("GET", "/market/gettiker", params={"book": book}, token=None)
    assert all(isinstance(v, str) for v in tick.values())
    assert bid_prices[0] == D(tick["bid"]) < D(tick["last"]) < D(tick["ask"]) == ask_prices[0]
    assert D(tick["low"]) <= D(tick["vwap"]) <= D(tick["high"]) and D(tick["volume"]) > 0


@pytest.mark.parametrize("path", ["/market/getorderbook", "/market/gettiker"])
async def test_unknown_book_is_success_false_with_http_200(env: Env, path: str) -> None:
    for params in ({"book": "doge-mxn"}, {}):
        status, payload = await env.call("GET", path, params=params, token=None)
        assert_error(status, payload, 200, 1001)


async def test_24h_volume_and_currencies(env: Env) -> None:
    volumes = await env.data("GET", "/market/get24hvolume", token=None)
    assert {v["book"] for v in volumes} == {"btc-mxn", "eth-btc", "eth-mxn"}
    assert all(isinstance(v["volume"], Decimal) and v["volume"] > 0 for v in volumes)
    coins = {c["coin"]: c for c in await env.data("GET", "/market/getcurrencies", token=None)}
    assert set(coins) == {"btc", "eth", "mxn"}
    assert coins["btc"]["decimals"] == 8 and isinstance(coins["btc"]["decimals"], int)
    assert isinstance(coins["btc"]["withdrawal_fee"], str)
    assert isinstance(coins["btc"]["minimum_withdrawal"], Decimal)


async def test_same_seed_and_clock_give_the_same_answers(clock: ManualClock) -> None:
    async def run() -> list[Any]:
        c = ManualClock(clock.now())
        sim = CoinbtrSim(SimMarket(c, seed=7, history_days=1), c, default_tokens(), COINBTR_BALANCES, seed=7)
        async with TestClient(TestServer(create_app(sim, Faults("coinbtr", clock=c)))) as client:
            e = Env(sim, Faults("unused"), client, c)
            ob = await e.data("GET", "/market/getorderbook", params={"book": "btc-mxn"}, token=None)
            await place(e, "buy", "btc-mxn", "0.05", ob["asks"][2]["price"])
            e.minute(5)
            return [ob, await e.data("GET", "/trading/listtransactions")]

    assert await run() == await run()
