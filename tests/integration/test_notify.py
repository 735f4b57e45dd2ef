"""Notifications through real Apprise to a local HTTP receiver (`json://127.0.0.1:PORT/...`), on a manual
clock: what is sent, bursts collapsed, a receiver down loses nothing within the queue bound, drops counted on
/metrics, and no configured secret in any message or log line."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot import logs
from bot.clock import ManualClock
from bot.events import (
    AlarmRaised,
    DaemonStarted,
    DepositConfirmed,
    EventBus,
    FillSeen,
    KillSwitchChanged,
    TaskRestarted,
    WithdrawalFailed,
)
from bot.metrics import Metrics
from bot.notify.sender import Notifier
from bot.notify.targets import open_targets
from bot.settings import NotifySettings, Settings
from tests.conftest import T0

SECRET_PATH = "hook-Zq9s3cretT0ken"  # the token part of the receiver's URL
GUARD_S = 30.0  # wall seconds a test may take at most (a hang guard, never a wait)


@dataclass
class Receiver:
    """A local HTTP endpoint Apprise's json:// posts to; answers 503 while `down`."""

    down: bool = False
    attempts: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.json()
        self.changed.set()
        if self.down:
            return web.Response(status=503, text="down")
        self.messages.append({"path": request.path, **body})
        return web.Response(text="ok")

    async def until(self, done: Callable[[], bool]) -> None:
        """Wait for requests until `done()` holds."""
        async with asyncio.timeout(GUARD_S):
            while not done():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", r.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield r, f"json://127.0.0.1:{server.port}/{SECRET_PATH}"
    finally:
        await server.close()


def make(url: str, clock: ManualClock, *, mode: str = "paper", metrics: Metrics | None = None,
         **notify: Any) -> tuple[EventBus, Notifier]:
    settings = Settings(mode=mode, notify=NotifySettings(enabled=True, urls=[url], **notify))
    bus = EventBus()
    n = Notifier(settings, clock, open_targets(settings.notify.urls),
                 count=metrics.on_notify if metrics is not None else None)
    bus.subscribe("notify", n.on_event)
    return bus, n


async def running(n: Notifier) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(n.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def fill(clock: ManualClock, i: int = 1, side: str = "buy") -> FillSeen:
    return FillSeen(at=clock.now(), order_id=i, fill_id=f"paper:{i}", instance="btc-rsi", market="btc-mxn",
                    side=side, price=Decimal("1687427.17") + i, amount=Decimal("0.001"), fee=Decimal("0.00000075"),
                    fee_coin="btc", maker=True)


async def test_a_paper_fill_makes_one_message_with_its_details(receiver: tuple[Receiver, str],
                                                               clock: ManualClock) -> None:
    r, url = receiver
    bus, n = make(url, clock)
    task = await running(n)
    bus.publish(fill(clock))
    await r.until(lambda: len(r.messages) == 1)
    await stop(task)
    m = r.messages[0]
    assert m["path"] == f"/{SECRET_PATH}"
    assert m["title"] == "PAPER Fill: BUY 0.001 btc-mxn"
    assert m["message"] == ("PAPER btc-rsi bought 0.001 btc @ 1,687,428.17 mxn on btc-mxn, fee 0.00000075 btc")
    assert n.status()["targets"][0]["sent"] == 1 and r.attempts == 1


async def test_live_messages_do_not_say_paper(receiver: tuple[Receiver, str], clock: ManualClock) -> None:
    r, url = receiver
    settings = Settings(mode="paper", notify=NotifySettings(enabled=True, urls=[url]))
    live = settings.model_copy(update={"mode": "live"})
    bus = EventBus()
    n = Notifier(live, clock, open_targets(settings.notify.urls))
    bus.subscribe("notify", n.on_event)
    task = await running(n)
    bus.publish(KillSwitchChanged(at=clock.now(), on=True, reason="by hand", source="command"))
    await r.until(lambda: len(r.messages) == 1)
    await stop(task)
    assert r.messages[0]["title"] == "Kill switch ON" and "PAPER" not in json.dumps(r.messages[0])


async def test_a_burst_of_fills_is_one_message_listing_them(receiver: tuple[Receiver, str],
                                                            clock: ManualClock) -> None:
    r, url = receiver
    bus, n = make(url, clock)
    task = await running(n)
    for i in range(10):  # ten fills within a minute
        bus.publish(fill(clock, i, "buy" if i % 2 == 0 else "sell"))
        clock.advance(5)
    await r.until(lambda: len(r.messages) >= 1)
    clock.advance(600)  # anything else would have been released by now
    await asyncio.sleep(0)
    await stop(task)
    assert len(r.messages) == 1
    m = r.messages[0]
    assert m["title"] == "PAPER 10 fills"
    lines = m["message"].removeprefix("PAPER ").splitlines()
    assert len(lines) == 10
    assert lines[0] == "12:00 btc-rsi bought 0.001 btc @ 1,687,427.17 mxn on btc-mxn, fee 0.00000075 btc"
    assert lines[9].startswith("12:00 btc-rsi sold 0.001 btc @ 1,687,436.17 mxn")


def six_kinds(clock: ManualClock) -> list[Any]:
    """Six events of six groups: six messages."""
    now = clock.now()
    return [
        DaemonStarted(at=now, bot="default", mode="paper", instances=("btc-rsi",), sandbox=True),
        KillSwitchChanged(at=now, on=True, reason="test", source="command"),
        fill(clock, 7),
        DepositConfirmed(at=now, deposit_id=1, coin="btc", amount=Decimal("0.5"), address="bc1q", txid=None,
                         confirmations=3),
        WithdrawalFailed(at=now, withdrawal_id=2, coin="btc", amount=Decimal("0.1"), fee=Decimal("0.0001"),
                         address="bc1q", refund=Decimal("0.1001")),
        TaskRestarted(at=now, task="recorder", error="boom", restarts=1, delay_s=1.0),
    ]


async def test_receiver_down_loses_nothing_within_the_bound_and_sends_once_it_is_back(
        receiver: tuple[Receiver, str], clock: ManualClock) -> None:
    r, url = receiver
    metrics = Metrics()
    bus, n = make(url, clock, metrics=metrics)
    r.down = True
    task = await running(n)
    for ev in six_kinds(clock):
        bus.publish(ev)
    # Down for a while: every batch released into the queue, and retried several times with backoff.
    await r.until(lambda: not n.pacer.batches and r.attempts >= 8)
    assert r.messages == [] and n.status()["targets"][0]["queued"] == 6
    t_down = clock.monotonic()
    r.down = False
    await r.until(lambda: len(r.messages) == 6)
    await stop(task)
    titles = [m["title"] for m in r.messages]
    # In the order their batches were due: at once, after the 5 s gather, after the fills' minute.
    assert titles == ["PAPER Started (paper)", "PAPER Kill switch ON", "PAPER Deposit 0.5 btc",
                      "PAPER Withdrawal FAILED 0.1 btc", "PAPER Task restarted: recorder",
                      "PAPER Fill: BUY 0.001 btc-mxn"]
    assert clock.monotonic() - t_down <= 300  # the retry backoff is capped
    st = n.status()["targets"][0]
    assert (st["sent"], st["queued"], st["dropped"]) == (6, 0, 0) and st["failed"] == r.attempts - 6
    text = metrics.render().decode()
    assert 'tradebot_notify_sent_total{target="0"} 6.0' in text
    assert f'tradebot_notify_failures_total{{target="0"}} {float(r.attempts - 6)}' in text


async def test_past_the_queue_bound_the_oldest_are_dropped_and_counted_on_metrics(
        receiver: tuple[Receiver, str], clock: ManualClock) -> None:
    r, url = receiver
    metrics = Metrics()
    bus, n = make(url, clock, metrics=metrics, queue_size=4)
    r.down = True
    task = await running(n)
    for ev in six_kinds(clock):
        bus.publish(ev)
    await r.until(lambda: not n.pacer.batches and r.attempts >= 3)
    r.down = False
    await r.until(lambda: len(r.messages) == 4)
    await stop(task)
    # The first message was being retried when the queue filled: the two oldest went.
    assert [m["title"] for m in r.messages] == ["PAPER Deposit 0.5 btc", "PAPER Withdrawal FAILED 0.1 btc",
                                                "PAPER Task restarted: recorder", "PAPER Fill: BUY 0.001 btc-mxn"]
    assert 'tradebot_notify_dropped_total{reason="queue_full"} 2.0' in metrics.render().decode()


async def test_a_flapping_alarm_notifies_at_most_once_per_min_interval(receiver: tuple[Receiver, str],
                                                                       clock: ManualClock) -> None:
    r, url = receiver
    bus, n = make(url, clock, min_interval_seconds={"alarm_raised": 600})
    task = await running(n)
    bus.publish(AlarmRaised(at=clock.now(), name="feed:x", detail="first"))
    await r.until(lambda: len(r.messages) == 1)
    start = clock.monotonic()
    for i in range(5):  # raised and cleared, five times, in under ten minutes
        clock.advance(60)
        bus.publish(AlarmRaised(at=clock.now(), name="feed:x", detail=f"again {i}"))
    await r.until(lambda: len(r.messages) == 2)
    await stop(task)
    assert clock.monotonic() - start >= 600 - 5  # not before the interval since the first message
    assert r.messages[1]["title"] == "PAPER 5 alarm changes"
    assert "again 0" in r.messages[1]["message"] and "again 4" in r.messages[1]["message"]


async def test_no_message_or_log_line_contains_a_configured_secret(receiver: tuple[Receiver, str],
                                                                   clock: ManualClock) -> None:
    r, url = receiver
    r.down = True  # failures log too
    settings = Settings(notify=NotifySettings(enabled=True, urls=[url]))
    out = io.StringIO()
    logs.configure(level="debug", secrets=settings.secrets(), json=True, stream=out)  # Apprise's debug too
    try:
        bus, n = make(url, clock)
        task = await running(n)
        bus.publish(AlarmRaised(at=clock.now(), name="upstream:x", detail=f"posting to {url} failed ({SECRET_PATH})"))
        bus.publish(fill(clock))
        await r.until(lambda: r.attempts >= 2)
        r.down = False
        await r.until(lambda: len(r.messages) == 2)
        await n.flush(1.0)
        await stop(task)
    finally:
        logs.reset()
    sent = json.dumps([{k: m[k] for k in ("title", "message")} for m in r.messages])  # (the path is the URL's)
    assert "***" in sent  # the alarm's detail was scrubbed, not dropped
    log_text = out.getvalue()
    assert "notify.sent" in log_text and "notify.send_failed" in log_text
    for secret in (url, SECRET_PATH, url.split("://")[1]):
        assert secret not in sent
        assert secret not in log_text
        assert secret not in json.dumps(n.status())


async def test_a_stop_sends_what_waits_at_once(receiver: tuple[Receiver, str], clock: ManualClock) -> None:
    r, url = receiver
    bus, n = make(url, clock)
    bus.publish(fill(clock))  # its gather window (a minute) has not passed
    clock.advance(10)
    await n.flush(5.0)
    assert [m["title"] for m in r.messages] == ["PAPER Fill: BUY 0.001 btc-mxn"]


async def test_the_daily_summary_is_sent_at_its_time_of_day(receiver: tuple[Receiver, str],
                                                            clock: ManualClock) -> None:
    r, url = receiver
    settings = Settings(notify=NotifySettings(enabled=True, urls=[url], daily_summary_at=time(12, 30)))
    asked: list[datetime] = []

    def summary(when: datetime) -> str:
        asked.append(when)
        return "fills (24 h): 3\nPnL btc-mxn: 12.5 mxn"
    n = Notifier(settings, clock, open_targets(settings.notify.urls), summary=summary)
    task = await running(n)
    await r.until(lambda: len(r.messages) == 1)
    assert clock.now() == T0 + timedelta(minutes=30) and asked == [T0 + timedelta(minutes=30)]
    assert r.messages[0]["title"] == "PAPER Daily summary 2026-11-20"
    assert r.messages[0]["message"] == "PAPER fills (24 h): 3\nPnL btc-mxn: 12.5 mxn"
    assert n.status()["next_summary"] == (T0 + timedelta(days=1, minutes=30)).isoformat()
    await stop(task)
