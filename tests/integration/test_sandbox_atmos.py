"""The Atmos simulator over HTTP: every endpoint and every quirk of contracts/atmos.md."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.clock import ManualClock, iso_z, parse_iso
from bot.sandbox.atmos import AtmosSim, create_app
from bot.sandbox.faults import Faults
from bot.sandbox.market import SimMarket

KEY = "sandbox-atmos-key"
HEADERS = {"x-atmos-key": KEY}

Started = tuple[aiohttp.ClientSession, AtmosSim, Faults]
Make = Callable[..., Awaitable[Started]]


@pytest.fixture
async def make(clock: ManualClock) -> AsyncIterator[Make]:
    """Start an Atmos simulator with the given per-minute limit; returns (session, sim, faults)."""
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(rpm: int = 1000) -> Started:
        sim = AtmosSim(SimMarket(clock, seed=42), clock, {KEY, "other-key"}, requests_per_minute=rpm)
        faults = Faults("atmos", clock=clock)
        server = TestServer(create_app(sim, faults), host="127.0.0.1")
        await server.start_server()
        session = aiohttp.ClientSession(str(server.make_url("")), headers=HEADERS)
        servers.append(server)
        sessions.append(session)
        return session, sim, faults

    yield start
    for s in sessions:
        await s.close()
    for srv in servers:
        await srv.close()


async def _get(session: aiohttp.ClientSession, path: str, **kw: Any) -> tuple[int, Any]:
    async with session.get(path, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_pairs_with_and_without_trailing_slash(make: Make) -> None:
    session, _, _ = await make()
    for exchange in ("binance", "kraken", "coinbase"):
        status, pairs = await _get(session, f"/v1/{exchange}/pairs/")
        assert status == 200
        assert {"BTCUSDT", "ETHUSDT"} <= set(pairs)
        assert all(isinstance(p, str) for p in pairs)
        assert await _get(session, f"/v1/{exchange}/pairs") == (200, pairs)


async def test_auth_by_either_header_else_401_json(make: Make) -> None:
    session, _, _ = await make()
    status, body = await _get(session, "/v1/binance/pairs/", headers={"x-atmos-key": ""})
    assert status == 401 and "error" in body
    status, body = await _get(session, "/v1/binance/pairs/", headers={"x-atmos-key": "wrong"})
    assert status == 401 and "error" in body
    async with session.get("/v1/binance/pairs/") as resp:
        origin = str(resp.url.origin())
    async with aiohttp.ClientSession(origin) as bare:
        assert (await _get(bare, "/v1/binance/pairs/"))[0] == 401
        status, body = await _get(bare, "/v1/binance/BTCUSDT/ohlcv/latest", headers={"Authorization": KEY})
        assert status == 200 and "result" in body


async def test_unknown_exchange_and_symbol_are_404(make: Make) -> None:
    session, _, _ = await make()
    assert await _get(session, "/v1/bitstamp/pairs/") == (404, {"error": "unknown exchange"})
    assert (await _get(session, "/v1/bitstamp/BTCUSDT/ohlcv"))[0] == 404
    status, body = await _get(session, "/v1/binance/DOGEUSDT/ohlcv/latest")
    assert status == 404 and "error" in body


async def test_21st_request_in_a_rolling_minute_is_429_no_retry_after(make: Make, clock: ManualClock) -> None:
    session, _, faults = await make(20)
    for _ in range(10):
        assert (await _get(session, "/v1/binance/pairs/"))[0] == 200
    clock.advance(30)
    for _ in range(10):
        assert (await _get(session, "/v1/binance/pairs/"))[0] == 200
    clock.advance(29)
    async with session.get("/v1/binance/pairs/") as resp:
        assert resp.status == 429
        assert "Retry-After" not in resp.headers
        assert "error" in await resp.json()
    # The limit is per key: another key still has its whole budget.
    assert (await _get(session, "/v1/binance/pairs/", headers={"x-atmos-key": "other-key"}))[0] == 200
    clock.advance(1.5)  # the first ten left the rolling window; the last ten are still in it
    for _ in range(10):
        assert (await _get(session, "/v1/binance/pairs/"))[0] == 200
    assert (await _get(session, "/v1/binance/pairs/"))[0] == 429
    clock.advance(60)
    assert (await _get(session, "/v1/binance/pairs/"))[0] == 200
    assert faults.snapshot()["sent_429"] == 2


def _check_bucket(bucket: dict[str, Any], symbol: str) -> list[datetime]:
    assert bucket["symbol"] == symbol
    assert isinstance(bucket["id"], str) and len(bucket["id"]) == 24
    ticks = bucket["ticks"]
    assert 1 <= len(ticks) <= 60
    times = [parse_iso(t["time"]) for t in ticks]
    assert times == sorted(times)
    assert bucket["startTime"] == ticks[0]["time"]
    assert times[-1] - times[0] < timedelta(minutes=60)
    for t in ticks:
        assert t["time"].endswith(".000Z")
        o, h, lo, c = (Decimal(t[k]) for k in ("open", "high", "low", "close"))
        assert lo <= min(o, c) and max(o, c) <= h
        assert Decimal(t["baseVolume"]) > 0
        assert isinstance(t["trades"], int) and t["trades"] >= 1
    return times


async def test_ohlcv_buckets_newest_first_with_gaps_absent(make: Make, clock: ManualClock) -> None:
    session, sim, _ = await make()
    clock.advance(20)
    status, body = await _get(session, "/v1/binance/BTCUSDT/ohlcv")
    assert status == 200
    buckets = body["results"]
    assert len(buckets) == 10  # default limit
    all_times: list[datetime] = []
    for bucket in reversed(buckets):
        all_times += _check_bucket(bucket, "BTCUSDT")
    assert all_times == sorted(set(all_times))  # buckets newest first, never overlapping
    span = int((all_times[-1] - all_times[0]).total_seconds() // 60) + 1
    assert len(all_times) < span  # some minutes had no trades and are simply absent
    offset = sim.grid_offset("binance", "BTCUSDT")
    assert offset != 0  # BTCUSDT's grid is not hour-aligned...
    assert any(parse_iso(b["startTime"]).minute == offset for b in buckets)  # ...starting at its offset
    assert all_times[-1] == clock.now().replace(second=0)  # the running minute is included


async def test_limit_is_clamped_and_pages_run_out(make: Make) -> None:
    session, _, _ = await make()
    assert len((await _get(session, "/v1/kraken/ETHUSDT/ohlcv?limit=2"))[1]["results"]) == 2
    assert len((await _get(session, "/v1/kraken/ETHUSDT/ohlcv/?limit=500"))[1]["results"]) == 100
    # 8+ days of history is about 200 hourly buckets: page 1 of 100 is full, page 2 is short, page 9 empty.
    page1 = (await _get(session, "/v1/kraken/ETHUSDT/ohlcv?limit=100&page=1"))[1]["results"]
    page2 = (await _get(session, "/v1/kraken/ETHUSDT/ohlcv?limit=100&page=2"))[1]["results"]
    assert len(page1) == 100 and 0 < len(page2) < 100
    assert await _get(session, "/v1/kraken/ETHUSDT/ohlcv?limit=100&page=9") == (200, {"results": []})
    assert (await _get(session, "/v1/kraken/ETHUSDT/ohlcv?limit=ten"))[0] == 400


async def test_time_range_selects_overlapping_buckets_returned_whole(make: Make, clock: ManualClock) -> None:
    session, _, _ = await make()
    start = clock.now() - timedelta(hours=5, minutes=7)
    end = clock.now() - timedelta(hours=2, minutes=41)
    status, body = await _get(session, "/v1/coinbase/ETHUSDT/ohlcv",
                              params={"start_time": iso_z(start), "end_time": iso_z(end), "limit": "100"})
    assert status == 200
    buckets = body["results"]
    times = sorted(t for b in buckets for t in _check_bucket(b, "ETHUSDT"))
    assert 3 <= len(buckets) <= 4
    assert times[0] < start and times[-1] > end  # whole buckets: ticks outside the range at both ends
    assert all(parse_iso(b["ticks"][-1]["time"]) >= start - timedelta(minutes=1) for b in buckets)
    assert all(parse_iso(b["startTime"]) <= end for b in buckets)
    assert (await _get(session, "/v1/coinbase/ETHUSDT/ohlcv?start_time=yesterday"))[0] == 400


async def test_latest_is_partial_within_its_minute(make: Make, clock: ManualClock) -> None:
    session, _, _ = await make()
    seen = []
    for _ in range(11):
        clock.advance(5)
        status, body = await _get(session, "/v1/binance/BTCUSDT/ohlcv/latest")
        assert status == 200
        seen.append(body["result"])
    assert {t["time"] for t in seen} == {iso_z(clock.now().replace(second=0))}
    assert len({(t["close"], t["baseVolume"], t["trades"]) for t in seen}) >= 2
    clock.advance(10)
    status, body = await _get(session, "/v1/binance/BTCUSDT/ohlcv/latest/")
    assert parse_iso(body["result"]["time"]) >= parse_iso(seen[-1]["time"])


async def test_a_new_bucket_between_page_requests_repeats_ticks(make: Make, clock: ManualClock) -> None:
    session, _, _ = await make()
    clock.advance(30)
    page0 = (await _get(session, "/v1/binance/ETHUSDT/ohlcv?limit=2&page=0"))[1]["results"]
    clock.advance(3600)  # a whole new bucket opens before the client asks for the next page
    page1 = (await _get(session, "/v1/binance/ETHUSDT/ohlcv?limit=2&page=1"))[1]["results"]
    seen0 = {t["time"] for b in page0 for t in b["ticks"]}
    seen1 = {t["time"] for b in page1 for t in b["ticks"]}
    assert seen0 & seen1  # the same ticks came back on the next page: the client must de-duplicate
