"""`SfoxClient` against the sFOX simulator over loopback HTTP: splitting, quirks, 429 and faults."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bot.clients.sfox import SfoxClient
from bot.clock import ManualClock
from bot.domain import Candle
from bot.errors import MalformedResponse, NotFound, TemporaryError
from bot.sandbox.faults import Faults
from bot.sandbox.market import SimMarket
from bot.sandbox.sfox import SfoxSim, create_app
from bot.settings import SfoxSettings

PAIR = "btcusd"


@dataclass
class Harness:
    sim: SfoxSim
    faults: Faults
    clock: ManualClock
    url: str
    client: SfoxClient

    def truth(self, start: datetime, end: datetime, period: int = 60) -> list[int]:
        """Start times of the candles the sim has in [start, end] (what the client must return)."""
        rows = self.sim.candles(PAIR, int(start.timestamp()), int(end.timestamp()), period)
        return [r["start_time"] for r in rows if start.timestamp() <= r["start_time"] <= end.timestamp()]

    def sim_requests(self) -> int:
        return int(self.faults.snapshot()["requests_total"])

    def statuses(self) -> dict[str, int]:
        return dict(self.faults.snapshot()["statuses"])


Make = Callable[..., Awaitable[Harness]]


def _client(url: str, clock: ManualClock, key: str = "", rpm: int = 60) -> SfoxClient:
    settings = SfoxSettings(base_url=url, api_key=SecretStr(key), requests_per_minute=rpm)
    return SfoxClient.create(settings, clock, rng=random.Random(2))


@pytest.fixture
async def make(clock: ManualClock) -> AsyncIterator[Make]:
    """Start an sFOX simulator (limit `server_rpm`) and a client (limit `rpm`, optional key)."""
    servers: list[TestServer] = []
    clients: list[SfoxClient] = []

    async def start(rpm: int = 60, server_rpm: int = 60, key: str = "") -> Harness:
        sim = SfoxSim(SimMarket(clock, seed=42), clock, requests_per_minute=server_rpm)
        faults = Faults("sfox", clock=clock)
        server = TestServer(create_app(sim, faults), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        url = str(server.make_url("")).rstrip("/")
        client = _client(url, clock, key, rpm)
        clients.append(client)
        return Harness(sim, faults, clock, url, client)

    yield start
    for c in clients:
        await c.close()
    for s in servers:
        await s.close()


def _times(candles: list[Candle]) -> list[int]:
    return [int(c.time.timestamp()) for c in candles]


async def test_candles_match_the_sim_with_gaps_kept(make: Make, clock: ManualClock) -> None:
    h = await make()
    start, end = clock.now() - timedelta(hours=6), clock.now() - timedelta(minutes=1)
    candles = await h.client.candles(PAIR, start, end)
    assert _times(candles) == h.truth(start, end)
    assert h.sim_requests() == 1
    c = candles[0]
    assert isinstance(c.open, Decimal) and isinstance(c.vwap, Decimal) and c.period == 60
    assert isinstance(c.trades, int) and not c.partial


async def test_long_range_is_split_into_requests_of_at_most_500_candles(make: Make,
                                                                       clock: ManualClock) -> None:
    h = await make()
    start, end = clock.now() - timedelta(days=7), clock.now()
    candles = await h.client.candles(PAIR, start, end)
    assert _times(candles) == h.truth(start, end)
    assert len(candles) > 9000
    assert h.sim_requests() == 21  # 10,081 one-minute candles / 500
    assert h.statuses() == {"200": 21}  # none rejected for being too long
    assert h.faults.snapshot()["sent_429"] == 0


@pytest.mark.parametrize(("period", "days", "requests"), [(300, 3, 2), (3600, 7, 1), (86400, 8, 1)])
async def test_other_periods(make: Make, clock: ManualClock, period: int, days: int, requests: int) -> None:
    h = await make()
    start, end = clock.now() - timedelta(days=days), clock.now()
    candles = await h.client.candles(PAIR, start, end, period=period)
    assert _times(candles) == h.truth(start, end, period)
    assert all(c.period == period for c in candles)
    assert h.sim_requests() == requests


async def test_candle_preceding_start_time_is_filtered(make: Make, clock: ManualClock) -> None:
    h = await make()
    start = datetime(2026, 11, 20, 9, 2, 30, tzinfo=UTC)  # inside the 09:00 five-minute candle
    end = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    raw = h.sim.candles(PAIR, int(start.timestamp()), int(end.timestamp()), 300)
    assert raw[0]["start_time"] < start.timestamp(), "the quirk was not exercised"
    candles = await h.client.candles(PAIR, start, end, period=300)
    assert candles[0].time == datetime(2026, 11, 20, 9, 5, tzinfo=UTC)
    assert candles[-1].time == end


async def test_newest_candle_is_partial_while_its_period_runs(make: Make, clock: ManualClock) -> None:
    h = await make()
    clock.advance(125)  # 12:02:05, inside the 12:00 five-minute candle
    candles = await h.client.candles(PAIR, clock.now() - timedelta(hours=1), clock.now(), period=300)
    assert candles[-1].time == datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert candles[-1].partial
    assert not any(c.partial for c in candles[:-1])


async def test_key_is_optional_and_sent_as_bearer(make: Make, clock: ManualClock) -> None:
    h = await make(key="sandbox-sfox-key")
    start, end = clock.now() - timedelta(hours=1), clock.now()
    with_key = await h.client.candles(PAIR, start, end)
    async with _client(h.url, clock) as anonymous:
        without = await anonymous.candles(PAIR, start, end)
    assert _times(with_key) == _times(without) == h.truth(start, end)


async def test_unknown_pair_is_not_found_and_bad_period_is_refused_locally(make: Make,
                                                                          clock: ManualClock) -> None:
    h = await make()
    with pytest.raises(NotFound):
        await h.client.candles("dogeusd", clock.now() - timedelta(hours=1), clock.now())
    with pytest.raises(ValueError):
        await h.client.candles(PAIR, clock.now() - timedelta(hours=1), clock.now(), period=120)
    assert h.sim_requests() == 1


async def test_empty_or_reversed_range_costs_nothing(make: Make, clock: ManualClock) -> None:
    h = await make()
    assert await h.client.candles(PAIR, clock.now(), clock.now() - timedelta(hours=1)) == []
    assert h.sim_requests() == 0


# --------------------------------------------------------------------------------------------- 429


async def test_tight_server_limit_is_respected_by_the_client_budget(make: Make) -> None:
    h = await make(rpm=5, server_rpm=5)
    end = h.clock.now()
    start = end - timedelta(days=5)
    candles = await h.client.candles(PAIR, start, end)
    assert _times(candles) == h.truth(start, end)
    assert h.faults.snapshot()["sent_429"] == 0
    assert h.client.snapshot()["limiter"]["waits"] >= 2


async def test_real_429_honours_retry_after(make: Make, clock: ManualClock) -> None:
    h = await make(server_rpm=3, key="shared")
    async with _client(h.url, clock, key="shared", rpm=1000) as greedy:
        for _ in range(3):
            await greedy.candles(PAIR, clock.now() - timedelta(minutes=5), clock.now())
    before = clock.now()
    await h.client.candles(PAIR, clock.now() - timedelta(minutes=5), clock.now())
    assert h.faults.snapshot()["sent_429"] == 1
    assert h.client.snapshot()["rate_limited"] == 1
    assert clock.now() - before >= timedelta(seconds=59)  # Retry-After said about a minute


async def test_scripted_429_recovers(make: Make, clock: ManualClock) -> None:
    h = await make()
    h.faults.script("429", count=2)
    candles = await h.client.candles(PAIR, clock.now() - timedelta(hours=1), clock.now())
    assert candles and h.sim_requests() == 3
    assert h.client.snapshot()["rate_limited"] == 2


# --------------------------------------------------------------------------------------------- faults


@pytest.mark.parametrize(("kind", "count"), [("5xx", 3), ("502", 1), ("drop_before", 2),
                                              ("truncate", 1), ("bad_json", 2), ("latency", 1)])
async def test_read_faults_are_retried(make: Make, clock: ManualClock, kind: str, count: int) -> None:
    h = await make()
    start, end = clock.now() - timedelta(hours=2), clock.now()
    h.faults.script(kind, count=count)
    candles = await h.client.candles(PAIR, start, end)
    assert _times(candles) == h.truth(start, end)


async def test_persistent_bad_json_is_malformed(make: Make, clock: ManualClock) -> None:
    h = await make()
    h.faults.script("bad_json", count=10)
    with pytest.raises(MalformedResponse) as err:
        await h.client.candles(PAIR, clock.now() - timedelta(hours=1), clock.now())
    assert err.value.service == "sfox" and err.value.status == 200
    assert h.sim_requests() == 4


async def test_outage_is_temporary_error(make: Make, clock: ManualClock) -> None:
    h = await make()
    h.faults.add_outage(clock.now(), clock.now() + timedelta(hours=1), mode="drop")
    with pytest.raises(TemporaryError):
        await h.client.candles(PAIR, clock.now() - timedelta(hours=1), clock.now())
