"""Liveness and availability, kept apart.

*Liveness* is about this process: the event loop answers and scheduled jobs start and finish on time
(whatever their result), measured on wall time. It gates the systemd watchdog: a stuck daemon is restarted.
*Availability* is about the world: an upstream service down, a feed stale, a strategy failing. It shows on
`/health` and as alarms, and never makes systemd restart a daemon that is fine but waiting on the network.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bot.events import AlarmCleared, AlarmRaised, Event, FeedFresh, FeedStale
from bot.logs import get_logger
from bot.supervise import Jobs
from bot.systemd import Notifier

log = get_logger("bot.health")

LOOP_PROBE_S = 1.0  # how often the loop probe runs (and the watchdog is pinged)
MAX_LOOP_LAG_S = 5.0  # a loop this late to wake is not live
# How far past three of its slots a job may run before it counts as wedged. A poll waiting on an upstream
# that accepts connections and never answers is an outage, not a wedge: one call may take every attempt's
# whole timeout (30 s x 4 attempts in `bot.http`), so the grace covers that and the watchdog keeps going.
JOB_GRACE_S = 120.0
# Alarms about the world the daemon needs (a stale feed, Atlas refusing or far behind): `/health` answers 503
# while one is active. Others (a strategy failing, clock skew) make it "degraded" but still 200.
UPSTREAM_ALARMS = ("feed:", "atlas:", "recorder:", "upstream:")


def unavailable(alarms: Iterable[str]) -> list[str]:
    """The active alarms that mean an upstream the daemon needs is unreachable or stale."""
    return sorted(a for a in alarms if a.startswith(UPSTREAM_ALARMS))


@dataclass
class Alarms:
    """Active alarms by name, fed from the event path (a subscriber)."""

    active: dict[str, dict[str, Any]] = field(default_factory=dict)
    raised_total: int = 0

    def on_event(self, event: Event) -> None:
        if isinstance(event, AlarmRaised):
            self._raise(event.name, event.detail, event.at.isoformat())
        elif isinstance(event, AlarmCleared):
            self._clear(event.name)
        elif isinstance(event, FeedStale):
            self._raise(f"feed:{event.stream}:stale", f"newest closed candle {event.age_s}s old",
                        event.at.isoformat())
        elif isinstance(event, FeedFresh):
            self._clear(f"feed:{event.stream}:stale")

    def _raise(self, name: str, detail: str, since: str) -> None:
        if name not in self.active:
            self.raised_total += 1
            log.warning("alarm.raised", alarm=name, detail=detail)
        self.active[name] = {"detail": detail, "since": self.active.get(name, {}).get("since", since)}

    def _clear(self, name: str) -> None:
        if self.active.pop(name, None) is not None:
            log.info("alarm.cleared", alarm=name)

    def status(self) -> dict[str, Any]:
        return dict(sorted(self.active.items()))


class Liveness:
    """Measures event-loop lag and overdue jobs; pings the systemd watchdog only while live, and keeps the
    one-line `STATUS=` current."""

    def __init__(self, jobs: Jobs, notifier: Notifier, *, probe_s: float = LOOP_PROBE_S,
                 grace_s: float = JOB_GRACE_S, status_line: Callable[[], str] | None = None) -> None:
        self.jobs = jobs
        self.notifier = notifier
        self.probe_s = probe_s
        self.grace_s = grace_s
        self.status_line = status_line
        self.loop_lag_s = 0.0
        self.last_probe: float | None = None
        self.pings = 0
        self._was_live = True

    def interval_s(self) -> float:
        """Probe (and ping) period: at most half the watchdog timeout, as systemd asks."""
        wd = self.notifier.watchdog_seconds
        return self.probe_s if wd is None else max(0.01, min(self.probe_s, wd / 2))

    async def run(self) -> None:
        """The probe loop (a supervised task)."""
        interval = self.interval_s()
        while True:
            before = time.monotonic()
            await asyncio.sleep(interval)
            self.last_probe = now = time.monotonic()
            self.loop_lag_s = max(0.0, now - before - interval)
            self.probe()

    def probe(self) -> None:
        """One check: ping when live, say when liveness is lost or regained, refresh STATUS=."""
        live = self.live()
        if live and self.notifier.watchdog_seconds is not None and self.notifier.watchdog():
            self.pings += 1
        if live != self._was_live:
            if live:
                log.info("liveness.regained")
            else:
                log.warning("liveness.lost", loop_lag_s=round(self.loop_lag_s, 3), overdue_jobs=self.jobs.overdue(
                    self.grace_s), note="the systemd watchdog is not pinged while this lasts")
            self._was_live = live
        if self.status_line is not None:
            self.notifier.status_changed(self.status_line())

    def live(self) -> bool:
        """The loop answers and no job is overdue."""
        if self.loop_lag_s > MAX_LOOP_LAG_S:
            return False
        if self.last_probe is not None and time.monotonic() - self.last_probe > self.probe_s + MAX_LOOP_LAG_S:
            return False
        return not self.jobs.overdue(self.grace_s)

    def status(self) -> dict[str, Any]:
        return {"live": self.live(), "loop_lag_s": round(self.loop_lag_s, 4),
                "overdue_jobs": self.jobs.overdue(self.grace_s),
                "watchdog_s": self.notifier.watchdog_seconds, "watchdog_pings": self.pings}
