"""The market-data component: clients, streams, the poll plan, and its jobs on the one scheduler."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.clients.atmos import AtmosClient
from bot.clients.atmotube import AtmotubeClient, SensorTail
from bot.clients.sfox import SfoxClient
from bot.clock import Clock, floor_period
from bot.domain import SensorReading
from bot.errors import BotError
from bot.logs import get_logger
from bot.market.evaluator import Evaluator
from bot.market.feeds import AtmosSource, CandleSource, SfoxSource, Stream
from bot.market.planning import PlannedPoll, PollPlan, StreamSpec, plan_polls
from bot.settings import AtmosFeed, Settings, SfoxFeed
from bot.store import Store

log = get_logger("bot.market")


def first_run(now: datetime, poll: PlannedPoll, period_s: int) -> datetime:
    """The next instant (clock time) at which `poll` is due: just after a period boundary."""
    boundary = floor_period(now, period_s)
    due = boundary + timedelta(seconds=poll.offset_s)
    while due <= now:
        due += timedelta(seconds=period_s)
    return due


class MarketData:
    """Owns the candle streams of every configured strategy and polls them per the plan."""

    name = "market"

    def __init__(self, settings: Settings, clock: Clock, store: Store, scheduler: AsyncIOScheduler,
                 evaluator: Evaluator, urls: Callable[[], Mapping[str, str]] = dict) -> None:
        self.settings = settings
        self.clock = clock
        self.store = store
        self.scheduler = scheduler
        self.evaluator = evaluator
        self._urls = urls
        self.streams: dict[str, Stream] = {}
        self.plan: PollPlan | None = None
        self.atmos: AtmosClient | None = None
        self.sfox: SfoxClient | None = None
        self.atmotube: AtmotubeClient | None = None
        self.sensors: dict[str, SensorTail] = {}
        self.sensor_stats: dict[str, dict[str, Any]] = {}
        self.sensor_listeners: list[Callable[[str, list[SensorReading]], Any]] = []

    def _source(self, feed: AtmosFeed | SfoxFeed) -> CandleSource:
        urls = self._urls()
        if isinstance(feed, AtmosFeed):
            if self.atmos is None:
                self.atmos = AtmosClient.create(self.settings.atmos, self.clock, base_url=urls.get("atmos"))
            return AtmosSource(self.atmos, feed.exchange, feed.symbol.upper())
        if self.sfox is None:
            self.sfox = SfoxClient.create(self.settings.sfox, self.clock, base_url=urls.get("sfox"))
        return SfoxSource(self.sfox, feed.pair.lower(), feed.period)

    def budgets(self) -> dict[str, int]:
        s = self.settings
        return {"atmos": s.atmos.requests_per_minute, "sfox": s.sfox.requests_per_minute,
                "atmotube": s.atmotube.requests_per_minute}

    def _sensor_specs(self) -> list[StreamSpec]:
        cfg = self.settings.atmotube
        if not cfg.enabled:
            return []
        self.atmotube = AtmotubeClient.create(cfg, self.clock, base_url=self._urls().get("atmotube"))
        specs = []
        for mac in cfg.devices:
            key = f"atmotube:{mac}"
            self.sensors[key] = SensorTail(self.atmotube, mac)
            self.sensor_stats[key] = {"polls": 0, "readings": 0, "errors": 0, "last": None}
            # A poll re-reads a trailing window that can span two calendar days: up to two requests.
            specs.append(StreamSpec(key, "atmotube", cfg.poll_seconds, feeds_strategy=False, requests_per_poll=2))
        return specs

    async def poll_sensor(self, key: str) -> list[SensorReading]:
        """Fetch new (including late-arriving) readings of one device; errors are logged, never raised."""
        stats = self.sensor_stats[key]
        stats["polls"] += 1
        try:
            fresh = await self.sensors[key].poll()
        except BotError as err:
            stats["errors"] += 1
            log.warning("sensor.poll_failed", stream=key, kind=err.kind, error=str(err))
            return []
        stats["readings"] += len(fresh)
        if fresh:
            newest = fresh[-1]
            stats["last"] = newest.time.isoformat()
            log.info("sensor.readings", stream=key, new=len(fresh), newest=newest.time.isoformat(),
                     values={k: v for k, v in newest.values.items() if v is not None})
        for listener in self.sensor_listeners:
            await listener(key, fresh)
        return fresh

    async def start(self) -> None:
        specs: list[StreamSpec] = []
        for cfg in self.settings.strategies:
            key = cfg.feed.key
            if not cfg.enabled or key in self.streams:
                continue
            source = self._source(cfg.feed)
            stream = Stream(key, source, self.store, self.clock, warmup=self.evaluator.warmup_for(key),
                            max_candles=self.settings.market.max_candles,
                            stale_grace_s=self.settings.market.stale_grace_seconds)
            stream.primers.append(self.evaluator.prime)
            stream.listeners.append(self.evaluator.on_closed)
            self.streams[key] = stream
            specs.append(StreamSpec(key, source.service, source.period_s, feeds_strategy=True))
        specs += self._sensor_specs()
        self.plan = plan = plan_polls(specs, self.budgets())
        for p in plan.polls:
            log.info("poll.planned", stream=p.key, service=p.service, every_s=p.interval_s, offset_s=p.offset_s,
                     stretch=p.stretch)
        for d in plan.dropped:
            # Said once, here, and kept on the status endpoint.
            log.warning("poll.dropped", stream=d.key, service=d.service, reason=d.reason)
        dropped = {d.key for d in plan.dropped}
        for key in dropped:
            self.streams.pop(key, None)
            self.sensors.pop(key, None)
        await asyncio.gather(*(s.start() for s in self.streams.values()))
        speed = self.clock.speed
        now = self.clock.now()
        for p in plan.polls:
            if p.key in self.streams:
                job: Any = self.streams[p.key].poll
                period = int(self.streams[p.key].source.period_s)
            else:
                job = self.poll_sensor
                period = int(p.interval_s / p.stretch)
            due = first_run(now, p, period)
            wall_start = datetime.now(UTC) + timedelta(seconds=(due - now).total_seconds() / speed)
            self.scheduler.add_job(job, "interval", args=[] if p.key in self.streams else [p.key],
                                   seconds=p.interval_s / speed, start_date=wall_start,
                                   id=f"poll:{p.key}", name=f"poll {p.key}", max_instances=1, coalesce=True,
                                   misfire_grace_time=max(1, int(p.interval_s / speed)))

    async def stop(self) -> None:
        for job in list(self.scheduler.get_jobs()):
            if job.id.startswith("poll:"):
                job.remove()
        for client in (self.atmos, self.sfox, self.atmotube):
            if client is not None:
                await client.close()

    def status(self) -> dict[str, Any]:
        now = self.clock.now()
        grace = self.settings.market.stale_grace_seconds
        plan = self.plan
        clients: tuple[tuple[str, Any], ...] = (("atmos", self.atmos), ("sfox", self.sfox),
                                                ("atmotube", self.atmotube))
        http = {name: c.snapshot() for name, c in clients if c is not None}
        return {
            "streams": {k: s.status(now, grace) for k, s in self.streams.items()},
            "sensors": dict(self.sensor_stats),
            "plan": [] if plan is None else [
                {"stream": p.key, "service": p.service, "every_s": p.interval_s, "stretch": p.stretch}
                for p in plan.polls],
            "dropped": [] if plan is None else [{"stream": d.key, "service": d.service, "reason": d.reason}
                                                for d in plan.dropped],
            "http": http,
        }
