"""`open_sandbox`: in-process simulators with their state and clock anchor in state_dir, or an external sandbox
whose clock the daemon follows; the clock anchor itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from bot.clock import AcceleratedClock, ManualClock, WallClock
from bot.errors import ConfigError
from bot.sandbox.embedded import CLOCK_FILE, SANDBOX_DIR, clock_from_info, open_sandbox, sandbox_now
from bot.sandbox.runner import SERVICES, Sandbox
from bot.settings import SandboxSettings, Settings

W0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_the_anchor_keeps_the_world_running_while_nobody_watches(tmp_path: Path) -> None:
    assert sandbox_now(tmp_path, 60.0, W0) == W0  # no anchor yet: starts at wall time
    assert sandbox_now(tmp_path, 60.0, W0 + timedelta(seconds=10)) == W0 + timedelta(minutes=10)
    # A new speed re-anchors where the world is now, so time never jumps (back or forward).
    at_change = sandbox_now(tmp_path, 1.0, W0 + timedelta(seconds=20))
    assert at_change == W0 + timedelta(minutes=20)
    assert sandbox_now(tmp_path, 1.0, W0 + timedelta(seconds=30)) == at_change + timedelta(seconds=10)
    assert json.loads((tmp_path / CLOCK_FILE).read_text())["speed"] == 1.0


def test_a_published_clock_is_followed_at_the_same_speed() -> None:
    info = {"sim": "2026-03-01T15:00:00+00:00", "wall": W0.isoformat(), "speed": 60.0}
    clock = clock_from_info(info, wall_now=W0 + timedelta(seconds=2))
    assert clock.speed == 60.0
    assert abs(clock.now() - datetime(2026, 3, 1, 15, 2, tzinfo=UTC)) < timedelta(seconds=1)


async def test_in_process_keeps_state_and_anchor_under_state_dir(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, sandbox=SandboxSettings(speed=60.0))
    link = await open_sandbox(settings, tmp_path)
    try:
        assert set(link.urls) == set(SERVICES) and isinstance(link.clock, AcceleratedClock)
        assert link.status()["mode"] == "in-process"
        async with aiohttp.ClientSession() as http, http.get(f"{link.urls['sfox']}/_sandbox/clock") as resp:
            published = await resp.json()
        assert abs(datetime.fromisoformat(published["sim"]) - link.clock.now()) < timedelta(seconds=5)
        assert (tmp_path / CLOCK_FILE).exists()
        assert {"coinbtr.sqlite3", "atlas.sqlite3"} <= {p.name for p in (tmp_path / SANDBOX_DIR).iterdir()}
        with pytest.raises(ConfigError, match="in use by another tradebot"):
            await open_sandbox(settings, tmp_path)  # a second daemon on the same state_dir
    finally:
        await link.close()
        await link.close()  # idempotent


async def test_external_gives_its_urls_and_clock(tmp_path: Path) -> None:
    clock = ManualClock(W0)
    async with Sandbox(clock, port_base=None) as sb:
        settings = Settings(state_dir=tmp_path, sandbox=SandboxSettings(url=sb.index_url))
        link = await open_sandbox(settings, tmp_path)
        assert link.urls == sb.urls and link.status() == {
            "mode": "external", "urls": sb.urls, "speed": 1.0, "url": sb.index_url}
        # A manual clock publishes a standing time; followed at speed 1 it runs on from there.
        assert timedelta(0) <= link.clock.now() - W0 < timedelta(seconds=5)
        assert not (tmp_path / SANDBOX_DIR).exists() and not (tmp_path / CLOCK_FILE).exists()
        await link.close()
        not_a_sandbox = Settings(state_dir=tmp_path, sandbox=SandboxSettings(url=sb.urls["atlas"]))
        with pytest.raises(ConfigError) as err:
            await open_sandbox(not_a_sandbox, tmp_path)
        assert err.value.problems[0][0] == "sandbox.url" and "HTTP 4" in err.value.problems[0][1]
    with pytest.raises(ConfigError) as err:
        await open_sandbox(settings, tmp_path)  # gone now
    assert err.value.problems[0][0] == "sandbox.url" and "unreachable" in err.value.problems[0][1]


async def test_without_a_sandbox_the_link_is_wall_time_and_no_urls(tmp_path: Path) -> None:
    link = await open_sandbox(Settings(state_dir=tmp_path, sandbox=SandboxSettings(enabled=False)), tmp_path)
    assert isinstance(link.clock, WallClock) and link.urls == {} and link.status()["mode"] == "off"
    await link.close()
