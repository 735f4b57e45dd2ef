"""The notifier: an event-path subscriber that only queues, and the one task that sends.

`on_event` turns an event into a note (`compose.describe`) and hands it to the pacer, after the store's
transaction behind the event committed (never a notification of a rolled-back change); it never blocks and
never touches the network. `run` (a supervised task) releases due batches as messages into one bounded queue
per target and sends them, one Apprise call at a time in a worker thread (Apprise is blocking). A failed send
is retried with exponential backoff on that target alone; while a service is down its queue keeps up to
`notify.queue_size` messages, then drops the oldest, and counts the drop (`/metrics`). At stop `flush`
sends what is waiting once, inside a bound. Every message is scrubbed of configured secrets first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.clock import Clock
from bot.events import Event
from bot.logs import Redactor, get_logger
from bot.notify import kinds as k
from bot.notify.compose import Message, collapse, describe, message
from bot.notify.pacing import Pacer, intervals
from bot.notify.summary import next_summary
from bot.notify.targets import Target
from bot.settings import Settings

log = get_logger("bot.notify")

BACKOFF_FIRST_S = 2.0  # clock seconds before the first retry; doubled per failure
BACKOFF_MAX_S = 300.0
FLUSH_MAX_S = 5.0  # wall seconds the stop gives to sending what is left

Count = Callable[[str, str], None]  # (what: sent | failed | dropped, label: target index or reason)
Summary = Callable[[datetime], str]
AfterCommit = Callable[[Callable[[], None]], None]


def backoff(failures: int) -> float:
    """Clock seconds to wait after `failures` failed sends in a row (2, 4, 8, ... up to 300)."""
    return float(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, failures - 1)))


@dataclass
class Outgoing:
    """A target's queue and retry state."""

    target: Target
    queue: deque[Message] = field(default_factory=deque)
    failures: int = 0
    retry_at: float = 0.0
    sent: int = 0
    failed: int = 0
    dropped: int = 0


class Notifier:
    """Subscriber and sender (see the module docstring)."""

    def __init__(self, settings: Settings, clock: Clock, targets: Sequence[Target], *,
                 count: Count | None = None, summary: Summary | None = None,
                 after_commit: AfterCommit | None = None) -> None:
        cfg = settings.notify
        self.clock = clock
        self.paper = settings.mode == "paper"
        self.bot = settings.bot_name
        self.kinds = frozenset(cfg.events)
        self.queue_size = cfg.queue_size
        self.pacer = Pacer(intervals(cfg.min_interval_seconds))
        self.out = [Outgoing(t) for t in targets]
        self.redactor = Redactor(settings.secrets())
        self.count = count or (lambda _what, _label: None)
        self.summary = summary if k.DAILY_SUMMARY in self.kinds else None
        self.summary_at = cfg.daily_summary_at
        self.next_summary: datetime | None = None
        self.after_commit = after_commit
        self._wake = asyncio.Event()
        self._sending = asyncio.Lock()

    # -- the subscriber (synchronous, local work only) ------------------------------------------------------

    def on_event(self, event: Event) -> None:
        note = describe(event)
        if note is None or note.kind not in self.kinds:
            return

        def accept() -> None:
            self.pacer.add(note, self.clock.monotonic())
            self._wake.set()
        if self.after_commit is not None:
            self.after_commit(accept)
        else:
            accept()

    # -- the sender task -------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Release due batches and send, until cancelled (supervised: state survives a restart)."""
        if self.summary_at is not None and self.summary is not None and self.next_summary is None:
            self.next_summary = next_summary(self.clock.now(), self.summary_at)
        while True:
            self._wake.clear()
            now = self.clock.monotonic()
            self._summary_due()
            self._release(self.pacer.take(now))
            if await self._send_ready(now):
                continue  # time passed while sending: look again before sleeping
            await self._sleep(self._next_wake(now))

    def _summary_due(self) -> None:
        if self.next_summary is None or self.summary is None or self.clock.now() < self.next_summary:
            return
        when = self.next_summary
        self.next_summary = next_summary(self.clock.now(), self.summary_at) if self.summary_at else None
        try:
            body = self.summary(when)
        except Exception:  # a broken source costs the summary, never the sender
            log.exception("notify.summary_failed")
            return
        self._enqueue(message(k.DAILY_SUMMARY, f"Daily summary {when:%Y-%m-%d}", body, paper=self.paper,
                              bot=self.bot))

    def _release(self, batches: Sequence[Any]) -> None:
        for batch in batches:
            title, body = collapse(batch.notes, batch.extra)
            self._enqueue(message(batch.kind, title, body, paper=self.paper, bot=self.bot))

    def _enqueue(self, msg: Message) -> None:
        msg = Message(msg.kind, self.redactor.scrub(msg.title), self.redactor.scrub(msg.body))
        for o in self.out:
            if len(o.queue) >= self.queue_size:
                o.queue.popleft()
                o.dropped += 1
                self.count("dropped", "queue_full")
                log.warning("notify.dropped", target=o.target.index, reason="queue_full", queued=len(o.queue))
            o.queue.append(msg)

    async def _send_ready(self, now: float) -> bool:
        """Send the head of every target's queue whose retry time has come; True when anything was tried."""
        tried = False
        for o in self.out:
            if o.queue and o.retry_at <= now:
                tried = True
                await self._send_one(o)
        return tried

    async def _send_one(self, o: Outgoing) -> bool:
        async with self._sending:  # one send at a time (the task, or `flush` at stop)
            if not o.queue:
                return False
            msg = o.queue[0]
            sending = asyncio.ensure_future(asyncio.to_thread(o.target.send, msg.title, msg.body))
            try:
                ok = await asyncio.shield(sending)
            except asyncio.CancelledError:
                # The message may be on the wire already: record the outcome (bounded by Apprise's timeouts),
                # so a stop's flush neither loses it nor sends it twice.
                self._sent(o, msg, await sending)
                raise
            return self._sent(o, msg, ok)

    def _sent(self, o: Outgoing, msg: Message, ok: bool) -> bool:
        if ok:
            if o.queue and o.queue[0] is msg:
                o.queue.popleft()
            o.sent += 1
            o.failures = 0
            self.count("sent", str(o.target.index))
            log.info("notify.sent", target=o.target.index, service=o.target.service, kind=msg.kind,
                     queued=len(o.queue))
            return True
        o.failed += 1
        o.failures += 1
        delay = backoff(o.failures)
        o.retry_at = self.clock.monotonic() + delay
        self.count("failed", str(o.target.index))
        log.warning("notify.send_failed", target=o.target.index, service=o.target.service, kind=msg.kind,
                    failures=o.failures, retry_in_s=delay, queued=len(o.queue))
        return False

    def _next_wake(self, now: float) -> float | None:
        times = [t for t in (self.pacer.next_due(),) if t is not None]
        times += [o.retry_at for o in self.out if o.queue]
        wake = min(times) - now if times else None
        if self.next_summary is not None:
            left = (self.next_summary - self.clock.now()).total_seconds()
            wake = left if wake is None else min(wake, left)
        return None if wake is None else max(0.0, wake)

    async def _sleep(self, seconds: float | None) -> None:
        """Until `seconds` of clock time passed or a note arrived."""
        tasks: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
        if seconds is not None:
            tasks.append(asyncio.ensure_future(self.clock.sleep(seconds)))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                if not t.done():
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t

    # -- stop, test, status ---------------------------------------------------------------------------------

    async def flush(self, bound_s: float = FLUSH_MAX_S) -> None:
        """At stop: every waiting batch as a message now, and one try per queued message, within `bound_s`
        wall seconds (a target that fails keeps the rest; what is left is logged)."""
        self._release(self.pacer.take(self.clock.monotonic(), everything=True))

        async def once() -> None:
            for o in self.out:
                while o.queue and await self._send_one(o):
                    pass
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(once(), timeout=bound_s)
        left = {o.target.index: len(o.queue) for o in self.out if o.queue}
        if left:
            log.warning("notify.unsent_at_stop", queued=left)

    def status(self) -> dict[str, Any]:
        """For `/status`: per target (by index and service, never the URL) sent, failed, dropped, queued."""
        now = self.clock.monotonic()
        return {
            "targets": [{"target": o.target.index, "service": o.target.service, "sent": o.sent, "failed": o.failed,
                         "dropped": o.dropped, "queued": len(o.queue),
                         "retry_in_s": round(max(0.0, o.retry_at - now), 1) if o.queue and o.failures else None}
                        for o in self.out],
            "waiting": self.pacer.waiting(),
            "events": sorted(self.kinds),
            "next_summary": self.next_summary.isoformat() if self.next_summary else None,
        }


async def send_test(settings: Settings, targets: Sequence[Target]) -> dict[int, bool]:
    """`tradebot notify-test`: one test message to every target, each tried once; which worked."""
    redactor = Redactor(settings.secrets())
    msg = message(k.TEST, "Test notification", f"tradebot {settings.bot_name} ({settings.mode}) can reach you "
                  "here.", paper=settings.mode == "paper", bot=settings.bot_name)
    title, body = redactor.scrub(msg.title), redactor.scrub(msg.body)
    results = await asyncio.gather(*(asyncio.to_thread(t.send, title, body) for t in targets))
    return {t.index: ok for t, ok in zip(targets, results, strict=True)}
