"""Seeded, deterministic fault injection for one simulated service, as aiohttp middleware.

Faults, in the order they are decided for each API request:
1. an *outage* window (clock time) answers every request with 503 or drops the connection;
2. a *script* queue ("the next N requests matching METHOD/path-prefix get fault X") — for tests;
3. random faults at configured probabilities, drawn from one seeded `random.Random`.

Kinds: `429`, `5xx` (500/502/503; a 502/503 has an HTML body like a proxy's), `500`, `502`, `503`,
`drop_before` (connection closed, handler never runs), `drop_after` (the handler runs and its effect is
kept, then the connection is closed with no response; randomly only for mutating methods), `truncate`
(the body is cut mid-way and the connection closed, so the client sees fewer bytes than Content-Length),
`bad_json` (a complete response whose body is only the first half of the real one) and `latency`.

Routes under `/_sandbox/` are control routes: never counted as API requests and never faulted. Every
service has `/_sandbox/faults`, `/_sandbox/counters`, `/_sandbox/reset` and `/_sandbox/clock` (see
`clock_json`).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from bot.clock import Clock, WallClock, iso_z, parse_iso

log = structlog.get_logger(__name__)

CONTROL_PREFIX = "/_sandbox/"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KINDS = frozenset({"429", "5xx", "500", "502", "503", "drop_before", "drop_after", "truncate", "bad_json",
                   "latency"})
# Probability knobs in the order they are drawn (the order is part of the determinism).
PROBABILITIES = ("p_latency", "p_429", "p_5xx", "p_drop_before", "p_drop_after", "p_truncate", "p_bad_json")
_KIND_OF = {"p_latency": "latency", "p_429": "429", "p_5xx": "5xx", "p_drop_before": "drop_before",
            "p_drop_after": "drop_after", "p_truncate": "truncate", "p_bad_json": "bad_json"}
REQUEST_LOG_SIZE = 10_000  # newest API requests kept with their clock time (bounded: the demo runs for days)
_PROXY_BODY = "<html><head><title>{status}</title></head><body><h1>{status} {reason}</h1></body></html>"

ErrorFactory = Callable[[int, str], web.Response]


def default_error(status: int, message: str) -> web.Response:
    """`{"error": message}` with `status` — the error shape of most of the contracts."""
    return web.json_response({"error": message}, status=status)


@dataclass
class _Script:
    kind: str
    remaining: int
    method: str | None
    path_prefix: str | None

    def matches(self, request: web.Request) -> bool:
        if self.method is not None and request.method != self.method:
            return False
        return self.path_prefix is None or request.path.startswith(self.path_prefix)


@dataclass(frozen=True)
class Outage:
    """A clock-time range [start, end) in which every request gets 503 (`mode="503"`) or is dropped."""

    start: datetime
    end: datetime
    mode: str = "503"


def _drop(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()


class Faults:
    """Fault injection and request counters for one service (see the module docstring)."""

    def __init__(self, service: str, seed: int = 0, clock: Clock | None = None) -> None:
        self.service = service
        self._seed = seed
        self._clock: Clock = clock or WallClock()
        # Services with another error envelope (CoinBTR, Atmotube) replace this.
        self.error_factory: ErrorFactory = default_error
        self._reset_hooks: list[Callable[[], None]] = []
        self.middleware = self._make_middleware()
        self.reset()

    # -- configuration -----------------------------------------------------------------------------
    def configure(self, **settings: float) -> None:
        """Set fault probabilities (`p_429`, `p_5xx`, `p_drop_before`, `p_drop_after`, `p_truncate`,
        `p_bad_json`, `p_latency`, each 0..1) and `latency_s` (seconds added when latency is drawn)."""
        for key, value in settings.items():
            if key == "latency_s":
                if value < 0:
                    raise ValueError("latency_s must be >= 0")
                self._latency_s = float(value)
            elif key in PROBABILITIES:
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{key} must be between 0 and 1")
                self._p[key] = float(value)
            else:
                raise ValueError(f"unknown fault setting {key!r}")

    def script(self, kind: str, count: int = 1, method: str | None = None,
               path_prefix: str | None = None) -> None:
        """The next `count` requests matching `method` and `path_prefix` get fault `kind`."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(KINDS)}")
        if count < 1:
            raise ValueError("count must be >= 1")
        self._scripts.append(_Script(kind, count, method.upper() if method else None, path_prefix))

    def add_outage(self, start: datetime, end: datetime, mode: str = "503") -> None:
        """Every request in clock time [start, end) gets 503 (`mode="503"`) or a dropped connection."""
        if mode not in ("503", "drop"):
            raise ValueError("outage mode must be '503' or 'drop'")
        if end <= start:
            raise ValueError("outage end must be after its start")
        self._outages.append(Outage(start, end, mode))

    def on_reset(self, hook: Callable[[], None]) -> None:
        """Also call `hook` on `reset()` (services clear their rate-limit windows this way)."""
        self._reset_hooks.append(hook)

    def reset(self) -> None:
        """Clear probabilities, scripts, outages and counters; the random sequence starts over."""
        self._rng = random.Random(f"{self.service}:{self._seed}")
        self._p: dict[str, float] = dict.fromkeys(PROBABILITIES, 0.0)
        self._latency_s = 0.05
        self._scripts: deque[_Script] = deque()
        self._outages: list[Outage] = []
        self._requests: Counter[str] = Counter()
        self._statuses: Counter[int] = Counter()
        self._applied: Counter[str] = Counter()
        self._sent_429 = 0
        self._log: deque[tuple[datetime, str]] = deque(maxlen=REQUEST_LOG_SIZE)
        for hook in self._reset_hooks:
            hook()

    # -- counters ----------------------------------------------------------------------------------
    def count_429(self) -> None:
        """Count a 429 the service's own rate limiter sent."""
        self._sent_429 += 1

    def snapshot(self) -> dict[str, Any]:
        """Counters: requests per endpoint and in total, responses by status, 429s sent, faults by kind."""
        return {
            "service": self.service,
            "requests_total": sum(self._requests.values()),
            "requests": dict(self._requests),
            "statuses": {str(k): v for k, v in sorted(self._statuses.items())},
            "sent_429": self._sent_429,
            "faults": dict(self._applied),
        }

    def request_log(self) -> list[tuple[datetime, str]]:
        """`(clock time, "METHOD /endpoint")` of the newest API requests as they arrived, oldest first."""
        return list(self._log)

    def config(self) -> dict[str, Any]:
        """The current fault configuration as plain data."""
        return {
            **self._p,
            "latency_s": self._latency_s,
            "script": [
                {"kind": s.kind, "count": s.remaining, "method": s.method, "path_prefix": s.path_prefix}
                for s in self._scripts
            ],
            "outages": [
                {"start": iso_z(o.start), "end": iso_z(o.end), "mode": o.mode} for o in self._outages
            ],
        }

    # -- the middleware ----------------------------------------------------------------------------
    def _choose(self, request: web.Request) -> str | None:
        now = self._clock.now()
        for outage in self._outages:
            if outage.start <= now < outage.end:
                return "drop_before" if outage.mode == "drop" else "503"
        for script in self._scripts:
            if script.matches(request):
                script.remaining -= 1
                if script.remaining <= 0:
                    self._scripts.remove(script)
                return script.kind
        chosen: str | None = None
        for key in PROBABILITIES:
            p = self._p[key]
            if p <= 0.0:
                continue
            hit = self._rng.random() < p
            if hit and chosen is None:
                if key == "p_drop_after" and request.method not in MUTATING:
                    continue
                chosen = _KIND_OF[key]
        return chosen

    def _error(self, kind: str) -> web.Response:
        if kind == "429":
            self._sent_429 += 1
            return self.error_factory(429, "too many requests")
        status = self._rng.choice((500, 502, 503)) if kind == "5xx" else int(kind)
        if status == 500:
            return self.error_factory(500, "internal server error")
        reason = {502: "Bad Gateway", 503: "Service Unavailable"}[status]
        return web.Response(status=status, text=_PROXY_BODY.format(status=status, reason=reason),
                            content_type="text/html")

    def _make_middleware(self) -> Middleware:
        @web.middleware
        async def faults_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path.startswith(CONTROL_PREFIX):
                return await handler(request)
            resource = request.match_info.route.resource
            endpoint = resource.canonical if resource is not None else "(unmatched)"
            self._requests[f"{request.method} {endpoint}"] += 1
            self._log.append((self._clock.now(), f"{request.method} {endpoint}"))
            kind = self._choose(request)
            if kind is not None:
                self._applied["5xx" if kind in ("500", "502", "503") else kind] += 1
                log.debug("sandbox_fault", service=self.service, kind=kind, method=request.method,
                          endpoint=endpoint)
            if kind == "latency":
                await asyncio.sleep(self._latency_s)
            elif kind == "drop_before":
                _drop(request)
                return web.Response(status=499)
            elif kind in ("429", "5xx", "500", "502", "503"):
                resp = self._error(kind)
                self._statuses[resp.status] += 1
                return resp
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                self._statuses[exc.status] += 1
                raise
            self._statuses[response.status] += 1
            if kind == "drop_after":
                _drop(request)
            elif kind in ("truncate", "bad_json"):
                return await _truncated(request, response, cut_connection=kind == "truncate")
            return response

        return faults_middleware

    # -- control routes ----------------------------------------------------------------------------
    def add_control_routes(self, app: web.Application) -> None:
        """GET/POST /_sandbox/faults, GET /_sandbox/counters, POST /_sandbox/reset, GET /_sandbox/clock
        (unauthenticated)."""
        app.router.add_get(CONTROL_PREFIX + "faults", self._get_faults)
        app.router.add_post(CONTROL_PREFIX + "faults", self._post_faults)
        app.router.add_get(CONTROL_PREFIX + "counters", self._get_counters)
        app.router.add_post(CONTROL_PREFIX + "reset", self._post_reset)
        app.router.add_get(CONTROL_PREFIX + "clock", self._get_clock)

    async def _get_clock(self, request: web.Request) -> web.Response:
        return web.json_response(clock_json(self._clock))

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.config())

    async def _post_faults(self, request: web.Request) -> web.Response:
        """Body: probabilities and `latency_s` as keys, plus optional `script` and `outages` lists."""
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            for item in body.pop("script", []):
                self.script(str(item["kind"]), int(item.get("count", 1)), item.get("method"),
                            item.get("path_prefix"))
            for item in body.pop("outages", []):
                self.add_outage(parse_iso(item["start"]), parse_iso(item["end"]),
                                str(item.get("mode", "503")))
            self.configure(**{k: float(v) for k, v in body.items()})
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.config())

    async def _get_counters(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())

    async def _post_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"reset": True})


def clock_json(clock: Clock) -> dict[str, Any]:
    """`{"sim": iso, "wall": iso, "speed": float}`: the clock's time and the wall time at the same instant,
    which is all another process needs to follow an accelerated clock (`bot.sandbox.embedded`)."""
    sim, wall = clock.now(), datetime.now(UTC)
    return {"sim": sim.isoformat(), "wall": wall.isoformat(), "speed": float(clock.speed)}


async def _truncated(request: web.Request, response: web.StreamResponse, *,
                     cut_connection: bool) -> web.StreamResponse:
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes | bytearray) or len(body) < 2:
        return response  # streaming responses are left whole
    cut = bytes(body[: len(body) // 2])
    skip = ("content-length", "transfer-encoding")
    headers = {k: v for k, v in response.headers.items() if k.lower() not in skip}
    if not cut_connection:
        return web.Response(status=response.status, body=cut, headers=headers)
    out = web.StreamResponse(status=response.status, headers=headers)
    out.content_length = len(body)
    await out.prepare(request)
    await out.write(cut)
    _drop(request)
    return out
