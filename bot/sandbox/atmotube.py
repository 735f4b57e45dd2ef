"""Atmotube Cloud simulator: `GET /api/v1/data`, exactly as `contracts/atmotube.md` says.

Readings come from `atmotube_data` (seeded, with gaps, missing fields and late uploads). The rate limit
is 60 requests per *clock* minute per API key, a fixed window as the seed describes; every request counts,
including refused ones, so a client that hammers with a bad key is limited too.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from typing import Any

from aiohttp import web

from bot.clock import Clock
from bot.sandbox.atmotube_data import MEASUREMENTS, visible_items
from bot.sandbox.faults import Faults
from bot.sandbox.ratelimit import FixedMinuteLimiter

MAX_LIMIT = 1440
DEFAULT_LIMIT = 100
MAX_RANGE_DAYS = 7
CSV_HEADER = ("time", *MEASUREMENTS, "lat", "lon")
_MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class AtmotubeError(Exception):
    """A refused request: HTTP status and the `{"status": 1, "message"}` body."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status} {message}")


class AtmotubeSim:
    """State of one simulated Atmotube Cloud: keys and the devices they own, the seed and the limiter."""

    def __init__(
        self, clock: Clock, api_keys: dict[str, list[str]], seed: int = 42, requests_per_minute: int = 60
    ) -> None:
        self.clock = clock
        self.seed = seed
        self.limiter = FixedMinuteLimiter(clock, requests_per_minute)
        self._devices = {key: {mac.upper() for mac in macs} for key, macs in api_keys.items()}

    def owns(self, api_key: str, mac: str) -> bool:
        """Whether `api_key` exists and owns `mac` (upper-case)."""
        return mac in self._devices.get(api_key, set())

    def known_key(self, api_key: str) -> bool:
        """Whether `api_key` is a key this cloud issued."""
        return api_key in self._devices

    def items(self, mac: str, first: date, last: date) -> list[dict[str, Any]]:
        """Readings of `mac` uploaded by now for the days `first..last`, ascending."""
        return visible_items(self.seed, mac.upper(), first, last, self.clock.now())


SIM_KEY = web.AppKey("atmotube_sim", AtmotubeSim)
FAULTS_KEY = web.AppKey("atmotube_faults", Faults)


def _int(query: Any, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = query.get(name, "")
    if raw == "":  # the seed: leave a field empty to get its default
        return default
    try:
        value = int(raw)
    except ValueError:
        raise AtmotubeError(400, f"{name} must be an integer") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise AtmotubeError(400, f"{name} must be {bound}")
    return value


def _day(text: str, name: str) -> date:
    if not _DATE.fullmatch(text):
        raise AtmotubeError(400, f"{name} must be YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise AtmotubeError(400, f"{name} is not a valid date") from None


def date_range(query: Any) -> tuple[date, date]:
    """`date`, or `start_date` + `end_date` covering at most 7 calendar days (400 otherwise)."""
    single, start, end = query.get("date", ""), query.get("start_date", ""), query.get("end_date", "")
    if single:
        if start or end:
            raise AtmotubeError(400, "use either date or start_date and end_date")
        day = _day(single, "date")
        return day, day
    if not (start and end):
        raise AtmotubeError(400, "date or start_date and end_date are required")
    first, last = _day(start, "start_date"), _day(end, "end_date")
    if last < first:
        raise AtmotubeError(400, "end_date is before start_date")
    if (last - first).days >= MAX_RANGE_DAYS:
        raise AtmotubeError(400, f"the maximum range is {MAX_RANGE_DAYS} days")
    return first, last


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The contract's error body, also used by injected faults."""
    return web.json_response({"status": 1, "message": message}, status=status, headers=headers)


def to_csv(items: list[dict[str, Any]]) -> str:
    """Header plus one row per item; `coords` flattened to `lat`,`lon`; missing and null as empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for item in items:
        coords = item.get("coords") or {}
        flat = {**item, "lat": coords.get("lat"), "lon": coords.get("lon")}
        writer.writerow(["" if flat.get(k) is None else flat[k] for k in CSV_HEADER])
    return buf.getvalue()


async def get_data(request: web.Request) -> web.Response:
    """`GET /api/v1/data`: one device's readings for a day or a range of up to 7 days, paged."""
    sim, faults = request.app[SIM_KEY], request.app[FAULTS_KEY]
    query = request.query
    api_key = query.get("api_key", "")
    if not sim.limiter.allow(api_key):
        faults.count_429()
        retry = str(sim.limiter.retry_after(api_key))
        return _error(429, "rate limit exceeded: 60 requests per minute", {"Retry-After": retry})
    try:
        if not sim.known_key(api_key):
            raise AtmotubeError(401, "invalid api_key")
        mac = query.get("mac", "")
        if not _MAC.fullmatch(mac):
            raise AtmotubeError(400, "mac must look like AA:BB:CC:DD:EE:FF")
        mac = mac.upper()
        if not sim.owns(api_key, mac):
            raise AtmotubeError(403, "this api_key has no access to that device")
        order = query.get("order", "") or "asc"
        fmt = query.get("format", "") or "json"
        if order not in ("asc", "desc"):
            raise AtmotubeError(400, "order must be asc or desc")
        if fmt not in ("json", "csv"):
            raise AtmotubeError(400, "format must be json or csv")
        offset = _int(query, "offset", 0, 0)
        limit = _int(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        first, last = date_range(query)
    except AtmotubeError as exc:
        return _error(exc.status, exc.message)
    items = sim.items(mac, first, last)
    if order == "desc":
        items.reverse()
    chosen = items[offset : offset + limit]
    if fmt == "csv":
        return web.Response(text=to_csv(chosen), content_type="text/csv")
    return web.json_response({"status": 0, "data": {"total": len(items), "items": chosen}})


def create_app(sim: AtmotubeSim, faults: Faults) -> web.Application:
    """The Atmotube Cloud simulator as an aiohttp application, with fault injection and control routes."""
    faults.error_factory = _error
    faults.on_reset(sim.limiter.reset)
    app = web.Application(middlewares=[faults.middleware])
    app[SIM_KEY] = sim
    app[FAULTS_KEY] = faults
    app.router.add_get("/api/v1/data", get_data)
    faults.add_control_routes(app)
    return app
