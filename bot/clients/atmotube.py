"""Atmotube Cloud client: sensor readings for any date range (`shared/contracts/atmotube.md`).

This module owns the Atmotube wire format (the block below). One request covers at most 7 calendar days
(`end_date - start_date <= 6`) and at most 1,440 items, so `readings` splits a range into 7-day windows
and pages each with `offset` until the window's `total` is read. JSON (default) or CSV. A measurement
that is missing or `null` is `None` in `SensorReading.values`, never 0; coordinates are optional.
Readings are de-duplicated by `time` (a later read wins) and returned oldest first.

Data arrives late (the phone uploads when it can), so `SensorTail` re-reads a trailing window on every
poll and hands out only the readings it has not seen.

The limit is 60 requests per clock minute, a fixed window (`FixedWindowLimiter`); a 429 carries
`Retry-After` up to the next minute, which the shared retry loop honours. The API key is a *query*
parameter: it is added by `HttpService` (never logged, never on an error), and any error text the server
sends back is scrubbed of it here too.

Usage::

    async with AtmotubeClient.create(settings.atmotube, clock) as atmotube:
        readings = await atmotube.readings("AA:BB:CC:DD:EE:FF", date(2026, 11, 1), date(2026, 11, 10))
        tail = SensorTail(atmotube, mac, lookback=timedelta(hours=6))
        fresh = await tail.poll()   # new readings only, late ones included
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import structlog

from bot.clients.base import ServiceClient
from bot.clock import Clock, parse_iso
from bot.domain import SensorReading
from bot.errors import BotError, MalformedResponse, RateLimited, Rejected
from bot.http import FixedWindowLimiter, HttpService, Response
from bot.settings import AtmotubeSettings

log = structlog.get_logger(__name__)

# ------------------------------------------------------------------------------ wire format (contract)
SERVICE = "atmotube"
ROUTE_DATA = "/api/v1/data"
Q_KEY, Q_MAC, Q_ORDER, Q_FORMAT = "api_key", "mac", "order", "format"
Q_OFFSET, Q_LIMIT, Q_START, Q_END = "offset", "limit", "start_date", "end_date"
MAX_LIMIT = 1440  # items per request (one device-day of minutes)
MAX_WINDOW_DAYS = 7  # calendar days per request: end_date - start_date <= 6
F_STATUS, F_DATA, F_TOTAL, F_ITEMS = "status", "data", "total", "items"  # (shape as seen in public clients)
F_TIME, F_COORDS, F_LAT, F_LON = "time", "coords", "lat", "lon"  # CSV flattens coords to lat, lon
F_MESSAGE = "message"  # (assumed) errors: {"status": 1, "message": "..."}
MEASUREMENTS = ("voc", "aqs", "pm1", "pm25", "pm10", "t", "h", "p")
# ------------------------------------------------------------------------------------------------------

Format = Literal["json", "csv"]
_NON_VALUES = frozenset({F_TIME, F_COORDS, F_LAT, F_LON})


def _malformed(what: str) -> MalformedResponse:
    return MalformedResponse(what, service=SERVICE)


# ---------------------------------------------------------------------------------------------- pure parts


def plan_windows(start: date, end: date, days: int = MAX_WINDOW_DAYS) -> list[tuple[date, date]]:
    """Inclusive `(start_date, end_date)` windows of at most `days` calendar days covering `start..end`."""
    if days <= 0:
        raise ValueError("days must be positive")
    windows: list[tuple[date, date]] = []
    first = start
    while first <= end:
        last = min(end, first + timedelta(days=days - 1))
        windows.append((first, last))
        first = last + timedelta(days=1)
    return windows


def _number(value: Any, name: str) -> float | None:
    """A measurement: None for null/missing/empty, a finite float otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _malformed(f"{name}: a boolean is not a measurement")
    if isinstance(value, int | float | Decimal):  # Decimal when the JSON layer decodes numbers exactly
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value)
        except ValueError:
            raise _malformed(f"{name}: not a number: {value[:20]!r}") from None
    else:
        raise _malformed(f"{name}: expected a number, got {type(value).__name__}")
    if not math.isfinite(result):
        raise _malformed(f"{name}: not a finite number")
    return result


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise _malformed(f"{F_TIME}: expected an ISO 8601 string")
    try:
        return parse_iso(value)
    except (ValueError, OverflowError):
        raise _malformed(f"{F_TIME}: not an ISO 8601 time: {value[:40]!r}") from None


def _reading(flat: dict[str, Any], lat: Any, lon: Any) -> SensorReading:
    values: dict[str, float | None] = dict.fromkeys(MEASUREMENTS)
    for key, raw in flat.items():
        if key not in _NON_VALUES:
            values[key] = _number(raw, key)
    return SensorReading(_time(flat.get(F_TIME)), values, _number(lat, F_LAT), _number(lon, F_LON))


def parse_item(obj: Any) -> SensorReading:
    """One JSON item → `SensorReading`; every known measurement is a key, `None` when missing or null."""
    if not isinstance(obj, dict):
        raise _malformed("item is not an object")
    coords = obj.get(F_COORDS)
    if coords is None:
        coords = {}
    if not isinstance(coords, dict):
        raise _malformed(f"{F_COORDS} is not an object")
    return _reading({str(k): v for k, v in obj.items()}, coords.get(F_LAT), coords.get(F_LON))


def parse_json_page(data: Any) -> tuple[int, list[SensorReading]]:
    """A JSON answer → `(total, readings)`. `status` other than 0 is `Rejected` (an error in a 200)."""
    if not isinstance(data, dict):
        raise _malformed("answer is not an object")
    status = data.get(F_STATUS, 0)
    if status != 0:
        message = data.get(F_MESSAGE)
        raise Rejected(message[:200] if isinstance(message, str) else f"status {status!r}", service=SERVICE)
    body = data.get(F_DATA)
    if not isinstance(body, dict) or not isinstance(body.get(F_ITEMS), list):
        raise _malformed(f"answer has no {F_DATA}.{F_ITEMS} list")
    items = [parse_item(x) for x in body[F_ITEMS]]
    total = body.get(F_TOTAL, len(items))
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise _malformed(f"{F_TOTAL}: expected a non-negative integer")
    return total, items


def parse_csv(text: str) -> list[SensorReading]:
    """A CSV answer: header, then one row per item (`coords` flattened to `lat`,`lon`; empty = missing)."""
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error:
        raise _malformed("unreadable CSV") from None
    rows = [r for r in rows if r]
    if not rows:
        return []
    header = rows[0]
    if F_TIME not in header or len(set(header)) != len(header):
        raise _malformed(f"CSV header has no {F_TIME!r} column or repeats one")
    out: list[SensorReading] = []
    for row in rows[1:]:
        if len(row) != len(header):
            raise _malformed("CSV row length differs from the header")
        flat = dict(zip(header, row, strict=True))
        out.append(_reading(flat, flat.get(F_LAT), flat.get(F_LON)))
    return out


def merge(readings: Iterable[SensorReading]) -> list[SensorReading]:
    """De-duplicate by time (the later occurrence wins: it was read later) and sort oldest first."""
    by_time = {r.time: r for r in readings}
    return [by_time[t] for t in sorted(by_time)]


# ---------------------------------------------------------------------------------------------- client


@dataclass(frozen=True, slots=True)
class _Page:
    total: int | None
    readings: list[SensorReading]


class AtmotubeClient(ServiceClient):
    """Atmotube Cloud client over one shared `HttpService` (fixed clock-minute limiter)."""

    def __init__(self, http: HttpService, api_key: str = "") -> None:
        super().__init__(http)
        self._key = api_key  # only to scrub it from error text the server might echo

    @classmethod
    def create(cls, settings: AtmotubeSettings, clock: Clock, *, base_url: str | None = None,
               api_key: str | None = None, rng: random.Random | None = None) -> AtmotubeClient:
        """A client with its own session; `api_key` overrides the settings' key."""
        key = api_key if api_key is not None else settings.api_key.get_secret_value()
        http = HttpService(SERVICE, base_url or settings.base_url, clock,
                           FixedWindowLimiter(clock, settings.requests_per_minute),
                           params={Q_KEY: key}, rng=rng)
        return cls(http, key)

    def _parse(self, resp: Response, fmt: Format) -> _Page:
        if not resp.ok:
            message = resp.data.get(F_MESSAGE) if isinstance(resp.data, dict) else None
            raise resp.error(message[:200] if isinstance(message, str) else None)
        if fmt == "csv":
            try:
                text = resp.body.decode("utf-8")
            except UnicodeDecodeError:
                raise _malformed("CSV is not UTF-8") from None
            return _Page(None, parse_csv(text))
        total, items = parse_json_page(resp.data)
        return _Page(total, items)

    async def _page(self, mac: str, first: date, last: date, offset: int, fmt: Format) -> _Page:
        params = {Q_MAC: mac.upper(), Q_START: first.isoformat(), Q_END: last.isoformat(), Q_ORDER: "asc",
                  Q_FORMAT: fmt, Q_OFFSET: str(offset), Q_LIMIT: str(MAX_LIMIT)}
        try:
            return await self.http.call("GET", ROUTE_DATA, lambda r: self._parse(r, fmt), params=params,
                                        expect="json" if fmt == "json" else "bytes")
        except BotError as err:
            raise self._scrubbed(err) from None

    async def window(self, mac: str, first: date, last: date, fmt: Format = "json") -> list[SensorReading]:
        """Every reading of one window (at most 7 days), paged by `offset`, in wire order."""
        if (last - first).days >= MAX_WINDOW_DAYS or last < first:
            raise ValueError("a window is 1 to 7 calendar days")
        out: list[SensorReading] = []
        seen: set[datetime] = set()
        while True:
            page = await self._page(mac, first, last, len(out), fmt)
            out.extend(page.readings)
            fresh = {r.time for r in page.readings} - seen
            seen |= fresh
            # JSON says how many there are; CSV does not, so a short page is the last one. A page with
            # nothing new means the server ignores `offset`: stop rather than loop forever.
            done = len(out) >= page.total if page.total is not None else len(page.readings) < MAX_LIMIT
            if done or not fresh:
                return out

    async def readings(self, mac: str, start: date, end: date, fmt: Format = "json") -> list[SensorReading]:
        """Every reading of `mac` on the days `start..end` (inclusive, UTC), oldest first, unique by time."""
        collected: list[SensorReading] = []
        windows = plan_windows(start, end)
        for first, last in windows:
            collected.extend(await self.window(mac, first, last, fmt))
        result = merge(collected)
        log.debug("atmotube.readings", windows=len(windows), readings=len(result))
        return result

    async def readings_between(self, mac: str, start: datetime, end: datetime,
                               fmt: Format = "json") -> list[SensorReading]:
        """Readings with `start <= time <= end` (aware datetimes), oldest first."""
        if end < start:
            return []
        found = await self.readings(mac, _utc_date(start), _utc_date(end), fmt)
        return [r for r in found if start <= r.time <= end]

    def _scrubbed(self, err: BotError) -> BotError:
        """`err`, rebuilt without the API key if the server echoed it (e.g. the request URL) back."""
        if not self._key or (self._key not in err.message and self._key not in err.body_excerpt):
            return err
        kw: dict[str, Any] = {"service": err.service, "status": err.status, "code": err.code,
                              "body": err.body_excerpt.replace(self._key, "***")}
        message = err.message.replace(self._key, "***")
        if isinstance(err, RateLimited):
            return RateLimited(message, retry_after=err.retry_after, **kw)
        return type(err)(message, **kw)


def _utc_date(t: datetime) -> date:
    if t.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return t.astimezone(UTC).date()


class SensorTail:
    """The feed's view of one device: each `poll` re-reads the trailing `lookback` (data arrives late)
    and returns only readings not returned before, oldest first."""

    def __init__(self, client: AtmotubeClient, mac: str, lookback: timedelta = timedelta(hours=6),
                 fmt: Format = "json") -> None:
        if lookback <= timedelta(0):
            raise ValueError("lookback must be positive")
        self.client = client
        self.mac = mac.upper()
        self.lookback = lookback
        self.fmt: Format = fmt
        self._seen: set[datetime] = set()

    async def poll(self) -> list[SensorReading]:
        """New readings in `[now - lookback, now]`, including late arrivals for minutes already passed."""
        now = self.client.http.clock.now()
        since = now - self.lookback
        found = await self.client.readings_between(self.mac, since, now, self.fmt)
        fresh = [r for r in found if r.time not in self._seen]
        self._seen = {t for t in self._seen if t >= since} | {r.time for r in fresh}
        return fresh
