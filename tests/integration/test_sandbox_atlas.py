"""The Atlas simulator over real HTTP: every endpoint of the seed and every quirk of the contract."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.clock import ManualClock, iso_z
from bot.sandbox.atlas import AtlasSim, create_app
from bot.sandbox.atlas_store import PREMIUM_SECRET
from bot.sandbox.credentials import ATLAS_KEY, ATLAS_KEY_2, ATLAS_USER, ATLAS_USER_2
from bot.sandbox.faults import Faults

Client = TestClient[web.Request, web.Application]
H1 = {"X-API-Key": ATLAS_KEY}
H2 = {"X-API-Key": ATLAS_KEY_2}


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


async def _json(resp: aiohttp.ClientResponse, status: int) -> Any:
    body = await resp.text()
    assert resp.status == status, body
    return json.loads(body) if body else None


async def _dataset(client: Client, name: str = "ticks", headers: dict[str, str] = H1, **extra: Any) -> int:
    body = {"name": name, "description": extra.pop("description", f"{name} data"), **extra}
    created = await _json(await client.post("/api/datasets/", json=body, headers=headers), 201)
    return int(created["id"])


def _rows(n: int, clock: ManualClock, start_min: int = 0) -> list[dict[str, Any]]:
    t0 = clock.now()
    return [
        {
            "timestamp": iso_z(t0 + timedelta(minutes=start_min + i), millis=False),
            "values": {"price": i, "n": i},
        }
        for i in range(n)
    ]


async def _bulk(client: Client, dataset: int, rows: list[dict[str, Any]], status: int = 201) -> Any:
    return await _json(
        await client.post("/api/rows/bulk_insert/", json={"dataset": dataset, "rows": rows}, headers=H1),
        status,
    )


async def test_health_needs_no_key_and_reports_database(client: Client) -> None:
    body = await _json(await client.get("/health"), 200)
    assert body == {"status": "healthy", "time": "2026-11-20T12:00:00Z", "database": "connected"}


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}])
async def test_missing_or_unknown_key_is_401_with_error_body(client: Client, headers: dict[str, str]) -> None:
    body = await _json(await client.get("/api/datasets/", headers=headers), 401)
    assert set(body) == {"error", "details"}


async def test_dataset_crud_and_404_after_delete(client: Client, clock: ManualClock) -> None:
    created = await _json(
        await client.post(
            "/api/datasets/",
            json={"name": "btc", "description": "Bitcoin", "metadata": {"source": "atmos"}},
            headers=H1,
        ),
        201,
    )
    assert created["name"] == "btc" and created["metadata"] == {"source": "atmos"}
    assert created["columns"] == [] and created["created_at"] == "2026-11-20T12:00:00Z"
    ds = created["id"]
    assert isinstance(ds, int)
    clock.advance(60)
    updated = await _json(await client.put(f"/api/datasets/{ds}/", json={"name": "btc2"}, headers=H1), 200)
    # PUT replaces every field: description and metadata not sent are cleared.
    assert (updated["name"], updated["description"], updated["metadata"]) == ("btc2", "", {})
    assert updated["updated_at"] == "2026-11-20T12:01:00Z"
    assert (await _json(await client.get(f"/api/datasets/{ds}/", headers=H1), 200))["name"] == "btc2"
    await _bulk(client, ds, _rows(3, clock))
    assert (await client.delete(f"/api/datasets/{ds}/", headers=H1)).status == 204
    body = await _json(await client.get(f"/api/datasets/{ds}/", headers=H1), 404)
    assert body["error"] == "Dataset not found"
    await _json(await client.get(f"/api/rows/?dataset={ds}", headers=H1), 404)
    await _bulk(client, ds, _rows(1, clock), status=404)


async def test_dataset_name_is_unique_per_owner_only(client: Client) -> None:
    await _dataset(client, "dup")
    body = await _json(await client.post("/api/datasets/", json={"name": "dup"}, headers=H1), 400)
    assert body["error"] == "dataset name already exists"
    await _dataset(client, "dup", headers=H2)  # another owner may use the same name
    await _json(await client.post("/api/datasets/", json={"description": "no name"}, headers=H1), 400)


async def test_list_search_is_case_insensitive_substring_and_paginated(client: Client) -> None:
    for i in range(5):
        await _dataset(client, f"tradebot.btc.{i}", description="Bitcoin candles")
    await _dataset(client, "weather", description="air quality")
    found = await _json(await client.get("/api/datasets/?search=BITCOIN&limit=2", headers=H1), 200)
    assert found["count"] == 5 and len(found["results"]) == 2 and found["previous"] is None
    assert "offset=2" in found["next"]
    page2 = await _json(await client.session.get(found["next"], headers=H1), 200)  # absolute link
    assert [d["name"] for d in page2["results"]] == ["tradebot.btc.2", "tradebot.btc.3"]
    assert page2["previous"] is not None
    by_name = await _json(await client.get("/api/datasets/?search=weath", headers=H1), 200)
    assert [d["name"] for d in by_name["results"]] == ["weather"]
    everything = await _json(await client.get("/api/datasets/", headers=H1), 200)
    assert everything["count"] == 6 and everything["next"] is None


async def test_metadata_search_matches_exactly_and_needs_a_filter(client: Client) -> None:
    await _dataset(client, "a", metadata={"source": "atmos", "symbol": "BTCUSDT", "frequency": "1min"})
    await _dataset(client, "b", metadata={"source": "atmos", "symbol": "ETHUSDT", "frequency": "1min"})
    await _dataset(client, "c", metadata={"source": "sfox", "period": 60})
    hit = await _json(await client.get("/api/datasets/search/?source=atmos&symbol=BTCUSDT", headers=H1), 200)
    assert [d["name"] for d in hit["results"]] == ["a"] and hit["count"] == 1
    assert (await _json(await client.get("/api/datasets/search/?source=atmo", headers=H1), 200))["count"] == 0
    numeric = await _json(await client.get("/api/datasets/search/?period=60", headers=H1), 200)
    assert [d["name"] for d in numeric["results"]] == ["c"]
    await _json(await client.get("/api/datasets/search/", headers=H1), 400)
    await _json(await client.get("/api/datasets/search/?limit=5", headers=H1), 400)


async def test_metadata_patch_merges_and_put_replaces(client: Client) -> None:
    ds = await _dataset(client, metadata={"source": "tiingo"})
    merged = await _json(
        await client.patch(f"/api/datasets/{ds}/metadata/", json={"v": "2"}, headers=H1), 200
    )
    assert merged["metadata"] == {"source": "tiingo", "v": "2"}
    replaced = await _json(await client.put(f"/api/datasets/{ds}/metadata/", json={"k": 1}, headers=H1), 200)
    assert replaced["metadata"] == {"k": 1} and replaced["name"] == "ticks"
    await _json(await client.patch(f"/api/datasets/{ds}/metadata/", json={"x": 1}, headers=H2), 403)


async def test_columns_are_declared_listed_and_validated(client: Client) -> None:
    ds = await _dataset(client)
    col = await _json(
        await client.post(
            "/api/columns/", json={"dataset": ds, "name": "close", "dtype": "float"}, headers=H1
        ),
        201,
    )
    assert (col["dataset"], col["name"], col["dtype"]) == (ds, "close", "float")
    await client.post("/api/columns/", json={"dataset": ds, "name": "volume", "dtype": "int"}, headers=H1)
    listed = await _json(await client.get(f"/api/columns/?dataset={ds}", headers=H1), 200)
    assert [c["name"] for c in listed["results"]] == ["close", "volume"] and listed["count"] == 2
    got = await _json(await client.get(f"/api/datasets/{ds}/", headers=H1), 200)
    assert [c["name"] for c in got["columns"]] == ["close", "volume"]
    for bad in (
        {"dataset": ds, "name": "x", "dtype": "string"},
        {"dataset": ds, "name": "close", "dtype": "int"},
    ):
        await _json(await client.post("/api/columns/", json=bad, headers=H1), 400)
    other = {"dataset": ds, "name": "y", "dtype": "int"}
    await _json(await client.post("/api/columns/", json=other, headers=H2), 403)
    await _json(await client.get("/api/columns/", headers=H1), 400)


async def test_tags_grant_read_access_but_never_write(client: Client, clock: ManualClock) -> None:
    ds = await _dataset(client)
    await _bulk(client, ds, _rows(2, clock))
    tags = await _json(await client.get("/api/tags/", headers=H2), 200)
    assert {t["name"]: t["is_public"] for t in tags} == {"public": True, "test": True, "premium": False}
    # New datasets are private: another user sees nothing, with or without the public tag.
    await _json(await client.get(f"/api/datasets/{ds}/", headers=H2), 403)
    await _json(await client.post("/api/tags/acquire/", json={"tag_name": "public"}, headers=H2), 200)
    await _json(await client.get(f"/api/rows/?dataset={ds}", headers=H2), 403)
    assert (await _json(await client.get("/api/datasets/", headers=H2), 200))["count"] == 0
    # Only the owner manages tags.
    await _json(await client.post(f"/api/datasets/{ds}/tags/", json={"tag_name": "public"}, headers=H2), 403)
    assigned = await _json(
        await client.post(f"/api/datasets/{ds}/tags/", json={"tag_name": "public"}, headers=H1), 201
    )
    assert (await _json(await client.get(f"/api/datasets/{ds}/tags/", headers=H2), 200))[0][
        "name"
    ] == "public"
    rows = await _json(await client.get(f"/api/rows/?dataset={ds}", headers=H2), 200)
    assert rows["count"] == 2
    assert (await _json(await client.get("/api/datasets/", headers=H2), 200))["count"] == 1
    check = await _json(await client.post("/api/access/check/", json={"dataset_id": ds}, headers=H2), 200)
    assert check == {"has_access": True, "is_owner": False, "matching_tags": ["public"]}
    write = await client.post(
        "/api/access/check/", json={"dataset_id": ds, "require_write": True}, headers=H2
    )
    assert (await _json(write, 200))["has_access"] is False
    own = await _json(await client.post("/api/access/check/", json={"dataset_id": ds}, headers=H1), 200)
    assert own == {"has_access": True, "is_owner": True, "matching_tags": []}
    # A matching tag still gives no write access.
    await _bulk_as(client, ds, H2, 403)
    await _json(await client.delete(f"/api/datasets/{ds}/", headers=H2), 403)
    # Removing the tag takes the access away again.
    assert (await client.delete(f"/api/datasets/{ds}/tags/{assigned['id']}/", headers=H1)).status == 204
    await _json(await client.get(f"/api/rows/?dataset={ds}", headers=H2), 403)
    await _json(await client.delete(f"/api/datasets/{ds}/tags/{assigned['id']}/", headers=H1), 404)
    await _json(await client.post("/api/access/check/", json={"dataset_id": 999}, headers=H2), 404)


async def _bulk_as(client: Client, ds: int, headers: dict[str, str], status: int) -> Any:
    body = {"dataset": ds, "rows": [{"timestamp": "2026-11-20T12:00:00Z", "values": {"x": 1}}]}
    return await _json(await client.post("/api/rows/bulk_insert/", json=body, headers=headers), status)


async def test_private_tag_needs_its_secret(client: Client) -> None:
    ds = await _dataset(client)
    premium = next(
        t for t in await _json(await client.get("/api/tags/", headers=H1), 200) if t["name"] == "premium"
    )
    await _json(
        await client.post(f"/api/datasets/{ds}/tags/", json={"tag_id": premium["id"]}, headers=H1), 201
    )
    await _json(await client.post("/api/tags/acquire/", json={"tag_name": "premium"}, headers=H2), 403)
    bad = {"tag_name": "premium", "secret": "guess"}
    await _json(await client.post("/api/tags/acquire/", json=bad, headers=H2), 403)
    await _json(await client.get(f"/api/datasets/{ds}/", headers=H2), 403)
    good = {"tag_name": "premium", "secret": PREMIUM_SECRET}
    await _json(await client.post("/api/tags/acquire/", json=good, headers=H2), 200)
    assert (await _json(await client.get(f"/api/datasets/{ds}/", headers=H2), 200))["id"] == ds
    await _json(await client.post("/api/tags/acquire/", json={"tag_name": "nope"}, headers=H2), 404)


async def test_rows_paginate_order_and_filter_by_time_in_utc(client: Client) -> None:
    ds = await _dataset(client)
    # Offsets and microseconds in, UTC with Z out.
    rows = [{"timestamp": f"2026-11-20T14:{i:02d}:00.000250+02:00", "values": {"i": i}} for i in range(30)]
    assert await _bulk(client, ds, rows) == {"inserted": 30, "total": 30}
    page = await _json(await client.get(f"/api/rows/?dataset={ds}&limit=10", headers=H1), 200)
    assert page["count"] == 30 and page["previous"] is None and "offset=10" in page["next"]
    assert page["results"][0] == {"timestamp": "2026-11-20T12:00:00.000250Z", "values": {"i": 0}}
    last = await _json(await client.get(f"/api/rows/?dataset={ds}&limit=10&offset=20", headers=H1), 200)
    assert [r["values"]["i"] for r in last["results"]] == list(range(20, 30)) and last["next"] is None
    newest = await _json(
        await client.get(f"/api/rows/?dataset={ds}&ordering=-timestamp&limit=1", headers=H1), 200
    )
    assert newest["results"][0]["values"] == {"i": 29}
    window = await _json(
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
    await _json(await client.get(f"/api/rows/?dataset={ds}&ordering=price", headers=H1), 400)
    await _json(await client.get(f"/api/rows/?dataset={ds}&start=yesterday", headers=H1), 400)
    await _json(await client.get("/api/rows/", headers=H1), 400)


async def test_single_row_insert(client: Client) -> None:
    ds = await _dataset(client)
    row = {"dataset": ds, "timestamp": "2026-11-20T12:00:00Z", "values": {"close": 104600.5}}
    assert await _json(await client.post("/api/rows/", json=row, headers=H1), 201) == row
    got = await _json(await client.get(f"/api/rows/?dataset={ds}", headers=H1), 200)
    assert got["results"] == [{"timestamp": "2026-11-20T12:00:00Z", "values": {"close": 104600.5}}]
    await _json(await client.post("/api/rows/", json={**row, "timestamp": "noon"}, headers=H1), 400)
    await _json(await client.post("/api/rows/", json=row, headers=H2), 403)


async def test_bulk_insert_does_not_deduplicate(client: Client, clock: ManualClock) -> None:
    ds = await _dataset(client)
    rows = _rows(5, clock)
    await _bulk(client, ds, rows)
    await _bulk(client, ds, rows)
    got = await _json(await client.get(f"/api/rows/?dataset={ds}", headers=H1), 200)
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
    ds = await _dataset(client)
    rows: list[Any] = _rows(50, clock)
    rows.insert(25, bad)
    body = await _bulk(client, ds, rows, status=400)
    assert "row 25" in body["details"]
    assert (await _json(await client.get(f"/api/rows/?dataset={ds}", headers=H1), 200))["count"] == 0


async def test_bulk_insert_takes_10000_rows_and_refuses_more(client: Client, clock: ManualClock) -> None:
    ds = await _dataset(client)
    assert await _bulk(client, ds, _rows(10_000, clock)) == {"inserted": 10_000, "total": 10_000}
    body = await _bulk(client, ds, _rows(10_001, clock), status=400)
    assert body["error"] == "too many rows"
    assert (await _json(await client.get(f"/api/rows/?dataset={ds}&limit=1", headers=H1), 200))[
        "count"
    ] == 10_000


async def test_someone_elses_dataset_is_403_for_writes(client: Client, clock: ManualClock) -> None:
    ds = await _dataset(client)
    await _bulk_as(client, ds, H2, 403)
    await _json(await client.put(f"/api/datasets/{ds}/", json={"name": "mine"}, headers=H2), 403)
    await _bulk_as(client, 12345, H1, 404)


async def test_bulk_download_csv_and_json(client: Client) -> None:
    ds = await _dataset(client)
    await client.post("/api/columns/", json={"dataset": ds, "name": "close", "dtype": "float"}, headers=H1)
    rows = [
        {"timestamp": "2026-11-20T12:01:00Z", "values": {"close": 2.5, "note": "b,c"}},
        {"timestamp": "2026-11-20T12:00:00Z", "values": {"close": 1, "flag": None}},
        {"timestamp": "2026-11-20T12:02:00Z", "values": {"volume": 7}},
    ]
    await _bulk(client, ds, rows)
    resp = await client.get(f"/api/rows/bulk_download/?dataset={ds}&output=csv", headers=H1)
    assert resp.status == 200 and resp.content_type == "text/csv"
    table = list(csv.reader(io.StringIO(await resp.text())))
    assert table == [
        ["timestamp", "close", "flag", "note", "volume"],
        ["2026-11-20T12:00:00Z", "1", "", "", ""],
        ["2026-11-20T12:01:00Z", "2.5", "", "b,c", ""],
        ["2026-11-20T12:02:00Z", "", "", "", "7"],
    ]
    as_json = await _json(await client.get(f"/api/rows/bulk_download/?dataset={ds}", headers=H1), 200)
    assert [r["timestamp"][-9:] for r in as_json] == ["12:00:00Z", "12:01:00Z", "12:02:00Z"]
    assert as_json[1] == {"timestamp": "2026-11-20T12:01:00Z", "values": {"close": 2.5, "note": "b,c"}}
    ranged = await client.get(
        "/api/rows/bulk_download/",
        params={"dataset": ds, "start": "2026-11-20T12:01:00Z", "end": "2026-11-20T12:01:00Z"},
        headers=H1,
    )
    assert len(await _json(ranged, 200)) == 1
    await _json(await client.get(f"/api/rows/bulk_download/?dataset={ds}&output=xml", headers=H1), 400)
    await _json(await client.get(f"/api/rows/bulk_download/?dataset={ds}", headers=H2), 403)


async def test_bulk_download_streams_many_rows(client: Client, clock: ManualClock) -> None:
    ds = await _dataset(client)
    await _bulk(client, ds, _rows(5000, clock))
    got = await _json(await client.get(f"/api/rows/bulk_download/?dataset={ds}", headers=H1), 200)
    assert len(got) == 5000 and got[-1]["values"]["n"] == 4999


async def test_live_is_ndjson_of_the_newest_rows_ascending(client: Client, clock: ManualClock) -> None:
    ds = await _dataset(client)
    rows = _rows(10, clock)
    rows.reverse()  # insertion order must not matter
    await _bulk(client, ds, rows)
    resp = await client.get(f"/api/rows/live/?dataset={ds}&limit=3", headers=H1)
    assert resp.status == 200 and resp.content_type == "application/x-ndjson"
    lines = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert lines == [
        {"timestamp": "2026-11-20T12:07:00Z", "price": 7, "n": 7},
        {"timestamp": "2026-11-20T12:08:00Z", "price": 8, "n": 8},
        {"timestamp": "2026-11-20T12:09:00Z", "price": 9, "n": 9},
    ]
    await _json(await client.get(f"/api/rows/live/?dataset={ds}", headers=H2), 403)


async def _next_event(resp: aiohttp.ClientResponse) -> tuple[str, Any]:
    event, data = "", None
    while True:
        raw = await resp.content.readline()
        if not raw:
            raise EOFError("stream ended")
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            data = json.loads(line[len("data: ") :])
        elif line == "" and event:
            return event, data


async def test_stream_sends_connected_data_heartbeat_and_error(client: Client) -> None:
    ds = await _dataset(client)
    await _bulk(client, ds, [{"timestamp": "2026-11-20T11:00:00Z", "values": {"old": 1}}])
    async with client.get(f"/api/rows/stream/?dataset={ds}&poll_interval=0.02", headers=H1) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        assert await _next_event(resp) == (
            "connected",
            {"dataset_id": ds, "message": "Connected to real-time stream"},
        )
        event, data = await _next_event(resp)  # nothing new yet: keepalive only
        assert (event, data) == ("heartbeat", {"timestamp": "2026-11-20T12:00:00Z"})
        new = [
            {"timestamp": "2026-11-20T12:00:00Z", "values": {"close": 1}},
            {"timestamp": "2026-11-20T12:01:00Z", "values": {"close": 2}},
        ]
        await _bulk(client, ds, new)
        pushed = [d for e, d in [await _next_event(resp) for _ in range(2)] if e == "data"]
        while len(pushed) < 2:
            event, data = await _next_event(resp)
            if event == "data":
                pushed.append(data)
        assert pushed == [
            {"timestamp": "2026-11-20T12:00:00Z", "close": 1},
            {"timestamp": "2026-11-20T12:01:00Z", "close": 2},
        ]
        assert (await client.delete(f"/api/datasets/{ds}/", headers=H1)).status == 204
        event, data = await _next_event(resp)
        while event == "heartbeat":
            event, data = await _next_event(resp)
        assert event == "error" and data["error"] == "Dataset not found"
        with pytest.raises(EOFError):
            await _next_event(resp)


async def test_stream_checks_access_before_streaming(client: Client) -> None:
    ds = await _dataset(client)
    await _json(await client.get(f"/api/rows/stream/?dataset={ds}", headers=H2), 403)
    await _json(await client.get("/api/rows/stream/?dataset=999", headers=H1), 404)
    await _json(await client.get(f"/api/rows/stream/?dataset={ds}&poll_interval=0", headers=H1), 400)


async def test_unknown_route_answers_json_error(client: Client) -> None:
    body = await _json(await client.get("/api/nothing/", headers=H1), 404)
    assert set(body) == {"error", "details"}


async def test_scripted_fault_applies_once(client: Client, faults: Faults) -> None:
    faults.script("503", path_prefix="/api/datasets/")
    assert (await client.get("/api/datasets/", headers=H1)).status == 503
    assert (await client.get("/api/datasets/", headers=H1)).status == 200
    assert faults.snapshot()["faults"] == {"5xx": 1}


async def test_bulk_insert_applied_but_response_lost(
    client: Client, faults: Faults, clock: ManualClock
) -> None:
    ds = await _dataset(client)
    faults.script("drop_after", method="POST", path_prefix="/api/rows/bulk_insert/")
    with pytest.raises(aiohttp.ClientError):
        await client.post("/api/rows/bulk_insert/", json={"dataset": ds, "rows": _rows(3, clock)}, headers=H1)
    got = await _json(await client.get(f"/api/rows/?dataset={ds}", headers=H1), 200)
    assert got["count"] == 3  # the insert happened; only its answer was lost


async def test_sqlite_file_survives_a_restart(clock: ManualClock, tmp_path: Any) -> None:
    path = str(tmp_path / "atlas.db")
    first = AtlasSim(clock, {ATLAS_KEY: ATLAS_USER}, db_path=path)
    async with TestClient(TestServer(create_app(first, Faults("atlas", clock=clock)))) as c:
        ds = await _dataset(c, "kept")
        await _bulk(c, ds, _rows(4, clock))
    first.close()
    second = AtlasSim(clock, {ATLAS_KEY: ATLAS_USER}, db_path=path)
    async with TestClient(TestServer(create_app(second, Faults("atlas", clock=clock)))) as c:
        found = await _json(await c.get("/api/datasets/?search=kept", headers=H1), 200)
        assert [d["id"] for d in found["results"]] == [ds]
        assert (await _json(await c.get(f"/api/rows/?dataset={ds}", headers=H1), 200))["count"] == 4
    second.close()


async def test_out_of_range_ids_are_client_errors(client: Client) -> None:
    huge = 2**70
    await _json(await client.get(f"/api/datasets/{huge}/", headers=H1), 404)
    await _json(await client.get(f"/api/rows/?dataset={huge}", headers=H1), 404)
    await _bulk_as(client, huge, H1, 400)
    await _json(await client.post("/api/access/check/", json={"dataset_id": True}, headers=H1), 400)


async def test_the_same_sim_can_be_served_again_after_a_stop(sim: AtlasSim, clock: ManualClock) -> None:
    async with TestClient(TestServer(create_app(sim, Faults("atlas", clock=clock)))) as c:
        ds = await _dataset(c)
        await _bulk(c, ds, _rows(2, clock))
    # Atlas "comes back": same data, and live streams work again.
    async with TestClient(TestServer(create_app(sim, Faults("atlas", clock=clock)))) as c:
        assert (await _json(await c.get(f"/api/rows/?dataset={ds}", headers=H1), 200))["count"] == 2
        async with c.get(f"/api/rows/stream/?dataset={ds}&poll_interval=0.02", headers=H1) as resp:
            assert (await _next_event(resp))[0] == "connected"
            assert (await _next_event(resp))[0] == "heartbeat"
