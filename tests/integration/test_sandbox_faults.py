"""Fault injection as seen by a raw aiohttp client over loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.clock import ManualClock
from bot.sandbox.faults import Faults

APPLIED = web.AppKey("applied", list[str])
Served = tuple[Faults, TestServer, aiohttp.ClientSession]


def _tiny_app(faults: Faults) -> web.Application:
    """A service with one read and one mutating endpoint that records what it applied."""

    async def read(request: web.Request) -> web.Response:
        return web.json_response({"items": list(range(50)), "name": "read"})

    async def write(request: web.Request) -> web.Response:
        body = await request.json()
        request.app[APPLIED].append(body["id"])
        return web.json_response({"ok": True, "id": body["id"]})

    app = web.Application(middlewares=[faults.middleware])
    app[APPLIED] = []
    app.router.add_get("/v1/items", read)
    app.router.add_post("/v1/items", write)
    faults.add_control_routes(app)
    return app


@pytest.fixture
async def served(clock: ManualClock) -> AsyncIterator[Served]:
    faults = Faults("tiny", seed=7, clock=clock)
    server = TestServer(_tiny_app(faults), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession(str(server.make_url(""))) as session:
        yield faults, server, session
    await server.close()


async def _status(session: aiohttp.ClientSession, method: str = "GET", path: str = "/v1/items") -> int | str:
    try:
        async with session.request(method, path, json={"id": "x"} if method == "POST" else None) as resp:
            await resp.read()
            return resp.status
    except aiohttp.ClientError as exc:
        return type(exc).__name__


async def test_scripted_429_and_5xx_hit_only_the_matching_requests(served: Served) -> None:
    faults, _, session = served
    faults.script("429", count=2, method="GET", path_prefix="/v1/items")
    faults.script("502", method="POST")
    assert await _status(session, "POST") == 502
    assert [await _status(session) for _ in range(3)] == [429, 429, 200]
    async with session.get("/v1/items") as resp:
        assert resp.status == 200
    snap = faults.snapshot()
    assert snap["sent_429"] == 2
    assert snap["faults"] == {"429": 2, "5xx": 1}
    assert snap["requests"] == {"GET /v1/items": 4, "POST /v1/items": 1}


async def test_a_proxy_5xx_body_is_not_json(served: Served) -> None:
    faults, _, session = served
    faults.script("503")
    async with session.get("/v1/items") as resp:
        assert resp.status == 503
        with pytest.raises(aiohttp.ContentTypeError):
            await resp.json()


async def test_one_dropped_get_is_hidden_by_the_client_retry_two_are_not(served: Served) -> None:
    faults, _, session = served
    faults.script("drop_before", count=1, method="GET")
    assert await _status(session) == 200  # aiohttp silently retried the idempotent GET
    faults.script("drop_before", count=2, method="GET")
    assert await _status(session) == "ServerDisconnectedError"
    assert faults.snapshot()["faults"] == {"drop_before": 3}


async def test_drop_after_apply_keeps_the_effect_but_loses_the_response(served: Served) -> None:
    faults, server, session = served
    faults.script("drop_after", method="POST")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with session.post("/v1/items", json={"id": "order-1"}) as resp:
            await resp.read()
    assert server.app[APPLIED] == ["order-1"]  # applied although the client saw no answer


async def test_drop_before_on_a_post_is_not_applied(served: Served) -> None:
    faults, server, session = served
    faults.script("drop_before", method="POST")
    assert await _status(session, "POST") == "ServerDisconnectedError"
    assert server.app[APPLIED] == []


async def test_truncated_body_fails_the_payload_and_bad_json_fails_the_parse(served: Served) -> None:
    faults, _, session = served
    faults.script("truncate")
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.get("/v1/items") as resp:
            assert resp.status == 200
            await resp.read()
    faults.script("bad_json")
    async with session.get("/v1/items") as resp:
        text = await resp.text()
        assert resp.status == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
        assert text.startswith('{"items"')


async def test_outage_window_answers_503_or_drops_until_it_ends(served: Served, clock: ManualClock) -> None:
    faults, _, session = served
    faults.add_outage(clock.now() + timedelta(minutes=1), clock.now() + timedelta(minutes=3))
    faults.add_outage(clock.now() + timedelta(minutes=5), clock.now() + timedelta(minutes=6), mode="drop")
    assert await _status(session) == 200
    clock.advance(60)
    assert await _status(session) == 503
    assert await _status(session, "POST") == 503
    clock.advance(120)
    assert await _status(session) == 200
    clock.advance(120)
    assert await _status(session) == "ServerDisconnectedError"
    clock.advance(60)
    assert await _status(session) == 200


async def test_random_faults_follow_the_seed(clock: ManualClock) -> None:
    async def run() -> list[int | str]:
        faults = Faults("tiny", seed=3, clock=clock)
        faults.configure(p_429=0.2, p_5xx=0.2)
        server = TestServer(_tiny_app(faults), host="127.0.0.1")
        await server.start_server()
        async with aiohttp.ClientSession(str(server.make_url(""))) as session:
            out = [await _status(session) for _ in range(40)]
        await server.close()
        return out

    first, second = await run(), await run()
    assert first == second
    assert {200, 429} <= set(first)
    assert any(s in (500, 502, 503) for s in first)


async def test_random_drop_after_spares_reads(served: Served) -> None:
    faults, server, session = served
    faults.configure(p_drop_after=1.0)
    assert await _status(session) == 200
    assert await _status(session, "POST") == "ServerDisconnectedError"
    assert server.app[APPLIED] == ["x"]


async def test_latency_is_injected_and_counted(served: Served) -> None:
    faults, _, session = served
    faults.configure(p_latency=1.0, latency_s=0.001)
    assert await _status(session) == 200
    assert faults.snapshot()["faults"] == {"latency": 1}


async def test_control_routes_are_never_faulted_or_counted(served: Served) -> None:
    faults, _, session = served
    async with session.post("/_sandbox/faults", json={
        "p_5xx": 1.0,
        "script": [{"kind": "429", "count": 1, "method": "GET"}],
        "outages": [{"start": "2026-11-20T11:00:00Z", "end": "2026-11-20T11:30:00Z"}],
    }) as resp:
        assert resp.status == 200
        config = await resp.json()
    assert config["p_5xx"] == 1.0 and config["script"][0]["kind"] == "429"
    assert len(config["outages"]) == 1
    assert await _status(session) == 429
    assert await _status(session) in (500, 502, 503)
    async with session.get("/_sandbox/counters") as resp:
        counters = await resp.json()
    assert counters["requests_total"] == 2
    assert counters["faults"] == {"429": 1, "5xx": 1}
    async with session.post("/_sandbox/faults", json={"p_nonsense": 1}) as resp:
        assert resp.status == 400
    async with session.post("/_sandbox/reset") as resp:
        assert resp.status == 200
    assert await _status(session) == 200
    async with session.get("/_sandbox/faults") as resp:
        assert (await resp.json())["p_5xx"] == 0.0
    assert faults.snapshot()["requests_total"] == 1


def test_bad_configuration_is_refused() -> None:
    faults = Faults("x")
    with pytest.raises(ValueError):
        faults.configure(p_429=1.5)
    with pytest.raises(ValueError):
        faults.script("teapot")
    with pytest.raises(ValueError):
        faults.configure(colour=1.0)
