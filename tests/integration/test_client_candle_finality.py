"""Closed means closed: Atmos and sFOX candles are final only when they ended a settle margin before the
request was *sent*, never because the answer happened to arrive after the boundary.

Each simulator runs over real loopback HTTP with one extra middleware that, when armed, lets the handler
answer and then moves the shared `ManualClock` to a later instant before the response goes back, the way
a slow answer crosses a minute boundary.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler
from pydantic import SecretStr

from bot.clients.atmos import AtmosClient
from bot.clients.base import CANDLE_SETTLE, candle_partial
from bot.clients.sfox import SfoxClient
from bot.clock import ManualClock
from bot.sandbox import atmos as atmos_sim
from bot.sandbox import sfox as sfox_sim
from bot.sandbox.faults import Faults
from bot.sandbox.market import SimMarket
from bot.settings import AtmosSettings, SfoxSettings
from tests.conftest import T0

ATMOS_KEY = "sandbox-atmos-key"
MINUTE = timedelta(minutes=1)


@dataclass
class SlowAnswers:
    """Middleware state: when `answer_at` is set, the next answer reaches the client at that clock time."""

    clock: ManualClock
    answer_at: datetime | None = None
    crossed: list[datetime] = field(default_factory=list)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)  # the venue's snapshot is as of now
        if self.answer_at is not None:
            self.clock.set(self.answer_at)  # ... but the answer arrives later
            self.crossed.append(self.answer_at)
            self.answer_at = None
        return response


Start = Callable[[str], Awaitable[tuple[AtmosClient | SfoxClient, SlowAnswers]]]


@pytest.fixture
async def start(clock: ManualClock) -> AsyncIterator[Start]:
    servers: list[TestServer] = []
    clients: list[AtmosClient | SfoxClient] = []

    async def run(service: str) -> tuple[AtmosClient | SfoxClient, SlowAnswers]:
        slow = SlowAnswers(clock)
        client: AtmosClient | SfoxClient
        if service == "atmos":
            sim = atmos_sim.AtmosSim(SimMarket(clock, seed=42), clock, {ATMOS_KEY}, requests_per_minute=20)
            app = atmos_sim.create_app(sim, Faults("atmos", clock=clock))
        else:
            app = sfox_sim.create_app(sfox_sim.SfoxSim(SimMarket(clock, seed=42), clock, requests_per_minute=60),
                                      Faults("sfox", clock=clock))
        app.middlewares.append(slow.middleware)  # innermost: runs after the handler answered
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        url = str(server.make_url("")).rstrip("/")
        if service == "atmos":
            client = AtmosClient.create(AtmosSettings(base_url=url, api_key=SecretStr(ATMOS_KEY)), clock,
                                        rng=random.Random(1))
        else:
            client = SfoxClient.create(SfoxSettings(base_url=url, api_key=SecretStr("")), clock,
                                       rng=random.Random(1))
        clients.append(client)
        return client, slow

    yield run
    for c in clients:
        await c.close()
    for s in servers:
        await s.close()


async def test_atmos_answer_arriving_after_the_boundary_does_not_close_the_running_minute(
    start: Start, clock: ManualClock,
) -> None:
    client, slow = await start("atmos")
    assert isinstance(client, AtmosClient)
    clock.set(T0 + timedelta(seconds=59.5))  # sent half a second before 12:01
    slow.answer_at = T0 + MINUTE + timedelta(seconds=0.5)  # arrives half a second after it
    tick = await client.latest("binance", "BTCUSDT")
    assert slow.crossed and clock.now() > T0 + MINUTE
    assert tick.time == T0 and tick.partial  # the venue's 12:00 was still running when it answered

    clock.set(T0 + timedelta(seconds=58))
    slow.answer_at = T0 + MINUTE + timedelta(seconds=3)
    history = await client.history("binance", "BTCUSDT", T0 - timedelta(minutes=5), T0)
    assert history[-1].time == T0 and history[-1].partial
    assert not any(c.partial for c in history[:-1])


async def test_atmos_minute_is_final_only_a_settle_margin_after_it_ended(start: Start, clock: ManualClock) -> None:
    client, _slow = await start("atmos")
    assert isinstance(client, AtmosClient)
    clock.set(T0 + MINUTE + timedelta(seconds=1))  # ended a second ago: the venue may still amend it
    (just_ended,) = await client.history("binance", "BTCUSDT", T0, T0)
    assert just_ended.partial
    clock.set(T0 + MINUTE + CANDLE_SETTLE)
    (settled,) = await client.history("binance", "BTCUSDT", T0, T0)
    assert not settled.partial


async def test_sfox_answer_arriving_after_the_boundary_does_not_close_the_running_candle(
    start: Start, clock: ManualClock,
) -> None:
    client, slow = await start("sfox")
    assert isinstance(client, SfoxClient)
    five = timedelta(minutes=5)
    clock.set(T0 + five - timedelta(seconds=0.1))  # sent inside the 12:00 five-minute candle
    slow.answer_at = T0 + five + timedelta(seconds=5)
    candles = await client.candles("btcusd", T0 - timedelta(hours=1), clock.now(), period=300)
    assert slow.crossed
    assert candles[-1].time == T0 and candles[-1].partial
    assert not any(c.partial for c in candles[:-1])
    clock.set(T0 + five + CANDLE_SETTLE)
    again = await client.candles("btcusd", T0, T0, period=300)
    assert [(c.time, c.partial) for c in again] == [(T0, False)]


@pytest.mark.parametrize(
    ("sent_after_end_s", "partial"),
    [(-30.0, True), (-0.001, True), (0.0, True), (1.999, True), (2.0, False), (90.0, False)],
)
def test_candle_partial_until_the_settle_margin_after_its_end(sent_after_end_s: float, partial: bool) -> None:
    sent_at = T0 + MINUTE + timedelta(seconds=sent_after_end_s)
    assert candle_partial(T0, 60, sent_at) is partial
