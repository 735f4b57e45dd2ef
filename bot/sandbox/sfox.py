"""sFOX chart-data simulator (`shared/contracts/sfox.md`): `GET /candlesticks` over the reference path.

Candles aggregate the market's 1-minute bars of `BTCUSD`/`ETHUSD` into the requested period, aligned to the
period from the unix epoch (so the first candle may start before `startTime`). Periods without trades are
missing; the candle holding "now" is partial. More than 500 candles in a request is a 400, not a
truncation. 60 requests per rolling minute per client (bearer key, else address); beyond: 429 with
`Retry-After` in (clock) seconds.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aiohttp import web

from bot.clock import Clock
from bot.sandbox.faults import Faults
from bot.sandbox.market import Row, SimMarket
from bot.sandbox.ratelimit import RollingWindowLimiter

PERIODS = (60, 300, 900, 3600, 21600, 86400)
MAX_CANDLES = 500
PAIRS = {"btcusd": "BTCUSD", "ethusd": "ETHUSD"}


class SfoxSim:
    """State of the sFOX simulator: pair map and the per-client rolling-window limiter."""

    def __init__(self, market: SimMarket, clock: Clock, requests_per_minute: int = 60) -> None:
        self.market = market
        self.clock = clock
        self.limiter = RollingWindowLimiter(clock, requests_per_minute, 60.0)

    def candles(self, pair: str, start: int, end: int, period: int) -> list[dict[str, Any]]:
        """Candles (wire JSON objects, oldest first) whose start is in [floor(start), end]."""
        instrument = PAIRS[pair]
        first = start - start % period
        rows = self.market.rows(instrument, first, end + period - 1)
        # Only candles that start at or before `end`; their minutes may run past it.
        rows = [r for r in rows if r[0] - r[0] % period <= end]
        if period == 60:
            return [_one(pair, r) for r in rows]
        out: list[dict[str, Any]] = []
        group: list[Row] = []
        for row in rows:
            if group and row[0] - row[0] % period != group[0][0] - group[0][0] % period:
                out.append(_merge(pair, period, group))
                group = []
            group.append(row)
        if group:
            out.append(_merge(pair, period, group))
        return out


def _one(pair: str, r: Row) -> dict[str, Any]:
    return {"open_price": r[1], "high_price": r[2], "low_price": r[3], "close_price": r[4], "volume": r[5],
            "start_time": r[0], "pair": pair, "candle_period": 60, "vwap": r[7], "trades": r[6]}


def _merge(pair: str, period: int, rows: list[Row]) -> dict[str, Any]:
    """Aggregate 1-minute rows (ascending, one period) into one candle, in exact decimal arithmetic."""
    volume = sum((Decimal(r[5]) for r in rows), Decimal(0))
    notional = sum((Decimal(r[7]) * Decimal(r[5]) for r in rows), Decimal(0))
    high = max(rows, key=lambda r: Decimal(r[2]))[2]
    low = min(rows, key=lambda r: Decimal(r[3]))[3]
    vwap = (notional / volume).quantize(Decimal("0.00000001")) if volume else Decimal(rows[-1][4])
    vwap = min(max(vwap, Decimal(low)), Decimal(high))
    return {"open_price": rows[0][1], "high_price": high, "low_price": low, "close_price": rows[-1][4],
            "volume": str(volume), "start_time": rows[0][0] - rows[0][0] % period, "pair": pair,
            "candle_period": period, "vwap": str(vwap), "trades": sum(r[6] for r in rows)}


SIM_KEY = web.AppKey("sfox_sim", SfoxSim)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _client(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return "key:" + auth[7:].strip()
    return "addr:" + (request.remote or "?")


def _parse(request: web.Request) -> tuple[str, int, int, int] | web.Response:
    q = request.query
    missing = [name for name in ("pair", "startTime", "endTime") if not q.get(name)]
    if missing:
        return _error(400, f"missing required parameter: {', '.join(missing)}")
    try:
        start, end = int(q["startTime"]), int(q["endTime"])
        period = int(q.get("period") or 60)
    except ValueError:
        return _error(400, "startTime, endTime and period must be integers")
    if period not in PERIODS:
        return _error(400, f"period must be one of {', '.join(map(str, PERIODS))}")
    if start > end:
        return _error(400, "startTime must not be after endTime")
    if (end - start) / period + 1 > MAX_CANDLES:
        return _error(400, f"request would return more than {MAX_CANDLES} candles")
    pair = q["pair"].lower()
    if pair not in PAIRS:
        return _error(404, f"unknown pair: {pair[:20]}")
    return pair, start, end, period


def create_app(sim: SfoxSim, faults: Faults) -> web.Application:
    """The sFOX chart-data HTTP app (`/candlesticks`, with or without trailing slash) plus control routes."""

    async def candlesticks(request: web.Request) -> web.Response:
        client = _client(request)
        if not sim.limiter.allow(client):
            faults.count_429()
            resp = _error(429, "rate limit exceeded")
            resp.headers["Retry-After"] = str(sim.limiter.retry_after(client))
            return resp
        parsed = _parse(request)
        if isinstance(parsed, web.Response):
            return parsed
        pair, start, end, period = parsed
        return web.json_response(sim.candles(pair, start, end, period))

    app = web.Application(middlewares=[faults.middleware])
    app[SIM_KEY] = sim
    faults.on_reset(sim.limiter.reset)
    app.router.add_get("/candlesticks", candlesticks)
    app.router.add_get("/candlesticks/", candlesticks)
    faults.add_control_routes(app)
    return app
