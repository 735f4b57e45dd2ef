"""The wire side of one `bot.http` attempt: reading the body, and what a transport failure means.

Bodies are read whole under a size cap (`read_body`) or as they arrive (`BodyStream`: NDJSON, SSE, CSV
downloads). `HttpService.stream(...)` opens a `BodyStream` (rate limited and retried like any call) and
closes it when its `async with` block ends; nothing here is retried: a drop mid-body raises
`TemporaryError` and the caller resumes from what it has.

`AttemptProgress`, set by aiohttp's tracing signals (`trace_config`), records whether the attempt ever
got a connection; `transport_error` turns a failure into the typed error that says whether the request
can have reached the server (see the module docstring of `bot.http`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from types import SimpleNamespace

import aiohttp

from bot.errors import BotError, MalformedResponse, OutcomeUnknown, TemporaryError

__all__ = ["AttemptProgress", "BodyStream", "read_body", "trace_config", "transport_error"]

_CHUNK = 64 * 1024


async def read_body(resp: aiohttp.ClientResponse, max_bytes: int, service: str, path: str) -> bytes:
    """The whole body; `MalformedResponse` as soon as it is (or declares to be) over `max_bytes`."""
    declared = resp.content_length
    if declared is not None and declared > max_bytes:
        raise MalformedResponse(f"response body over the size cap on {path}", service=service, status=resp.status)
    parts: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise MalformedResponse(f"response body over the size cap on {path}", service=service,
                                    status=resp.status)
        parts.append(chunk)
    return b"".join(parts)


class BodyStream:
    """An open streaming response: iterate `lines()` or `chunks()`, once.

    `sent_at` is the clock time the request went out (after its limiter slot was granted)."""

    def __init__(self, service: str, resp: aiohttp.ClientResponse, max_line: int, sent_at: datetime) -> None:
        self.service = service
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers
        self.sent_at = sent_at
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
        """Body lines without their `\\n`/`\\r\\n`; a final unterminated line is yielded too. A line
        longer than the size cap raises `MalformedResponse`."""
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


class AttemptProgress:
    """How far one attempt got; set by aiohttp's tracing signals (`connected`) and by `HttpService`
    once the response head arrived (`responded`)."""

    __slots__ = ("connected", "responded")

    def __init__(self) -> None:
        self.connected = False
        self.responded = False


async def _on_connected(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
    progress = ctx.trace_request_ctx
    if isinstance(progress, AttemptProgress):
        progress.connected = True


def trace_config() -> aiohttp.TraceConfig:
    """Tracing that marks the request's `AttemptProgress` (its `trace_request_ctx`) as connected."""
    tc = aiohttp.TraceConfig()
    tc.on_connection_create_end.append(_on_connected)
    tc.on_connection_reuseconn.append(_on_connected)
    return tc


def transport_error(exc: BaseException, progress: AttemptProgress, service: str, path: str,
                    idempotent: bool) -> BotError:
    """The typed error for a transport failure. Without a connection nothing reached the server
    (`TemporaryError`, even for a mutating call); after one, a mutating call's outcome is unknown."""
    what = type(exc).__name__
    never_sent = not progress.connected or isinstance(
        exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError
    )
    if never_sent:
        return TemporaryError(f"cannot connect for {path} ({what})", service=service)
    if not idempotent:
        return OutcomeUnknown(f"connection lost after sending {path} ({what})", service=service)
    if progress.responded and isinstance(exc, aiohttp.ClientPayloadError):
        return MalformedResponse(f"truncated response to {path} ({what})", service=service)
    return TemporaryError(f"connection lost on {path} ({what})", service=service)
