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
    resp = await http.request("POST", "/api/v1/trading/place/buylimit", json=body, idempotent=False)
    async with http.stream("GET", "/api/rows/live/", params=q) as s:   # NDJSON / SSE / CSV
        async for line in s.lines():
            ...
    http.snapshot()   # counters for the status endpoint
    await http.close()

    # Atmotube: fixed clock-minute window, key as a secret query parameter (never logged or echoed).
    HttpService("atmotube", url, clock, FixedWindowLimiter(clock, 60), params={"api_key": key})

Share one `HttpService` (or the client object holding it) between every caller of a service: the limiter
lives on it. The pure parts (`should_retry`, `backoff_delay`, `parse_retry_after`, the limiters and
`ServiceMetrics`) are in `bot.http_policy` and re-exported here.

What `request`/`call` do with each outcome (`idempotent` defaults to True for GET/HEAD/OPTIONS only):

- 2xx..4xx except 429 come back as a `Response` (status, headers, raw body, parsed JSON in `data`); the
  client maps its 4xx bodies to `Rejected`/`AuthError`/`NotFound` with the venue's code, or calls
  `Response.error()` for the default mapping. A 2xx body that is not JSON (with `expect="json"`) raises
  `MalformedResponse`.
- 429 raises `RateLimited` (with `Retry-After` if sent); the limiter is paused, the call retried.
- 5xx raises `TemporaryError` on an idempotent call, `OutcomeUnknown` on a mutating one.
- Transport failures: if no connection was ever obtained for the attempt (connection refused, DNS,
  connect timeout), nothing reached the server, so `TemporaryError` even for mutating calls. We learn
  this from aiohttp's tracing signals (`on_connection_create_end` / `on_connection_reuseconn`), not from
  exception types alone, because a total timeout raises the same `TimeoutError` in every phase. Once a
  connection was handed to the request, a failure on a mutating call is `OutcomeUnknown` (the bytes may
  have been read and applied), and is never retried. On reads it is `TemporaryError` (or
  `MalformedResponse` for a truncated body) and retried.
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
from decimal import Decimal
from types import SimpleNamespace
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
    RollingWindowLimiter,
    ServiceMetrics,
    Slot,
    backoff_delay,
    parse_retry_after,
    should_retry,
)

__all__ = [
    "FixedWindowLimiter",
    "HttpService",
    "Limiter",
    "Response",
    "RollingWindowLimiter",
    "ServiceMetrics",
    "Slot",
    "Stream",
    "Timeouts",
    "backoff_delay",
    "parse_retry_after",
    "should_retry",
]

log = structlog.get_logger(__name__)
T = TypeVar("T")
Expect = Literal["json", "bytes"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_MAX_BODY = 16 * 1024 * 1024
_CHUNK = 64 * 1024


# ---------------------------------------------------------------------------------------------- types


@dataclass(frozen=True, slots=True)
class Timeouts:
    """aiohttp timeouts in wall seconds (network time, unlike limiter and backoff waits)."""

    connect: float = 5.0
    total: float = 30.0
    stream_idle: float = 60.0


@dataclass(frozen=True, slots=True)
class Response:
    """A non-429, non-5xx answer: status, headers, raw body and the parsed JSON (`None` if not JSON)."""

    service: str
    status: int
    headers: Mapping[str, str]
    body: bytes
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


class _Progress:
    """How far one attempt got; set by aiohttp's tracing signals."""

    __slots__ = ("connected", "responded")

    def __init__(self) -> None:
        self.connected = False
        self.responded = False


async def _on_connected(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
    progress = ctx.trace_request_ctx
    if isinstance(progress, _Progress):
        progress.connected = True


def _trace_config() -> aiohttp.TraceConfig:
    tc = aiohttp.TraceConfig()
    tc.on_connection_create_end.append(_on_connected)
    tc.on_connection_reuseconn.append(_on_connected)
    return tc


class Stream:
    """An open streaming response: iterate `lines()` (NDJSON, SSE, CSV) or `chunks()`, once."""

    def __init__(self, service: str, resp: aiohttp.ClientResponse, max_line: int) -> None:
        self.service = service
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers
        self._resp = resp
        self._max_line = max_line

    async def chunks(self) -> AsyncIterator[bytes]:
        """Raw body chunks as they arrive. A drop mid-stream raises `TemporaryError`."""
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TemporaryError(f"stream broken ({type(exc).__name__})", service=self.service) from None

    async def lines(self) -> AsyncIterator[bytes]:
        """Body lines without their `\\n`/`\\r\\n`; a final unterminated line is yielded too."""
        buf = b""
        async for chunk in self.chunks():
            buf += chunk
            while (nl := buf.find(b"\n")) >= 0:
                line, buf = buf[:nl], buf[nl + 1 :]
                yield line[:-1] if line.endswith(b"\r") else line
            if len(buf) > self._max_line:
                raise MalformedResponse("stream line over the size cap", service=self.service)
        if buf:
            yield buf[:-1] if buf.endswith(b"\r") else buf


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
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeouts.total, connect=self.timeouts.connect),
                headers=self._headers,
                trace_configs=[_trace_config()],
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
        return {"service": self.name, **self.metrics.snapshot(), "limiter": self.limiter.snapshot()}

    # -- requests

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        expect: Expect = "json",
    ) -> Response:
        """Send with rate limit and retries; return the `Response` (see the module docstring)."""
        return await self.call(method, path, _identity, params=params, json=json, headers=headers,
                               idempotent=idempotent, expect=expect)

    async def call(
        self,
        method: str,
        path: str,
        parse: Callable[[Response], T],
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        expect: Expect = "json",
    ) -> T:
        """Like `request`, then `parse(response)` inside the retry loop, so a malformed answer to a read
        is fetched again. `parse` should raise typed errors; ValueError/KeyError/TypeError/IndexError
        escaping it become `MalformedResponse`."""
        method = method.upper()
        idem = method in SAFE_METHODS if idempotent is None else idempotent

        async def once() -> T:
            async with self._exchange(method, path, params, json, headers, idem, None) as raw:
                payload = await self._read_capped(raw, path)
                resp = self._interpret(raw.status, raw.headers, payload, path, idem, expect)
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
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        read_timeout: float | None = None,
        error_for: Callable[[Response], BotError] | None = None,
    ) -> AsyncIterator[Stream]:
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

        async def once() -> tuple[AsyncExitStack, aiohttp.ClientResponse]:
            stack = AsyncExitStack()
            try:
                raw = await stack.enter_async_context(
                    self._exchange(method, path, params, json, headers, idem, timeout))
                if not 200 <= raw.status < 300:
                    payload = await self._read_capped(raw, path)
                    raise to_error(self._interpret(raw.status, raw.headers, payload, path, idem, "json"))
            except BaseException as exc:
                # Let `_exchange` see (and translate) the failure, then re-raise what it raised.
                if not await stack.__aexit__(type(exc), exc, exc.__traceback__):
                    raise
                raise
            return stack, raw

        stack, raw = await self._with_retries(method, path, idem, once)
        async with stack:
            yield Stream(self.name, raw, self.max_body_bytes)

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
                    # Pause every caller of this service, not just this one: the window is shared.
                    self.limiter.pause(retry_after)
                delay = backoff_delay(attempt, retry_after, self._rng,
                                      base=self._backoff[0], cap=self._backoff[1])
                self.metrics.retries += 1
                log.info("http.retry", service=self.name, method=method, path=path, attempt=attempt,
                         kind=err.kind, status=err.status, delay_s=round(delay, 3))
                await self.clock.sleep(delay)

    @asynccontextmanager
    async def _exchange(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Any,
        headers: Mapping[str, str] | None,
        idem: bool,
        client_timeout: aiohttp.ClientTimeout | None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One attempt: limiter slot, request, transport errors translated to typed errors."""
        slot = await self.limiter.acquire()
        progress = _Progress()
        started = time.perf_counter()
        self.metrics.requests += 1
        extra: dict[str, Any] = {"timeout": client_timeout} if client_timeout is not None else {}
        try:
            async with self._get_session().request(
                method, self.base_url + path, params=self._query(params), json=body,
                headers=dict(headers) if headers else None, trace_request_ctx=progress, **extra,
            ) as raw:
                progress.responded = True
                self.metrics.status(raw.status)
                yield raw
        except BotError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._transport_error(exc, progress, path, idem) from None
        finally:
            self.limiter.release(slot)
            self.metrics.observe(time.perf_counter() - started)

    def _query(self, params: Mapping[str, str] | None) -> dict[str, str] | None:
        if not params and not self._params:
            return None
        return {**(params or {}), **self._params}

    async def _read_capped(self, raw: aiohttp.ClientResponse, path: str) -> bytes:
        declared = raw.content_length
        if declared is not None and declared > self.max_body_bytes:
            raise MalformedResponse(f"response body over the size cap on {path}", service=self.name,
                                    status=raw.status)
        parts: list[bytes] = []
        size = 0
        async for chunk in raw.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > self.max_body_bytes:
                raise MalformedResponse(f"response body over the size cap on {path}", service=self.name,
                                        status=raw.status)
            parts.append(chunk)
        return b"".join(parts)

    def _interpret(
        self, status: int, headers: Mapping[str, str], payload: bytes, path: str, idem: bool, expect: Expect
    ) -> Response:
        kw: dict[str, Any] = {"service": self.name, "status": status, "body": payload}
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
        return Response(self.name, status, headers, payload, data)

    def _transport_error(self, exc: BaseException, progress: _Progress, path: str, idem: bool) -> BotError:
        what = type(exc).__name__
        never_sent = not progress.connected or isinstance(
            exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError
        )
        if never_sent:
            return TemporaryError(f"cannot connect for {path} ({what})", service=self.name)
        if not idem:
            return OutcomeUnknown(f"connection lost after sending {path} ({what})", service=self.name)
        if progress.responded and isinstance(exc, aiohttp.ClientPayloadError):
            return MalformedResponse(f"truncated response to {path} ({what})", service=self.name)
        return TemporaryError(f"connection lost on {path} ({what})", service=self.name)


def _identity(resp: Response) -> Response:
    return resp
