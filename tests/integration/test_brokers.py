"""Both brokers against the CoinBTR simulator over loopback HTTP, through the real client, on a manual clock.

`PaperBroker` reads the simulator's public market data and keeps its account in a real store: it must never
send a private request (the simulator's request counters prove it), fill crossing orders at the book's
levels as a taker, fill resting orders over several looks as the simulated market trades through them
(never more than `participation` of the estimated volume per look), and keep its balances equal to the
starting balances plus every fill minus every fee. `LiveBroker` is a thin pass-through to the account.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.cli import main
from bot.clients.coinbtr import CoinbtrClient, InsufficientFunds, OutsideLimits
from bot.clock import ManualClock
from bot.dirlock import state_lock
from bot.domain import Fill, Side
from bot.errors import NotFound, OutcomeUnknown
from bot.execution.broker import Broker
from bot.execution.live import LiveBroker
from bot.execution.paper import PaperBroker
from bot.execution.paper_account import PaperAccount
from bot.execution.paper_model import fee_amount
from bot.execution.snapshots import BOOK_MAX_AGE_S
from bot.sandbox import credentials as cred
from bot.sandbox.runner import Sandbox
from bot.settings import CoinbtrSettings, PaperSettings, load_settings
from bot.store import DB_NAME, Store

D = Decimal
M = "btc-mxn"
ROOT = Path(__file__).resolve().parents[2]
START = {"btc": D("1"), "mxn": D("2000000")}
PLACE = "/api/v1/trading/place"


@dataclass
class Rig:
    sb: Sandbox
    clock: ManualClock
    client: CoinbtrClient
    state_dir: Path
    stores: list[Store] = field(default_factory=list)

    def paper(self, participation: str = "0.5", balances: dict[str, Decimal] | None = None) -> PaperBroker:
        """A paper broker on the state dir's store (a new store each time: as after a restart)."""
        store = Store.open(self.state_dir, clock=self.clock)
        self.stores.append(store)
        return PaperBroker(self.client, store, self.clock,
                           PaperSettings(balances=balances or START, participation=D(participation)))

    def requests(self) -> dict[str, int]:
        return dict(self.sb.faults["coinbtr"].snapshot()["requests"])

    def assert_public_only(self) -> None:
        """Every request the simulator saw was a public market-data read."""
        sent = self.requests()
        assert sent and all(k.startswith("GET /api/v1/market/") for k in sent), sent


@pytest.fixture
async def rig(clock: ManualClock, tmp_path: Path) -> AsyncIterator[Rig]:
    async with Sandbox(clock) as sb:
        # The real trading token: were the paper broker to send a private request, it would be served
        # (and counted), not refused.
        settings = CoinbtrSettings(token=SecretStr(cred.COINBTR_TOKEN), requests_per_minute=10_000)
        async with CoinbtrClient.create(settings, clock, base_url=sb.urls["coinbtr"], rng=random.Random(1)) as client:
            r = Rig(sb, clock, client, tmp_path / "state")
            yield r
            for s in r.stores:
                s.close()


def expected_totals(fills: list[Fill]) -> dict[str, Decimal]:
    """Starting balances + every fill (bought base, paid quote; sold base, got quote) − every fee."""
    out: dict[str, Decimal] = defaultdict(Decimal, START)
    for f in fills:
        base, quote = f.market.split("-")
        sign = 1 if f.side is Side.BUY else -1
        out[base] += sign * f.amount
        out[quote] -= sign * f.amount * f.price
        out[f.fee_coin] -= f.fee_amount
    return dict(out)


async def totals(broker: Broker) -> dict[str, Decimal]:
    return {coin: b.total for coin, b in (await broker.balances()).items()}


def step(price: Decimal, places: str = "0.01") -> Decimal:
    return price.quantize(D(places), rounding=ROUND_DOWN)


# ---- paper: taker, maker, cancel ----------------------------------------------------------------------


async def test_a_crossing_paper_buy_fills_at_once_as_taker_at_the_books_prices(rig: Rig) -> None:
    paper = rig.paper()
    book = (await paper.books())[M]
    asks = (await rig.client.market.order_book(M)).asks
    amount = asks[0].amount + asks[1].amount + D("0.01")
    order_id = await paper.place(M, Side.BUY, asks[1].price, amount)

    fills = await paper.order_fills(M, order_id, rig.clock.now())
    assert [(f.price, f.amount, f.maker, f.fee_coin) for f in fills] == [
        (asks[0].price, asks[0].amount, False, "btc"), (asks[1].price, asks[1].amount, False, "btc")]
    assert [f.fee_amount for f in fills] == [fee_amount(f.amount, book.taker_fee, 8) for f in fills]
    (rest,) = await paper.open_orders(M)
    assert (rest.order_id, rest.amount, rest.filled) == (order_id, D("0.01"), asks[0].amount + asks[1].amount)
    balances = await paper.balances()
    assert balances["mxn"].frozen == D("0.01") * asks[1].price  # the rest, at its limit
    assert await totals(paper) == expected_totals(fills)
    rig.assert_public_only()


async def test_a_resting_paper_buy_fills_over_several_looks_within_participation(rig: Rig) -> None:
    paper = rig.paper(participation="0.3")
    book = (await paper.books())[M]
    ticker = await rig.client.market.ticker(M)
    price, amount = step(ticker.last), D("0.2")  # at the last price: below the ask, so it rests
    order_id = await paper.place(M, Side.BUY, price, amount)
    assert (await paper.open_orders())[0].filled == 0

    looks_with_fills, estimated, began = 0, D(0), rig.clock.now()
    for _ in range(240):
        before = rig.clock.now()
        rig.clock.advance(60)
        await paper.observe()
        look = paper.status()["last_look"][M]
        estimated += D(look["volume"])
        fills = await paper.order_fills(M, order_id, rig.clock.now())
        got = sum((f.amount for f in fills), D(0))
        assert got <= D("0.3") * D(look["volume"])  # never more than participation × volume per look
        if got:
            looks_with_fills += 1
            # The range between looks is estimated (samples widened by the median excursion of the
            # moves seen): the simulated market came at least close to the price in that look.
            truth = rig.sb.market.stats(M, before - timedelta(minutes=1), rig.clock.now())
            assert truth is not None and truth.low <= price * D("1.005")
        if not await paper.open_orders():
            break
    assert not await paper.open_orders(), "the buy should have filled within four simulated hours"
    truth = rig.sb.market.stats(M, began, rig.clock.now() - timedelta(seconds=1))
    assert truth is not None and truth.volume / 2 < estimated < truth.volume * 2  # the estimate tracks the market
    assert truth.low <= price  # and over the run the market did trade through the price
    fills = await paper.order_fills(M, order_id, rig.sb.clock.now() - timedelta(days=1))
    assert looks_with_fills >= 3 and sum(f.amount for f in fills) == amount
    assert all(f.maker and f.price == price and f.fee_amount == fee_amount(f.amount, book.maker_fee, 8)
               for f in fills)
    assert (await paper.balances())["mxn"].frozen == 0
    assert await totals(paper) == expected_totals(fills)
    rig.assert_public_only()


async def test_cancel_hands_the_frozen_rest_back_and_keeps_what_filled(rig: Rig) -> None:
    paper = rig.paper()
    asks = (await rig.client.market.order_book(M)).asks
    order_id = await paper.place(M, Side.BUY, asks[0].price, asks[0].amount + D("0.05"))
    assert (await paper.balances())["mxn"].frozen == D("0.05") * asks[0].price
    await paper.cancel(order_id)
    assert await paper.open_orders() == []
    balances = await paper.balances()
    assert balances["mxn"].frozen == 0 and balances["mxn"].available == START["mxn"] - asks[0].amount * asks[0].price
    fills = await paper.order_fills(M, order_id, rig.clock.now())
    assert sum(f.amount for f in fills) == asks[0].amount and await totals(paper) == expected_totals(fills)
    with pytest.raises(NotFound) as err:
        await paper.cancel(order_id)
    assert err.value.code == 1003
    rig.assert_public_only()


async def test_paper_refuses_like_the_exchange_and_changes_nothing(rig: Rig) -> None:
    paper = rig.paper()
    bid = (await rig.client.market.order_book(M)).bids[0].price
    with pytest.raises(InsufficientFunds) as funds:
        await paper.place(M, Side.BUY, bid, D("5"))  # 5 BTC of pesos: more than 2,000,000 MXN
    with pytest.raises(OutsideLimits) as limits:
        await paper.place(M, Side.BUY, bid, D("0.000000001"))  # below the amount step
    assert (funds.value.code, limits.value.code) == (1002, 1004)
    assert await paper.open_orders() == [] and await totals(paper) == START
    rig.assert_public_only()


# ---- paper: the invariant, restarts, reset --------------------------------------------------------------


async def test_paper_balances_equal_start_plus_fills_minus_fees_after_many_random_orders(rig: Rig) -> None:
    paper = rig.paper(participation="0.5")
    rng = random.Random(20261120)
    ids: list[int] = []
    refused = 0
    for _ in range(80):
        last = (await rig.client.market.ticker(M)).last
        side = rng.choice(list(Side))
        # Within ±0.3% of the last price: about a third cross the spread, the rest rest near the market.
        price = step(last * (1 + D(rng.randint(-30, 30)) / 10_000))
        amount = D(rng.randint(100_000, 5_000_000)) / 10**8
        try:
            ids.append(await paper.place(M, side, price, amount))
        except InsufficientFunds:
            refused += 1
        opened = await paper.open_orders()
        if opened and rng.random() < 0.2:
            await paper.cancel(rng.choice(opened).order_id)
        rig.clock.advance(rng.randint(10, 120))
        await paper.observe()
    since = rig.clock.now() - timedelta(days=1)
    fills = [f for i in ids for f in await paper.order_fills(M, i, since)]
    assert sum(f.maker for f in fills) >= 10 and sum(not f.maker for f in fills) >= 10 and len(ids) + refused == 80
    assert await totals(paper) == expected_totals(fills)  # to the last unit
    opened = await paper.open_orders()
    balances = await paper.balances()
    assert balances["mxn"].frozen == sum((o.amount * o.price for o in opened if o.side is Side.BUY), D(0))
    assert balances["btc"].frozen == sum((o.amount for o in opened if o.side is Side.SELL), D(0))
    rig.assert_public_only()


async def test_paper_state_survives_a_new_broker_on_the_same_store(rig: Rig) -> None:
    first = rig.paper()
    asks = (await rig.client.market.order_book(M)).asks
    crossing = await first.place(M, Side.BUY, asks[0].price, asks[0].amount + D("0.1"))
    resting = await first.place(M, Side.SELL, step(asks[0].price * D("1.001")), D("0.1"))
    rig.clock.advance(60)
    await first.observe()
    hour_ago = rig.clock.now() - timedelta(hours=1)
    state = (await first.balances(), await first.open_orders(), await first.order_fills(M, crossing, hour_ago))
    rig.stores[0].close()
    rig.stores.clear()

    again = rig.paper(balances={"btc": D("99")})  # the stored account wins over changed settings
    assert (await again.balances(), await again.open_orders(), await again.order_fills(M, crossing, hour_ago)) == state
    assert again.status()["balances"]["mxn"]["frozen"] == str(state[0]["mxn"].frozen)
    assert {o.order_id for o in state[1]} == {crossing, resting}
    restarted = rig.clock.now()
    for _ in range(30):  # it goes on filling the orders the first broker placed
        rig.clock.advance(60)
        await again.observe()
    later = [f for i in (crossing, resting) for f in await again.order_fills(M, i, restarted + timedelta(seconds=1))]
    assert later and all(f.maker for f in later)
    assert await again.place(M, Side.SELL, step(asks[0].price * 2), D("0.01")) > resting  # ids never reused
    rig.assert_public_only()


async def test_paper_reset_starts_over_and_is_refused_while_a_daemon_holds_the_state_dir(
        rig: Rig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = ROOT / "config" / "paper.toml"
    monkeypatch.setenv("TRADEBOT_STATE_DIR", str(rig.state_dir))
    start = load_settings(config).paper.balances
    paper = rig.paper()
    asks = (await rig.client.market.order_book(M)).asks
    await paper.place(M, Side.BUY, asks[0].price, asks[0].amount + D("0.1"))
    rig.stores[0].close()
    rig.stores.clear()

    lock = state_lock(rig.state_dir)
    lock.acquire()
    try:
        assert main(["paper-reset", "--config", str(config)]) == 2
        assert "stop it first" in capsys.readouterr().err
    finally:
        lock.release()
    assert main(["paper-reset", "--config", str(config)]) == 0
    assert "1 open paper order(s) cancelled" in capsys.readouterr().err

    store = Store(rig.state_dir / DB_NAME, clock=rig.clock)
    try:
        account = PaperAccount(store, rig.clock)
        assert account.open_orders() == [] and account.fills_since_start() == []
        assert {c: b.total for c, b in account.balances().items()} == start
    finally:
        store.close()


# ---- live -----------------------------------------------------------------------------------------------


async def test_live_broker_places_cancels_and_reads_orders_and_fills_on_the_account(rig: Rig) -> None:
    live = LiveBroker(rig.client, rig.clock)
    books = await live.books()
    assert M in books and rig.requests()["GET /api/v1/market/listbooks"] == 1
    await live.books()
    assert rig.requests()["GET /api/v1/market/listbooks"] == 1  # cached
    await live.books(refresh=True)
    assert rig.requests()["GET /api/v1/market/listbooks"] == 2

    t0 = rig.clock.now()
    ob = await live.order_book(M)
    crossing = await live.place(M, Side.BUY, ob.asks[0].price, ob.asks[0].amount)
    resting = await live.place(M, Side.BUY, step(ob.bids[0].price * D("0.9")), D("0.001"))
    assert isinstance(crossing, int) and isinstance(resting, int)
    fills = await live.order_fills(M, crossing, t0)
    assert [(f.price, f.amount, f.maker) for f in fills] == [(ob.asks[0].price, ob.asks[0].amount, False)]
    assert [o.order_id for o in await live.open_orders(M)] == [resting]
    await live.cancel(resting)
    assert await live.open_orders() == []
    with pytest.raises(NotFound):
        await live.cancel(resting)
    balances = await live.balances()
    assert balances["btc"].available == START["btc"] + ob.asks[0].amount - fills[0].fee_amount
    await live.observe()  # nothing to do live
    assert live.status() == {"kind": "live", "books_cached": len(books), "order_book_reads": 1,
                             "order_book_reused": 0}
    again = await live.order_book(M)  # the same moment: the answer read above, no request
    assert again is ob and rig.requests()["GET /api/v1/market/getorderbook"] == 1
    rig.clock.advance(BOOK_MAX_AGE_S + 0.5)
    await live.order_book(M)
    assert rig.requests()["GET /api/v1/market/getorderbook"] == 2


async def test_live_place_dropped_after_apply_is_outcome_unknown_and_find_order_finds_the_one_order(
        rig: Rig) -> None:
    live = LiveBroker(rig.client, rig.clock)
    bid = (await live.order_book(M)).bids[0].price
    price, amount, sent_at = step(bid * D("0.95")), D("0.002"), rig.clock.now()
    other = await live.place(M, Side.BUY, price, amount)  # the same intent, placed before and known
    rig.sb.faults["coinbtr"].script("drop_after", method="POST", path_prefix=PLACE)
    with pytest.raises(OutcomeUnknown):
        await live.place(M, Side.BUY, price, amount)
    assert rig.requests()[f"POST {PLACE}/buylimit"] == 2  # sent once, never resent
    found = await live.find_order(M, Side.BUY, price, amount, sent_at, exclude_ids={other})
    opened = {o.order_id for o in await live.open_orders(M)}
    assert found is not None and opened == {other, found}
    assert await live.find_order(M, Side.BUY, price, D("0.003"), sent_at) is None
