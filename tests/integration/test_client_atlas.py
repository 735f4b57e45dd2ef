"""`AtlasClient` against the Atlas simulator over loopback HTTP: every endpoint, every contract quirk."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from bot.clients.atlas import AtlasClient, AtlasRow, BulkInsertUnknown
from bot.clock import ManualClock
from bot.errors import AuthError, NotFound, OutcomeUnknown, Rejected, TemporaryError
from bot.sandbox import credentials as cred
from bot.sandbox.runner import Sandbox
from bot.settings import AtlasSettings

BULK = "POST /api/rows/bulk_insert/"


@pytest.fixture
async def sb(clock: ManualClock) -> AsyncIterator[Sandbox]:
    async with Sandbox(clock) as sandbox:
        yield sandbox


def _client(sb: Sandbox, clock: ManualClock, key: str = cred.ATLAS_KEY) -> AtlasClient:
    settings = AtlasSettings(base_url=sb.urls["atlas"], api_key=SecretStr(key))
    return AtlasClient.create(settings, clock, rng=random.Random(7))


@pytest.fixture
async def atlas(sb: Sandbox, clock: ManualClock) -> AsyncIterator[AtlasClient]:
    async with _client(sb, clock) as client:
        yield client


@pytest.fixture
async def other(sb: Sandbox, clock: ManualClock) -> AsyncIterator[AtlasClient]:
    async with _client(sb, clock, cred.ATLAS_KEY_2) as client:
        yield client


def _rows(clock: ManualClock, n: int, start_min: int = 0) -> list[AtlasRow]:
    t0 = clock.now()
    return [AtlasRow(t0 + timedelta(minutes=start_min + i), {"price": Decimal("100.5") + i, "n": i})
            for i in range(n)]


def _requests(sb: Sandbox, endpoint: str) -> int:
    return int(sb.faults["atlas"].snapshot()["requests"].get(endpoint, 0))


async def _all(it: AsyncGenerator[Any, None]) -> list[Any]:
    async with aclosing(it) as rows:
        return [r async for r in rows]


# --------------------------------------------------------------------------------------------- datasets


async def test_dataset_crud_and_metadata_patch_and_replace(atlas: AtlasClient) -> None:
    ds = await atlas.create_dataset("crud", "first", {"source": "atmos", "version": 1})
    assert (ds.name, ds.description, ds.metadata) == ("crud", "first", {"source": "atmos", "version": 1})
    assert ds.created_at is not None
    assert await atlas.get_dataset(ds.id) == ds
    updated = await atlas.update_dataset(ds.id, "crud2", "second", {"kind": "candles"})
    assert (updated.name, updated.description, updated.metadata) == ("crud2", "second", {"kind": "candles"})
    merged = await atlas.patch_metadata(ds.id, {"pair": "btcusdt", "rate": Decimal("0.5")})
    assert merged.metadata == {"kind": "candles", "pair": "btcusdt", "rate": 0.5}
    replaced = await atlas.replace_metadata(ds.id, {"only": "this"})
    assert replaced.metadata == {"only": "this"}
    assert [d.id for d in await atlas.list_datasets()] == [ds.id]
    await atlas.delete_dataset(ds.id)
    with pytest.raises(NotFound) as err:
        await atlas.get_dataset(ds.id)
    assert err.value.status == 404 and "not found" in str(err.value).lower()
    assert await atlas.list_datasets() == []


async def test_second_dataset_with_the_same_name_is_rejected_with_details(atlas: AtlasClient) -> None:
    await atlas.create_dataset("dup")
    with pytest.raises(Rejected) as err:
        await atlas.create_dataset("dup")
    assert type(err.value) is Rejected and err.value.status == 400
    assert "already exists" in err.value.message and "dup" in err.value.message  # error and details


async def test_search_by_text_and_by_metadata(atlas: AtlasClient) -> None:
    a = await atlas.create_dataset("tradebot.btc", "Bitcoin candles", {"source": "atmos", "frequency": "1m",
                                                                       "version": 2})
    b = await atlas.create_dataset("tradebot.eth", "Ether candles", {"source": "atmos", "frequency": "5m"})
    c = await atlas.create_dataset("air", "sensor BITCOIN-free readings", {"source": "atmotube"})
    assert [d.id for d in await atlas.list_datasets(search="bitcoin")] == [a.id, c.id]
    assert [d.id for d in await atlas.list_datasets(search="tradebot.")] == [a.id, b.id]
    assert [d.id for d in await atlas.list_datasets(page_size=1)] == [a.id, b.id, c.id]  # paged by offset
    assert [d.id for d in await atlas.search_datasets({"source": "atmos"})] == [a.id, b.id]
    assert [d.id for d in await atlas.search_datasets({"source": "atmos", "frequency": "5m"})] == [b.id]
    assert [d.id for d in await atlas.search_datasets({"version": 2})] == [a.id]
    assert await atlas.search_datasets({"source": "nowhere"}) == []


async def test_ensure_dataset_is_idempotent_across_two_client_instances(
        sb: Sandbox, clock: ManualClock) -> None:
    spec: dict[str, Any] = {"description": "1m candles", "metadata": {"source": "atmos", "kind": "candles"},
                            "columns": {"close": "float", "trades": "int"}, "tags": ["public"]}
    async with _client(sb, clock) as first:
        one = await first.ensure_dataset("tradebot.candles", **spec)
    async with _client(sb, clock) as second:  # a restart: nothing remembered in memory
        two = await second.ensure_dataset("tradebot.candles", **spec)
        assert one.id == two.id
        assert [(c.name, c.dtype) for c in two.columns] == [("close", "float"), ("trades", "int")]
        assert two.metadata == {"source": "atmos", "kind": "candles"}
        assert [t.name for t in await second.dataset_tags(two.id)] == ["public"]
        assert [d.id for d in await second.list_datasets(search="tradebot.candles")] == [one.id]
        # A later version adds a column and a metadata field; nothing is duplicated.
        three = await second.ensure_dataset("tradebot.candles", "1m candles", {"frequency": "1m"},
                                            columns={"close": "float", "volume": "float"}, tags=["public"])
        assert three.id == one.id
        assert [c.name for c in three.columns] == ["close", "trades", "volume"]
        assert three.metadata == {"source": "atmos", "kind": "candles", "frequency": "1m"}


async def test_ensure_dataset_resolves_the_name_race_between_two_processes(
        sb: Sandbox, clock: ManualClock) -> None:
    async with _client(sb, clock) as a, _client(sb, clock) as b:
        one, two = await asyncio.gather(a.ensure_dataset("race", columns={"x": "float"}),
                                        b.ensure_dataset("race", columns={"x": "float"}))
        assert _requests(sb, "POST /api/datasets/") == 2, "the race was not exercised"
        assert one.id == two.id
        assert len(await a.list_datasets(search="race")) == 1
        assert [c.name for c in await a.list_columns(one.id)] == ["x"]


async def test_ensure_dataset_finds_a_create_whose_answer_was_lost(sb: Sandbox, atlas: AtlasClient) -> None:
    sb.faults["atlas"].script("drop_after", method="POST", path_prefix="/api/datasets/")
    ds = await atlas.ensure_dataset("lost", metadata={"source": "x"})
    assert _requests(sb, "POST /api/datasets/") == 1  # found by reading, not created again
    assert [d.id for d in await atlas.list_datasets()] == [ds.id]


async def test_ensure_dataset_ignores_another_users_dataset_of_the_same_name(
        atlas: AtlasClient, other: AtlasClient) -> None:
    theirs = await other.create_dataset("shared-name")
    await other.assign_tag(theirs.id, tag_name="public")
    await atlas.acquire_tag("public")
    assert [d.id for d in await atlas.list_datasets(search="shared-name")] == [theirs.id]  # visible to us
    ours = await atlas.ensure_dataset("shared-name")
    assert ours.id != theirs.id
    assert (await atlas.check_access(ours.id)).is_owner


# --------------------------------------------------------------------------------------------- columns, tags, access


async def test_columns_are_declared_listed_and_duplicates_rejected(atlas: AtlasClient) -> None:
    ds = await atlas.create_dataset("cols")
    col = await atlas.create_column(ds.id, "close", "float")
    assert (col.name, col.dtype, col.dataset) == ("close", "float", ds.id)
    await atlas.create_column(ds.id, "trades", "int")
    assert [(c.name, c.dtype) for c in await atlas.list_columns(ds.id)] == [("close", "float"), ("trades", "int")]
    with pytest.raises(Rejected) as err:
        await atlas.create_column(ds.id, "close", "float")
    assert err.value.status == 400 and "already exists" in err.value.message
    with pytest.raises(Rejected):
        await atlas.create_column(ds.id, "name", "string")


async def test_tags_acquire_assign_remove_and_access_check(atlas: AtlasClient, other: AtlasClient) -> None:
    tags = {t.name: t for t in await atlas.list_tags()}
    assert {"public", "test", "premium"} <= set(tags) and not tags["premium"].is_public
    with pytest.raises(AuthError) as err:
        await other.acquire_tag("premium")
    assert err.value.status == 403
    ds = await atlas.create_dataset("shared")
    assert await other.check_access(ds.id) == type(await other.check_access(ds.id))(False, False, ())
    with pytest.raises(AuthError):
        await other.get_dataset(ds.id)  # private until tagged
    tag = await atlas.assign_tag(ds.id, tag_name="public")
    assert tag.name == "public"
    await atlas.assign_tag(ds.id, tag_id=tags["test"].id)
    await atlas.assign_tag(ds.id, tag_name="public")  # again: harmless
    assert sorted(t.name for t in await atlas.dataset_tags(ds.id)) == ["public", "test"]
    await other.acquire_tag("public")
    access = await other.check_access(ds.id)
    assert (access.has_access, access.is_owner, access.matching_tags) == (True, False, ("public",))
    assert not (await other.check_access(ds.id, require_write=True)).has_access
    assert (await other.get_dataset(ds.id)).id == ds.id
    mine = await atlas.check_access(ds.id, require_write=True)
    assert mine.has_access and mine.is_owner
    await atlas.remove_tag(ds.id, tags["public"].id)
    assert [t.name for t in await atlas.dataset_tags(ds.id)] == ["test"]
    assert not (await other.check_access(ds.id)).has_access


async def test_writing_another_users_dataset_is_an_auth_error(atlas: AtlasClient, other: AtlasClient,
                                                              clock: ManualClock) -> None:
    ds = await atlas.create_dataset("mine")
    await atlas.assign_tag(ds.id, tag_name="public")
    await other.acquire_tag("public")
    with pytest.raises(AuthError) as err:
        await other.bulk_insert(ds.id, _rows(clock, 3))
    assert err.value.status == 403 and err.value.service == "atlas"
    assert cred.ATLAS_KEY_2 not in str(err.value) and cred.ATLAS_KEY not in str(err.value)
    with pytest.raises(AuthError):
        await other.delete_dataset(ds.id)
    assert await atlas.newest_timestamp(ds.id) is None


async def test_a_deleted_dataset_is_not_found_everywhere(atlas: AtlasClient, clock: ManualClock) -> None:
    ds = await atlas.create_dataset("gone")
    await atlas.bulk_insert(ds.id, _rows(clock, 5))
    await atlas.delete_dataset(ds.id)
    with pytest.raises(NotFound):
        await atlas.bulk_insert(ds.id, _rows(clock, 1))
    with pytest.raises(NotFound):
        await atlas.newest_timestamp(ds.id)
    with pytest.raises(NotFound):
        await _all(atlas.bulk_download(ds.id))
    with pytest.raises(NotFound):
        await atlas.delete_dataset(ds.id)


# --------------------------------------------------------------------------------------------- rows


async def test_rows_are_paged_ordered_and_filtered_by_time(sb: Sandbox, atlas: AtlasClient,
                                                           clock: ManualClock) -> None:
    ds = await atlas.create_dataset("rows")
    written = _rows(clock, 2500)
    assert await atlas.bulk_insert(ds.id, reversed(written)) == 2500  # sent in time order anyway
    before = _requests(sb, "GET /api/rows/")
    got = await _all(atlas.rows(ds.id, page_size=1000))
    assert _requests(sb, "GET /api/rows/") - before == 3
    assert [r.timestamp for r in got] == [r.timestamp for r in written]
    assert got[7].values == {"price": 107.5, "n": 7}
    down = await _all(atlas.rows(ds.id, descending=True, page_size=700))
    assert [r.timestamp for r in down] == [r.timestamp for r in reversed(written)]
    start, end = written[100].timestamp, written[1299].timestamp
    window = await _all(atlas.rows(ds.id, start=start, end=end, page_size=500))
    assert [r.values["n"] for r in window] == list(range(100, 1300))  # both ends inclusive
    assert await atlas.newest_timestamp(ds.id) == written[-1].timestamp


async def test_single_row_insert_keeps_microseconds(atlas: AtlasClient, clock: ManualClock) -> None:
    ds = await atlas.create_dataset("single")
    when = clock.now() + timedelta(microseconds=123456)
    await atlas.insert_row(ds.id, AtlasRow(when, {"v": Decimal("3"), "label": "x"}))
    assert await _all(atlas.rows(ds.id)) == [AtlasRow(when, {"v": 3, "label": "x"})]
    with pytest.raises(ValueError):
        await atlas.insert_row(ds.id, AtlasRow(datetime(2026, 1, 1), {"v": 1}))  # naive time is refused


async def test_bulk_insert_over_10000_rows_is_split_into_several_requests(
        sb: Sandbox, atlas: AtlasClient, clock: ManualClock) -> None:
    ds = await atlas.create_dataset("big")
    assert await atlas.bulk_insert(ds.id, _rows(clock, 25_000)) == 25_000
    assert _requests(sb, BULK) == 3
    got = await _all(atlas.rows(ds.id, page_size=10_000))
    assert len(got) == 25_000 and got[-1].values["n"] == 24_999


async def test_the_same_rows_sent_twice_are_stored_twice(atlas: AtlasClient, clock: ManualClock) -> None:
    ds = await atlas.create_dataset("twice")
    rows = _rows(clock, 10)
    await atlas.bulk_insert(ds.id, rows)
    await atlas.bulk_insert(ds.id, rows)
    assert len(await _all(atlas.rows(ds.id))) == 20  # why the client never resends blindly


async def test_bulk_insert_applied_but_answer_lost_is_outcome_unknown_and_resolvable(
        sb: Sandbox, atlas: AtlasClient, clock: ManualClock) -> None:
    ds = await atlas.create_dataset("ambiguous")
    first = _rows(clock, 100)
    await atlas.bulk_insert(ds.id, first)
    batch = _rows(clock, 50, start_min=100)
    sb.faults["atlas"].script("drop_after", method="POST", path_prefix="/api/rows/bulk_insert/")
    with pytest.raises(OutcomeUnknown) as err:
        await atlas.bulk_insert(ds.id, batch)
    assert isinstance(err.value, BulkInsertUnknown) and err.value.kind == "outcome_unknown"
    assert (err.value.confirmed, err.value.pending) == (0, 50)
    assert (err.value.pending_from, err.value.pending_to) == (batch[0].timestamp, batch[-1].timestamp)
    assert _requests(sb, BULK) == 2  # never retried
    newest = await atlas.newest_timestamp(ds.id)
    assert newest == batch[-1].timestamp  # the rows are there
    missing = [r for r in batch if newest is None or r.timestamp > newest]
    assert missing == []
    assert len(await _all(atlas.rows(ds.id))) == 150


@pytest.mark.parametrize("kind", ["drop_after", "bad_json", "truncate"])
async def test_every_lost_answer_to_a_bulk_insert_is_outcome_unknown_with_the_rows_stored(
        sb: Sandbox, atlas: AtlasClient, clock: ManualClock, kind: str) -> None:
    ds = await atlas.create_dataset(f"lost-{kind}")
    rows = _rows(clock, 30)
    sb.faults["atlas"].script(kind, method="POST", path_prefix="/api/rows/bulk_insert/")
    with pytest.raises(BulkInsertUnknown):
        await atlas.bulk_insert(ds.id, rows)
    assert _requests(sb, BULK) == 1
    assert await atlas.newest_timestamp(ds.id) == rows[-1].timestamp


async def test_a_split_insert_stops_at_the_first_ambiguous_chunk(
        sb: Sandbox, atlas: AtlasClient, clock: ManualClock) -> None:
    ds = await atlas.create_dataset("chunks")
    rows = _rows(clock, 250)
    sb.faults["atlas"].script("drop_after", method="POST", path_prefix="/api/rows/bulk_insert/")
    with pytest.raises(BulkInsertUnknown) as err:
        await atlas.bulk_insert(ds.id, rows, chunk_size=100)
    assert (err.value.confirmed, err.value.pending, err.value.pending_to) == (0, 100, rows[99].timestamp)
    assert _requests(sb, BULK) == 1  # the later chunks were not sent after the ambiguity
    newest = await atlas.newest_timestamp(ds.id)
    assert newest == rows[99].timestamp
    # Resolution as the recorder does it: send only what is newer than the newest stored row.
    assert await atlas.bulk_insert(ds.id, [r for r in rows if r.timestamp > newest], chunk_size=100) == 150
    assert [r.values["n"] for r in await _all(atlas.rows(ds.id))] == list(range(250))


async def test_a_429_on_bulk_insert_is_retried_and_stores_the_rows_once(
        sb: Sandbox, atlas: AtlasClient, clock: ManualClock) -> None:
    ds = await atlas.create_dataset("limited")
    sb.faults["atlas"].script("429", method="POST", path_prefix="/api/rows/bulk_insert/")
    assert await atlas.bulk_insert(ds.id, _rows(clock, 7)) == 7
    assert _requests(sb, BULK) == 2
    assert len(await _all(atlas.rows(ds.id))) == 7
    assert atlas.snapshot()["rate_limited"] == 1


@pytest.mark.parametrize(("kind", "count"), [("drop_before", 2), ("truncate", 1), ("bad_json", 3), ("500", 2)])
async def test_read_faults_are_retried(sb: Sandbox, atlas: AtlasClient, clock: ManualClock,
                                       kind: str, count: int) -> None:
    ds = await atlas.create_dataset("reads")
    await atlas.bulk_insert(ds.id, _rows(clock, 20))
    sb.faults["atlas"].script(kind, count=count, method="GET", path_prefix="/api/rows/")
    assert [r.values["n"] for r in await _all(atlas.rows(ds.id))] == list(range(20))
    assert atlas.snapshot()["retries"] >= 1


async def test_bulk_insert_5xx_after_sending_is_outcome_unknown_but_a_read_5xx_is_retried(
        sb: Sandbox, atlas: AtlasClient, clock: ManualClock) -> None:
    ds = await atlas.create_dataset("flaky")
    sb.faults["atlas"].script("503", method="POST", path_prefix="/api/rows/bulk_insert/")
    with pytest.raises(OutcomeUnknown):
        await atlas.bulk_insert(ds.id, _rows(clock, 5))
    assert await atlas.newest_timestamp(ds.id) is None  # a proxy 503: nothing stored, now we know
    sb.faults["atlas"].script("5xx", count=2, method="GET")
    assert (await atlas.get_dataset(ds.id)).id == ds.id
    assert atlas.snapshot()["retries"] == 2


async def test_atlas_down_is_temporary_for_reads_and_writes_then_recovers(
        sb: Sandbox, atlas: AtlasClient, clock: ManualClock) -> None:
    ds = await atlas.create_dataset("outage")
    await sb.stop_service("atlas")
    with pytest.raises(TemporaryError) as err:
        await atlas.get_dataset(ds.id)
    assert err.value.service == "atlas" and cred.ATLAS_KEY not in str(err.value)
    with pytest.raises(TemporaryError) as write_err:
        await atlas.bulk_insert(ds.id, _rows(clock, 3))
    assert not isinstance(write_err.value, OutcomeUnknown)  # refused: never sent, safe to send later
    await sb.start_service("atlas")
    assert await atlas.bulk_insert(ds.id, _rows(clock, 3)) == 3
    assert len(await _all(atlas.rows(ds.id))) == 3


# --------------------------------------------------------------------------------------------- downloads, streams


@pytest.mark.parametrize("output", ["json", "csv"])
async def test_bulk_download_streams_every_row(atlas: AtlasClient, clock: ManualClock, output: str) -> None:
    ds = await atlas.create_dataset("download")
    await atlas.create_column(ds.id, "price", "float")
    rows = _rows(clock, 4500)
    rows[3] = AtlasRow(rows[3].timestamp, {"n": 3})  # `price` missing in one row
    rows[4] = AtlasRow(rows[4].timestamp, {"n": 4, "note": 'a "quoted",\nmulti-line note'})
    await atlas.bulk_insert(ds.id, rows)
    got = await _all(atlas.bulk_download(ds.id, output))  # type: ignore[arg-type]
    assert got == await _all(atlas.rows(ds.id, page_size=5000))
    assert got[3].values == {"n": 3} and got[4].values["note"] == 'a "quoted",\nmulti-line note'
    part = await _all(atlas.bulk_download(ds.id, output, start=rows[10].timestamp,  # type: ignore[arg-type]
                                          end=rows[19].timestamp))
    assert [r.values["n"] for r in part] == list(range(10, 20))


async def test_download_chunks_give_the_raw_body(atlas: AtlasClient, clock: ManualClock) -> None:
    ds = await atlas.create_dataset("raw")
    await atlas.bulk_insert(ds.id, _rows(clock, 2))
    body = b"".join(await _all(atlas.download_chunks(ds.id, "csv")))
    assert body.decode().splitlines() == ["timestamp,n,price", "2026-11-20T12:00:00Z,0,100.5",
                                          "2026-11-20T12:01:00Z,1,101.5"]


async def test_live_returns_the_newest_rows_ascending(atlas: AtlasClient, clock: ManualClock) -> None:
    ds = await atlas.create_dataset("live")
    rows = _rows(clock, 1200)
    await atlas.bulk_insert(ds.id, rows)
    got = await _all(atlas.live(ds.id, limit=5))
    assert [r.timestamp for r in got] == [r.timestamp for r in rows[-5:]]
    assert got[-1].values == {"price": 1299.5, "n": 1199}
    assert len(await _all(atlas.live(ds.id, limit=5000))) == 1200


async def test_stream_pushes_connected_data_and_heartbeat_events(atlas: AtlasClient, clock: ManualClock) -> None:
    ds = await atlas.create_dataset("stream")
    row = AtlasRow(clock.now(), {"close": Decimal("104600")})
    seen: list[str] = []
    async with aclosing(atlas.stream(ds.id, poll_interval=0.05)) as events:
        first = await anext(events)
        assert first.event == "connected" and first.data["dataset_id"] == ds.id
        await atlas.insert_row(ds.id, row)
        async for event in events:
            seen.append(event.event)
            if event.event == "data":
                assert event.row == AtlasRow(row.timestamp, {"close": 104600})
            if "data" in seen and event.event == "heartbeat":
                break
    assert seen.count("data") == 1 and "error" not in seen
    assert (await atlas.get_dataset(ds.id)).id == ds.id  # the session is still usable after closing


async def test_health_needs_no_key(sb: Sandbox, clock: ManualClock) -> None:
    async with _client(sb, clock, key="") as anonymous:
        assert (await anonymous.health())["status"] == "healthy"
        with pytest.raises(AuthError) as err:
            await anonymous.list_datasets()
        assert err.value.status == 401


async def test_stream_reports_an_error_event_when_its_dataset_is_deleted(atlas: AtlasClient) -> None:
    ds = await atlas.create_dataset("doomed")
    async with aclosing(atlas.stream(ds.id, poll_interval=0.05)) as events:
        assert (await anext(events)).event == "connected"
        await atlas.delete_dataset(ds.id)
        rest = [e async for e in events]  # the server ends the stream after the error
    assert [e.event for e in rest if e.event != "heartbeat"] == ["error"]
    assert "not found" in rest[-1].data["error"].lower()


def _tag_posts(sb: Sandbox) -> int:
    counts = sb.faults["atlas"].snapshot()["requests"]
    return sum(n for k, n in counts.items() if k.startswith("POST /api/datasets/") and k.endswith("/tags/"))


async def test_tag_and_column_mutations_work_whatever_shape_the_answer_has(
        sb: Sandbox, atlas: AtlasClient) -> None:
    # The simulator answers these in three forms (bare, wrapped, message only) by its seed: over many
    # mutations the client meets all three and always comes back with the object.
    ds = await atlas.create_dataset("shapes")
    for i in range(12):
        col = await atlas.create_column(ds.id, f"c{i}", "float")
        assert (col.name, col.dtype) == (f"c{i}", "float")
        tag = await atlas.assign_tag(ds.id, tag_name="public")
        assert tag.name == "public"
    assert _tag_posts(sb) == 12


async def test_a_tag_assignment_whose_answer_is_unreadable_is_read_back_never_resent(
        sb: Sandbox, atlas: AtlasClient) -> None:
    ds = await atlas.create_dataset("unreadable")
    sb.faults["atlas"].script("bad_json", method="POST", path_prefix=f"/api/datasets/{ds.id}/tags/")
    with pytest.raises(Exception) as err:
        await atlas.assign_tag(ds.id, tag_name="public")
    assert type(err.value).__name__ in {"MalformedResponse", "OutcomeUnknown"}
    assert _tag_posts(sb) == 1  # sent once, not four times
    assert [t.name for t in await atlas.dataset_tags(ds.id)] == ["public"]  # it was applied
