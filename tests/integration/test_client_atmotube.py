"""`AtmotubeClient` against the Atmotube simulator over loopback HTTP: windows, paging, CSV, nulls, late data,
the fixed-minute rate limit, auth, faults, and the API key kept out of every error and log line."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from structlog.testing import capture_logs

from bot.clients.atmotube import MEASUREMENTS, AtmotubeClient, SensorTail, plan_windows
from bot.clock import ManualClock, parse_iso
from bot.domain import SensorReading
from bot.errors import AuthError, MalformedResponse, Rejected, TemporaryError
from bot.sandbox import credentials as cred
from bot.sandbox.runner import Sandbox
from bot.settings import AtmotubeSettings

MAC = cred.ATMOTUBE_DEVICES[0]
DATA = "GET /api/v1/data"
TODAY = date(2026, 11, 20)  # the `clock` fixture's day (12:00 UTC)


@pytest.fixture
async def sb(clock: ManualClock) -> AsyncIterator[Sandbox]:
    async with Sandbox(clock) as sandbox:
        yield sandbox


def _client(url: str, clock: ManualClock, key: str = cred.ATMOTUBE_KEY, rpm: int = 60) -> AtmotubeClient:
    settings = AtmotubeSettings(base_url=url, api_key=SecretStr(key), requests_per_minute=rpm)
    return AtmotubeClient.create(settings, clock, rng=random.Random(3))


@pytest.fixture
async def tube(sb: Sandbox, clock: ManualClock) -> AsyncIterator[AtmotubeClient]:
    async with _client(sb.urls["atmotube"], clock) as client:
        yield client


def _requests(sb: Sandbox) -> int:
    return int(sb.faults["atmotube"].snapshot()["requests"].get(DATA, 0))


def _truth(sb: Sandbox, first: date, last: date) -> list[dict[str, Any]]:
    return sb.atmotube.items(MAC, first, last)


def _times(readings: list[SensorReading]) -> list[datetime]:
    return [r.time for r in readings]


def _truth_times(items: list[dict[str, Any]]) -> list[datetime]:
    return [parse_iso(i["time"]) for i in items]


# --------------------------------------------------------------------------------------------- ranges and paging


async def test_a_ten_day_range_is_two_windows(sb: Sandbox, tube: AtmotubeClient) -> None:
    # From today on, only this morning's uploads exist: one request per window, two windows.
    end = TODAY + timedelta(days=9)
    got = await tube.readings(MAC, TODAY, end)
    assert _requests(sb) == 2
    assert plan_windows(TODAY, end) == [(TODAY, TODAY + timedelta(days=6)), (TODAY + timedelta(days=7), end)]
    assert _times(got) == _truth_times(_truth(sb, TODAY, end))
    assert 0 < len(got) <= 720


async def test_past_ten_days_match_the_cloud_with_offset_paging(sb: Sandbox, tube: AtmotubeClient) -> None:
    start, end = TODAY - timedelta(days=10), TODAY - timedelta(days=1)
    got = await tube.readings(MAC, start, end)
    windows = plan_windows(start, end)
    sizes = [len(_truth(sb, a, b)) for a, b in windows]
    assert len(windows) == 2 and all(n > 1440 for n in sizes)  # every window needs several pages
    assert _requests(sb) == sum(math.ceil(n / 1440) for n in sizes)
    assert _times(got) == _truth_times(_truth(sb, start, end))
    assert _times(got) == sorted(set(_times(got)))


async def test_one_window_of_three_days_pages_past_1440_items(sb: Sandbox, tube: AtmotubeClient) -> None:
    first, last = TODAY - timedelta(days=4), TODAY - timedelta(days=2)
    truth = _truth(sb, first, last)
    assert len(truth) > 2 * 1440
    got = await tube.window(MAC, first, last)
    assert _times(got) == _truth_times(truth)
    assert _requests(sb) == math.ceil(len(truth) / 1440)
    with pytest.raises(ValueError):
        await tube.window(MAC, first, first + timedelta(days=7))  # eight days is not one window


async def test_readings_between_filters_to_the_times(tube: AtmotubeClient, clock: ManualClock) -> None:
    start, end = clock.now() - timedelta(hours=30), clock.now() - timedelta(hours=20)
    got = await tube.readings_between(MAC, start, end)
    assert got and all(start <= r.time <= end for r in got)


async def test_csv_gives_exactly_what_json_gives(sb: Sandbox, tube: AtmotubeClient) -> None:
    start, end = TODAY - timedelta(days=2), TODAY - timedelta(days=1)
    as_json = await tube.readings(MAC, start, end)
    before = _requests(sb)
    as_csv = await tube.readings(MAC, start, end, fmt="csv")
    assert as_csv == as_json
    assert _requests(sb) - before == math.ceil(len(as_csv) / 1440) + (len(as_csv) % 1440 == 0)


async def test_null_and_missing_measurements_stay_none_never_zero(sb: Sandbox, tube: AtmotubeClient) -> None:
    day = TODAY - timedelta(days=3)
    got = {r.time: r for r in await tube.readings(MAC, day, day)}
    absent = nulls = coords = 0
    for item in _truth(sb, day, day):
        reading = got[parse_iso(item["time"])]
        assert set(MEASUREMENTS) <= set(reading.values)
        for key in MEASUREMENTS:
            if key not in item:
                absent += 1
                assert reading.values[key] is None
            elif item[key] is None:
                nulls += 1
                assert reading.values[key] is None
            else:
                assert reading.values[key] == float(item[key])
        if "coords" in item:
            coords += 1
            assert (reading.lat, reading.lon) == (item["coords"]["lat"], item["coords"]["lon"])
        else:
            assert reading.lat is None and reading.lon is None
    assert absent and nulls and coords and coords < len(got)  # every case was exercised


async def test_late_uploads_appear_on_a_re_read_and_are_handed_out_once(
        sb: Sandbox, tube: AtmotubeClient, clock: ManualClock) -> None:
    tail = SensorTail(tube, MAC.lower(), lookback=timedelta(hours=6))
    first = await tail.poll()
    assert first
    first_poll_at = clock.now()
    clock.advance(3 * 3600)
    second = await tail.poll()
    # Minutes that had already passed at the first poll but were uploaded after it.
    late = [r for r in second if r.time < first_poll_at - timedelta(minutes=1)]
    assert late, "no late upload was exercised"
    assert not set(_times(first)) & set(_times(second))
    since = clock.now() - timedelta(hours=6)
    truth = {t for t in _truth_times(_truth(sb, since.date(), clock.now().date())) if t >= since}
    assert {r.time for r in first if r.time >= since} | set(_times(second)) == truth
    assert await tail.poll() == []  # nothing new without time passing


# --------------------------------------------------------------------------------------------- rate limit


async def test_normal_running_stays_within_60_per_clock_minute(
        sb: Sandbox, tube: AtmotubeClient, clock: ManualClock) -> None:
    future = TODAY + timedelta(days=30)  # empty days: one cheap request each
    for _ in range(130):
        assert await tube.window(MAC, future, future) == []
    assert sb.faults["atmotube"].snapshot()["sent_429"] == 0
    assert _requests(sb) == 130
    assert clock.now() >= parse_iso("2026-11-20T12:02:00Z")  # 130 requests need three clock minutes
    assert tube.snapshot()["limiter"]["kind"] == "fixed"


async def test_a_429_backs_off_into_the_next_clock_minute_and_succeeds(
        sb: Sandbox, tube: AtmotubeClient, clock: ManualClock) -> None:
    clock.advance(20)
    future = TODAY + timedelta(days=30)
    async with _client(sb.urls["atmotube"], clock, rpm=1000) as greedy:  # another process, same key
        for _ in range(60):
            await greedy.window(MAC, future, future)
    assert clock.now() < parse_iso("2026-11-20T12:01:00Z")
    got = await tube.readings(MAC, TODAY, TODAY)
    assert got
    assert clock.now() >= parse_iso("2026-11-20T12:01:00Z")
    assert sb.faults["atmotube"].snapshot()["sent_429"] == 1
    assert tube.snapshot()["rate_limited"] == 1


# --------------------------------------------------------------------------------------------- errors


async def test_unknown_key_and_foreign_device_are_auth_errors_without_the_key(
        sb: Sandbox, clock: ManualClock) -> None:
    secret = "very-secret-atmotube-key-123"
    async with _client(sb.urls["atmotube"], clock, key=secret) as bad:
        with capture_logs() as logs, pytest.raises(AuthError) as err:
            await bad.readings(MAC, TODAY, TODAY)
    assert err.value.status == 401 and err.value.service == "atmotube"
    assert secret not in str(err.value) and secret not in repr(logs)
    async with _client(sb.urls["atmotube"], clock) as good:
        with capture_logs() as logs, pytest.raises(AuthError) as err:
            await good.readings("11:22:33:44:55:66", TODAY, TODAY)
        assert err.value.status == 403
        assert cred.ATMOTUBE_KEY not in str(err.value) and cred.ATMOTUBE_KEY not in repr(logs)
        with pytest.raises(Rejected) as bad_mac:
            await good.readings("not-a-mac", TODAY, TODAY)
        assert bad_mac.value.status == 400 and "mac" in bad_mac.value.message
    assert _requests(sb) == 3  # refusals are never retried


@pytest.mark.parametrize(("kind", "count"), [("5xx", 2), ("drop_before", 2), ("truncate", 1), ("bad_json", 2)])
async def test_read_faults_are_retried(sb: Sandbox, tube: AtmotubeClient, kind: str, count: int) -> None:
    day = TODAY - timedelta(days=1)
    sb.faults["atmotube"].script(kind, count=count)
    got = await tube.readings(MAC, day, day)
    assert _times(got) == _truth_times(_truth(sb, day, day))
    assert tube.snapshot()["retries"] >= 1


async def test_garbage_every_time_is_malformed_and_an_outage_is_temporary(
        sb: Sandbox, tube: AtmotubeClient) -> None:
    sb.faults["atmotube"].script("bad_json", count=10)
    with pytest.raises(MalformedResponse):
        await tube.readings(MAC, TODAY, TODAY)
    sb.reset_faults()
    await sb.stop_service("atmotube")
    with pytest.raises(TemporaryError) as err:
        await tube.readings(MAC, TODAY, TODAY)
    assert cred.ATMOTUBE_KEY not in str(err.value)


async def test_a_server_echoing_the_key_has_it_scrubbed_from_errors(clock: ManualClock) -> None:
    async def echo(request: web.Request) -> web.Response:
        status = 400 if request.query.get("offset") == "0" and request.query.get("format") == "json" else 503
        return web.json_response({"status": 1, "message": f"bad request {request.query_string}"}, status=status)

    app = web.Application()
    app.router.add_get("/api/v1/data", echo)
    secret = "echoed-secret-key-42"
    async with TestServer(app, host="127.0.0.1") as server:
        client = _client(str(server.make_url("")).rstrip("/"), clock, key=secret)
        async with client:
            with pytest.raises(Rejected) as err:
                await client.readings(MAC, TODAY, TODAY)
            with pytest.raises(TemporaryError) as err5:
                await client.readings(MAC, TODAY, TODAY, fmt="csv")
    for e in (err.value, err5.value):
        assert secret not in str(e) and secret not in e.message and secret not in e.body_excerpt
    assert "***" in str(err.value)


async def test_a_server_ignoring_offset_does_not_loop_the_client(clock: ManualClock) -> None:
    header = "time,pm25,lat,lon\n"
    rows = "".join(f"2026-11-20T{m // 60:02d}:{m % 60:02d}:00.000Z,{m},,\n" for m in range(1440))

    async def same_page(request: web.Request) -> web.Response:
        return web.Response(text=header + rows, content_type="text/csv")

    app = web.Application()
    app.router.add_get("/api/v1/data", same_page)
    async with TestServer(app, host="127.0.0.1") as server:
        client = _client(str(server.make_url("")).rstrip("/"), clock)
        async with client:
            got = await client.readings(MAC, TODAY, TODAY, fmt="csv")
    assert len(got) == 1440 and got[5].values["pm25"] == 5.0 and got[5].values["pm10"] is None
    assert client.snapshot()["requests"] == 2
