"""One CoinBTR budget shared by execution and the wallet watcher, checked from the simulator's side.

Over real loopback HTTP against the CoinBTR simulator (60 requests per rolling clock minute), with one
shared `CoinbtrClient`: a 5xx keeps the venue's error code, a lone 429 does not hold up other callers, and
cancels (CRITICAL) and places (HIGH) are never starved by balance reads (LOW) when both want more than
the budget. What the server saw comes from its own request log (`Faults.request_log`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bot.clients.coinbtr import CoinbtrClient
from bot.clock import ManualClock
from bot.domain import Side
from bot.errors import NotFound, OutcomeUnknown, RateLimited, TemporaryError
from bot.sandbox.coinbtr import CoinbtrSim, create_app, default_tokens
from bot.sandbox.credentials import COINBTR_BALANCES, COINBTR_TOKEN
from bot.sandbox.faults import Faults
from bot.sandbox.market import SimMarket
from bot.settings import CoinbtrSettings
from tests.conftest import T0

API = "/api/v1"
WINDOW = timedelta(seconds=60)
LIMIT = 60
FAR_BID = Decimal("1000000.00")  # rests on btc-mxn without filling


@dataclass
class Venue:
    client: CoinbtrClient
    sim: CoinbtrSim
    faults: Faults
    clock: ManualClock

    def arrivals(self, endpoint_suffix: str) -> list[datetime]:
        """Clock times at which the server received requests to the endpoint ending in the suffix."""
        return [t for t, endpoint in self.faults.request_log() if endpoint.endswith(endpoint_suffix)]


@pytest.fixture
async def venue(clock: ManualClock) -> AsyncIterator[Venue]:
    sim = CoinbtrSim(SimMarket(clock, seed=42, history_days=1), clock, default_tokens(), COINBTR_BALANCES,
                     requests_per_minute=LIMIT, seed=42)
    faults = Faults("coinbtr", seed=0, clock=clock)
    server = TestServer(create_app(sim, faults), host="127.0.0.1")
    await server.start_server()
    settings = CoinbtrSettings(base_url=str(server.make_url("")).rstrip("/"), token=SecretStr(COINBTR_TOKEN),
                               requests_per_minute=LIMIT)
    client = CoinbtrClient.create(settings, clock, rng=random.Random(5))
    yield Venue(client, sim, faults, clock)
    await client.close()
    await server.close()


async def until(condition: Callable[[], bool], turns: int = 10_000) -> None:
    """Let the event loop run until `condition()` holds (event-loop turns, never wall-clock sleeps)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def busiest_window(times: list[datetime]) -> int:
    """The most requests in any rolling window `(t - 60 s, t]`, the simulator's own rule."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - WINDOW:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# ------------------------------------------------------------------------------------------- error codes


async def test_a_5xx_keeps_the_venues_error_code(venue: Venue) -> None:
    venue.faults.script("500", count=10, path_prefix=f"{API}/wallet/listbalances")
    with pytest.raises(TemporaryError) as read:
        await venue.client.wallet.balances()  # retried, then given up: the last 500's code is kept
    assert (read.value.status, read.value.code) == (500, 1500)
    venue.faults.script("500", method="POST", path_prefix=f"{API}/trading/place")
    with pytest.raises(OutcomeUnknown) as place:
        await venue.client.trading.place("btc-mxn", Side.BUY, Decimal("0.001"), FAR_BID)
    assert (place.value.status, place.value.code) == (500, 1500)
    venue.faults.script("502", count=10)  # a proxy's HTML page has no code to keep
    with pytest.raises(TemporaryError) as proxy:
        await venue.client.market.books()
    assert (proxy.value.status, proxy.value.code) == (502, None)


async def test_a_429_keeps_the_rate_limit_code(venue: Venue) -> None:
    venue.faults.script("429", count=10, path_prefix=f"{API}/wallet/listbalances")
    with pytest.raises(RateLimited) as err:
        await venue.client.wallet.balances()
    assert (err.value.status, err.value.code) == (429, 1005)


# ------------------------------------------------------------------------------------------------- 429


async def test_one_429_does_not_delay_a_concurrent_caller_beyond_its_normal_slot(venue: Venue) -> None:
    venue.faults.script("429", path_prefix=f"{API}/wallet/listbalances")  # once, without Retry-After
    watcher = asyncio.create_task(venue.client.wallet.balances())
    await until(lambda: venue.client.http.metrics.retries == 1)  # the watcher is backing off its 429
    for _ in range(3):  # execution meanwhile: the budget has room, so each goes at once
        await venue.client.trading.open_orders()
    assert len(await watcher) == 3
    lookups = venue.arrivals("/trading/listopenorders")
    assert len(lookups) == 3 and max(lookups) - T0 < timedelta(seconds=1)
    assert venue.client.snapshot()["limiter"]["pauses"] == 0
    assert len(venue.arrivals("/wallet/listbalances")) == 2  # the 429 and its retry


# ------------------------------------------------------------------------------------------ shared budget


async def test_execution_and_a_greedy_wallet_watcher_share_one_budget_and_cancels_go_first(
    venue: Venue, clock: ManualClock,
) -> None:
    end = T0 + timedelta(minutes=8)
    cancel_calls: list[datetime] = []
    place_calls: list[datetime] = []

    async def execution() -> None:
        while clock.now() < end:
            place_calls.append(clock.now())
            order_id = await venue.client.trading.place("btc-mxn", Side.BUY, Decimal("0.001"), FAR_BID)
            cancel_calls.append(clock.now())
            with suppress(NotFound):  # filled in between: not what this test is about
                await venue.client.trading.cancel(order_id)

    async def watcher_worker() -> None:
        while clock.now() < end:
            await venue.client.wallet.balances()

    # The watcher keeps twice the whole budget's worth of reads queued; execution wants a slot each time.
    await asyncio.gather(execution(), *(watcher_worker() for _ in range(2 * LIMIT)))

    log = venue.faults.request_log()
    private = [t for t, endpoint in log if "/market/" not in endpoint]
    assert busiest_window(private) <= LIMIT
    assert venue.faults.snapshot()["sent_429"] == 0 and venue.client.snapshot()["rate_limited"] == 0
    places, cancels = venue.arrivals("/trading/place/buylimit"), venue.arrivals("/trading/cancel/buylimit")
    balance_reads = venue.arrivals("/wallet/listbalances")
    assert len(cancels) == len(cancel_calls) >= 4 and len(places) == len(place_calls)
    assert len(balance_reads) > 5 * len(cancels)  # the watcher got the rest of the budget
    # Never starved: every place and cancel reached the server at the first slot that freed, i.e. within
    # one window of being called, although 120 balance reads were always queued ahead of it.
    waits = [arrived - called for called, arrived in zip(place_calls + cancel_calls, places + cancels,
                                                         strict=True)]
    assert max(waits) <= WINDOW + timedelta(seconds=0.1)
    for called, arrived in zip(cancel_calls, cancels, strict=True):
        overtook = [t for t in balance_reads if called < t < arrived]
        assert overtook == []  # no balance read queued after the cancel was called went before it
