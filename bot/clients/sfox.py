"""sFOX chart-data client: OHLCV candlesticks for any range and period (`shared/contracts/sfox.md`).

This module owns the sFOX wire format (route, query and field names in the block below, the contract's
*(assumed)* parts marked). sFOX rejects, rather than truncates, a request covering more than 500 candles
(`(endTime - startTime) / period + 1 > 500`), so `candles` splits a long range into requests on a grid
aligned to the period, each within the limit. A candle may start before `startTime` (aligned to the
period); answers are filtered to `[start, end]`, de-duplicated by time and returned oldest first. Periods
without trades are missing and stay missing. A candle is flagged `partial=True` unless its period ended a
settle margin (`CANDLE_SETTLE`) before the request that fetched it was sent (`Response.sent_at`).

Usage::

    async with SfoxClient.create(settings.sfox, clock) as sfox:
        candles = await sfox.candles("btcusd", start, end, period=60)
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import structlog

from bot.clients.base import ServiceClient, candle_partial
from bot.clock import Clock
from bot.domain import Candle, to_decimal
from bot.errors import MalformedResponse
from bot.http import HttpService, Response, RollingWindowLimiter
from bot.settings import SfoxSettings

log = structlog.get_logger(__name__)

# ------------------------------------------------------------------------------ wire format (contract)
SERVICE = "sfox"
AUTH_HEADER, AUTH_SCHEME = "Authorization", "Bearer"  # optional: the endpoint answers without it
ROUTE_CANDLES = "/candlesticks"
Q_PAIR, Q_START, Q_END, Q_PERIOD = "pair", "startTime", "endTime", "period"  # times in unix seconds
PERIODS = (60, 300, 900, 3600, 21600, 86400)
MAX_CANDLES = 500  # per request: (endTime - startTime) / period + 1 <= 500, else HTTP 400
F_OPEN, F_HIGH, F_LOW, F_CLOSE = "open_price", "high_price", "low_price", "close_price"
F_VOLUME, F_TIME, F_PERIOD = "volume", "start_time", "candle_period"
F_VWAP, F_TRADES, F_ERROR = "vwap", "trades", "error"  # (assumed) error body {"error": "..."}
# ------------------------------------------------------------------------------------------------------

_PARSE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, ArithmeticError, OSError)


def split_range(
    start_ts: int, end_ts: int, period: int, max_candles: int = MAX_CANDLES
) -> list[tuple[int, int]]:
    """`(startTime, endTime)` pairs covering `[start_ts, end_ts]`, each within `max_candles`.

    Chunks sit on a grid aligned to the period (as the candles are), so consecutive requests never ask
    for the same candle and each satisfies `(endTime - startTime) / period + 1 <= max_candles`."""
    if period <= 0 or max_candles <= 0:
        raise ValueError("period and max_candles must be positive")
    if end_ts < start_ts:
        return []
    span = max_candles * period
    chunk_start = start_ts - start_ts % period
    out: list[tuple[int, int]] = []
    while chunk_start <= end_ts:
        lo, hi = max(start_ts, chunk_start), min(end_ts, chunk_start + span - period)
        if lo <= hi:  # an unaligned start can leave the first grid cell with nothing after `start`
            out.append((lo, hi))
        chunk_start += span
    return out


def parse_candle(obj: Any, period: int, sent_at: datetime) -> Candle:
    """One wire candle → `Candle`, `partial` unless its period ended a settle margin before `sent_at`,
    the clock time the request was sent."""
    if not isinstance(obj, dict):
        raise MalformedResponse("candle is not an object", service=SERVICE)
    try:
        ts = obj[F_TIME]
        if isinstance(ts, bool) or not isinstance(ts, int | float):
            raise ValueError(f"{F_TIME}: not a unix timestamp")
        length = obj.get(F_PERIOD, period)
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
            raise ValueError(f"{F_PERIOD}: not a positive integer")
        trades = obj.get(F_TRADES)
        if trades is not None and (isinstance(trades, bool) or not isinstance(trades, int)):
            raise ValueError(f"{F_TRADES}: not an integer")
        vwap = obj.get(F_VWAP)
        time = datetime.fromtimestamp(ts, UTC)
        return Candle(
            time=time,
            open=to_decimal(obj[F_OPEN], field_name=F_OPEN),
            high=to_decimal(obj[F_HIGH], field_name=F_HIGH),
            low=to_decimal(obj[F_LOW], field_name=F_LOW),
            close=to_decimal(obj[F_CLOSE], field_name=F_CLOSE),
            volume=to_decimal(obj[F_VOLUME], field_name=F_VOLUME),
            period=length,
            trades=trades,
            vwap=None if vwap is None else to_decimal(vwap, field_name=F_VWAP),
            partial=candle_partial(time, length, sent_at),
        )
    except _PARSE_ERRORS as exc:
        raise MalformedResponse(f"bad candle: {type(exc).__name__}: {str(exc)[:80]}",
                                service=SERVICE) from None


def parse_candles(data: Any, period: int, sent_at: datetime) -> list[Candle]:
    """A candlesticks answer (a JSON array) → candles in wire order."""
    if not isinstance(data, list):
        raise MalformedResponse("candlesticks answer is not a list", service=SERVICE)
    return [parse_candle(obj, period, sent_at) for obj in data]


def assemble(candles: Iterable[Candle], start: datetime, end: datetime) -> list[Candle]:
    """Keep `start <= time <= end` (dropping candles that precede `start`), de-duplicate by time,
    order oldest first. Missing periods stay missing."""
    by_time = {c.time: c for c in candles if start <= c.time <= end}
    return [by_time[t] for t in sorted(by_time)]


class SfoxClient(ServiceClient):
    """sFOX chart-data client over one shared `HttpService` (rolling limiter sized from settings)."""

    @classmethod
    def create(cls, settings: SfoxSettings, clock: Clock, *, base_url: str | None = None,
               rng: random.Random | None = None) -> SfoxClient:
        """A client with its own session; sends `Authorization: Bearer` only when a key is configured."""
        key = settings.api_key.get_secret_value()
        http = HttpService(
            SERVICE, base_url or settings.base_url, clock,
            RollingWindowLimiter(clock, settings.requests_per_minute),
            headers={AUTH_HEADER: f"{AUTH_SCHEME} {key}"} if key else None, rng=rng,
        )
        return cls(http)

    def _parse(self, resp: Response, period: int) -> list[Candle]:
        if not resp.ok:
            data = resp.data
            message = data.get(F_ERROR) if isinstance(data, dict) else None
            raise resp.error(str(message)[:200] if isinstance(message, str) else None)
        return parse_candles(resp.data, period, resp.sent_at)

    async def candles(self, pair: str, start: datetime, end: datetime, period: int = 60) -> list[Candle]:
        """Candles of `period` seconds with `start <= time <= end`, oldest first, gaps kept."""
        if period not in PERIODS:
            raise ValueError(f"period must be one of {PERIODS}, got {period}")
        chunks = split_range(math.ceil(start.timestamp()), math.floor(end.timestamp()), period)
        collected: list[Candle] = []
        for lo, hi in chunks:
            params = {Q_PAIR: pair.lower(), Q_START: str(lo), Q_END: str(hi), Q_PERIOD: str(period)}
            collected.extend(await self.http.call(
                "GET", ROUTE_CANDLES, lambda r: self._parse(r, period), params=params))
        result = assemble(collected, start, end)
        log.debug("sfox.candles", pair=pair, period=period, requests=len(chunks), candles=len(result))
        return result
