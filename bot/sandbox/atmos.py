"""Atmos simulator (`shared/contracts/atmos.md`): 1-minute OHLCV of Binance, Kraken and Coinbase pairs.

Ticks come from `SimMarket` venue views (`binance:BTCUSDT`, ...). History is served in *buckets* of up to 60
consecutive minutes laid on a per-symbol grid that is deliberately not hour-aligned; a bucket's `startTime`
is its first tick's time, so a bucket whose first minute was a gap starts later still. Buckets are newest
first and paged from the newest, so a bucket that opens between two page requests shifts every page by
one (the "same tick in two pages" quirk). The newest tick is partial while its minute runs.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot.clock import Clock, iso_z, parse_iso
from bot.sandbox.faults import Faults
from bot.sandbox.market import VENUE_SYMBOLS, Row, SimMarket
from bot.sandbox.pricepath import EPOCH_TS, stable_id
from bot.sandbox.ratelimit import RollingWindowLimiter

BUCKET_MINUTES = 60
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
_ISO_CACHE_SIZE = 50_000


class AtmosSim:
    """State of the Atmos simulator: accepted keys, per-key rolling-window limiter, bucket layout."""

    def __init__(self, market: SimMarket, clock: Clock, api_keys: set[str],
                 requests_per_minute: int = 20) -> None:
        self.market = market
        self.clock = clock
        self.api_keys = set(api_keys)
        self.limiter = RollingWindowLimiter(clock, requests_per_minute, 60.0)
        self._iso: dict[int, str] = {}

    # -- pure-ish queries (used by the HTTP handlers, usable from tests) ----------------------------
    def pairs(self, exchange: str) -> list[str]:
        """Every symbol the exchange lists (raises KeyError for an unknown exchange)."""
        return sorted(VENUE_SYMBOLS[exchange])

    def has_symbol(self, exchange: str, symbol: str) -> bool:
        """Whether `exchange` lists `symbol`."""
        return symbol in VENUE_SYMBOLS.get(exchange, ())

    def grid_offset(self, exchange: str, symbol: str) -> int:
        """Minute offset (0-59) of this symbol's bucket grid from the hour."""
        return stable_id(f"atmos:{exchange}:{symbol}") % BUCKET_MINUTES

    def buckets(self, exchange: str, symbol: str, *, limit: int = DEFAULT_LIMIT, page: int = 0,
                start: datetime | None = None, end: datetime | None = None) -> list[dict[str, Any]]:
        """One page of buckets, newest first, as the wire JSON objects."""
        instrument = f"{exchange}:{symbol}"
        offset = self.grid_offset(exchange, symbol)
        now_mi = math.floor((self.clock.now().timestamp() - EPOCH_TS) / 60)
        hist_mi = int(self.market.history_start().timestamp() - EPOCH_TS) // 60
        newest = (now_mi - offset) // BUCKET_MINUTES
        latest = self.market.latest_row(instrument)
        if latest is not None and (latest[0] - EPOCH_TS) // 60 < newest * BUCKET_MINUTES + offset:
            newest -= 1  # the running window has no tick yet: it is not a bucket until it has one
        oldest = (hist_mi - offset) // BUCKET_MINUTES
        if end is not None:
            newest = min(newest, (math.floor((end.timestamp() - EPOCH_TS) / 60) - offset) // BUCKET_MINUTES)
        if start is not None:
            # A window overlaps [start, ...] when its last minute is at or after start's minute.
            first_mi = math.floor((start.timestamp() - EPOCH_TS) / 60)
            oldest = max(oldest, (first_mi - offset) // BUCKET_MINUTES)
        top = newest - page * limit
        bottom = max(oldest, top - limit + 1)
        if top < bottom:
            return []
        lo_ts = EPOCH_TS + (bottom * BUCKET_MINUTES + offset) * 60
        hi_ts = EPOCH_TS + ((top + 1) * BUCKET_MINUTES + offset) * 60 - 1
        rows = self.market.rows(instrument, lo_ts, hi_ts)
        groups: dict[int, list[Row]] = {}
        for row in rows:
            groups.setdefault(((row[0] - EPOCH_TS) // 60 - offset) // BUCKET_MINUTES, []).append(row)
        ident = stable_id(instrument)
        out: list[dict[str, Any]] = []
        for window in range(top, bottom - 1, -1):
            ticks = groups.get(window)
            if not ticks:
                continue
            out.append({
                "id": f"{ticks[0][0]:08x}{ident:08x}{window & 0xFFFFFFFF:08x}",
                "symbol": symbol,
                "startTime": self._iso_of(ticks[0][0]),
                "ticks": [self.tick(r) for r in ticks],
            })
        return out

    def latest(self, exchange: str, symbol: str) -> dict[str, Any] | None:
        """The newest tick (partial while its minute runs) as the wire JSON object."""
        row = self.market.latest_row(f"{exchange}:{symbol}")
        return None if row is None else self.tick(row)

    def tick(self, row: Row) -> dict[str, Any]:
        """A market row as an Atmos tick."""
        return {"time": self._iso_of(row[0]), "open": row[1], "high": row[2], "low": row[3], "close": row[4],
                "baseVolume": row[5], "trades": row[6]}

    def _iso_of(self, ts: int) -> str:
        text = self._iso.get(ts)
        if text is None:
            if len(self._iso) > _ISO_CACHE_SIZE:
                self._iso.clear()
            text = self._iso[ts] = iso_z(datetime.fromtimestamp(ts, UTC))
        return text


SIM_KEY = web.AppKey("atmos_sim", AtmosSim)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _api_key(request: web.Request) -> str:
    key = request.headers.get("x-atmos-key")
    if key is None:
        # The seed's "Pair Latest" example sends the key as `Authorization`; accept a Bearer prefix too.
        key = request.headers.get("Authorization", "")
        if key.lower().startswith("bearer "):
            key = key[7:]
    return key.strip()


class _Reject(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


def _gate(request: web.Request, faults: Faults) -> tuple[AtmosSim, str]:
    """Auth, rate limit and exchange check shared by every endpoint; returns the sim and exchange."""
    sim = request.app[SIM_KEY]
    key = _api_key(request)
    if not key or key not in sim.api_keys:
        raise _Reject(_error(401, "missing or invalid x-atmos-key"))
    if not sim.limiter.allow(key):
        faults.count_429()
        raise _Reject(_error(429, "too many requests: 20 per minute"))
    exchange = request.match_info["exchange"].lower()
    if exchange not in VENUE_SYMBOLS:
        raise _Reject(_error(404, "unknown exchange"))
    return sim, exchange


def _symbol(request: web.Request, sim: AtmosSim, exchange: str) -> str:
    symbol = request.match_info["symbol"].upper()
    if not sim.has_symbol(exchange, symbol):
        raise _Reject(_error(404, "unknown symbol"))
    return symbol


def _int_param(request: web.Request, name: str, default: int, minimum: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _Reject(_error(400, f"{name} must be an integer")) from None
    if value < minimum:
        raise _Reject(_error(400, f"{name} must be >= {minimum}"))
    return value


def _time_param(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return parse_iso(raw)
    except ValueError:
        raise _Reject(_error(400, f"{name} must be ISO 8601 (YYYY-MM-DDTHH:mm:ss.sssZ)")) from None


def create_app(sim: AtmosSim, faults: Faults) -> web.Application:
    """The Atmos HTTP app: every contract route with and without its trailing slash, plus control routes."""

    async def pairs(request: web.Request) -> web.Response:
        try:
            sim, exchange = _gate(request, faults)
        except _Reject as rej:
            return rej.response
        return web.json_response(sim.pairs(exchange))

    async def ohlcv(request: web.Request) -> web.Response:
        try:
            sim, exchange = _gate(request, faults)
            symbol = _symbol(request, sim, exchange)
            limit = min(_int_param(request, "limit", DEFAULT_LIMIT, 1), MAX_LIMIT)
            page = _int_param(request, "page", 0, 0)
            start, end = _time_param(request, "start_time"), _time_param(request, "end_time")
        except _Reject as rej:
            return rej.response
        results = sim.buckets(exchange, symbol, limit=limit, page=page, start=start, end=end)
        return web.json_response({"results": results})

    async def latest(request: web.Request) -> web.Response:
        try:
            sim, exchange = _gate(request, faults)
            symbol = _symbol(request, sim, exchange)
        except _Reject as rej:
            return rej.response
        tick = sim.latest(exchange, symbol)
        if tick is None:
            return _error(404, "no data")
        return web.json_response({"result": tick})

    app = web.Application(middlewares=[faults.middleware])
    app[SIM_KEY] = sim
    faults.on_reset(sim.limiter.reset)
    for path, handler in (("/v1/{exchange}/pairs", pairs), ("/v1/{exchange}/{symbol}/ohlcv", ohlcv),
                          ("/v1/{exchange}/{symbol}/ohlcv/latest", latest)):
        app.router.add_get(path, handler)
        app.router.add_get(path + "/", handler)
    faults.add_control_routes(app)
    return app
