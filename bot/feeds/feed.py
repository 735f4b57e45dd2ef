"""Feeds: fetch candles for one stream, keep its CandleBook, warm up, backfill, and hand closed candles on.

A `CandleSource` knows one API (through its client in `bot.clients`); a `Stream` owns the book and the
bookkeeping: where to fetch from, what was last emitted (persisted in the store, so a restart backfills the
gap since the last candle it saw and never emits a candle twice), and who listens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bot.clients.atmos import AtmosClient
from bot.clients.sfox import SfoxClient
from bot.clock import Clock, parse_iso
from bot.domain import Candle
from bot.errors import BotError
from bot.logs import get_logger
from bot.market.candles import CandleBook
from bot.store import Store

log = get_logger("bot.market.feeds")

# How far back a restart may backfill; older gaps are not worth the request budget.
MAX_BACKFILL = timedelta(days=7)


class CandleSource(Protocol):
    """Fetches candles of one instrument from one API."""

    service: str
    period_s: int

    async def fetch(self, start: datetime, end: datetime) -> list[Candle]: ...


@dataclass
class AtmosSource:
    client: AtmosClient
    exchange: str
    symbol: str
    period_s: int = 60
    service: str = "atmos"

    async def fetch(self, start: datetime, end: datetime) -> list[Candle]:
        # The history endpoint, not `latest`: only it returns the final version of the minute that just
        # closed (one request covers the closed candles and the new partial one).
        return await self.client.history(self.exchange, self.symbol, start, end)


@dataclass
class SfoxSource:
    client: SfoxClient
    pair: str
    period_s: int = 60
    service: str = "sfox"

    async def fetch(self, start: datetime, end: datetime) -> list[Candle]:
        return await self.client.candles(self.pair, start, end, self.period_s)


@dataclass(frozen=True, slots=True)
class ClosedCandle:
    """A candle handed to listeners. `backfill` is True for candles fetched late (after a restart)."""

    stream: str
    candle: Candle
    backfill: bool


Listener = Callable[[ClosedCandle], Awaitable[None]]
Primer = Callable[[str, Sequence[Candle]], None]


class Stream:
    """One polled stream: source + CandleBook + persistence of the last emitted candle."""

    def __init__(self, key: str, source: CandleSource, store: Store, clock: Clock, *,
                 warmup: int, max_candles: int = 2000, stale_grace_s: float = 30.0) -> None:
        self.key = key
        self.source = source
        self.store = store
        self.clock = clock
        self.warmup = max(1, warmup)
        self.book = CandleBook(key, source.period_s, max(max_candles, self.warmup + 10))
        self.listeners: list[Listener] = []
        self.primers: list[Primer] = []
        self.polls = 0
        self.errors = 0
        self.last_error: str | None = None
        self.emitted = 0
        self.stale_grace_s = stale_grace_s
        self.stale = False

    @property
    def _cursor_key(self) -> str:
        return f"feed.{self.key}.last_closed"

    def last_seen(self) -> datetime | None:
        value = self.store.kv_get(self._cursor_key)
        return parse_iso(value) if isinstance(value, str) else None

    async def start(self) -> None:
        """Warm up from history and backfill the gap since the last candle seen before a restart."""
        now = self.clock.now()
        period = timedelta(seconds=self.source.period_s)
        # Minutes without trades are absent, so ask for a margin beyond the warm-up count.
        warm_start = now - period * (self.warmup + self.warmup // 5 + 10)
        seen = self.last_seen()
        start = warm_start if seen is None else max(min(seen - period * self.warmup, warm_start),
                                                    now - MAX_BACKFILL)
        try:
            candles = await self.source.fetch(start, now)
        except BotError as err:
            self._failed("feed.warmup_failed", err)
            return
        final = [c for c in candles if not c.partial]
        history = [c for c in final if seen is None or c.time <= seen]
        # Candles the bot saw before (or, on a first start, the warm-up history) prime the strategy
        # windows without being evaluated; newer ones after a restart are the backfill and are evaluated.
        if history:
            self.book.update(history)
            for prime in self.primers:
                prime(self.key, history)
        elif seen is not None:
            self.book.seed(seen)
        backfill = [c for c in candles if c.partial or (seen is not None and c.time > seen)]
        log.info("feed.warmed_up", stream=self.key, candles=len(history), backfill=len([c for c in backfill
                 if not c.partial]), since=seen.isoformat() if seen else None)
        await self._emit(self.book.update(backfill), backfill=True)
        if seen is None and self.book.last_closed is not None:
            self.store.kv_set(self._cursor_key, self.book.last_closed.time.isoformat())

    async def poll(self) -> list[Candle]:
        """Fetch from the first candle not yet final; emit what closed. Errors are logged, never raised."""
        now = self.clock.now()
        start = self.book.fetch_from(now, self.warmup)
        self.polls += 1
        try:
            candles = await self.source.fetch(start, now)
        except BotError as err:
            self._failed("feed.poll_failed", err)
            self._check_stale(now)
            return []
        emitted = self.book.update(candles)
        await self._emit(emitted, backfill=False)
        self._check_stale(now)
        return emitted

    def _check_stale(self, now: datetime) -> None:
        """Say so once when the stream goes stale (signals are then suppressed) and once when it recovers."""
        st = self.book.staleness(now, self.stale_grace_s)
        if st.stale and not self.stale:
            log.warning("feed.stale", stream=self.key, age_s=st.age_s, limit_s=st.limit_s,
                        note="signals on this stream are suppressed until fresh candles arrive")
        elif self.stale and not st.stale:
            log.info("feed.fresh", stream=self.key, age_s=st.age_s)
        self.stale = st.stale

    async def _emit(self, candles: list[Candle], *, backfill: bool) -> None:
        for c in candles:
            for listener in self.listeners:
                await listener(ClosedCandle(self.key, c, backfill))
            self.emitted += 1
        if candles:
            # Persist after the listeners ran: a crash in between re-evaluates at most these candles.
            self.store.kv_set(self._cursor_key, candles[-1].time.isoformat())

    def _failed(self, event: str, err: BotError) -> None:
        self.errors += 1
        self.last_error = f"{err.kind}: {err.message}"
        log.warning(event, stream=self.key, kind=err.kind, error=str(err))

    def status(self, now: datetime, grace_s: float) -> dict[str, object]:
        st = self.book.staleness(now, grace_s)
        last = self.book.last_closed
        return {
            "service": self.source.service,
            "period_s": self.source.period_s,
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
