"""The Atlas simulator over real HTTP: row queries, bulk insert rules, bulk download, live NDJSON and SSE."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.clock import ManualClock
from bot.sandbox.atlas import AtlasSim, create_app
from bot.sandbox.credentials import ATLAS_KEY, ATLAS_KEY_2, ATLAS_USER, ATLAS_USER_2
from bot.sandbox.faults import Faults
from tests.integration.atlas_support import (
    H1,
    H2,
    Client,
    bulk,
    bulk_as,
    json_of,
    make_dataset,
    minute_rows,
    next_event,
)


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[AtlasSim]:
    s = AtlasSim(clock, {ATLAS_KEY: ATLAS_USER, ATLAS_KEY_2: ATLAS_USER_2})
    yield s
    s.close()


@pytest.fixture
def faults(clock: ManualClock) -> Faults:
    return Faults("atlas", seed=1, clock=clock)


@pytest.fixture
async def client(sim: AtlasSim, faults: Faults) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(sim, faults))) as c:
        yield c


async def test_rows_paginate_order_and_filter_by_time_in_utc(client: Client) -> None:
    ds = await make_dataset(client)
    # Offsets and microseconds in, UTC with Z out.
    rows = [{"timestamp": f"2026-11-20T14:{i:02d}:00.000250+02:00", "values": {"i": i}} for i in range(30)]
    assert await bulk(client, ds, rows) == {"inserted": 30, "total": 30}
    page = await json_of(await client.get(f"/api/rows/?dataset={ds}&limit=10", headers=H1), 200)
    assert page["count"] == 30 and page["previous"] is None and "offset=10" in page["next"]
    assert page["results"][0] == {"timestamp": "2026-11-20T12:00:00.000250Z", "values": {"i": 0}}
    last = await json_of(await client.get(f"/api/rows/?dataset={ds}&limit=10&offset=20", headers=H1), 200)
    assert [r["values"]["i"] for r in last["results"]] == list(range(20, 30)) and last["next"] is None
    newest = await json_of(
        await client.get(f"/api/rows/?dataset={ds}&ordering=-timestamp&limit=1", headers=H1), 200
    )
    assert newest["results"][0]["values"] == {"i": 29}
    window = await json_of(
        await client.get(
            "/api/rows/",
            params={
                "dataset": ds,
                "start": "2026-11-20T12:05:00.000250Z",
                "end": "2026-11-20T13:09:00.000250+01:00",
            },
            headers=H1,
        ),
        200,
    )
    assert [r["values"]["i"] for r in window["results"]] == [5, 6, 7, 8, 9] and window["count"] == 5
    await json_of(await client.get(f"/api/rows/?dataset={ds}&ordering=price", headers=H1), 400)
    await json_of(await client.get(f"/api/rows/?dataset={ds}&start=yesterday", headers=H1), 400)
    await json_of(await client.get("/api/rows/", headers=H1), 400)


async def test_single_row_insert(client: Client) -> None:
    ds = await make_dataset(client)
    row = {"dataset": ds, "timestamp": "2026-11-20T12:00:00Z", "values": {"close": 104600.5}}
    assert await json_of(await client.post("/api/rows/", json=row, headers=H1), 201) == row
    got = await json_of(await client.get(f"/api/rows/?dataset={ds}", headers=H1), 200)
    assert got["results"] == [{"timestamp": "2026-11-20T12:00:00Z", "values": {"close": 104600.5}}]
    await json_of(await client.post("/api/rows/", json={**row, "timestamp": "noon"}, headers=H1), 400)
    await json_of(await client.post("/api/rows/", json=row, headers=H2), 403)


async def test_bulk_insert_does_not_deduplicate(client: Client, clock: ManualClock) -> None:
    ds = await make_dataset(client)
    rows = minute_rows(5, clock)
    await bulk(client, ds, rows)
    await bulk(client, ds, rows)
    got = await json_of(await client.get(f"/api/rows/?dataset={ds}", headers=H1), 200)
    assert got["count"] == 10
    assert [r["values"]["n"] for r in got["results"]] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


@pytest.mark.parametrize(
    "bad",
    [
        {"timestamp": "not a time", "values": {}},
        {"timestamp": 1700000000, "values": {}},
        {"timestamp": "2026-11-20T12:00:00Z", "values": [1, 2]},
        "row",
    ],
)
async def test_bulk_insert_is_atomic(client: Client, clock: ManualClock, bad: Any) -> None:
    ds = await make_dataset(client)
    rows: list[Any] = minute_rows(50, clock)
    rows.insert(25, bad)
    body = await bulk(client, ds, rows, status=400)
    assert "row 25" in body["details"]
    assert (await json_of(await client.get(f"/api/rows/?dataset={ds}", headers=H1), 200))["count"] == 0


async def test_bulk_insert_takes_10000_rows_and_refuses_more(client: Client, clock: ManualClock) -> None:
    ds = await make_dataset(client)
    assert await bulk(client, ds, minute_rows(10_000, clock)) == {"inserted": 10_000, "total": 10_000}
    body = await bulk(client, ds, minute_rows(10_001, clock), status=400)
    assert body["error"] == "too many rows"
    assert (await json_of(await client.get(f"/api/rows/?dataset={ds}&limit=1", headers=H1), 200))[
        "count"
    ] == 10_000


async def test_someone_elses_dataset_is_403_for_writes(client: Client, clock: ManualClock) -> None:
    ds = await make_dataset(client)
    await bulk_as(client, ds, H2, 403)
    await json_of(await client.put(f"/api/datasets/{ds}/", json={"name": "mine"}, headers=H2), 403)
    await bulk_as(client, 12345, H1, 404)


async def test_bulk_download_csv_andjson_of(client: Client) -> None:
    ds = await make_dataset(client)
    await client.post("/api/columns/", json={"dataset": ds, "name": "close", "dtype": "float"}, headers=H1)
    rows = [
        {"timestamp": "2026-11-20T12:01:00Z", "values": {"close": 2.5, "note": "b,c"}},
        {"timestamp": "2026-11-20T12:00:00Z", "values": {"close": 1, "flag": None}},
        {"timestamp": "2026-11-20T12:02:00Z", "values": {"volume": 7}},
    ]
    await bulk(client, ds, rows)
    resp = await client.get(f"/api/rows/bulk_download/?dataset={ds}&output=csv", headers=H1)
    assert resp.status == 200 and resp.content_type == "text/csv"
    table = list(csv.reader(io.StringIO(await resp.text())))
    assert table == [
        ["timestamp", "close", "flag", "note", "volume"],
        ["2026-11-20T12:00:00Z", "1", "", "", ""],
        ["2026-11-20T12:01:00Z", "2.5", "", "b,c", ""],
        ["2026-11-20T12:02:00Z", "", "", "", "7"],
    ]
    as_json = await json_of(await client.get(f"/api/rows/bulk_download/?dataset={ds}", headers=H1), 200)
    assert [r["timestamp"][-9:] for r in as_json] == ["12:00:00Z", "12:01:00Z", "12:02:00Z"]
    assert as_json[1] == {"timestamp": "2026-11-20T12:01:00Z", "values": {"close": 2.5, "note": "b,c"}}
    ranged = await client.get(
        "/api/rows/bulk_download/",
        params={"dataset": ds, "start": "2026-11-20T12:01:00Z", "end": "2026-11-20T12:01:00Z"},
        headers=H1,
    )
    assert len(await json_of(ranged, 200)) == 1
    await json_of(await client.get(f"/api/rows/bulk_download/?dataset={ds}&output=xml", headers=H1), 400)
    await json_of(await client.get(f"/api/rows/bulk_download/?dataset={ds}", headers=H2), 403)


async def test_bulk_download_streams_manyminute_rows(client: Client, clock: ManualClock) -> None:
    ds = await make_dataset(client)
    await bulk(client, ds, minute_rows(5000, clock))
    got = await json_of(await client.get(f"/api/rows/bulk_download/?dataset={ds}", headers=H1), 200)
    assert len(got) == 5000 and got[-1]["values"]["n"] == 4999


async def test_live_is_ndjson_of_the_newest_rows_ascending(client: Client, clock: ManualClock) -> None:
    ds = await make_dataset(client)
    rows = minute_rows(10, clock)
    rows.reverse()  # insertion order must not matter
    await bulk(client, ds, rows)
    resp = await client.get(f"/api/rows/live/?dataset={ds}&limit=3", headers=H1)
    assert resp.status == 200 and resp.content_type == "application/x-ndjson"
    lines = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert lines == [
        {"timestamp": "2026-11-20T12:07:00Z", "price": 7, "n": 7},
        {"timestamp": "2026-11-20T12:08:00Z", "price": 8, "n": 8},
        {"timestamp": "2026-11-20T12:09:00Z", "price": 9, "n": 9},
    ]
    await json_of(await client.get(f"/api/rows/live/?dataset={ds}", headers=H2), 403)


async def test_stream_sends_connected_data_heartbeat_and_error(client: Client) -> None:
    ds = await make_dataset(client)
    await bulk(client, ds, [{"timestamp": "2026-11-20T11:00:00Z", "values": {"old": 1}}])
    async with client.get(f"/api/rows/stream/?dataset={ds}&poll_interval=0.02", headers=H1) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        assert await next_event(resp) == (
            "connected",
            {"dataset_id": ds, "message": "Connected to real-time stream"},
        )
        event, data = await next_event(resp)  # nothing new yet: keepalive only
        assert (event, data) == ("heartbeat", {"timestamp": "2026-11-20T12:00:00Z"})
        new = [
            {"timestamp": "2026-11-20T12:00:00Z", "values": {"close": 1}},
            {"timestamp": "2026-11-20T12:01:00Z", "values": {"close": 2}},
        ]
        await bulk(client, ds, new)
        pushed = [d for e, d in [await next_event(resp) for _ in range(2)] if e == "data"]
        while len(pushed) < 2:
            event, data = await next_event(resp)
            if event == "data":
                pushed.append(data)
        assert pushed == [
            {"timestamp": "2026-11-20T12:00:00Z", "close": 1},
            {"timestamp": "2026-11-20T12:01:00Z", "close": 2},
        ]
        assert (await client.delete(f"/api/datasets/{ds}/", headers=H1)).status == 204
        event, data = await next_event(resp)
        while event == "heartbeat":
            event, data = await next_event(resp)
        assert event == "error" and data["error"] == "Dataset not found"
        with pytest.raises(EOFError):
            await next_event(resp)


async def test_stream_checks_access_before_streaming(client: Client) -> None:
    ds = await make_dataset(client)
    await json_of(await client.get(f"/api/rows/stream/?dataset={ds}", headers=H2), 403)
    await json_of(await client.get("/api/rows/stream/?dataset=999", headers=H1), 404)
    await json_of(await client.get(f"/api/rows/stream/?dataset={ds}&poll_interval=0", headers=H1), 400)
