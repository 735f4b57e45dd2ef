"""Atmos client: exchange pairs, 1-minute OHLCV history and the latest tick (`shared/contracts/atmos.md`).

This module owns Atmos's wire format: every route, query name and field name is in the block below, and
the contract's *(assumed)* parts are marked there. History comes as pages of *buckets* (up to 60 ticks
each), newest bucket first; `history` asks for the range with `start_time`/`end_time` and `limit=100` so
a week costs two or three requests, stops as soon as a page reaches `start` (or is short or empty),
de-duplicates ticks by time (a tick can appear in two pages when a bucket arrives between requests),
filters to `[start, end]` and returns candles oldest first. Gaps stay gaps. A tick is flagged
`partial=True` unless its minute ended a settle margin (`CANDLE_SETTLE`) before the request that fetched
it was sent (`Response.sent_at`), not before the answer happened to arrive.

Usage::

    async with AtmosClient.create(settings.atmos, clock) as atmos:
        candles = await atmos.history("binance", "BTCUSDT", start, end)
        tick = await atmos.latest("binance", "BTCUSDT")   # tick.partial while its minute runs
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import structlog

from bot.clients.base import ServiceClient, candle_partial
from bot.clock import Clock, iso_z, parse_iso
from bot.domain import Candle, to_decimal
from bot.errors import MalformedResponse
from bot.http import HttpService, Response, RollingWindowLimiter
from bot.settings import AtmosSettings

log = structlog.get_logger(__name__)

# ------------------------------------------------------------------------------ wire format (contract)
SERVICE = "atmos"
AUTH_HEADER = "x-atmos-key"  # the seed's one `Authorization:` example is a typo we do not follow
EXCHANGES = ("binance", "kraken", "coinbase")
ROUTE_PAIRS = "/v1/{exchange}/pairs/"
ROUTE_OHLCV = "/v1/{exchange}/{symbol}/ohlcv"
ROUTE_LATEST = "/v1/{exchange}/{symbol}/ohlcv/latest"
Q_LIMIT, Q_PAGE, Q_START, Q_END = "limit", "page", "start_time", "end_time"
PAGE_LIMIT = 100  # (assumed) maximum buckets per page; larger limits are clamped to it
BUCKETS_NEWEST_FIRST = True  # (assumed) page 0 holds the newest buckets
RANGE_SELECTS_OVERLAPPING_BUCKETS = True  # (assumed) buckets come whole: the client filters ticks
F_RESULTS, F_RESULT, F_TICKS, F_ERROR = "results", "result", "ticks", "error"
F_TIME, F_OPEN, F_HIGH, F_LOW, F_CLOSE = "time", "open", "high", "low", "close"
F_VOLUME, F_TRADES = "baseVolume", "trades"
TICK_SECONDS = 60
# ------------------------------------------------------------------------------------------------------

_PARSE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, ArithmeticError, OSError)


def _malformed(what: str, resp: Response | None = None) -> MalformedResponse:
    if resp is None:
        return MalformedResponse(what, service=SERVICE)
    return MalformedResponse(what, service=SERVICE, status=resp.status, body=resp.body)


def parse_tick(obj: Any, sent_at: datetime) -> Candle:
    """One wire tick → `Candle` (period 60), `partial` unless its minute ended a settle margin before
    `sent_at`, the clock time the request was sent."""
    if not isinstance(obj, dict):
        raise _malformed("tick is not an object")
    try:
        time = parse_iso(obj[F_TIME])
        trades = obj.get(F_TRADES)
        if trades is not None and (isinstance(trades, bool) or not isinstance(trades, int)):
            raise ValueError("trades: not an integer")
        return Candle(
            time=time,
            open=to_decimal(obj[F_OPEN], field_name=F_OPEN),
            high=to_decimal(obj[F_HIGH], field_name=F_HIGH),
            low=to_decimal(obj[F_LOW], field_name=F_LOW),
            close=to_decimal(obj[F_CLOSE], field_name=F_CLOSE),
            volume=to_decimal(obj[F_VOLUME], field_name=F_VOLUME),
            period=TICK_SECONDS,
            trades=trades,
            partial=candle_partial(time, TICK_SECONDS, sent_at),
        )
    except _PARSE_ERRORS as exc:
        raise _malformed(f"bad tick: {type(exc).__name__}: {str(exc)[:80]}") from None


def parse_page(data: Any, sent_at: datetime) -> tuple[int, list[Candle]]:
    """An OHLCV page → (number of buckets, every tick of every bucket, in wire order)."""
    if not isinstance(data, dict) or not isinstance(data.get(F_RESULTS), list):
        raise _malformed(f"page has no {F_RESULTS!r} list")
    candles: list[Candle] = []
    for bucket in data[F_RESULTS]:
        if not isinstance(bucket, dict) or not isinstance(bucket.get(F_TICKS), list):
            raise _malformed(f"bucket has no {F_TICKS!r} list")
        candles.extend(parse_tick(t, sent_at) for t in bucket[F_TICKS])
    return len(data[F_RESULTS]), candles


def parse_latest(data: Any, sent_at: datetime) -> Candle:
    """The `latest` answer → `Candle`."""
    if not isinstance(data, dict) or F_RESULT not in data:
        raise _malformed(f"answer has no {F_RESULT!r}")
    return parse_tick(data[F_RESULT], sent_at)


def parse_pairs(data: Any) -> list[str]:
    """The pairs answer: a JSON array of symbol strings."""
    if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
        raise _malformed("pairs is not a list of strings")
    return list(data)


def next_page_needed(bucket_count: int, oldest: datetime | None, start: datetime,
                     previous_oldest: datetime | None, limit: int = PAGE_LIMIT) -> bool:
    """Whether another page can hold ticks at or after `start`.

    Not after a short or empty page (the last one), not once the page reached `start`, and not when the
    page brought nothing older than the one before (a server ignoring `page` must not loop us)."""
    if bucket_count < limit or oldest is None or oldest <= start:
        return False
    return previous_oldest is None or oldest < previous_oldest


def assemble(candles: Iterable[Candle], start: datetime, end: datetime) -> list[Candle]:
    """De-duplicate by time (the later occurrence wins: it was fetched later), keep `[start, end]`,
    order oldest first. Missing minutes stay missing."""
    by_time: dict[datetime, Candle] = {}
    for c in candles:
        if start <= c.time <= end:
            by_time[c.time] = c
    return [by_time[t] for t in sorted(by_time)]


class AtmosClient(ServiceClient):
    """Atmos API client over one shared `HttpService` (rolling 20/min limiter by default)."""

    @classmethod
    def create(cls, settings: AtmosSettings, clock: Clock, *, base_url: str | None = None,
               rng: random.Random | None = None) -> AtmosClient:
        """A client with its own session and a rolling-window limiter sized from the settings."""
        key = settings.api_key.get_secret_value()
        http = HttpService(
            SERVICE, base_url or settings.base_url, clock,
            RollingWindowLimiter(clock, settings.requests_per_minute),
            headers={AUTH_HEADER: key} if key else None, rng=rng,
        )
        return cls(http)

    def _ok(self, resp: Response) -> Any:
        if not resp.ok:
            raise resp.error(_error_message(resp.data))
        return resp.data

    async def pairs(self, exchange: str) -> list[str]:
        """Every symbol listed on `exchange`."""
        path = ROUTE_PAIRS.format(exchange=quote(exchange.lower(), safe=""))
        return await self.http.call("GET", path, lambda r: parse_pairs(self._ok(r)))

    async def latest(self, exchange: str, symbol: str) -> Candle:
        """The newest tick; `partial=True` while its minute is still running (or only just ended)."""
        path = ROUTE_LATEST.format(exchange=quote(exchange.lower(), safe=""), symbol=quote(symbol, safe=""))
        return await self.http.call("GET", path, lambda r: parse_latest(self._ok(r), r.sent_at))

    async def history(self, exchange: str, symbol: str, start: datetime, end: datetime) -> list[Candle]:
        """1-minute candles with `start <= time <= end`, oldest first, gaps kept, de-duplicated."""
        if end < start:
            return []
        path = ROUTE_OHLCV.format(exchange=quote(exchange.lower(), safe=""), symbol=quote(symbol, safe=""))
        base = {Q_START: iso_z(start), Q_END: iso_z(end), Q_LIMIT: str(PAGE_LIMIT)}
        collected: list[Candle] = []
        previous_oldest: datetime | None = None
        page = 0
        while True:
            count, ticks = await self.http.call(
                "GET", path, lambda r: parse_page(self._ok(r), r.sent_at),
                params={**base, Q_PAGE: str(page)},
            )
            collected.extend(ticks)
            oldest = min((t.time for t in ticks), default=None)
            if not next_page_needed(count, oldest, start, previous_oldest):
                break
            previous_oldest = oldest
            page += 1
        result = assemble(collected, start, end)
        log.debug("atmos.history", exchange=exchange, symbol=symbol, pages=page + 1, candles=len(result))
        return result


def _error_message(data: Any) -> str | None:
    if isinstance(data, dict) and isinstance(data.get(F_ERROR), str):
        return str(data[F_ERROR])[:200]
    return None
