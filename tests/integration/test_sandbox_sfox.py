"""The sFOX chart-data simulator over HTTP: every rule and quirk of contracts/sfox.md."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.clock import ManualClock
from bot.sandbox.faults import Faults
from bot.sandbox.market import SimMarket
from bot.sandbox.sfox import SfoxSim, create_app

Started = tuple[aiohttp.ClientSession, Faults]
Make = Callable[..., Awaitable[Started]]


@pytest.fixture
async def make(clock: ManualClock) -> AsyncIterator[Make]:
    """Start an sFOX simulator with the given per-minute limit."""
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(rpm: int = 1000) -> Started:
        faults = Faults("sfox", clock=clock)
        server = TestServer(create_app(SfoxSim(SimMarket(clock), clock, rpm), faults), host="127.0.0.1")
        await server.start_server()
        session = aiohttp.ClientSession(str(server.make_url("")))
        servers.append(server)
        sessions.append(session)
        return session, faults

    yield start
    for s in sessions:
        await s.close()
    for srv in servers:
        await srv.close()


async def _candles(session: aiohttp.ClientSession, **params: Any) -> tuple[int, Any]:
    headers = params.pop("headers", None)
    async with session.get("/candlesticks", params={k: str(v) for k, v in params.items()},
                           headers=headers) as resp:
        return resp.status, await resp.json()


def _now(clock: ManualClock) -> int:
    return int(clock.now().timestamp())


async def test_one_minute_candles_oldest_first_with_gaps_absent(make: Make, clock: ManualClock) -> None:
    session, _ = await make()
    end = _now(clock) - 60
    start = end - 499 * 60
    status, candles = await _candles(session, pair="btcusd", startTime=start, endTime=end)
    assert status == 200
    times = [c["start_time"] for c in candles]
    assert times == sorted(set(times))
    assert start <= times[0] and times[-1] <= end
    assert len(candles) < 500  # minutes without trades are missing, not forward-filled
    for c in candles:
        assert c["pair"] == "btcusd" and c["candle_period"] == 60
        o, h, lo, cl, vwap = (Decimal(c[k]) for k in ("open_price", "high_price", "low_price", "close_price",
                                                        "vwap"))
        assert lo <= min(o, cl) and max(o, cl) <= h and lo <= vwap <= h
        assert Decimal(c["volume"]) > 0 and isinstance(c["trades"], int)


async def test_first_candle_is_period_aligned_and_may_precede_start(make: Make, clock: ManualClock) -> None:
    session, _ = await make()
    start = _now(clock) - 7 * 3600 + 1234
    status, candles = await _candles(session, pair="ethusd", startTime=start, endTime=start + 3 * 3600,
                                     period=900)
    assert status == 200
    assert candles[0]["start_time"] < start
    assert all(c["start_time"] % 900 == 0 and c["candle_period"] == 900 for c in candles)


async def test_aggregated_candle_matches_its_minutes(make: Make, clock: ManualClock) -> None:
    session, _ = await make()
    start = _now(clock) - 6 * 3600
    _, hour = await _candles(session, pair="btcusd", startTime=start, endTime=start, period=3600)
    _, minutes = await _candles(session, pair="btcusd", startTime=start, endTime=start + 3599)
    assert len(hour) == 1 and hour[0]["start_time"] == start
    assert Decimal(hour[0]["volume"]) == sum(Decimal(m["volume"]) for m in minutes)
    assert hour[0]["trades"] == sum(m["trades"] for m in minutes)
    assert Decimal(hour[0]["high_price"]) == max(Decimal(m["high_price"]) for m in minutes)
    assert Decimal(hour[0]["low_price"]) == min(Decimal(m["low_price"]) for m in minutes)
    assert hour[0]["open_price"] == minutes[0]["open_price"]
    assert hour[0]["close_price"] == minutes[-1]["close_price"]


async def test_more_than_500_candles_is_rejected_not_truncated(make: Make, clock: ManualClock) -> None:
    session, _ = await make()
    end = _now(clock)
    status, body = await _candles(session, pair="btcusd", startTime=end - 500 * 60, endTime=end)
    assert status == 400 and "error" in body
    assert (await _candles(session, pair="btcusd", startTime=end - 499 * 60, endTime=end))[0] == 200
    status, _ = await _candles(session, pair="btcusd", startTime=end - 500 * 86400, endTime=end, period=86400)
    assert status == 400


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"startTime": 1, "endTime": 2}, 400),  # no pair
        ({"pair": "btcusd", "endTime": 2}, 400),  # no startTime
        ({"pair": "btcusd", "startTime": 1}, 400),  # no endTime
        ({"pair": "btcusd", "startTime": 10, "endTime": 5}, 400),  # start after end
        ({"pair": "btcusd", "startTime": 1, "endTime": 2, "period": 120}, 400),  # not a listed period
        ({"pair": "btcusd", "startTime": "soon", "endTime": 2}, 400),
        ({"pair": "dogeusd", "startTime": 1, "endTime": 2}, 404),
    ],
)
async def test_bad_requests(make: Make, params: dict[str, Any], status: int) -> None:
    session, _ = await make()
    got, body = await _candles(session, **params)
    assert got == status and isinstance(body["error"], str)


async def test_newest_candle_is_partial_and_changes_within_its_period(make: Make, clock: ManualClock) -> None:
    session, _ = await make()
    seen = []
    clock.advance(60)  # inside the 12:00-12:05 period, whose first minute is over
    for _ in range(6):
        clock.advance(20)
        _, candles = await _candles(session, pair="btcusd", startTime=_now(clock) - 600, endTime=_now(clock),
                                    period=300)
        seen.append(candles[-1])
        assert candles[-1]["start_time"] == _now(clock) - _now(clock) % 300
    same_period = [c for c in seen if c["start_time"] == seen[-1]["start_time"]]
    assert len(same_period) >= 2
    assert len({(c["close_price"], c["volume"], c["trades"]) for c in same_period}) >= 2


async def test_61st_request_in_a_minute_is_429_with_retry_after(make: Make, clock: ManualClock) -> None:
    session, faults = await make(60)
    args = {"pair": "btcusd", "startTime": _now(clock) - 60, "endTime": _now(clock)}
    for _ in range(60):
        assert (await _candles(session, **args))[0] == 200
    clock.advance(20)
    async with session.get("/candlesticks", params={k: str(v) for k, v in args.items()}) as resp:
        assert resp.status == 429
        retry_after = int(resp.headers["Retry-After"])
        assert "error" in await resp.json()
    assert retry_after == 40
    # The optional bearer key identifies another client with its own budget.
    assert (await _candles(session, **args, headers={"Authorization": "Bearer k1"}))[0] == 200
    clock.advance(retry_after)
    assert (await _candles(session, **args))[0] == 200
    assert faults.snapshot()["sent_429"] == 1
