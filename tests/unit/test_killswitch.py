"""KillSwitch: the file and the command, one event per transition, persistence across a restart; and the
status endpoint's POST /kill and /resume (token, body, 404 when not wired) over loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from bot.clock import ManualClock
from bot.events import Event, EventBus, KillSwitchChanged
from bot.execution.killswitch import KV_KEY, KillSwitch
from bot.settings import StatusSettings
from bot.status import StatusServer
from bot.store import Store


@dataclass
class Rig:
    path: Path
    store: Store
    clock: ManualClock
    bus: EventBus
    seen: list[KillSwitchChanged]

    def switch(self) -> KillSwitch:
        return KillSwitch(self.path, self.store, self.clock, self.bus)

    def reopen(self) -> None:
        """A restart: a new store connection on the same file."""
        self.store.close()
        self.store = Store.open(self.path.parent / "state", clock=self.clock)


@pytest.fixture
def rig(tmp_path: Path, clock: ManualClock) -> Iterator[Rig]:
    bus = EventBus()
    seen: list[KillSwitchChanged] = []

    def on_event(e: Event) -> None:
        assert isinstance(e, KillSwitchChanged)
        seen.append(e)
    bus.subscribe("test", on_event, KillSwitchChanged)
    r = Rig(tmp_path / "KILL", Store.open(tmp_path / "state", clock=clock), clock, bus, seen)
    yield r
    r.store.close()


def test_off_by_default_and_quiet(rig: Rig) -> None:
    ks = rig.switch()
    assert not ks.on
    assert ks.check_once() is False
    assert rig.seen == []
    st = ks.status()
    assert st["on"] is False and st["file_present"] is False and st["command"] is None
    assert st["file"] == str(rig.path) and st["checks"] == 1


def test_file_appearing_and_disappearing_toggles_with_one_event_each(rig: Rig) -> None:
    ks = rig.switch()
    with capture_logs() as logs:
        ks.check_once()
        rig.path.touch()
        assert ks.check_once() is True
        assert ks.check_once() is True  # no second event while it stays on
        assert ks.on
        rig.path.unlink()
        assert ks.check_once() is False
        ks.check_once()
        rig.path.touch()
        ks.check_once()
    assert [(e.on, e.source) for e in rig.seen] == [(True, "file"), (False, "file"), (True, "file")]
    assert str(rig.path) in rig.seen[0].reason and "removed" in rig.seen[1].reason
    assert rig.seen[0].at == rig.clock.now()
    assert [x["event"] for x in logs if x["event"].startswith("kill_switch")] == \
        ["kill_switch.on", "kill_switch.off", "kill_switch.on"]
    assert ks.status()["source"] == "file" and ks.status()["since"] is not None


def test_engage_and_release_by_command(rig: Rig) -> None:
    ks = rig.switch()
    out = ks.engage("  fat  finger ")
    assert out["on"] and out["changed"] and out["message"] == "kill switch on: fat finger"
    assert out["source"] == "command" and out["reason"] == "fat finger"
    assert out["command"]["reason"] == "fat finger" and out["command"]["at"] == rig.clock.now().isoformat()
    assert [(e.on, e.source, e.reason) for e in rig.seen] == [(True, "command", "fat finger")]
    again = ks.engage("")
    assert again["on"] and not again["changed"] and "already on" in again["message"]
    assert again["reason"] == "engaged by command" and len(rig.seen) == 1
    back = ks.release()
    assert not back["on"] and back["changed"] and back["message"] == "kill switch off: trading resumes"
    assert [(e.on, e.source) for e in rig.seen] == [(True, "command"), (False, "command")]
    assert rig.store.kv_get(KV_KEY) is None
    assert ks.release()["message"] == "kill switch was already off" and len(rig.seen) == 2


def test_engaged_switch_survives_a_restart_until_resume(rig: Rig) -> None:
    rig.switch().engage("maintenance")
    rig.reopen()
    rig.seen.clear()
    ks = rig.switch()
    assert ks.on  # before any check: nothing may trade in between
    assert ks.status()["reason"] == "maintenance"
    ks.check_once()  # the first check announces a switch that was already on at start
    assert [(e.on, e.source, e.reason) for e in rig.seen] == [(True, "command", "maintenance")]
    ks.check_once()
    assert len(rig.seen) == 1
    assert not ks.release()["on"]
    rig.reopen()
    assert not rig.switch().on


def test_file_present_at_start_is_announced_by_the_first_check(rig: Rig) -> None:
    rig.path.touch()
    ks = rig.switch()
    assert ks.on and rig.seen == []
    ks.check_once()
    assert [(e.on, e.source) for e in rig.seen] == [(True, "file")]


def test_release_while_the_file_exists_keeps_it_on_and_says_why(rig: Rig) -> None:
    ks = rig.switch()
    ks.engage("ops")
    rig.path.touch()
    ks.check_once()  # already on: no new event
    out = ks.release()
    assert out["on"] and not out["changed"]
    assert out["message"] == f"kill switch stays on: kill file {rig.path} exists; remove it to resume"
    assert out["source"] == "file" and out["command"] is None
    assert rig.store.kv_get(KV_KEY) is None  # the command is cleared; only the file holds it now
    assert [e.on for e in rig.seen] == [True]
    rig.path.unlink()
    ks.check_once()
    assert [(e.on, e.source) for e in rig.seen] == [(True, "command"), (False, "file")]


def test_removing_the_file_keeps_a_command_engagement(rig: Rig) -> None:
    rig.path.touch()
    ks = rig.switch()
    ks.check_once()
    out = ks.engage("hold")
    assert not out["changed"] and "already on" in out["message"] and f"kill file {rig.path}" in out["message"]
    rig.path.unlink()
    assert ks.check_once() is True
    assert ks.status()["source"] == "command" and ks.status()["reason"] == "hold"
    assert [e.on for e in rig.seen] == [True]


def test_a_file_that_cannot_be_checked_counts_as_present(rig: Rig, tmp_path: Path) -> None:
    path = tmp_path / "loop"
    path.symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(path)  # stat fails with ELOOP, not "no such file"
    ks = KillSwitch(path, rig.store, rig.clock, rig.bus)
    assert ks.check_once() is True
    assert ks.status()["reason"].startswith(f"cannot check kill file {path}: ")
    path.unlink()
    assert ks.check_once() is False
    assert [e.on for e in rig.seen] == [True, False]


async def test_watch_sees_the_file_within_its_interval(rig: Rig) -> None:
    ks = KillSwitch(rig.path, rig.store, rig.clock, rig.bus, every_s=0.01)
    task = asyncio.create_task(ks.watch())
    try:
        await asyncio.sleep(0.05)
        rig.path.touch()
        for _ in range(100):
            if ks.on:
                break
            await asyncio.sleep(0.01)
        assert ks.on and [e.on for e in rig.seen] == [True]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- the status endpoint's POST /kill and POST /resume ----------------------------------------------------

async def _serve(token: str, ks: KillSwitch | None) -> StatusServer:
    settings = StatusSettings(listen="127.0.0.1:0", token=SecretStr(token))
    server = StatusServer(settings, lambda: {"kill_switch": ks.status() if ks else None}, lambda: (200, {}),
                          lambda: lambda: b"", kill=ks.engage if ks else None, resume=ks.release if ks else None)
    await server.start()
    return server


async def _post(url: str, body: bytes | None = None, token: str = "") -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
        return r.status, await r.json()


async def test_kill_and_resume_over_http_with_the_bearer_token(rig: Rig) -> None:
    ks = rig.switch()
    server = await _serve("s3cret", ks)
    try:
        assert server.url
        assert await _post(server.url + "/kill") == (401, {"error": "unauthorized"})
        assert await _post(server.url + "/kill", token="wrong") == (401, {"error": "unauthorized"})
        assert await _post(server.url + "/resume") == (401, {"error": "unauthorized"})
        assert not ks.on and rig.seen == []
        code, out = await _post(server.url + "/kill", json.dumps({"reason": "test"}).encode(), token="s3cret")
        assert code == 200 and out["on"] and out["reason"] == "test" and out["message"] == "kill switch on: test"
        assert ks.on
        code, out = await _post(server.url + "/kill", b"not json", token="s3cret")
        assert code == 400 and "JSON" in out["error"]
        code, out = await _post(server.url + "/kill", b'{"reason": 5}', token="s3cret")
        assert code == 400
        code, out = await _post(server.url + "/resume", token="s3cret")
        assert code == 200 and not out["on"] and out["message"] == "kill switch off: trading resumes"
        code, out = await _post(server.url + "/kill", token="s3cret")  # no body: a default reason
        assert code == 200 and out["reason"] == "engaged by command"
    finally:
        await server.stop()
    assert [e.on for e in rig.seen] == [True, False, True]


async def test_kill_without_a_token_configured_and_404_when_not_wired(rig: Rig) -> None:
    server = await _serve("", rig.switch())
    try:
        assert server.url
        code, out = await _post(server.url + "/kill", b'{"reason": "open"}')
        assert code == 200 and out["on"]
    finally:
        await server.stop()
    bare = await _serve("", None)
    try:
        assert bare.url
        code, out = await _post(bare.url + "/kill")
        assert code == 404 and "no kill switch" in out["error"]
        assert (await _post(bare.url + "/resume"))[0] == 404
    finally:
        await bare.stop()


async def test_announce_tells_subscribers_of_a_switch_already_on_once(rig: Rig) -> None:
    rig.switch().engage("left on")
    rig.seen.clear()
    ks = rig.switch()
    await ks.announce()
    await ks.announce()
    assert [(e.on, e.reason) for e in rig.seen] == [(True, "left on")]
