"""`TradingApi.order_fills` against the CoinBTR simulator over loopback HTTP, on a manual clock.

The exchange forgets a closed order (`listopenorders` no longer lists it); only its transactions remember
what it filled. `order_fills` reads them page by page (the simulator serves `page_size` fills per answer,
the oldest at or after `since`), keeps one order's, and returns each fill once.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bot.clients.coinbtr import CoinbtrClient
from bot.clock import ManualClock
from bot.domain import Fill, Side
from bot.sandbox.coinbtr import CoinbtrSim, create_app, default_tokens
from bot.sandbox.credentials import COINBTR_BALANCES, COINBTR_TOKEN
from bot.sandbox.faults import Faults
from bot.sandbox.market import SimMarket
from bot.settings import CoinbtrSettings

D = Decimal
TRANSACTIONS = "/api/v1/trading/listtransactions"


@dataclass
class Harness:
    client: CoinbtrClient
    sim: CoinbtrSim
    faults: Faults
    clock: ManualClock

    def transaction_requests(self) -> int:
        snap = self.faults.snapshot()
        return int(sum(v for k, v in snap["requests"].items() if k.endswith(TRANSACTIONS)))

    def sim_fills(self, order_id: int) -> list[tuple[int, Decimal, Decimal, bool]]:
        """The simulator's own record of an order's fills, oldest first: (id, price, amount, maker)."""
        fills = sorted((f for f in self.sim.fills if f.order_id == order_id), key=lambda f: (f.created_at, f.id))
        return [(f.id, f.price, f.amount, f.maker) for f in fills]


def seen(fills: list[Fill]) -> list[tuple[int, Decimal, Decimal, bool]]:
    return [(f.id, f.price, f.amount, f.maker) for f in fills]


@pytest.fixture
async def harness(clock: ManualClock) -> AsyncIterator[Harness]:
    sim = CoinbtrSim(SimMarket(clock, seed=42, history_days=2), clock, default_tokens(), COINBTR_BALANCES,
                     seed=42, withdrawal_failure_rate=0.0)
    faults = Faults("coinbtr", seed=0, clock=clock)
    server = TestServer(create_app(sim, faults), host="127.0.0.1")
    await server.start_server()
    settings = CoinbtrSettings(base_url=str(server.make_url("")).rstrip("/"), token=SecretStr(COINBTR_TOKEN))
    client = CoinbtrClient.create(settings, clock, rng=random.Random(1))
    yield Harness(client, sim, faults, clock)
    await client.close()
    await server.close()


Place = Callable[[], Awaitable[int]]


async def crossing_buy(h: Harness, extra: str = "0.03") -> int:
    """A buy at the best ask for more than the level holds: a taker fill now, the rest rests at the ask
    (just above the market), where later minutes fill it as a maker, a share of each minute's volume."""
    ask = (await h.client.market.order_book("btc-mxn")).asks[0]
    return await h.client.trading.place("btc-mxn", Side.BUY, ask.amount + D(extra), ask.price)


async def test_an_order_filled_partly_over_several_minutes_gets_each_fill_once(harness: Harness) -> None:
    h = harness
    placed_at = h.clock.now()
    order_id = await crossing_buy(h)
    # Another order in the same market fills too; its fills are not this order's.
    last = (await h.client.market.ticker("btc-mxn")).last
    other = await h.client.trading.place("btc-mxn", Side.SELL, D("0.02"), last)
    counts = []
    for _ in range(8):
        fills = await h.client.trading.order_fills("btc-mxn", str(order_id), placed_at)
        assert seen(fills) == h.sim_fills(order_id)  # each fill once, oldest first, exact amounts
        assert all(f.order_id == order_id and f.market == "btc-mxn" and f.side is Side.BUY for f in fills)
        counts.append(len(fills))
        h.clock.advance(60)
    order = await h.client.trading.open_order(order_id)
    assert order is not None and D(0) < order.amount < order.initial_amount  # open and partly filled
    assert counts[0] == 1 and counts[-1] >= 3 and counts == sorted(counts)  # fills arrived over minutes
    assert [f.maker for f in fills] == [False] + [True] * (len(fills) - 1)  # taker at placement, then maker
    assert sum(f.amount for f in fills) == order.filled
    assert h.sim_fills(other) and not {f.id for f in fills} & {i for i, *_ in h.sim_fills(other)}
    # Once cancelled the exchange forgets the order; its fills are still all there, once each.
    await h.client.trading.cancel(order_id)
    assert await h.client.trading.open_order(order_id) is None
    after = await h.client.trading.order_fills("btc-mxn", order_id, placed_at)
    assert seen(after) == h.sim_fills(order_id) and sum(f.amount for f in after) == order.filled


async def test_an_order_without_fills_has_none(harness: Harness) -> None:
    h = harness
    placed_at = h.clock.now()
    resting = await h.client.trading.place("btc-mxn", Side.BUY, D("0.001"), D("1000000.00"))  # far below
    await crossing_buy(h)  # the market has fills, of another order
    h.clock.advance(300)
    assert await h.client.trading.transactions("btc-mxn")
    before = h.transaction_requests()
    assert await h.client.trading.order_fills("btc-mxn", str(resting), placed_at) == []
    # One page; its newest instant again (nothing new); a millisecond past it (nothing at all).
    assert h.transaction_requests() - before == 3
    assert await h.client.trading.order_fills("eth-mxn", str(resting), placed_at) == []  # another market


async def test_more_fills_than_one_page_are_all_returned(harness: Harness) -> None:
    h = harness
    h.sim.engine.page_size = 2
    placed_at = h.clock.now()
    order_id = await crossing_buy(h)
    last = (await h.client.market.ticker("btc-mxn")).last
    await h.client.trading.place("btc-mxn", Side.SELL, D("0.02"), last)  # interleaved fills of another order
    h.clock.advance(15 * 60)
    h.sim.process()  # the simulator brings fills up to date on every request; do it before peeking
    expected = h.sim_fills(order_id)
    assert len(expected) >= 5
    page = await h.client.trading.transactions("btc-mxn", since=placed_at)
    assert len(page) < len(h.sim.fills)  # one answer is one page (two fills, or one instant's fills)
    before = h.transaction_requests()
    fills = await h.client.trading.order_fills("btc-mxn", order_id, placed_at)
    assert seen(fills) == expected
    assert len({f.id for f in fills}) == len(fills)
    pages = h.transaction_requests() - before
    instants = len({f.created_at for f in h.sim.fills})
    assert instants <= pages <= 2 * instants + 1  # page by page: each instant at most asked twice
    # Both orders filled in the same minutes, stamped alike: an instant filled a whole page, and the walk
    # stepped past it rather than asking for the same page again.
    per_instant = Counter(f.created_at for f in h.sim.fills)
    assert max(per_instant.values()) >= h.sim.engine.page_size
    # A later `since` starts the walk there: only the fills from then on.
    later = fills[2].created_at
    assert seen(await h.client.trading.order_fills("btc-mxn", order_id, later,
                                                   clock_skew=timedelta(0))) == expected[2:]
