"""`CoinbtrClient` against the CoinBTR simulator over loopback HTTP: every endpoint, quirk and fault kind."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from structlog.testing import capture_logs

from bot.clients.coinbtr import (
    BadAddress,
    CoinbtrClient,
    InsufficientFunds,
    InvalidParams,
    OutsideLimits,
)
from bot.clock import ManualClock
from bot.domain import Side, TransferStatus
from bot.errors import (
    AuthError,
    MalformedResponse,
    NotFound,
    OutcomeUnknown,
    Rejected,
    TemporaryError,
)
from bot.http import Timeouts
from bot.sandbox.coinbtr import CoinbtrSim, create_app, default_tokens
from bot.sandbox.credentials import COINBTR_BALANCES, COINBTR_READONLY_TOKEN, COINBTR_TOKEN
from bot.sandbox.exchange_rules import BOOKS, COINS, valid_address
from bot.sandbox.faults import Faults
from bot.sandbox.market import SimMarket
from bot.settings import CoinbtrSettings

D = Decimal
API = "/api/v1"
BTC_ADDR = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
PLACE = f"{API}/trading/place"


@dataclass
class Harness:
    client: CoinbtrClient
    sim: CoinbtrSim
    faults: Faults
    clock: ManualClock
    url: str
    opened: list[CoinbtrClient]

    def client_for(self, token: str = COINBTR_TOKEN, rpm: int = 60,
                   timeouts: Timeouts | None = None) -> CoinbtrClient:
        settings = CoinbtrSettings(base_url=self.url, token=SecretStr(token), requests_per_minute=rpm)
        c = CoinbtrClient.create(settings, self.clock, rng=random.Random(1), timeouts=timeouts)
        self.opened.append(c)
        return c

    def requests(self, endpoint: str | None = None) -> int:
        snap = self.faults.snapshot()
        if endpoint is None:
            return int(snap["requests_total"])
        return int(sum(v for k, v in snap["requests"].items() if k.endswith(endpoint)))

    def sent_429(self) -> int:
        return int(self.faults.snapshot()["sent_429"])

    def minute(self, n: int = 1) -> None:
        self.clock.advance(60 * n)


Make = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make(clock: ManualClock) -> AsyncIterator[Make]:
    """Start a CoinBTR simulator (server limit `server_rpm`) and a client (limit `rpm`) on one clock."""
    servers: list[TestServer] = []
    opened: list[CoinbtrClient] = []

    async def start(rpm: int = 60, server_rpm: int = 60, failure_rate: float = 0.0,
                    balances: dict[str, Decimal] | None = None) -> Harness:
        sim = CoinbtrSim(SimMarket(clock, seed=42, history_days=2), clock, default_tokens(),
                         balances or COINBTR_BALANCES,
                         requests_per_minute=server_rpm, seed=42, withdrawal_failure_rate=failure_rate)
        faults = Faults("coinbtr", seed=0, clock=clock)
        server = TestServer(create_app(sim, faults), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        h = Harness(None, sim, faults, clock, str(server.make_url("")).rstrip("/"), opened)  # type: ignore[arg-type]
        h.client = h.client_for(rpm=rpm)
        return h

    yield start
    for c in opened:
        await c.close()
    for s in servers:
        await s.close()


async def best_ask(h: Harness, book: str = "btc-mxn") -> tuple[Decimal, Decimal]:
    ob = await h.client.market.order_book(book)
    return ob.asks[0].price, ob.asks[0].amount


# ------------------------------------------------------------------------------------- profile and auth


async def test_profile_session_and_permissions_of_both_tokens(make: Make) -> None:
    h = await make()
    profile = await h.client.profile()
    assert (profile.username, profile.level) == ("paper", 2) and "@" in profile.email
    session = await h.client.session()
    assert session.username == "paper" and session.expires is not None and session.expires > h.clock.now()
    assert (session.permissions.trade, session.permissions.withdraw, session.permissions.deposit) == (
        True, True, True)
    reader = await h.client_for(COINBTR_READONLY_TOKEN).permissions()
    assert (reader.trade, reader.withdraw, reader.deposit) == (False, False, False)


@pytest.mark.parametrize("token", ["", "wrong-secret-token"])
async def test_missing_or_bad_token_is_401_auth_error_without_the_token(make: Make, token: str) -> None:
    h = await make()
    with pytest.raises(AuthError) as err:
        await h.client_for(token).wallet.balances()
    assert (err.value.status, err.value.code) == (401, 1007)
    assert "wrong-secret-token" not in str(err.value) and "wrong-secret-token" not in repr(err.value.args)
    assert h.requests() == 1  # never retried


async def test_logs_and_errors_never_carry_the_token(make: Make) -> None:
    h = await make()
    secret = "secret-token-that-must-not-leak"
    with capture_logs() as events:
        with pytest.raises(AuthError) as err:
            await h.client_for(secret).trading.place("btc-mxn", Side.BUY, D("0.001"), D("100000.00"))
        h.faults.script("drop_after", method="POST", path_prefix=PLACE)
        with pytest.raises(OutcomeUnknown) as unknown:
            await h.client.trading.place("btc-mxn", Side.BUY, D("0.001"), D("100000.00"))
    assert events  # the failures were logged...
    for text in [repr(e) for e in events] + [str(err.value), str(unknown.value)]:
        assert secret not in text and COINBTR_TOKEN not in text  # ...without the tokens


async def test_token_without_permission_is_403_auth_error_and_nothing_happens(make: Make) -> None:
    h = await make()
    reader = h.client_for(COINBTR_READONLY_TOKEN)
    with pytest.raises(AuthError) as err:
        await reader.trading.place("btc-mxn", Side.BUY, D("0.001"), D("100000.00"))
    assert (err.value.status, err.value.code) == (403, 1007)
    with pytest.raises(AuthError):
        await reader.wallet.withdraw("btc", BTC_ADDR, D("0.01"))
    assert h.sim.orders == {} and h.sim.withdrawals == []
    assert len(await reader.market.books()) == 3  # public endpoints need no permission


# ------------------------------------------------------------------------------------------------ wallet


async def test_deposit_address_is_the_accounts_valid_address(make: Make) -> None:
    h = await make()
    for coin in ("btc", "ETH", "mxn"):
        address = await h.client.wallet.deposit_address(coin)
        assert valid_address(coin.lower(), address)
        assert address == h.sim.desk.address("paper", coin.lower())


async def test_listbalances_message_and_numbers_agree_with_getbalance_strings(make: Make) -> None:
    h = await make()
    rows = {b.coin: b for b in await h.client.wallet.balances()}  # `message`, JSON numbers
    assert set(rows) == set(COINS)
    assert (rows["btc"].available, rows["btc"].frozen, rows["mxn"].available) == (D(1), D(0), D(2000000))
    assert rows["btc"].deposit_address == await h.client.wallet.deposit_address("btc")
    for coin in COINS:
        one = await h.client.wallet.balance(coin)  # `msg`, decimal strings
        assert (one.coin, one.available, one.frozen, one.pending) == (
            coin, rows[coin].available, rows[coin].frozen, rows[coin].pending)
        assert all(isinstance(v, Decimal) for v in (one.available, one.frozen, one.pending))


async def test_json_number_balances_keep_every_digit(make: Make) -> None:
    # 18 significant digits: a float keeps about 16, so this only passes if numbers never touch float.
    big = D("1234567890.12345678")
    h = await make(balances={"mxn": big, "eth": D("98765432.87654321")})
    rows = {b.coin: b for b in await h.client.wallet.balances()}  # JSON numbers
    assert (rows["mxn"].available, rows["eth"].available) == (big, D("98765432.87654321"))
    assert (await h.client.wallet.balance("mxn")).available == big  # decimal strings


async def test_withdrawal_statuses_progress_and_a_failed_one_is_refunded(make: Make) -> None:
    h = await make()
    h.sim.fail_next_withdrawal()
    bad = await h.client.wallet.withdraw("BTC", BTC_ADDR, D("0.1"))
    good = await h.client.wallet.withdraw("btc", BTC_ADDR, D("0.2"))
    assert (bad.coin, bad.status, bad.txid) == ("btc", TransferStatus.PENDING, None)
    assert h.requests("/wallet/withdraw") == 2 and h.requests("/wallet/whithdraw") == 0
    history: dict[int, list[TransferStatus]] = {bad.id: [], good.id: []}
    for _ in range(9):
        for w in await h.client.wallet.withdrawals():
            history[w.id].append(w.status)
        h.minute()
    S = TransferStatus
    assert history[bad.id] == [S.PENDING, S.SIGNED, S.SIGNED] + [S.FAILED] * 6
    assert history[good.id] == [S.PENDING, S.SIGNED, S.SIGNED] + [S.SENT] * 5 + [S.CONFIRMED]
    latest = await h.client.wallet.withdrawals()
    assert [w.id for w in latest] == [good.id, bad.id]
    assert (latest[0].amount, latest[0].fee_amount, latest[0].address) == (D("0.2"), D("0.0001"), BTC_ADDR)
    assert latest[0].txid is not None and len(latest[0].txid) == 64
    assert (await h.client.wallet.balance("btc")).available == D(1) - D("0.2") - D("0.0001")


@pytest.mark.parametrize(
    ("address", "amount", "error", "code"),
    [("0x1234", "0.1", BadAddress, 1006), (BTC_ADDR, "7", InsufficientFunds, 1002),
     (BTC_ADDR, "0.0001", InvalidParams, 1001)],
)
async def test_withdrawal_rejections_are_typed_with_the_code(
    make: Make, address: str, amount: str, error: type[Rejected], code: int
) -> None:
    h = await make()
    with pytest.raises(error) as err:
        await h.client.wallet.withdraw("btc", address, D(amount))
    assert (err.value.code, err.value.status, err.value.kind) == (code, 400, "rejected")
    assert h.sim.withdrawals == [] and h.requests() == 1


async def test_deposit_confirmations_grow_then_the_balance_is_credited(make: Make) -> None:
    h = await make()
    h.sim.inject_deposit(COINBTR_TOKEN, "btc", D("0.25"))
    seen = []
    for _ in range(4):
        [deposit] = await h.client.wallet.deposits()
        btc = await h.client.wallet.balance("btc")
        seen.append((deposit.confirmations, deposit.confirmed, btc.pending, btc.available))
        h.minute()
    assert seen == [(0, False, D("0.25"), D(1)), (1, False, D("0.25"), D(1)), (2, False, D("0.25"), D(1)),
                    (3, True, D(0), D("1.25"))]
    assert deposit.amount == D("0.25") and deposit.coin == "btc" and deposit.txid


# ----------------------------------------------------------------------------------------------- trading


async def test_marketable_buy_fills_as_taker_and_cancel_then_is_not_found_1003(make: Make) -> None:
    h = await make()
    price, depth = await best_ask(h)
    amount = min(depth, D("0.01"))
    order_id = await h.client.trading.place("BTC-MXN", Side.BUY, amount, price)
    [fill] = await h.client.trading.transactions("btc-mxn")
    assert (fill.order_id, fill.market, fill.side, fill.maker, fill.fee_coin) == (
        order_id, "btc-mxn", Side.BUY, False, "btc")
    assert (fill.price, fill.amount) == (price, amount)  # price: JSON number; amount: string — both exact
    assert fill.fee_amount == (amount * D("0.0015")).quantize(D("1e-8"))
    assert await h.client.trading.transaction(fill.id) == fill
    assert await h.client.trading.open_order(order_id) is None
    with pytest.raises(NotFound) as err:  # it filled before the cancel arrived
        await h.client.trading.cancel(order_id)
    assert (err.value.code, err.value.status) == (1003, 404)
    with pytest.raises(NotFound):
        await h.client.trading.transaction(999999)


async def test_resting_order_fills_partly_over_several_minutes(make: Make) -> None:
    h = await make()
    last = (await h.client.market.ticker("btc-mxn")).last
    order_id = await h.client.trading.place("btc-mxn", Side.SELL, D("0.02"), last)  # rests as maker
    assert await h.client.trading.transactions() == []
    progress: list[Decimal] = []
    for _ in range(240):
        h.minute()
        order = await h.client.trading.open_order(order_id)
        if order is None:
            break
        assert order.initial_amount == D("0.02") and order.amount + order.filled == D("0.02")
        progress.append(order.filled)
    assert any(D(0) < f < D("0.02") for f in progress), progress  # seen open and partly filled
    fills = await h.client.trading.transactions("btc-mxn")
    assert len(fills) >= 3 and sum(f.amount for f in fills) == D("0.02")
    assert all(f.order_id == order_id and f.maker and f.price == last for f in fills)
    # Exact decimals end to end: the JSON-number balance equals the sum of the fills' proceeds.
    mxn = {b.coin: b for b in await h.client.wallet.balances()}["mxn"]
    expected = D(2000000) + sum(f.amount * f.price - f.fee_amount for f in fills)
    assert mxn.available == expected.quantize(D("1e-8"), rounding="ROUND_DOWN")


async def test_cancel_of_a_partly_filled_order_keeps_the_fill(make: Make) -> None:
    h = await make()
    price, depth = await best_ask(h)
    order_id = await h.client.trading.place("btc-mxn", Side.BUY, depth + D("0.5"), price)
    [order] = await h.client.trading.open_orders()
    assert (order.order_id, order.filled, order.amount) == (order_id, depth, D("0.5"))
    await h.client.trading.cancel(order_id)
    assert await h.client.trading.open_orders() == []
    mxn = await h.client.wallet.balance("mxn")
    assert (mxn.frozen, mxn.available) == (D(0), D(2000000) - depth * price)


async def test_open_orders_all_by_market_and_by_id(make: Make) -> None:
    h = await make()
    a = await h.client.trading.place("btc-mxn", Side.BUY, D("0.001"), D("1000000.00"))
    b = await h.client.trading.place("eth-mxn", Side.SELL, D("0.1"), D("90000.00"))
    assert [o.order_id for o in await h.client.trading.open_orders()] == [a, b]
    assert [o.order_id for o in await h.client.trading.open_orders("ETH-MXN")] == [b]
    one = await h.client.trading.open_order(a)
    assert one is not None and (one.market, one.side, one.price, one.amount, one.is_open) == (
        "btc-mxn", Side.BUY, D("1000000.00"), D("0.001"), True)
    assert one.fee_percent == D("0.075") and one.created_at == h.clock.now()
    assert await h.client.trading.open_order(123456) is None


@pytest.mark.parametrize(
    ("market", "amount", "price", "error", "code"),
    [("btc-mxn", "0.000000001", "1000000", OutsideLimits, 1004),
     ("btc-mxn", "3", "1000000", InsufficientFunds, 1002),
     ("doge-mxn", "1", "1", InvalidParams, 1001)],
)
async def test_place_rejections_are_typed_and_never_retried(
    make: Make, market: str, amount: str, price: str, error: type[Rejected], code: int
) -> None:
    h = await make()
    with pytest.raises(error) as err:
        await h.client.trading.place(market, Side.BUY, D(amount), D(price))
    assert err.value.code == code and h.sim.orders == {} and h.requests() == 1


async def test_transactions_since(make: Make) -> None:
    h = await make()
    first = await h.client.trading.place("eth-mxn", Side.BUY, D("0.01"), (await best_ask(h, "eth-mxn"))[0])
    h.minute(2)
    since = h.clock.now()
    second = await h.client.trading.place("eth-mxn", Side.BUY, D("0.01"), (await best_ask(h, "eth-mxn"))[0])
    assert [f.order_id for f in await h.client.trading.transactions()] == [second, first]
    assert [f.order_id for f in await h.client.trading.transactions(since=since)] == [second]
    assert await h.client.trading.transactions("btc-mxn") == []


async def test_success_false_with_http_200_is_a_typed_error_and_not_retried(make: Make) -> None:
    h = await make()
    for call in (h.client.wallet.balance("doge"), h.client.market.order_book("doge-mxn"),
                 h.client.market.ticker("nope"), h.client.trading.transactions("doge-mxn")):
        with pytest.raises(InvalidParams) as err:
            await call
        assert (err.value.status, err.value.code) == (200, 1001)
    assert h.requests() == 4


# ------------------------------------------------------------------------------------------------ market


async def test_market_books_order_book_ticker_volume_and_currencies(make: Make) -> None:
    h = await make()
    books = {b.name: b for b in await h.client.market.books()}
    assert set(books) == set(BOOKS)
    spec, btc = BOOKS["btc-mxn"], books["btc-mxn"]
    assert (btc.amount_step, btc.price_step, btc.maker_fee, btc.taker_fee, btc.minimum_value) == (
        spec.amount_step, spec.price_step, spec.maker_fee, spec.taker_fee, spec.minimum_value)
    ob = await h.client.market.order_book("ETH-MXN")
    asks, bids = [lv.price for lv in ob.asks], [lv.price for lv in ob.bids]
    assert ob.book == "eth-mxn" and 0 < len(asks) <= 50 and asks == sorted(asks)
    assert bids == sorted(bids, reverse=True) and ob.updated_at is not None
    tick = await h.client.market.ticker("eth-mxn")
    assert tick.bid == bids[0] < tick.last < tick.ask == asks[0] and tick.low <= tick.vwap <= tick.high
    volumes = await h.client.market.volumes_24h()
    assert set(volumes) == set(BOOKS) and volumes["eth-mxn"] == tick.volume
    currencies = {c.coin: c for c in await h.client.market.currencies()}
    assert set(currencies) == set(COINS)
    assert (currencies["btc"].withdrawal_fee, currencies["btc"].minimum_withdrawal, currencies["btc"].decimals) == (
        D("0.0001"), D("0.001"), 8)


# ------------------------------------------------------------------------------------------ rate limits


async def test_scripted_429s_are_backed_off_and_the_read_succeeds(make: Make) -> None:
    h = await make()
    h.faults.script("429", count=2)
    start = h.clock.now()
    assert len(await h.client.wallet.balances()) == 3
    assert h.sent_429() == 2 and h.client.http.metrics.retries == 2
    assert h.clock.now() > start  # the back-off waited on the clock


async def test_server_limit_1005_is_backed_off_when_the_client_limit_is_too_high(make: Make) -> None:
    h = await make()
    greedy = h.client_for(rpm=1000)
    for _ in range(70):
        await greedy.wallet.balance("btc")
    assert h.sent_429() >= 1  # the 61st in a minute was refused with 429/1005, then retried


async def test_client_limit_keeps_under_the_server_limit(make: Make) -> None:
    h = await make()
    for _ in range(130):
        await h.client.wallet.balance("btc")
    assert h.sent_429() == 0 and h.requests() == 130


# --------------------------------------------------------------------------------------- faults on reads


@pytest.mark.parametrize("kind", ["500", "502", "503", "truncate", "bad_json"])
async def test_read_faults_are_retried(make: Make, kind: str) -> None:
    h = await make()
    h.faults.script(kind, count=1, method="GET")
    assert len(await h.client.wallet.balances()) == 3
    assert h.client.http.metrics.retries == 1


async def test_a_drop_on_a_read_is_retried_silently_once_then_by_us(make: Make) -> None:
    h = await make()
    await h.client.market.books()  # open a keep-alive connection first
    h.faults.script("drop_before", count=1, method="GET")
    await h.client.wallet.balances()
    assert h.client.http.metrics.retries == 0  # aiohttp resent the GET itself (contracts rule 6)
    h.faults.script("drop_before", count=2, method="GET")
    await h.client.wallet.balances()
    assert h.client.http.metrics.retries == 1  # the second drop reached us: retried


@pytest.mark.parametrize("kind", ["bad_json", "truncate"])
async def test_persistent_truncated_json_is_malformed_response(make: Make, kind: str) -> None:
    h = await make()
    h.faults.script(kind, count=20)
    with pytest.raises(MalformedResponse):
        await h.client.wallet.balances()
    assert h.client.http.metrics.retries >= 1  # reads are retried before giving up


async def test_persistent_read_faults_end_in_typed_errors(make: Make) -> None:
    h = await make()
    h.faults.script("503", count=20)
    with pytest.raises(TemporaryError):
        await h.client.market.ticker("btc-mxn")
    h.faults.reset()
    h.faults.script("drop_before", count=20)
    with pytest.raises(TemporaryError):
        await h.client.trading.open_orders()  # a POST read: retried by us, never by aiohttp


# --------------------------------------------------------------------------------- faults on mutations


async def test_drop_after_apply_on_place_is_outcome_unknown_and_find_order_resolves_it(make: Make) -> None:
    h = await make()
    sent_at = h.clock.now()
    h.faults.script("drop_after", method="POST", path_prefix=PLACE)
    with pytest.raises(OutcomeUnknown):
        await h.client.trading.place("btc-mxn", Side.BUY, D("0.001"), D("1000000.00"))
    assert h.requests("/trading/place/buylimit") == 1  # never resent
    [created] = h.sim.orders.values()  # the order does exist in the simulator
    match = await h.client.trading.find_order("btc-mxn", Side.BUY, D("1000000.00"), D("0.001"), sent_at)
    assert match is not None and match.order_id == created.id and match.is_open
    assert match.order is not None and match.filled == D(0)
    # Different price, side or amount, or orders already known to the journal, do not match.
    assert await h.client.trading.find_order("btc-mxn", Side.BUY, D("1000000.01"), D("0.001"), sent_at) is None
    assert await h.client.trading.find_order("btc-mxn", Side.SELL, D("1000000.00"), D("0.001"), sent_at) is None
    assert await h.client.trading.find_order("btc-mxn", Side.BUY, D("1000000.00"), D("0.001"), sent_at,
                                             exclude_ids={created.id}) is None


async def test_drop_after_apply_on_a_marketable_place_is_found_through_its_fills(make: Make) -> None:
    h = await make()
    price, depth = await best_ask(h)
    amount = min(depth, D("0.01"))
    sent_at = h.clock.now()
    h.faults.script("drop_after", method="POST", path_prefix=PLACE)
    with pytest.raises(OutcomeUnknown):
        await h.client.trading.place("btc-mxn", Side.BUY, amount, price)
    h.clock.advance(5)
    match = await h.client.trading.find_order("btc-mxn", Side.BUY, price, amount, sent_at)
    [created] = h.sim.orders.values()
    assert match is not None and (match.order_id, match.is_open, match.filled) == (created.id, False, amount)
    assert len(match.fills) == 1 and not match.fills[0].maker


async def test_a_place_dropped_before_the_handler_is_unknown_and_finds_nothing(make: Make) -> None:
    h = await make()
    sent_at = h.clock.now()
    h.faults.script("drop_before", method="POST", path_prefix=PLACE)
    with pytest.raises(OutcomeUnknown):
        await h.client.trading.place("btc-mxn", Side.BUY, D("0.001"), D("1000000.00"))
    assert h.sim.orders == {}
    assert await h.client.trading.find_order("btc-mxn", Side.BUY, D("1000000.00"), D("0.001"), sent_at) is None


async def test_two_identical_orders_are_ambiguous_unless_the_known_one_is_excluded(make: Make) -> None:
    h = await make()
    sent_at = h.clock.now()
    known = await h.client.trading.place("btc-mxn", Side.BUY, D("0.001"), D("1000000.00"))
    h.faults.script("drop_after", method="POST", path_prefix=PLACE)
    with pytest.raises(OutcomeUnknown):
        await h.client.trading.place("btc-mxn", Side.BUY, D("0.001"), D("1000000.00"))
    with pytest.raises(OutcomeUnknown, match="2 orders match"):
        await h.client.trading.find_order("btc-mxn", Side.BUY, D("1000000.00"), D("0.001"), sent_at)
    match = await h.client.trading.find_order("btc-mxn", Side.BUY, D("1000000.00"), D("0.001"), sent_at,
                                              exclude_ids={known})
    assert match is not None and match.order_id == max(h.sim.orders) != known


@pytest.mark.parametrize("kind", ["500", "503", "truncate", "bad_json", "drop_after"])
async def test_mutation_faults_are_outcome_unknown_and_never_retried(make: Make, kind: str) -> None:
    h = await make()
    order_id = await h.client.trading.place("btc-mxn", Side.BUY, D("0.001"), D("1000000.00"))
    h.faults.script(kind, method="POST", path_prefix=f"{API}/trading/cancel")
    with pytest.raises(OutcomeUnknown):
        await h.client.trading.cancel(order_id)
    h.faults.script(kind, method="POST", path_prefix=f"{API}/wallet/withdraw")
    with pytest.raises(OutcomeUnknown):
        await h.client.wallet.withdraw("btc", BTC_ADDR, D("0.01"))
    assert h.requests("/trading/cancel/buylimit") == 1 and h.requests("/wallet/withdraw") == 1
    assert h.client.http.metrics.retries == 0
    # Reading state tells what happened: 5xx faults answer before the handler, the others after it.
    applied = kind in ("truncate", "bad_json", "drop_after")
    assert (await h.client.trading.open_order(order_id) is None) == applied
    assert len(await h.client.wallet.withdrawals()) == (1 if applied else 0)


async def test_a_timeout_on_place_is_outcome_unknown_and_not_resent(make: Make) -> None:
    h = await make()
    impatient = h.client_for(timeouts=Timeouts(connect=2.0, total=0.5))
    await impatient.market.books()  # connect first: the timeout then hits after sending
    h.faults.configure(latency_s=1.5)
    h.faults.script("latency", method="POST", path_prefix=PLACE)
    with pytest.raises(OutcomeUnknown):
        await impatient.trading.place("btc-mxn", Side.BUY, D("0.001"), D("1000000.00"))
    assert h.requests("/trading/place/buylimit") == 1
