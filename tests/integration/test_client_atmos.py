"""`AtmosClient` against the Atmos simulator over loopback HTTP: endpoints, quirks and every fault kind."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bot.clients.atmos import AtmosClient
from bot.clock import ManualClock
from bot.domain import Candle
from bot.errors import AuthError, MalformedResponse, NotFound, TemporaryError
from bot.sandbox.atmos import AtmosSim, create_app
from bot.sandbox.faults import Faults
from bot.sandbox.market import SimMarket
from bot.settings import AtmosSettings

KEY = "sandbox-atmos-key"
EX, SYM = "binance", "BTCUSDT"


@dataclass
class Harness:
    client: AtmosClient
    sim: AtmosSim
    faults: Faults
    clock: ManualClock
    url: str

    def client_for(self, key: str = KEY, rpm: int = 20) -> AtmosClient:
        settings = AtmosSettings(base_url=self.url, api_key=SecretStr(key), requests_per_minute=rpm)
        return AtmosClient.create(settings, self.clock, rng=random.Random(1))

    def truth(self, start: datetime, end: datetime, exchange: str = EX, symbol: str = SYM) -> list[int]:
        """Unix times of the bars the market has in [start, end] (what the client must return)."""
        rows = self.sim.market.rows(f"{exchange}:{symbol}", start.timestamp(), end.timestamp())
        return [r[0] for r in rows]

    def sim_requests(self) -> int:
        return int(self.faults.snapshot()["requests_total"])

    def sent_429(self) -> int:
        return int(self.faults.snapshot()["sent_429"])


Make = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make(clock: ManualClock) -> AsyncIterator[Make]:
    """Start an Atmos simulator (server limit `server_rpm`) and a client (limit `rpm`) on one clock."""
    servers: list[TestServer] = []
    clients: list[AtmosClient] = []

    async def start(rpm: int = 20, server_rpm: int = 20) -> Harness:
        sim = AtmosSim(SimMarket(clock, seed=42), clock, {KEY, "other-key"}, requests_per_minute=server_rpm)
        faults = Faults("atmos", clock=clock)
        server = TestServer(create_app(sim, faults), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        url = str(server.make_url("")).rstrip("/")
        h = Harness(None, sim, faults, clock, url)  # type: ignore[arg-type]
        h.client = h.client_for(rpm=rpm)
        clients.append(h.client)
        return h

    yield start
    for c in clients:
        await c.close()
    for s in servers:
        await s.close()


def _times(candles: list[Candle]) -> list[int]:
    return [int(c.time.timestamp()) for c in candles]


# --------------------------------------------------------------------------------------------- endpoints


async def test_pairs_lists_symbols_per_exchange(make: Make) -> None:
    h = await make()
    for exchange in ("binance", "kraken", "coinbase"):
        pairs = await h.client.pairs(exchange)
        assert "BTCUSDT" in pairs and all(isinstance(p, str) for p in pairs)


async def test_unknown_exchange_and_symbol_are_not_found_and_not_retried(make: Make) -> None:
    h = await make()
    with pytest.raises(NotFound) as err:
        await h.client.pairs("mtgox")
    assert err.value.status == 404 and err.value.service == "atmos"
    with pytest.raises(NotFound):
        await h.client.latest(EX, "NOPEUSD")
    assert h.sim_requests() == 2


async def test_bad_key_is_an_auth_error_without_the_key_in_it(make: Make) -> None:
    h = await make()
    async with h.client_for(key="wrong-secret-key") as bad:
        with pytest.raises(AuthError) as err:
            await bad.pairs(EX)
    assert err.value.status == 401
    assert "wrong-secret-key" not in str(err.value)
    assert h.sim_requests() == 1


async def test_history_matches_the_market_exactly_with_gaps_kept(make: Make, clock: ManualClock) -> None:
    h = await make()
    clock.advance(30)  # 12:00:30: the 12:00 minute is running
    start, end = clock.now() - timedelta(hours=12), clock.now()
    candles = await h.client.history("kraken", "ETHUSDT", start, end)
    truth = h.truth(start, end, "kraken", "ETHUSDT")
    assert _times(candles) == truth
    assert len(truth) < 12 * 60 + 1  # kraken has empty minutes: they stay missing
    assert all(b.time - a.time >= timedelta(minutes=1) for a, b in itertools.pairwise(candles))
    assert [c.partial for c in candles].count(True) == 1 and candles[-1].partial
    assert all(isinstance(c.close, Decimal) and c.period == 60 for c in candles)


async def test_history_filters_buckets_to_the_range(make: Make, clock: ManualClock) -> None:
    h = await make()
    start = datetime(2026, 11, 19, 9, 17, 0, tzinfo=UTC)  # mid-bucket at both ends
    end = datetime(2026, 11, 19, 10, 41, 0, tzinfo=UTC)
    candles = await h.client.history(EX, SYM, start, end)
    assert candles[0].time >= start and candles[-1].time <= end
    assert _times(candles) == h.truth(start, end)
    assert not any(c.partial for c in candles)
    assert h.sim_requests() == 1


async def test_seven_days_cost_at_most_three_requests_and_no_429(make: Make, clock: ManualClock) -> None:
    h = await make()
    start, end = clock.now() - timedelta(days=7), clock.now()
    candles = await h.client.history(EX, SYM, start, end)
    assert _times(candles) == h.truth(start, end)
    assert len(candles) > 9000
    assert h.sim_requests() <= 3
    assert h.sent_429() == 0


async def test_ticks_repeated_across_pages_are_deduplicated(make: Make, clock: ManualClock) -> None:
    # A client limit of 1/min makes the client wait about a minute between pages; the clock is set so a
    # new bucket opens during that wait, which shifts page 1 by one bucket onto page 0's last one.
    h = await make(rpm=1)
    offset = h.sim.grid_offset(EX, SYM)
    boundary = clock.now().replace(minute=offset) + timedelta(hours=1)
    clock.set(boundary - timedelta(seconds=20))
    start, end = clock.now() - timedelta(days=5), clock.now() + timedelta(hours=2)
    page0 = h.sim.buckets(EX, SYM, limit=100, page=0, start=start, end=end)
    candles = await h.client.history(EX, SYM, start, end)
    page1 = h.sim.buckets(EX, SYM, limit=100, page=1, start=start, end=end)
    repeated = {t["time"] for b in page0 for t in b["ticks"]} & {t["time"] for b in page1 for t in b["ticks"]}
    assert repeated, "the quirk was not exercised"
    times = _times(candles)
    assert times == sorted(set(times))
    assert times == [t for t in h.truth(start, end) if t < boundary.timestamp() - 20]
    assert h.sent_429() == 0


async def test_latest_is_partial_until_its_minute_ends(make: Make, clock: ManualClock) -> None:
    h = await make()
    clock.advance(20)
    first = await h.client.latest(EX, SYM)
    clock.advance(25)
    again = await h.client.latest(EX, SYM)
    assert first.time == again.time == datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert first.partial and again.partial
    assert (first.trades, first.volume) != (again.trades, again.volume)  # the running minute moved on
    clock.advance(60)
    closed = await h.client.history(EX, SYM, first.time, first.time)
    assert len(closed) == 1 and not closed[0].partial


# --------------------------------------------------------------------------------------------- rate limit


async def test_normal_running_never_gets_429(make: Make, clock: ManualClock) -> None:
    h = await make()
    for _ in range(65):
        await h.client.latest(EX, SYM)
    assert h.sent_429() == 0
    assert h.sim_requests() == 65
    snap = h.client.snapshot()
    assert snap["rate_limited"] == 0 and snap["limiter"]["waits"] >= 3
    assert clock.now() > datetime(2026, 11, 20, 12, 3, tzinfo=UTC)  # 65 requests need over 3 windows


async def test_a_lone_429_without_retry_after_backs_off_only_that_request(make: Make, clock: ManualClock) -> None:
    h = await make()
    h.faults.script("429", count=1)
    before = clock.now()
    tick = await h.client.latest(EX, SYM)
    assert tick.time <= clock.now()
    snap = h.client.snapshot()
    assert snap["rate_limited"] == 1 and snap["limiter"]["pauses"] == 0
    assert h.sim_requests() == 2
    assert clock.now() - before < timedelta(seconds=2)  # a jittered backoff, not a whole window


async def test_real_429_from_a_shared_key_backs_off_without_hammering(make: Make, clock: ManualClock) -> None:
    h = await make()
    async with h.client_for(rpm=1000) as greedy:  # another process on the same key, ignoring the budget
        for _ in range(20):
            await greedy.pairs(EX)
    before = clock.now()
    await h.client.latest(EX, SYM)
    # A lone 429 only backs the request off; the second in one window pauses the service until the
    # window surely allows, and the retry after that pause gets through.
    assert h.sent_429() == 2
    snap = h.client.snapshot()
    assert snap["rate_limited"] == 2 and snap["limiter"]["pauses"] == 1
    assert clock.now() - before >= timedelta(seconds=60)


# --------------------------------------------------------------------------------------------- faults


@pytest.mark.parametrize(("kind", "count"), [("5xx", 2), ("500", 3), ("503", 1), ("drop_before", 2),
                                              ("drop_before", 4), ("truncate", 2), ("bad_json", 3)])
async def test_read_faults_are_retried(make: Make, kind: str, count: int) -> None:
    h = await make()
    start = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    end = start + timedelta(hours=1)
    h.faults.script(kind, count=count)
    candles = await h.client.history(EX, SYM, start, end)
    assert _times(candles) == h.truth(start, end)
    assert h.sim_requests() == count + 1
    assert h.client.snapshot()["retries"] >= 1


async def test_truncated_json_every_time_is_a_typed_malformed_response(make: Make) -> None:
    h = await make()
    h.faults.script("bad_json", count=10)
    with pytest.raises(MalformedResponse) as err:
        await h.client.latest(EX, SYM)
    assert err.value.service == "atmos"
    assert h.sim_requests() == 4  # default 4 attempts
    assert h.client.snapshot()["errors"]["malformed"] == 4


async def test_cut_connection_every_time_is_malformed_after_retries(make: Make) -> None:
    h = await make()
    h.faults.script("truncate", count=10)
    with pytest.raises(MalformedResponse):
        await h.client.pairs(EX)


@pytest.mark.parametrize("mode", ["503", "drop"])
async def test_outage_is_a_temporary_error(make: Make, clock: ManualClock, mode: str) -> None:
    h = await make()
    h.faults.add_outage(clock.now(), clock.now() + timedelta(hours=1), mode=mode)
    with pytest.raises(TemporaryError) as err:
        await h.client.latest(EX, SYM)
    assert err.value.service == "atmos"
    assert "sandbox-atmos-key" not in str(err.value)
    assert h.client.snapshot()["errors"]["temporary"] == 4


async def test_after_an_outage_the_client_works_again(make: Make, clock: ManualClock) -> None:
    h = await make()
    h.faults.add_outage(clock.now(), clock.now() + timedelta(seconds=2), mode="503")
    tick = await h.client.latest(EX, SYM)  # backoff sleeps (clock time) outlast the short outage
    assert tick.time <= clock.now()
    assert tick.partial == (tick.time + timedelta(minutes=1) > clock.now())
    assert set(h.client.snapshot()["errors"]) == {"temporary"}
