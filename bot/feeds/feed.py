"""CandleFeed: poll one stream, keep its CandleBook, warm up, backfill, and run a cycle per closed candle.

The feed owns the stream's cursor (the newest candle it has handed on, persisted in the store). For each
closed candle it asks the `Cycle` (the strategy instances on the stream) to evaluate, then, in ONE store
transaction, publishes the `CandleClosed`, lets the cycle commit its evaluations (hand-off keys, outbox rows
of subscribers) and moves the cursor. A crash before that commit re-runs the cycle after a restart; a crash
after it never hands the candle's evaluations off again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from bot.clock import Clock, floor_period, parse_iso
from bot.domain import Candle
from bot.errors import BotError
from bot.events import CandleClosed, CycleCommitted, Event, EventBus, FeedFresh, FeedStale, Tick
from bot.feeds.candles import CandleBook
from bot.feeds.sources import CandleSource
from bot.logs import get_logger
from bot.store import Store

log = get_logger("bot.feeds")

# How far back a restart may backfill at most (`market.max_backfill_hours` may ask for less); older gaps are not
# worth the request budget, and the evaluator prunes hand-off keys older than this.
MAX_BACKFILL = timedelta(days=7)


class Cycle(Protocol):
    """The work done when one candle of a stream closes (the evaluator implements it)."""

    def warmup_for(self, stream: str) -> int:
        """Closed candles the stream must provide before its instances can decide."""
        ...

    def prime(self, stream: str, candles: Sequence[Candle]) -> None:
        """Feed history that was already handed on (or warm-up history) without evaluating it."""
        ...

    async def evaluate(self, closed: CandleClosed) -> list[Event]:
        """Evaluate every instance on the stream; nothing is published yet."""
        ...

    def commit(self, results: list[Event]) -> None:
        """Inside the feed's transaction: claim hand-off keys and publish the results."""
        ...

    def reset(self, stream: str) -> None:
        """Forget the stream's windows (a cycle failed before its commit: they are primed again)."""
        ...


class CandleFeed:
    """One polled candle stream: source + CandleBook + the persisted cursor + its cycle."""

    def __init__(self, key: str, source: CandleSource, store: Store, clock: Clock, events: EventBus,
                 cycle: Cycle | None = None, *, warmup: int | None = None, max_candles: int = 2000,
                 stale_grace_s: float = 30.0, max_backfill: timedelta = MAX_BACKFILL) -> None:
        self.key = key
        self.source = source
        self.store = store
        self.clock = clock
        self.events = events
        self.cycle = cycle
        if warmup is None:
            warmup = cycle.warmup_for(key) if cycle is not None else 1
        self.warmup = max(1, warmup)
        self.book = CandleBook(key, source.period_s, max(max_candles, self.warmup + 10))
        self.polls = 0
        self.errors = 0
        self.last_error: str | None = None
        self.emitted = 0
        self.stale_grace_s = stale_grace_s
        self.max_backfill = min(max_backfill, MAX_BACKFILL)
        self.stale = False
        self.warmed = False

    @property
    def _cursor_key(self) -> str:
        return f"feed.{self.key}.last_closed"

    def last_seen(self) -> datetime | None:
        """The newest candle handed on before (persisted across restarts), if any."""
        value = self.store.kv_get(self._cursor_key)
        if isinstance(value, datetime):
            return value
        return parse_iso(value) if isinstance(value, str) else None

    async def start(self) -> None:
        """Warm up; a failure is logged and the next poll tries again (nothing is re-emitted as live)."""
        await self.warm_up()

    async def warm_up(self) -> bool:
        """Prime the strategy windows from history and backfill the gap since the cursor. Never raises."""
        try:
            return await self._warm_up()
        except Exception:  # a bug or a store error: this stream warms up again at its next poll
            log.exception("feed.warmup_crashed", stream=self.key)
            self._reset()
            return False

    async def _warm_up(self) -> bool:
        now = self.clock.now()
        period = timedelta(seconds=self.source.period_s)
        # Minutes without trades are absent, so ask for a margin beyond the warm-up count.
        margin = period * (self.warmup + self.warmup // 5 + 10)
        warm_start = now - margin
        seen = self.last_seen()
        oldest = now - self.max_backfill
        if seen is not None and seen < oldest:
            # Down longer than the backfill reaches: the minutes before `oldest` are skipped (not evaluated, not
            # recorded); the warm-up history just before it primes the windows as after any restart.
            skipped_to = floor_period(oldest, self.source.period_s)
            log.warning("feed.backfill_capped", stream=self.key, since=seen.isoformat(),
                        skipped_to=skipped_to.isoformat(), skipped_candles=int((skipped_to - seen) / period),
                        max_backfill_hours=self.max_backfill.total_seconds() / 3600)
            seen = skipped_to
        start = warm_start if seen is None else min(seen - margin, warm_start)
        self.polls += 1
        try:
            candles = await self.source.fetch(start, now)
        except BotError as err:
            self._failed("feed.warmup_failed", err)
            return False
        self._tick(candles)
        final = [c for c in candles if not c.partial]
        history = [c for c in final if seen is None or c.time <= seen]
        # Candles handed on before (or, on a first start, the warm-up history) prime the strategy windows
        # without being evaluated; newer ones after a restart are the backfill and are evaluated.
        if history:
            self.book.update(history)
            if self.cycle is not None:
                self.cycle.prime(self.key, history)
        elif seen is not None:
            self.book.seed(seen)
        self.warmed = True
        backfill = [c for c in candles if c.partial or (seen is not None and c.time > seen)]
        log.info("feed.warmed_up", stream=self.key, candles=len(history),
                 backfill=sum(1 for c in backfill if not c.partial), since=seen.isoformat() if seen else None)
        await self._emit(self.book.update(backfill), backfill=True)
        if seen is None and self.book.last_closed is not None:
            self.store.kv_set(self._cursor_key, self.book.last_closed.time)
        return True

    async def poll(self) -> list[Candle]:
        """Fetch from the first candle not yet final; run the cycle for each that closed. Never raises."""
        try:
            return await self._poll()
        except Exception:
            log.exception("feed.poll_crashed", stream=self.key)
            self._reset()
            return []

    async def _poll(self) -> list[Candle]:
        if not self.warmed:
            await self.warm_up()
            self._check_stale(self.clock.now())
            return []
        now = self.clock.now()
        start = self.book.fetch_from(now, self.warmup)
        self.polls += 1
        polled = time.monotonic()  # wall: the tick latency starts when the poll does
        try:
            candles = await self.source.fetch(start, now)
        except BotError as err:
            self._failed("feed.poll_failed", err)
            self._check_stale(now)
            return []
        fetched = time.monotonic()  # wall: a candle closed by this answer is available from here
        self._tick(candles)
        emitted = self.book.update(candles)
        await self._emit(emitted, backfill=False, polled=polled, fetched=fetched)
        log.debug("feed.polled", stream=self.key, candles=len(candles), closed=len(emitted))
        self._check_stale(self.clock.now())
        return emitted

    def _tick(self, candles: list[Candle]) -> None:
        if candles:
            newest = max(candles, key=lambda c: c.time)
            self.events.publish(Tick(at=self.clock.now(), stream=self.key, candle=newest))

    def _check_stale(self, now: datetime) -> None:
        """Say so once when the stream goes stale (signals are then suppressed) and once when it recovers."""
        st = self.book.staleness(now, self.stale_grace_s)
        if st.stale and not self.stale:
            log.warning("feed.stale", stream=self.key, age_s=st.age_s, limit_s=st.limit_s,
                        note="signals on this stream are suppressed until fresh candles arrive")
            self.events.publish(FeedStale(at=now, stream=self.key, age_s=st.age_s, limit_s=st.limit_s))
        elif self.stale and not st.stale:
            log.info("feed.fresh", stream=self.key, age_s=st.age_s)
            self.events.publish(FeedFresh(at=now, stream=self.key, age_s=st.age_s))
        self.stale = st.stale

    async def _emit(self, candles: list[Candle], *, backfill: bool, polled: float | None = None,
                    fetched: float | None = None) -> None:
        for c in candles:
            closed = CandleClosed(at=self.clock.now(), stream=self.key, candle=c, backfill=backfill,
                                  fetched_mono=fetched)
            results = await self.cycle.evaluate(closed) if self.cycle is not None else []
            # The candle, its evaluations' hand-off keys and the cursor commit together. If that fails, the
            # book and the windows (already ahead of the cursor) are dropped: the stream warms up again from
            # the cursor, so no candle is skipped and none is evaluated twice. Not synced to the disk (see
            # `Store`): a power loss can roll back the newest candles with their cursor, which are fetched again.
            with self.store.transaction(durable=False):
                self.events.publish(closed)
                if self.cycle is not None:
                    self.cycle.commit(results)
                self.store.kv_set(self._cursor_key, c.time)
            self.emitted += 1
            if polled is not None:
                self.events.publish(CycleCommitted(at=self.clock.now(), stream=self.key, candle_time=c.time,
                                                   seconds=time.monotonic() - polled))

    def _reset(self) -> None:
        """Back to "not warmed up": a fresh book and fresh windows, rebuilt from the cursor by the next poll."""
        self.book = CandleBook(self.key, self.source.period_s, self.book.max_candles)
        if self.cycle is not None:
            self.cycle.reset(self.key)
        self.warmed = False

    def _failed(self, event: str, err: BotError) -> None:
        self.errors += 1
        self.last_error = f"{err.kind}: {err.message}"
        log.warning(event, stream=self.key, kind=err.kind, error=str(err))

    def status(self, now: datetime) -> dict[str, object]:
        """This stream's part of `/status`."""
        st = self.book.staleness(now, self.stale_grace_s)
        last = self.book.last_closed
        return {
            "service": self.source.service,
            "period_s": self.source.period_s,
            "warmed_up": self.warmed,
            "last_closed": last.time.isoformat() if last else None,
            "partial": self.book.partial.time.isoformat() if self.book.partial else None,
            "candles": len(self.book),
            "stale": st.stale,
            "age_s": round(st.age_s, 1) if st.age_s is not None else None,
            "polls": self.polls,
            "errors": self.errors,
            "last_error": self.last_error,
            "late": self.book.late,
        }
