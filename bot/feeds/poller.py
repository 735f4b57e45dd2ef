"""The poller: every candle and sensor feed of the configuration, the poll plan, and their jobs.

Feeds are built from the shared clients (one per service, built in the composition root), planned within
each service's request budget, warmed up in the daemon's warm-up phase and scheduled in its schedule phase.
Job times are converted from clock time to wall time, so the accelerated demo clock polls just after each
simulated minute closes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.clients.registry import Clients
from bot.clock import Clock, floor_period
from bot.events import EventBus
from bot.feeds.feed import CandleFeed, Cycle
from bot.feeds.planning import PlannedPoll, PollPlan, StreamSpec, plan_polls
from bot.feeds.sensors import SensorFeed
from bot.feeds.sources import AtmosSource, CandleSource, SfoxSource
from bot.logs import get_logger
from bot.settings import AtmosFeed, Settings, SfoxFeed
from bot.store import Store
from bot.supervise import Jobs

log = get_logger("bot.feeds")


def first_run(now: datetime, poll: PlannedPoll, period_s: int) -> datetime:
    """The next instant (clock time) at which `poll` is due: just after a period boundary."""
    boundary = floor_period(now, period_s)
    due = boundary + timedelta(seconds=poll.offset_s)
    while due <= now:
        due += timedelta(seconds=period_s)
    return due


class Poller:
    """Owns the feeds of every configured strategy stream and sensor device, and polls them per the plan."""

    def __init__(self, settings: Settings, clock: Clock, store: Store, events: EventBus, clients: Clients,
                 cycle: Cycle | None) -> None:
        self.settings = settings
        self.clock = clock
        self.clients = clients
        self.feeds: dict[str, CandleFeed] = {}
        self.sensors: dict[str, SensorFeed] = {}
        specs: list[StreamSpec] = []
        for cfg in settings.strategies:
            key = cfg.feed.key
            if not cfg.enabled or key in self.feeds:
                continue
            source = self._source(cfg.feed)
            self.feeds[key] = CandleFeed(key, source, store, clock, events, cycle,
                                         max_candles=settings.market.max_candles,
                                         stale_grace_s=settings.market.stale_grace_seconds,
                                         max_backfill=timedelta(hours=settings.market.max_backfill_hours))
            specs.append(StreamSpec(key, source.service, source.period_s, feeds_strategy=True))
        if settings.atmotube.enabled:
            for mac in settings.atmotube.devices:
                sensor = SensorFeed(clients.atmotube, mac, clock, events, store)
                self.sensors[sensor.key] = sensor
                # A poll re-reads a trailing window that can span two calendar days: up to two requests.
                specs.append(StreamSpec(sensor.key, "atmotube", settings.atmotube.poll_seconds,
                                        feeds_strategy=False, requests_per_poll=2))
        budgets = {"atmos": settings.atmos.requests_per_minute, "sfox": settings.sfox.requests_per_minute,
                   "atmotube": settings.atmotube.requests_per_minute}
        self.plan: PollPlan = plan_polls(specs, budgets)
        for p in self.plan.polls:
            log.info("poll.planned", stream=p.key, service=p.service, every_s=p.interval_s, offset_s=p.offset_s,
                     stretch=p.stretch)
        for d in self.plan.dropped:
            # Said once, here, and kept on the status endpoint.
            log.warning("poll.dropped", stream=d.key, service=d.service, reason=d.reason)
            self.feeds.pop(d.key, None)
            self.sensors.pop(d.key, None)

    def _source(self, feed: AtmosFeed | SfoxFeed) -> CandleSource:
        if isinstance(feed, AtmosFeed):
            return AtmosSource(self.clients.atmos, feed.exchange, feed.symbol.upper())
        return SfoxSource(self.clients.sfox, feed.pair.lower(), feed.period)

    async def warm_up(self) -> None:
        """The warm-up phase: every candle feed primes its strategies and backfills (failures retried later),
        and every sensor is read once, so a short run still records readings."""
        results = await asyncio.gather(*(f.start() for f in self.feeds.values()),
                                       *(s.poll() for s in self.sensors.values()), return_exceptions=True)
        for r in results:  # feeds and sensors never raise; this is the last line of defence
            if isinstance(r, BaseException):
                log.error("feeds.warm_up_crashed", error=f"{type(r).__name__}: {r}")

    def schedule(self, jobs: Jobs) -> None:
        """The schedule phase: one job per planned poll, at its offset after each period closes."""
        speed = self.clock.speed
        now = self.clock.now()
        wall_now = datetime.now(UTC)
        for p in self.plan.polls:
            feed = self.feeds.get(p.key)
            if feed is not None:
                job: Any = feed.poll
                period = int(feed.source.period_s)
            else:
                job = self.sensors[p.key].poll
                period = int(p.interval_s / p.stretch)
            due = first_run(now, p, period)
            lead_s = (due - now).total_seconds() / speed
            jobs.every(f"poll:{p.key}", job, every_s=p.interval_s / speed,
                       start=wall_now + timedelta(seconds=lead_s), first_in_s=lead_s)

    def status(self) -> dict[str, Any]:
        now = self.clock.now()
        plan = self.plan
        return {
            "streams": {k: f.status(now) for k, f in self.feeds.items()},
            "sensors": {k: s.status() for k, s in self.sensors.items()},
            "plan": [{"stream": p.key, "service": p.service, "every_s": p.interval_s, "stretch": p.stretch}
                     for p in plan.polls],
            "dropped": [{"stream": d.key, "service": d.service, "reason": d.reason} for d in plan.dropped],
        }
