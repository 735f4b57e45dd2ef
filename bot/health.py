"""Liveness and availability, kept apart.

*Liveness* is about this process: the event loop answers and scheduled jobs start and finish on time
(whatever their result), measured on wall time. It gates the systemd watchdog: a stuck daemon is restarted.
*Availability* is about the world: an upstream service down, a feed stale, a strategy failing. It shows on
`/health` and as alarms, and never makes systemd restart a daemon that is fine but waiting on the network.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from bot.events import AlarmCleared, AlarmRaised, Event, FeedFresh, FeedStale
from bot.logs import get_logger
from bot.supervise import Jobs
from bot.systemd import Notifier

log = get_logger("bot.health")

LOOP_PROBE_S = 1.0  # how often the loop probe runs
MAX_LOOP_LAG_S = 5.0  # a loop this late to wake is not live


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
    """Measures event-loop lag and overdue jobs; pings the systemd watchdog only while live."""

    def __init__(self, jobs: Jobs, notifier: Notifier) -> None:
        self.jobs = jobs
        self.notifier = notifier
        self.loop_lag_s = 0.0
        self.last_probe: float | None = None

    async def run(self) -> None:
        """The probe loop (a supervised task)."""
        while True:
            before = time.monotonic()
            await asyncio.sleep(LOOP_PROBE_S)
            self.last_probe = now = time.monotonic()
            self.loop_lag_s = max(0.0, now - before - LOOP_PROBE_S)
            if self.live() and self.notifier.watchdog_seconds is not None:
                self.notifier.watchdog()

    def live(self) -> bool:
        """The loop answers and no job is overdue."""
        if self.loop_lag_s > MAX_LOOP_LAG_S:
            return False
        if self.last_probe is not None and time.monotonic() - self.last_probe > LOOP_PROBE_S + MAX_LOOP_LAG_S:
            return False
        return not self.jobs.overdue()

    def status(self) -> dict[str, Any]:
        return {"live": self.live(), "loop_lag_s": round(self.loop_lag_s, 4), "overdue_jobs": self.jobs.overdue()}
