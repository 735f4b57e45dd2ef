"""Liveness gates the watchdog: a job stuck past its slots stops the pings while the loop still answers, and
they resume when it finishes; availability (an upstream alarm) turns /health to 503 without touching them."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.daemon import Daemon
from bot.events import AlarmRaised, FeedStale
from bot.health import Liveness, unavailable
from bot.settings import Settings
from bot.supervise import Jobs
from bot.systemd import Notifier


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    path = Path(tempfile.mkdtemp(prefix="sd-")) / "n"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    yield str(path), sock
    sock.close()
    path.unlink()
    path.parent.rmdir()


def _received(sock: socket.socket) -> list[str]:
    out: list[str] = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


async def _until(predicate: object, within_s: float) -> None:
    """Poll `predicate` (a probe on another task's state) until it holds, with a deadline."""
    for _ in range(int(within_s / 0.02)):
        if callable(predicate) and predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {within_s}s")


async def test_a_job_stuck_past_its_slots_stops_the_pings_and_they_resume_when_it_finishes(
        notify_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch) -> None:
    path, sock = notify_socket
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = Notifier(path)
    scheduler = AsyncIOScheduler(timezone="UTC")
    jobs = Jobs(scheduler)
    release = asyncio.Event()
    started = asyncio.Event()

    async def stuck() -> None:
        started.set()
        await release.wait()

    jobs.every("stuck", stuck, every_s=0.1)
    liveness = Liveness(jobs, notifier, probe_s=0.05, grace_s=0.2, status_line=lambda: "ok")
    scheduler.start()
    probe = asyncio.create_task(liveness.run())
    try:
        await asyncio.wait_for(started.wait(), 5)
        assert "WATCHDOG=1" in _received(sock)  # live while the job is inside its slots
        await _until(lambda: not liveness.live(), 5)  # 3 slots + grace later: wedged (the loop still answers)
        _received(sock)
        await asyncio.sleep(0.3)
        assert "WATCHDOG=1" not in _received(sock)
        assert liveness.status()["overdue_jobs"] == ["stuck"]
        release.set()
        await _until(liveness.live, 5)
        await _until(lambda: "WATCHDOG=1" in _received(sock), 5)
    finally:
        probe.cancel()
        scheduler.shutdown(wait=False)


def test_notifier_ignores_a_watchdog_armed_for_another_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert Notifier("/nonexistent").watchdog_seconds is None
    monkeypatch.delenv("WATCHDOG_PID")
    assert Notifier("/nonexistent").watchdog_seconds == 30.0


def test_status_lines_are_sent_only_when_they_change(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    n = Notifier(path)
    assert n.status_changed("ok (paper)") and not n.status_changed("ok  (paper)")
    assert n.status_changed("degraded (paper); alarms: strategy:x")
    assert _received(sock) == ["STATUS=ok (paper)", "STATUS=degraded (paper); alarms: strategy:x"]


def test_upstream_alarms_make_health_503_and_others_only_degrade_it(tmp_path: Path) -> None:
    assert unavailable(["strategy:a", "feed:atmos:x:stale", "clock_skew:atmos", "recorder:backlog"]) == [
        "feed:atmos:x:stale", "recorder:backlog"]
    d = Daemon(Settings(state_dir=tmp_path))
    d.phase = "running"
    now = datetime(2026, 1, 1, tzinfo=UTC)
    d.events.publish(AlarmRaised(at=now, name="strategy:a", detail="boom"))
    code, body = d.health()
    assert (code, body["status"]) == (200, "degraded")
    d.events.publish(FeedStale(at=now, stream="atmos:binance:BTCUSDT", age_s=200, limit_s=150))
    code, body = d.health()
    assert (code, body["status"], body["live"]) == (503, "unavailable", True)
    assert body["reasons"] == ["feed:atmos:binance:BTCUSDT:stale: newest closed candle 200s old"]
    assert d.status_line() == ("unavailable (paper, default); alarms: feed:atmos:binance:BTCUSDT:stale, "
                               "strategy:a")


def test_a_listener_that_stopped_reading_never_blocks_a_notification(
        notify_socket: tuple[str, socket.socket]) -> None:
    # bench/daemon.py wedged the whole daemon once its notify socket was not read: the send blocked when the
    # socket's queue was full. Now a full queue makes the send fail (False) at once.
    path, _unread = notify_socket
    notifier = Notifier(path)
    results = [notifier.watchdog() for _ in range(500)]  # far more than a datagram queue holds
    assert results[0] is True and results[-1] is False
