"""`HttpService` over real loopback HTTP against a small app wrapped in the sandbox's fault middleware.

Pins what the other clients build on: mutating calls are never retried once sent (OutcomeUnknown), a
refused connection is TemporaryError even for POST, 4xx come back as responses, the size cap, streams,
secrets staying out of errors, and one limiter shared by concurrent callers.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.clock import ManualClock
from bot.errors import (
    AuthError,
    MalformedResponse,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    TemporaryError,
)
from bot.http import BodyStream, HttpService, Priority, Response, RollingWindowLimiter
from bot.sandbox.faults import Faults
from bot.sandbox.ratelimit import RollingWindowLimiter as ServerLimiter
from tests.conftest import T0

SECRET = "very-secret-token"


@dataclass
class App:
    server: TestServer
    faults: Faults
    applied: list[str] = field(default_factory=list)
    seen_headers: list[str] = field(default_factory=list)
    seen_params: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


@pytest.fixture
async def app(clock: ManualClock) -> AsyncIterator[App]:
    faults = Faults("test", clock=clock)
    limiter = ServerLimiter(clock, 20)
    state = App(None, faults)  # type: ignore[arg-type]

    async def place(request: web.Request) -> web.Response:
        state.applied.append((await request.json())["id"])
        return web.json_response({"ok": True})

    async def read(request: web.Request) -> web.Response:
        state.seen_headers.append(request.headers.get("X-Token", ""))
        state.seen_params.append(request.query.get("api_key", ""))
        return web.json_response({"n": 1})

    async def limited(request: web.Request) -> web.Response:
        if not limiter.allow("k"):
            faults.count_429()
            return web.json_response({"error": "slow down"}, status=429)
        return web.json_response({"n": 1})

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"[" + b"1," * 100_000 + b"1]", content_type="application/json")

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.json_response({"error": f"status {code}", "token": SECRET}, status=code)

    async def ndjson(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        for i in range(5):
            await resp.write(f'{{"i": {i}}}\r\n'.encode())
        return resp

    web_app = web.Application(middlewares=[faults.middleware])
    web_app.router.add_post("/place", place)
    web_app.router.add_get("/read", read)
    web_app.router.add_get("/limited", limited)
    web_app.router.add_get("/big", big)
    web_app.router.add_get("/status/{code}", status)
    web_app.router.add_get("/ndjson", ndjson)
    state.server = TestServer(web_app, host="127.0.0.1")
    await state.server.start_server()
    yield state
    await state.server.close()


@pytest.fixture
async def http(app: App, clock: ManualClock) -> AsyncIterator[HttpService]:
    svc = HttpService("test", app.url, clock, RollingWindowLimiter(clock, 20), headers={"X-Token": SECRET},
                      params={"api_key": SECRET}, rng=random.Random(0), max_body_bytes=64 * 1024)
    yield svc
    await svc.close()


@pytest.mark.parametrize("kind", ["drop_after", "drop_before", "500", "503", "bad_json"])
async def test_mutating_call_failing_after_sending_is_outcome_unknown_and_not_retried(
    app: App, http: HttpService, kind: str
) -> None:
    app.faults.script(kind, method="POST")
    with pytest.raises(OutcomeUnknown) as err:
        await http.request("POST", "/place", json={"id": "a"}, idempotent=False)
    assert app.faults.snapshot()["requests_total"] == 1
    assert app.applied == ([] if kind in ("drop_before", "500", "503") else ["a"])
    assert SECRET not in str(err.value)


async def test_mutating_call_refused_by_a_429_is_retried(app: App, http: HttpService) -> None:
    app.faults.script("429", method="POST")
    resp = await http.request("POST", "/place", json={"id": "b"}, idempotent=False)
    assert resp.data == {"ok": True}
    assert app.applied == ["b"]


async def test_connection_refused_is_temporary_even_for_a_mutating_call(clock: ManualClock) -> None:
    async with HttpService("test", "http://127.0.0.1:9", clock, RollingWindowLimiter(clock, 20),
                           rng=random.Random(0)) as dead:
        with pytest.raises(TemporaryError) as err:
            await dead.request("POST", "/place", json={"id": "c"}, idempotent=False)
    assert not isinstance(err.value, OutcomeUnknown)
    assert dead.metrics.requests == 4  # nothing was sent, so retrying was safe


@pytest.mark.parametrize(("code", "error"), [(400, Rejected), (401, AuthError), (403, AuthError),
                                             (404, NotFound), (409, Rejected)])
async def test_4xx_comes_back_as_a_response_with_a_default_typed_error(
    http: HttpService, code: int, error: type[Exception]
) -> None:
    resp = await http.request("GET", f"/status/{code}")
    assert resp.status == code and not resp.ok
    assert resp.data["error"] == f"status {code}"
    typed = resp.error()
    assert type(typed) is error and typed.status == code and typed.service == "test"
    assert SECRET not in str(typed)


async def test_secrets_are_sent_but_never_in_errors(app: App, http: HttpService) -> None:
    await http.request("GET", "/read")
    assert app.seen_headers == [SECRET] and app.seen_params == [SECRET]
    app.faults.script("503", count=10)
    with pytest.raises(TemporaryError) as err:
        await http.request("GET", "/read")
    assert SECRET not in str(err.value) and SECRET not in repr(http.snapshot())


async def test_body_over_the_cap_is_malformed(http: HttpService) -> None:
    with pytest.raises(MalformedResponse, match="size cap"):
        await http.request("GET", "/big")


async def test_parse_errors_inside_call_are_malformed_and_retried(app: App, http: HttpService) -> None:
    def parse(resp: Response) -> int:
        return int(resp.data["missing"])

    with pytest.raises(MalformedResponse):
        await http.call("GET", "/read", parse)
    assert app.faults.snapshot()["requests_total"] == 4


async def test_stream_yields_lines(http: HttpService, clock: ManualClock) -> None:
    async with http.stream("GET", "/ndjson") as stream:
        assert isinstance(stream, BodyStream)
        assert stream.status == 200 and stream.sent_at == clock.now()
        lines = [line async for line in stream.lines()]
    assert lines == [f'{{"i": {i}}}'.encode() for i in range(5)]


async def test_stream_error_status_uses_the_callers_mapping(http: HttpService) -> None:
    with pytest.raises(NotFound):
        async with http.stream("GET", "/status/404"):
            pass

    def mine(resp: Response) -> Rejected:
        return Rejected("mapped", service="test", status=resp.status, code=42)

    with pytest.raises(Rejected) as err:
        async with http.stream("GET", "/status/400", error_for=mine):
            pass
    assert err.value.code == 42


async def test_stream_open_is_retried_on_5xx(app: App, http: HttpService) -> None:
    app.faults.script("502", count=2)
    async with http.stream("GET", "/ndjson") as stream:
        assert len([line async for line in stream.lines()]) == 5


async def test_one_limiter_is_shared_by_concurrent_callers(app: App, http: HttpService) -> None:
    results = await asyncio.gather(*(http.request("GET", "/limited") for _ in range(50)))
    assert all(r.data == {"n": 1} for r in results)
    assert app.faults.snapshot()["sent_429"] == 0
    assert http.snapshot()["rate_limited"] == 0



async def test_json_numbers_decode_to_exact_decimal_never_float() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from bot.clock import ManualClock
    from bot.http import HttpService, RollingWindowLimiter

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text='{"balance": 1234567890.12345678, "n": 3}', content_type="application/json")

    app = web.Application()
    app.router.add_get("/b", handler)
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    async with TestServer(app) as server:
        http = HttpService("t", str(server.make_url("")), clock, RollingWindowLimiter(clock, 60))
        try:
            resp = await http.request("GET", "/b")
        finally:
            await http.close()
    assert resp.data == {"balance": Decimal("1234567890.12345678"), "n": 3}


async def test_sent_at_is_when_the_limiter_let_the_request_go_not_when_it_was_asked(
    app: App, clock: ManualClock,
) -> None:
    async with HttpService("test", app.url, clock, RollingWindowLimiter(clock, 1), rng=random.Random(0)) as one:
        first = await one.request("GET", "/read")
        second = await one.request("GET", "/read")  # waits for the window: sent a minute later
    assert first.sent_at == T0
    assert (second.sent_at - T0).total_seconds() == pytest.approx(60.05, abs=0.01)


async def test_priority_orders_queued_requests_of_one_service(app: App, clock: ManualClock) -> None:
    async with HttpService("test", app.url, clock, RollingWindowLimiter(clock, 1), rng=random.Random(0)) as one:
        await one.request("GET", "/read")  # the window is full for a minute
        low = asyncio.create_task(one.request("GET", "/read", priority=Priority.LOW))
        await asyncio.sleep(0)  # queued first
        critical = asyncio.create_task(one.request("POST", "/place", json={"id": "cancel"}, idempotent=False,
                                                   priority=Priority.CRITICAL))
        low_resp, critical_resp = await asyncio.gather(low, critical)
    assert critical_resp.sent_at < low_resp.sent_at
    assert app.applied == ["cancel"]


async def test_error_code_hook_puts_the_services_code_on_5xx_and_429_errors(app: App, clock: ManualClock) -> None:
    def code_of(body: bytes) -> int | None:
        return 4242 if b"internal server error" in body else 4290 if b"too many" in body else None

    async with HttpService("test", app.url, clock, RollingWindowLimiter(clock, 20), rng=random.Random(0),
                           max_attempts=1, error_code=code_of) as svc:
        app.faults.script("500")
        with pytest.raises(TemporaryError) as read:
            await svc.request("GET", "/read")
        app.faults.script("500", method="POST")
        with pytest.raises(OutcomeUnknown) as place:
            await svc.request("POST", "/place", json={"id": "d"}, idempotent=False)
        app.faults.script("429")
        with pytest.raises(RateLimited) as limited:
            await svc.request("GET", "/read")
    assert (read.value.code, place.value.code, limited.value.code) == (4242, 4242, 4290)
