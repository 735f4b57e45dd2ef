"""Clock skew from `Date` headers: measured against this machine's wall clock (so the sped-up sandbox reads
about 0), shown per service, warned about once above 2 s, and raised as an alarm by the daemon."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from bot.clock import AcceleratedClock
from bot.daemon import Daemon
from bot.http import HttpService, RollingWindowLimiter
from bot.settings import Settings
from bot.skew import SKEW_WARN_S, ClockSkew, skew_sample, skewed

SENT = 1_800_000_000.0  # a wall time, seconds


@pytest.mark.parametrize(("date", "sent", "received", "expected"), [
    (formatdate(SENT, usegmt=True), SENT, SENT + 0.2, 0.4),  # stamped in the same second: within 0.5 s
    (formatdate(SENT + 5, usegmt=True), SENT, SENT + 0.2, 5.4),  # service 5 s ahead
    (formatdate(SENT - 3, usegmt=True), SENT, SENT, -2.5),  # service 3 s behind
    (formatdate(SENT, usegmt=True), SENT, SENT + 2.0, None),  # too slow an answer to tell
    ("not a date", SENT, SENT + 0.1, None),
    (None, SENT, SENT + 0.1, None),
    ("Thu, 01 Jan 2027 00:00:00", SENT, SENT + 0.1, None),  # no zone: not an HTTP date
])
def test_skew_sample(date: str | None, sent: float, received: float, expected: float | None) -> None:
    got = skew_sample(date, sent, received)
    assert (got is None and expected is None) or (got is not None and expected is not None and
                                                  abs(got - expected) < 1e-6)


def test_estimate_is_the_median_and_says_once_when_it_crosses_the_limit() -> None:
    s = ClockSkew(samples=3)
    assert s.newly_skewed() is None and s.seconds() is None
    for off in (5, 5, 50):  # one wild sample does not move the median
        s.observe(formatdate(SENT + off, usegmt=True), SENT, SENT)
    assert s.seconds() == 5.5
    assert s.newly_skewed() is True and s.newly_skewed() is None
    for _ in range(3):
        s.observe(formatdate(SENT, usegmt=True), SENT, SENT)
    assert s.newly_skewed() is False and s.newly_skewed() is None
    assert skewed({"a": {"clock_skew_s": 2.5}, "b": {"clock_skew_s": -0.4}, "c": {}}) == {"a": 2.5}


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async def ahead(request: web.Request) -> web.Response:
        return web.json_response({}, headers={"Date": formatdate(time.time() + 7, usegmt=True)})

    async def plain(request: web.Request) -> web.Response:  # aiohttp stamps Date with the real time
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/ahead", ahead)
    app.router.add_get("/plain", plain)
    srv = TestServer(app)
    await srv.start_server()
    yield srv
    await srv.close()


async def test_a_service_7s_ahead_shows_on_its_snapshot_and_is_warned_about_once(server: TestServer) -> None:
    clock = AcceleratedClock(60.0)
    async with HttpService("atmos", str(server.make_url("")), clock, RollingWindowLimiter(clock, 600)) as http:
        with capture_logs() as logs:
            for _ in range(4):
                await http.request("GET", "/ahead")
        skew = http.snapshot()["clock_skew_s"]
        assert 6.0 <= skew <= 8.0
        assert [e["service"] for e in logs if e["event"] == "http.clock_skew"] == ["atmos"]


async def test_the_sped_up_clock_is_not_skew_a_real_time_date_reads_about_0(server: TestServer) -> None:
    # The demo: the bot's clock is the sandbox's market time, 3600x faster; the servers stamp real time.
    clock = AcceleratedClock(3600.0, start=datetime(2020, 1, 1, tzinfo=UTC))
    async with HttpService("sfox", str(server.make_url("")), clock, RollingWindowLimiter(clock, 600)) as http:
        with capture_logs() as logs:
            for _ in range(5):
                await http.request("GET", "/plain")
        assert abs(http.snapshot()["clock_skew_s"]) <= 1.0 < SKEW_WARN_S
        assert not [e for e in logs if e["event"] == "http.clock_skew"]


async def test_daemon_raises_and_clears_a_clock_skew_alarm_and_shows_skew_on_status(tmp_path: Path) -> None:
    d = Daemon(Settings(state_dir=tmp_path))
    snaps = {"atmos": {"requests": 3, "clock_skew_s": 4.2}, "sfox": {"requests": 2, "clock_skew_s": 0.1}}
    d.report("http", lambda: snaps)
    await d._check_skew()
    assert "clock_skew:atmos" in d.alarms.active and "clock_skew:sfox" not in d.alarms.active
    assert "+4.2s" in d.alarms.active["clock_skew:atmos"]["detail"]
    assert d.status()["clock_skew_s"] == {"atmos": 4.2, "sfox": 0.1}
    snaps["atmos"]["clock_skew_s"] = 0.3
    await d._check_skew()
    assert "clock_skew:atmos" not in d.alarms.active
