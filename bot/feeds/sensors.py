"""SensorFeed: poll one Atmotube device and publish each reading once, late uploads included.

Readings arrive late (a device uploads hours after it measured), so "once" cannot rest on a time cursor:
the times already handed on within the re-read window are kept in the store and updated in the same
transaction as the readings are published (and so recorded), so a restart neither repeats nor misses one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.clients.atmotube import AtmotubeClient, SensorTail
from bot.clock import Clock
from bot.domain import SensorReading
from bot.errors import BotError
from bot.events import EventBus, SensorReadingSeen
from bot.logs import get_logger
from bot.store import Store

log = get_logger("bot.feeds.sensors")


class SensorFeed:
    """One device: a `SensorTail` (re-reads a trailing window, returns only new readings) and counters."""

    def __init__(self, client: AtmotubeClient, device: str, clock: Clock, events: EventBus, store: Store) -> None:
        self.device = device.upper()
        self.key = f"atmotube:{self.device}"
        self.tail = SensorTail(client, self.device)
        self.clock = clock
        self.events = events
        self.store = store
        self._seen: set[datetime] = set(store.kv_get(self._seen_key, []))
        self.polls = 0
        self.readings = 0
        self.errors = 0
        self.last: str | None = None
        self.last_error: str | None = None

    async def poll(self) -> list[SensorReading]:
        """Fetch new readings and publish each; errors are logged and counted, never raised."""
        self.polls += 1
        try:
            fresh = await self.tail.poll()
        except BotError as err:
            self.errors += 1
            self.last_error = f"{err.kind}: {err.message}"
            log.warning("sensor.poll_failed", stream=self.key, kind=err.kind, error=str(err))
            return []
        fresh = [r for r in fresh if r.time not in self._seen]
        self.readings += len(fresh)
        if fresh:
            newest = fresh[-1]
            self.last = newest.time.isoformat()
            log.info("sensor.readings", stream=self.key, new=len(fresh), newest=self.last,
                     values={k: v for k, v in newest.values.items() if v is not None})
        now = self.clock.now()
        horizon = now - self.tail.lookback
        seen = {t for t in self._seen if t >= horizon} | {r.time for r in fresh}
        with self.store.transaction(durable=False):  # readings lost to a power loss are read again
            for reading in fresh:
                self.events.publish(SensorReadingSeen(at=now, device=self.device, reading=reading))
            self.store.kv_set(self._seen_key, sorted(seen))
        self._seen = seen
        return fresh

    @property
    def _seen_key(self) -> str:
        return f"sensor.{self.device}.seen"

    def status(self) -> dict[str, Any]:
        return {"polls": self.polls, "readings": self.readings, "errors": self.errors, "last": self.last,
                "last_error": self.last_error}
