"""The Atlas simulator over real HTTP: auth, datasets, search, metadata, columns, tags, faults, restarts.

Rows, downloads, live and stream are in `test_sandbox_atlas_rows.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.clock import ManualClock
from bot.sandbox.atlas import AtlasSim, create_app
from bot.sandbox.atlas_store import PREMIUM_SECRET
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


async def test_health_needs_no_key_and_reports_database(client: Client) -> None:
    body = await json_of(await client.get("/health"), 200)
    assert body == {"status": "healthy", "time": "2026-11-20T12:00:00Z", "database": "connected"}


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}])
async def test_missing_or_unknown_key_is_401_with_error_body(client: Client, headers: dict[str, str]) -> None:
    body = await json_of(await client.get("/api/datasets/", headers=headers), 401)
    assert set(body) == {"error", "details"}


async def test_dataset_crud_and_404_after_delete(client: Client, clock: ManualClock) -> None:
    created = await json_of(
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
    updated = await json_of(await client.put(f"/api/datasets/{ds}/", json={"name": "btc2"}, headers=H1), 200)
    # PUT replaces every field: description and metadata not sent are cleared.
    assert (updated["name"], updated["description"], updated["metadata"]) == ("btc2", "", {})
    assert updated["updated_at"] == "2026-11-20T12:01:00Z"
    assert (await json_of(await client.get(f"/api/datasets/{ds}/", headers=H1), 200))["name"] == "btc2"
    await bulk(client, ds, minute_rows(3, clock))
    assert (await client.delete(f"/api/datasets/{ds}/", headers=H1)).status == 204
    body = await json_of(await client.get(f"/api/datasets/{ds}/", headers=H1), 404)
    assert body["error"] == "Dataset not found"
    await json_of(await client.get(f"/api/rows/?dataset={ds}", headers=H1), 404)
    await bulk(client, ds, minute_rows(1, clock), status=404)


async def test_dataset_name_is_unique_per_owner_only(client: Client) -> None:
    await make_dataset(client, "dup")
    body = await json_of(await client.post("/api/datasets/", json={"name": "dup"}, headers=H1), 400)
    assert body["error"] == "dataset name already exists"
    await make_dataset(client, "dup", headers=H2)  # another owner may use the same name
    await json_of(await client.post("/api/datasets/", json={"description": "no name"}, headers=H1), 400)


async def test_list_search_is_case_insensitive_substring_and_paginated(client: Client) -> None:
    for i in range(5):
        await make_dataset(client, f"tradebot.btc.{i}", description="Bitcoin candles")
    await make_dataset(client, "weather", description="air quality")
    found = await json_of(await client.get("/api/datasets/?search=BITCOIN&limit=2", headers=H1), 200)
    assert found["count"] == 5 and len(found["results"]) == 2 and found["previous"] is None
    assert "offset=2" in found["next"]
    page2 = await json_of(await client.session.get(found["next"], headers=H1), 200)  # absolute link
    assert [d["name"] for d in page2["results"]] == ["tradebot.btc.2", "tradebot.btc.3"]
    assert page2["previous"] is not None
    by_name = await json_of(await client.get("/api/datasets/?search=weath", headers=H1), 200)
    assert [d["name"] for d in by_name["results"]] == ["weather"]
    everything = await json_of(await client.get("/api/datasets/", headers=H1), 200)
    assert everything["count"] == 6 and everything["next"] is None


async def test_metadata_search_matches_exactly_and_needs_a_filter(client: Client) -> None:
    await make_dataset(client, "a", metadata={"source": "atmos", "symbol": "BTCUSDT", "frequency": "1min"})
    await make_dataset(client, "b", metadata={"source": "atmos", "symbol": "ETHUSDT", "frequency": "1min"})
    await make_dataset(client, "c", metadata={"source": "sfox", "period": 60})
    hit = await json_of(
        await client.get("/api/datasets/search/?source=atmos&symbol=BTCUSDT", headers=H1), 200
    )
    assert [d["name"] for d in hit["results"]] == ["a"] and hit["count"] == 1
    assert (await json_of(await client.get("/api/datasets/search/?source=atmo", headers=H1), 200))[
        "count"
    ] == 0
    numeric = await json_of(await client.get("/api/datasets/search/?period=60", headers=H1), 200)
    assert [d["name"] for d in numeric["results"]] == ["c"]
    await json_of(await client.get("/api/datasets/search/", headers=H1), 400)
    await json_of(await client.get("/api/datasets/search/?limit=5", headers=H1), 400)


async def test_metadata_patch_merges_and_put_replaces(client: Client) -> None:
    ds = await make_dataset(client, metadata={"source": "tiingo"})
    merged = await json_of(
        await client.patch(f"/api/datasets/{ds}/metadata/", json={"v": "2"}, headers=H1), 200
    )
    assert merged["metadata"] == {"source": "tiingo", "v": "2"}
    replaced = await json_of(
        await client.put(f"/api/datasets/{ds}/metadata/", json={"k": 1}, headers=H1), 200
    )
    assert replaced["metadata"] == {"k": 1} and replaced["name"] == "ticks"
    await json_of(await client.patch(f"/api/datasets/{ds}/metadata/", json={"x": 1}, headers=H2), 403)


async def test_columns_are_declared_listed_and_validated(client: Client) -> None:
    ds = await make_dataset(client)
    col = await json_of(
        await client.post(
            "/api/columns/", json={"dataset": ds, "name": "close", "dtype": "float"}, headers=H1
        ),
        201,
    )
    obj = col.get("column", col)  # bare, wrapped, or a message only (contract: the shape is not fixed)
    if "name" in obj:
        assert (obj["dataset"], obj["name"], obj["dtype"]) == (ds, "close", "float")
    else:
        assert col == {"message": "Column created"}
    await client.post("/api/columns/", json={"dataset": ds, "name": "volume", "dtype": "int"}, headers=H1)
    listed = await json_of(await client.get(f"/api/columns/?dataset={ds}", headers=H1), 200)
    assert [c["name"] for c in listed["results"]] == ["close", "volume"] and listed["count"] == 2
    got = await json_of(await client.get(f"/api/datasets/{ds}/", headers=H1), 200)
    assert [c["name"] for c in got["columns"]] == ["close", "volume"]
    for bad in (
        {"dataset": ds, "name": "x", "dtype": "string"},
        {"dataset": ds, "name": "close", "dtype": "int"},
    ):
        await json_of(await client.post("/api/columns/", json=bad, headers=H1), 400)
    other = {"dataset": ds, "name": "y", "dtype": "int"}
    await json_of(await client.post("/api/columns/", json=other, headers=H2), 403)
    await json_of(await client.get("/api/columns/", headers=H1), 400)


async def test_tags_grant_read_access_but_never_write(client: Client, clock: ManualClock) -> None:
    ds = await make_dataset(client)
    await bulk(client, ds, minute_rows(2, clock))
    tags = await json_of(await client.get("/api/tags/", headers=H2), 200)
    assert {t["name"]: t["is_public"] for t in tags} == {"public": True, "test": True, "premium": False}
    # New datasets are private: another user sees nothing, with or without the public tag.
    await json_of(await client.get(f"/api/datasets/{ds}/", headers=H2), 403)
    await json_of(await client.post("/api/tags/acquire/", json={"tag_name": "public"}, headers=H2), 200)
    await json_of(await client.get(f"/api/rows/?dataset={ds}", headers=H2), 403)
    assert (await json_of(await client.get("/api/datasets/", headers=H2), 200))["count"] == 0
    # Only the owner manages tags.
    await json_of(
        await client.post(f"/api/datasets/{ds}/tags/", json={"tag_name": "public"}, headers=H2), 403
    )
    await json_of(await client.post(f"/api/datasets/{ds}/tags/", json={"tag_name": "public"}, headers=H1), 201)
    assigned = (await json_of(await client.get(f"/api/datasets/{ds}/tags/", headers=H1), 200))[0]
    assert (await json_of(await client.get(f"/api/datasets/{ds}/tags/", headers=H2), 200))[0][
        "name"
    ] == "public"
    rows = await json_of(await client.get(f"/api/rows/?dataset={ds}", headers=H2), 200)
    assert rows["count"] == 2
    assert (await json_of(await client.get("/api/datasets/", headers=H2), 200))["count"] == 1
    check = await json_of(await client.post("/api/access/check/", json={"dataset_id": ds}, headers=H2), 200)
    assert check == {"has_access": True, "is_owner": False, "matching_tags": ["public"]}
    write = await client.post(
        "/api/access/check/", json={"dataset_id": ds, "require_write": True}, headers=H2
    )
    assert (await json_of(write, 200))["has_access"] is False
    own = await json_of(await client.post("/api/access/check/", json={"dataset_id": ds}, headers=H1), 200)
    assert own == {"has_access": True, "is_owner": True, "matching_tags": []}
    # A matching tag still gives no write access.
    await bulk_as(client, ds, H2, 403)
    await json_of(await client.delete(f"/api/datasets/{ds}/", headers=H2), 403)
    # Removing the tag takes the access away again.
    assert (await client.delete(f"/api/datasets/{ds}/tags/{assigned['id']}/", headers=H1)).status == 204
    await json_of(await client.get(f"/api/rows/?dataset={ds}", headers=H2), 403)
    await json_of(await client.delete(f"/api/datasets/{ds}/tags/{assigned['id']}/", headers=H1), 404)
    await json_of(await client.post("/api/access/check/", json={"dataset_id": 999}, headers=H2), 404)


async def test_private_tag_needs_its_secret(client: Client) -> None:
    ds = await make_dataset(client)
    premium = next(
        t for t in await json_of(await client.get("/api/tags/", headers=H1), 200) if t["name"] == "premium"
    )
    await json_of(
        await client.post(f"/api/datasets/{ds}/tags/", json={"tag_id": premium["id"]}, headers=H1), 201
    )
    await json_of(await client.post("/api/tags/acquire/", json={"tag_name": "premium"}, headers=H2), 403)
    bad = {"tag_name": "premium", "secret": "guess"}
    await json_of(await client.post("/api/tags/acquire/", json=bad, headers=H2), 403)
    await json_of(await client.get(f"/api/datasets/{ds}/", headers=H2), 403)
    good = {"tag_name": "premium", "secret": PREMIUM_SECRET}
    await json_of(await client.post("/api/tags/acquire/", json=good, headers=H2), 200)
    assert (await json_of(await client.get(f"/api/datasets/{ds}/", headers=H2), 200))["id"] == ds
    await json_of(await client.post("/api/tags/acquire/", json={"tag_name": "nope"}, headers=H2), 404)


async def test_unknown_route_answers_json_error(client: Client) -> None:
    body = await json_of(await client.get("/api/nothing/", headers=H1), 404)
    assert set(body) == {"error", "details"}


async def test_scripted_fault_applies_once(client: Client, faults: Faults) -> None:
    faults.script("503", path_prefix="/api/datasets/")
    assert (await client.get("/api/datasets/", headers=H1)).status == 503
    assert (await client.get("/api/datasets/", headers=H1)).status == 200
    assert faults.snapshot()["faults"] == {"5xx": 1}


async def test_bulk_insert_applied_but_response_lost(
    client: Client, faults: Faults, clock: ManualClock
) -> None:
    ds = await make_dataset(client)
    faults.script("drop_after", method="POST", path_prefix="/api/rows/bulk_insert/")
    with pytest.raises(aiohttp.ClientError):
        await client.post(
            "/api/rows/bulk_insert/", json={"dataset": ds, "rows": minute_rows(3, clock)}, headers=H1
        )
    got = await json_of(await client.get(f"/api/rows/?dataset={ds}", headers=H1), 200)
    assert got["count"] == 3  # the insert happened; only its answer was lost


async def test_sqlite_file_survives_a_restart(clock: ManualClock, tmp_path: Any) -> None:
    path = str(tmp_path / "atlas.db")
    first = AtlasSim(clock, {ATLAS_KEY: ATLAS_USER}, db_path=path)
    async with TestClient(TestServer(create_app(first, Faults("atlas", clock=clock)))) as c:
        ds = await make_dataset(c, "kept")
        await bulk(c, ds, minute_rows(4, clock))
    first.close()
    second = AtlasSim(clock, {ATLAS_KEY: ATLAS_USER}, db_path=path)
    async with TestClient(TestServer(create_app(second, Faults("atlas", clock=clock)))) as c:
        found = await json_of(await c.get("/api/datasets/?search=kept", headers=H1), 200)
        assert [d["id"] for d in found["results"]] == [ds]
        assert (await json_of(await c.get(f"/api/rows/?dataset={ds}", headers=H1), 200))["count"] == 4
    second.close()


async def test_out_of_range_ids_are_client_errors(client: Client) -> None:
    huge = 2**70
    await json_of(await client.get(f"/api/datasets/{huge}/", headers=H1), 404)
    await json_of(await client.get(f"/api/rows/?dataset={huge}", headers=H1), 404)
    await bulk_as(client, huge, H1, 400)
    await json_of(await client.post("/api/access/check/", json={"dataset_id": True}, headers=H1), 400)


async def test_the_same_sim_can_be_served_again_after_a_stop(sim: AtlasSim, clock: ManualClock) -> None:
    async with TestClient(TestServer(create_app(sim, Faults("atlas", clock=clock)))) as c:
        ds = await make_dataset(c)
        await bulk(c, ds, minute_rows(2, clock))
    # Atlas "comes back": same data, and live streams work again.
    async with TestClient(TestServer(create_app(sim, Faults("atlas", clock=clock)))) as c:
        assert (await json_of(await c.get(f"/api/rows/?dataset={ds}", headers=H1), 200))["count"] == 2
        async with c.get(f"/api/rows/stream/?dataset={ds}&poll_interval=0.02", headers=H1) as resp:
            assert (await next_event(resp))[0] == "connected"
            assert (await next_event(resp))[0] == "heartbeat"


async def test_tag_and_column_mutations_answer_in_all_three_forms(client: Client) -> None:
    ds = await make_dataset(client)
    forms = set()
    for i in range(30):
        body = await json_of(await client.post(
            "/api/columns/", json={"dataset": ds, "name": f"c{i}", "dtype": "float"}, headers=H1), 201)
        forms.add("bare" if "name" in body else "wrapped" if "column" in body else "message")
    assert forms == {"bare", "wrapped", "message"}
