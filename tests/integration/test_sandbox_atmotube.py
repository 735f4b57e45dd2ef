"""The Atmotube Cloud simulator over real HTTP: parameters, paging, CSV, gaps, late uploads, rate limit."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.clock import ManualClock, parse_iso
from bot.sandbox.atmotube import CSV_HEADER, AtmotubeSim, create_app
from bot.sandbox.credentials import ATMOTUBE_DEVICES, ATMOTUBE_KEY
from bot.sandbox.faults import Faults

Client = TestClient[web.Request, web.Application]
MAC = ATMOTUBE_DEVICES[0]
OTHER_MAC = "11:22:33:44:55:66"
OTHER_KEY = "other-atmotube-key"


@pytest.fixture
def sim(clock: ManualClock) -> AtmotubeSim:
    return AtmotubeSim(clock, {ATMOTUBE_KEY: [MAC], OTHER_KEY: [OTHER_MAC.lower()]}, seed=42)


@pytest.fixture
def faults(clock: ManualClock) -> Faults:
    return Faults("atmotube", seed=1, clock=clock)


@pytest.fixture
async def client(sim: AtmotubeSim, faults: Faults) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(sim, faults))) as c:
        yield c


async def _get(client: Client, status: int = 200, **params: Any) -> Any:
    query = {"api_key": ATMOTUBE_KEY, "mac": MAC, **params}
    resp = await client.get("/api/v1/data", params={k: str(v) for k, v in query.items() if v is not None})
    assert resp.status == status, await resp.text()
    if params.get("format") == "csv" and status == 200:
        return await resp.text()
    body = await resp.json()
    assert body["status"] == (0 if status == 200 else 1)
    return body


async def _all_items(client: Client, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        body = await _get(client, limit=1440, offset=len(items), **params)
        items.extend(body["data"]["items"])
        if len(items) >= body["data"]["total"] or not body["data"]["items"]:
            return items


async def test_json_shape_default_limit_and_total(client: Client) -> None:
    body = await _get(client, date="2026-11-19")
    data = body["data"]
    assert len(data["items"]) == 100 and 1000 < data["total"] <= 1440
    first = data["items"][0]
    assert first["time"].startswith("2026-11-19T") and first["time"].endswith(".000Z")
    times = [parse_iso(i["time"]) for i in data["items"]]
    assert times == sorted(times) and len(set(times)) == len(times)


async def test_desc_order_starts_with_the_newest(client: Client) -> None:
    asc = (await _get(client, date="2026-11-19", limit=1440))["data"]["items"]
    desc = (await _get(client, date="2026-11-19", limit=5, order="desc"))["data"]["items"]
    assert desc == list(reversed(asc[-5:]))


async def test_offset_pages_past_1440_items(client: Client) -> None:
    items = await _all_items(client, start_date="2026-11-17", end_date="2026-11-19")
    total = (await _get(client, start_date="2026-11-17", end_date="2026-11-19", limit=1))["data"]["total"]
    assert total > 2 * 1440 and len(items) == total
    times = [i["time"] for i in items]
    assert times == sorted(times) and len(set(times)) == total
    past_end = await _get(client, start_date="2026-11-17", end_date="2026-11-19", offset=total)
    assert past_end["data"] == {"total": total, "items": []}


@pytest.mark.parametrize(
    ("start", "end", "status"),
    [
        ("2026-11-14", "2026-11-20", 200),  # 7 calendar days
        ("2026-11-13", "2026-11-20", 400),  # 8
        ("2026-11-20", "2026-11-19", 400),  # backwards
        ("2026-11-1", "2026-11-19", 400),  # not YYYY-MM-DD
        ("2026-02-30", "2026-03-01", 400),  # no such day
        ("2026-11-19", None, 400),  # half a range
    ],
)
async def test_date_range_rules(client: Client, start: str, end: str | None, status: int) -> None:
    body = await _get(client, status, start_date=start, end_date=end)
    if status == 400:
        assert body["message"]


async def test_date_parameter_rules(client: Client) -> None:
    await _get(client, 400)  # no date at all
    await _get(client, 400, date="2026-11-19", start_date="2026-11-18", end_date="2026-11-19")
    await _get(client, 400, date="19/11/2026")
    assert (await _get(client, date="2026-11-21"))["data"] == {"total": 0, "items": []}  # the future


@pytest.mark.parametrize(("limit", "status"), [(1440, 200), (1441, 400), (0, 400), ("x", 400), ("", 200)])
async def test_limit_bounds(client: Client, limit: Any, status: int) -> None:
    body = await _get(client, status, date="2026-11-19", limit=limit)
    if status == 200:
        assert len(body["data"]["items"]) == (100 if limit == "" else min(limit, body["data"]["total"]))


async def test_bad_order_format_or_offset_is_400(client: Client) -> None:
    for params in ({"order": "up"}, {"format": "xml"}, {"offset": -1}):
        await _get(client, 400, date="2026-11-19", **params)


async def test_csv_flattens_coords_and_leaves_missing_empty(client: Client) -> None:
    json_items = (await _get(client, date="2026-11-19", limit=1440))["data"]["items"]
    text = await _get(client, date="2026-11-19", limit=1440, format="csv")
    table = list(csv.DictReader(io.StringIO(text)))
    assert tuple(text.splitlines()[0].split(",")) == CSV_HEADER
    assert len(table) == len(json_items)
    for item, row in zip(json_items, table, strict=True):
        assert row["time"] == item["time"]
        coords = item.get("coords")
        assert (row["lat"], row["lon"]) == ((str(coords["lat"]), str(coords["lon"])) if coords else ("", ""))
        for field in ("pm25", "voc", "t"):
            value = item.get(field)
            assert row[field] == ("" if value is None else str(value))


async def test_fields_are_sometimes_missing_or_null(client: Client) -> None:
    items = await _all_items(client, start_date="2026-11-14", end_date="2026-11-19")
    assert any("coords" in i for i in items) and any("coords" not in i for i in items)
    assert any("pm25" not in i for i in items)
    assert any("pm25" in i and i["pm25"] is None for i in items)
    assert any(i.get("voc", 0) is None for i in items)
    # Gaps stay gaps: some minutes have no item at all.
    minutes = {i["time"] for i in items}
    assert len(minutes) < 6 * 1440


async def test_late_uploads_appear_on_a_later_read(client: Client, clock: ManualClock) -> None:
    before = await _all_items(client, date="2026-11-20")
    newest_seen = max(parse_iso(i["time"]) for i in before)
    assert newest_seen < clock.now() - timedelta(minutes=1)  # the newest minutes are still on the phone
    clock.advance(3 * 3600)
    after = await _all_items(client, date="2026-11-20")
    old_times = {i["time"] for i in before}
    assert old_times <= {i["time"] for i in after}
    late = [
        i
        for i in after
        if i["time"] not in old_times and parse_iso(i["time"]) < clock.now() - timedelta(hours=3)
    ]
    assert late, "items recorded before the first read should arrive after it"
    # An item never changes once visible.
    by_time = {i["time"]: i for i in after}
    assert all(by_time[i["time"]] == i for i in before)


async def test_mac_and_key_errors(client: Client) -> None:
    await _get(client, 401, api_key="nope", date="2026-11-19")
    await _get(client, 401, api_key="", date="2026-11-19")
    await _get(client, 400, mac="AA-BB-CC-DD-EE-FF", date="2026-11-19")
    await _get(client, 400, mac=None, date="2026-11-19")
    await _get(client, 403, mac=OTHER_MAC, date="2026-11-19")
    lower = await _get(client, mac=MAC.lower(), date="2026-11-19", limit=1)
    upper = await _get(client, date="2026-11-19", limit=1)
    assert lower == upper
    # Ownership declared in lower case still matches.
    await _get(client, api_key=OTHER_KEY, mac=OTHER_MAC, date="2026-11-19")


async def test_61st_request_in_a_clock_minute_is_429_and_the_next_minute_resets(
    client: Client, clock: ManualClock, faults: Faults
) -> None:
    clock.advance(30)  # mid-minute: the window is the clock minute, not the last 60 s
    for _ in range(60):
        await _get(client, date="2026-11-19", limit=1)
    body = await _get(client, 429, date="2026-11-19", limit=1)
    assert body["message"]
    assert faults.snapshot()["sent_429"] == 1
    clock.advance(29)
    await _get(client, 429, date="2026-11-19", limit=1)
    clock.advance(1)  # 12:01:00, a new window
    await _get(client, date="2026-11-19", limit=1)


async def test_same_seed_same_data_other_seed_other_data(clock: ManualClock, client: Client) -> None:
    ours = (await _get(client, date="2026-11-19", limit=50))["data"]
    again = AtmotubeSim(clock, {ATMOTUBE_KEY: [MAC]}, seed=42)
    other = AtmotubeSim(clock, {ATMOTUBE_KEY: [MAC]}, seed=7)
    day = parse_iso("2026-11-19T00:00:00Z").date()
    assert again.items(MAC, day, day)[:50] == ours["items"]
    assert other.items(MAC, day, day)[:50] != ours["items"]


async def test_scripted_faults_apply_with_the_contract_error_body(client: Client, faults: Faults) -> None:
    faults.script("429", path_prefix="/api/v1/data")
    body = await _get(client, 429, date="2026-11-19")
    assert body["status"] == 1
    faults.script("503")
    resp = await client.get(
        "/api/v1/data", params={"api_key": ATMOTUBE_KEY, "mac": MAC, "date": "2026-11-19"}
    )
    assert resp.status == 503
    await _get(client, date="2026-11-19")
    assert faults.snapshot()["faults"] == {"429": 1, "5xx": 1}


async def test_sandbox_reset_clears_the_rate_limit(client: Client, faults: Faults) -> None:
    for _ in range(60):
        await _get(client, date="2026-11-19", limit=1)
    await _get(client, 429, date="2026-11-19", limit=1)
    assert (await client.post("/_sandbox/reset")).status == 200
    await _get(client, date="2026-11-19", limit=1)
