"""HTTP plumbing shared by every client in `bot/clients/`: session, rate limit, retry policy, counters.

One `HttpService` per external service. It owns one `aiohttp.ClientSession` (connect/total timeouts, a
response size cap), one rate limiter shared by every caller of that service, the retry loop and the
per-service counters. Clients own their wire format; this module knows no route and no field name.

Usage from a client module::

    http = HttpService("atmos", settings.base_url, clock,
                       RollingWindowLimiter(clock, settings.requests_per_minute),
                       headers={"x-atmos-key": settings.api_key.get_secret_value()})
    # `parse` runs inside the retry loop: a malformed page of a read is fetched again.
    candles = await http.call("GET", "/v1/binance/BTCUSDT/ohlcv", parse_page, params={"limit": "100"})
    resp = await http.request("POST", "/api/v1/trading/place/buylimit", json=body, idempotent=False,
                              priority=Priority.HIGH)   # waiters are served by priority, then in order
    resp.sent_at            # clock time the request went out (after its limiter slot was granted)
    async with http.stream("GET", "/api/rows/live/", params=q) as body:   # a BodyStream: NDJSON/SSE/CSV
        async for line in body.lines():
            ...
    http.snapshot()   # counters for the status endpoint
    await http.close()

    # Atmotube: fixed clock-minute window, key as a secret query parameter (never logged or echoed).
    HttpService("atmotube", url, clock, FixedWindowLimiter(clock, 60), params={"api_key": key})

Share one `HttpService` (or the client object holding it) between every caller of a service: the limiter
lives on it. The pure parts (`Priority`, `should_retry`, `backoff_delay`, `parse_retry_after`,
`pause_after_429`, the limiters and `ServiceMetrics`) are in `bot.http_policy`, body reading and
transport failures in `bot.http_stream`; the public names of both are re-exported here.

What `request`/`call` do with each outcome (`idempotent` defaults to True for GET/HEAD/OPTIONS only):

- 2xx..4xx except 429 come back as a `Response` (status, headers, raw body, parsed JSON in `data`); the
  client maps its 4xx bodies to `Rejected`/`AuthError`/`NotFound` with the venue's code, or calls
  `Response.error()` for the default mapping. A 2xx body that is not JSON (with `expect="json"`) raises
  `MalformedResponse`.
- 429 raises `RateLimited` (with `Retry-After` if sent) and the call is retried after a backoff. With
  `Retry-After` the whole service pauses that long; without it only that request backs off, unless 429s
  repeat within one window (`pause_after_429`).
- 5xx raises `TemporaryError` on an idempotent call, `OutcomeUnknown` on a mutating one. Both (and 429)
  carry the venue's error code when the service's `error_code` hook finds one in the body.
- Transport failures: if no connection was ever obtained for the attempt (connection refused, DNS,
  connect timeout), nothing reached the server, so `TemporaryError` even for mutating calls. We learn
  this from aiohttp's tracing signals (`bot.http_stream`), not from exception types alone, because a
  total timeout raises the same `TimeoutError` in every phase. Once a connection was handed to the
  request, a failure on a mutating call is `OutcomeUnknown` (the bytes may have been read and applied),
  never retried; on reads it is `TemporaryError` (or `MalformedResponse` if truncated) and retried.
- Retries follow the pure `should_retry` predicate and the pure jittered `backoff_delay`; every wait
  (limiter, backoff, Retry-After) is a `clock.sleep`, so bot and simulators agree at any clock speed.

Errors never carry secrets: auth headers and secret query parameters are added here and never put into
an error, a log event or a counter; errors name the path, not the URL.
"""

from __future__ import annotations

import json as jsonlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

import aiohttp
import structlog

from bot.clock import Clock
from bot.errors import (
    AuthError,
    BotError,
    MalformedResponse,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    TemporaryError,
)
from bot.http_policy import (
    DEFAULT_MAX_ATTEMPTS,
    FixedWindowLimiter,
    Limiter,
    Pause,
    Priority,
    RollingWindowLimiter,
    ServiceMetrics,
    Slot,
    backoff_delay,
    parse_retry_after,
    pause_after_429,
    should_retry,
)
from bot.http_stream import AttemptProgress, BodyStream, read_body, trace_config, transport_error
from bot.skew import SKEW_WARN_S, ClockSkew

__all__ = [
    "BodyStream", "ErrorCode", "FixedWindowLimiter", "HttpService", "Limiter", "Pause", "Priority", "Response",
    "RollingWindowLimiter", "ServiceMetrics", "Slot", "Timeouts", "backoff_delay", "parse_retry_after",
    "pause_after_429", "should_retry",
]

log = structlog.get_logger(__name__)
T = TypeVar("T")
Expect = Literal["json", "bytes"]
# Reads a service's own error code from the raw body of a 429/5xx this module raises (None: no code).
ErrorCode = Callable[[bytes], int | None]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_MAX_BODY = 16 * 1024 * 1024


# ---------------------------------------------------------------------------------------------- types


class RawJson(bytes):
    """A request body already encoded as JSON (a big batch encoded in a thread, not on the loop)."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """aiohttp timeouts in wall seconds (network time, unlike limiter and backoff waits)."""

    connect: float = 5.0
    total: float = 30.0
    stream_idle: float = 60.0


@dataclass(frozen=True, slots=True)
class Response:
    """A non-429, non-5xx answer: status, headers, raw body and the parsed JSON (`None` if not JSON).

    `sent_at` is the clock time the request went out, taken after its limiter slot was granted: what
    the answer can tell about "now" is as of then, however long the answer took (candle finality)."""

    service: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    sent_at: datetime
    data: Any = None

    @property
    def ok(self) -> bool:
        """True for 2xx."""
        return 200 <= self.status < 300

    def error(self, message: str | None = None, code: int | None = None) -> BotError:
        """The default typed error for this status: 401/403 auth, 404 not found, other 4xx rejected."""
        text = message or _error_text(self.data) or f"HTTP {self.status}"
        kw: dict[str, Any] = {"service": self.service, "status": self.status, "code": code, "body": self.body}
        if self.status in (401, 403):
            return AuthError(text, **kw)
        if self.status == 404:
            return NotFound(text, **kw)
        return Rejected(text, **kw)


def _error_text(data: Any) -> str | None:
    if isinstance(data, dict):
        for key in ("error", "message", "msg", "detail"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value[:200]
    return None


# ---------------------------------------------------------------------------------------------- service


class HttpService:
    """One external service: session, shared limiter, retry loop and counters. See the module docstring."""

    def __init__(
        self,
        name: str,
        base_url: str,
        clock: Clock,
        limiter: Limiter,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        rng: random.Random | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        error_code: ErrorCode | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.limiter = limiter
        self.timeouts = timeouts or Timeouts()
        self.max_body_bytes = max_body_bytes
        self.max_attempts = max_attempts
        self.metrics = ServiceMetrics()
        self._headers = dict(headers or {})  # secrets: never logged, never put on an error
        self._params = dict(params or {})  # secret query parameters (Atmotube's api_key)
        self._rng = rng or random.Random()
        self._backoff = (backoff_base, backoff_cap)
        self._error_code = error_code
        self._session: aiohttp.ClientSession | None = None
        self.skew = ClockSkew()  # from the answers' `Date` headers, against this machine's wall clock

    # -- lifecycle

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeouts.total, connect=self.timeouts.connect),
                headers=self._headers,
                trace_configs=[trace_config()],
            )
        return self._session

    async def close(self) -> None:
        """Close the session (idempotent; a later request opens a new one)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> HttpService:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def snapshot(self) -> dict[str, Any]:
        """Counters and limiter state for the status endpoint (no secrets, no URLs)."""
        return {"service": self.name, **self.metrics.snapshot(), "limiter": self.limiter.snapshot(),
                "clock_skew_s": self.skew.seconds()}

    # -- requests

    async def request(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, json: Any = None,
        headers: Mapping[str, str] | None = None, idempotent: bool | None = None, expect: Expect = "json",
        priority: Priority = Priority.NORMAL,
    ) -> Response:
        """Send with rate limit and retries; return the `Response` (see the module docstring)."""
        return await self.call(method, path, _identity, params=params, json=json, headers=headers,
                               idempotent=idempotent, expect=expect, priority=priority)

    async def call(
        self, method: str, path: str, parse: Callable[[Response], T], *, params: Mapping[str, str] | None = None,
        json: Any = None, headers: Mapping[str, str] | None = None, idempotent: bool | None = None,
        expect: Expect = "json", priority: Priority = Priority.NORMAL,
    ) -> T:
        """Like `request`, then `parse(response)` inside the retry loop, so a malformed answer to a read
        is fetched again. `parse` should raise typed errors; ValueError/KeyError/TypeError/IndexError
        escaping it become `MalformedResponse`."""
        method = method.upper()
        idem = method in SAFE_METHODS if idempotent is None else idempotent

        async def once() -> T:
            async with self._exchange(method, path, params, json, headers, idem, None, priority) as (raw, sent):
                payload = await read_body(raw, self.max_body_bytes, self.name, path)
                resp = self._interpret(raw, payload, path, idem, expect, sent)
            try:
                return parse(resp)
            except BotError:
                raise
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                raise MalformedResponse(f"unexpected response shape on {path}: {type(exc).__name__}",
                                        service=self.name, status=resp.status, body=resp.body) from None

        return await self._with_retries(method, path, idem, once)

    @asynccontextmanager
    async def stream(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, json: Any = None,
        headers: Mapping[str, str] | None = None, idempotent: bool | None = None,
        read_timeout: float | None = None, error_for: Callable[[Response], BotError] | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> AsyncIterator[BodyStream]:
        """Open a streaming response (no total timeout; `read_timeout` wall seconds between chunks).

        Opening is rate limited and retried like `call`; a non-2xx answer raises `error_for(response)`
        (default `Response.error()`). Once open, nothing is retried: a drop mid-stream raises
        `TemporaryError` and the caller resumes from what it has. The stream holds its limiter slot,
        and counts as one request, until it is closed."""
        method = method.upper()
        idem = method in SAFE_METHODS if idempotent is None else idempotent
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeouts.connect,
                                        sock_read=read_timeout or self.timeouts.stream_idle)
        to_error = error_for or Response.error

        async def once() -> tuple[AsyncExitStack, aiohttp.ClientResponse, datetime]:
            stack = AsyncExitStack()
            try:
                raw, sent = await stack.enter_async_context(
                    self._exchange(method, path, params, json, headers, idem, timeout, priority))
                if not 200 <= raw.status < 300:
                    payload = await read_body(raw, self.max_body_bytes, self.name, path)
                    raise to_error(self._interpret(raw, payload, path, idem, "json", sent))
            except BaseException as exc:
                # Let `_exchange` see (and translate) the failure, then re-raise what it raised.
                if not await stack.__aexit__(type(exc), exc, exc.__traceback__):
                    raise
                raise
            return stack, raw, sent

        stack, raw, sent = await self._with_retries(method, path, idem, once)
        async with stack:
            yield BodyStream(self.name, raw, self.max_body_bytes, sent)

    # -- internals

    async def _with_retries(self, method: str, path: str, idem: bool, once: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await once()
            except BotError as err:
                self.metrics.error(err)
                if not should_retry(err, attempt, idem, self.max_attempts):
                    log.warning("http.failed", service=self.name, method=method, path=path,
                                attempt=attempt, kind=err.kind, status=err.status)
                    raise
                retry_after = err.retry_after if isinstance(err, RateLimited) else None
                if isinstance(err, RateLimited):
                    # The limiter decides whether every caller pauses (the window is shared) or only
                    # this request backs off (the delay below): see `pause_after_429`.
                    self.limiter.throttled(retry_after)
                delay = backoff_delay(attempt, retry_after, self._rng,
                                      base=self._backoff[0], cap=self._backoff[1])
                self.metrics.retries += 1
                log.info("http.retry", service=self.name, method=method, path=path, attempt=attempt,
                         kind=err.kind, status=err.status, delay_s=round(delay, 3))
                await self.clock.sleep(delay)

    @asynccontextmanager
    async def _exchange(
        self, method: str, path: str, params: Mapping[str, str] | None, body: Any,
        headers: Mapping[str, str] | None, idem: bool, client_timeout: aiohttp.ClientTimeout | None,
        priority: Priority,
    ) -> AsyncIterator[tuple[aiohttp.ClientResponse, datetime]]:
        """One attempt: limiter slot, request, transport errors translated to typed errors. Yields the
        response and the clock time it was sent (read after the slot was granted)."""
        slot = await self.limiter.acquire(priority)
        sent_at = self.clock.now()
        progress = AttemptProgress()
        started = time.perf_counter()
        sent_wall = time.time()  # wall, not the bot's clock: see `bot.skew`
        self.metrics.requests += 1
        extra: dict[str, Any] = {"timeout": client_timeout} if client_timeout is not None else {}
        if isinstance(body, RawJson):  # encoded by the caller (off the event loop): sent as it is
            extra["data"] = bytes(body)
            headers = {**(headers or {}), "Content-Type": "application/json"}
        else:
            extra["json"] = body
        try:
            async with self._get_session().request(
                method, self.base_url + path, params=self._query(params),
                headers=dict(headers) if headers else None, trace_request_ctx=progress, **extra,
            ) as raw:
                progress.responded = True
                self.metrics.status(raw.status)
                self._observe_skew(raw.headers.get("Date"), sent_wall)
                yield raw, sent_at
        except BotError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise transport_error(exc, progress, self.name, path, idem) from None
        finally:
            self.limiter.release(slot)
            self.metrics.observe(time.perf_counter() - started)

    def _observe_skew(self, date_header: str | None, sent_wall: float) -> None:
        skew = self.skew.observe(date_header, sent_wall, time.time())
        change = self.skew.newly_skewed()
        if change:
            log.warning("http.clock_skew", service=self.name, skew_s=skew, limit_s=SKEW_WARN_S,
                        note="this machine's clock and the service's differ: candle settling and since "
                             "queries depend on them agreeing; check NTP (timedatectl)")
        elif change is False:
            log.info("http.clock_skew_cleared", service=self.name, skew_s=skew)

    def _query(self, params: Mapping[str, str] | None) -> dict[str, str] | None:
        if not params and not self._params:
            return None
        return {**(params or {}), **self._params}

    def _interpret(
        self, raw: aiohttp.ClientResponse, payload: bytes, path: str, idem: bool, expect: Expect,
        sent_at: datetime,
    ) -> Response:
        status, headers = raw.status, raw.headers
        kw: dict[str, Any] = {"service": self.name, "status": status, "body": payload}
        if (status == 429 or status >= 500) and self._error_code is not None:
            kw["code"] = self._error_code(payload)  # e.g. CoinBTR's 1500 in a 500's envelope
        if status == 429:
            retry_after = parse_retry_after(headers.get("Retry-After"), self.clock.now())
            raise RateLimited(f"rate limited on {path}", retry_after=retry_after, **kw)
        if status >= 500:
            if idem:
                raise TemporaryError(f"server error on {path}", **kw)
            raise OutcomeUnknown(f"server error after sending {path}", **kw)
        ok = 200 <= status < 300
        data: Any = None
        if expect == "json" and (payload.strip() or (ok and status != 204)):
            try:
                # JSON numbers become Decimal, never float: money may arrive as numbers (contract rule 5).
                data = jsonlib.loads(payload, parse_float=Decimal)
            except (ValueError, UnicodeDecodeError):
                # A mutating call that got 2xx was applied, but we cannot read what it did.
                if ok and not idem:
                    raise OutcomeUnknown(f"unreadable answer to {path}", **kw) from None
                if ok:
                    raise MalformedResponse(f"response to {path} is not JSON", **kw) from None
        return Response(self.name, status, headers, payload, sent_at, data)


def _identity(resp: Response) -> Response:
    return resp
