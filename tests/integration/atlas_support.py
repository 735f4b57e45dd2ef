"""Helpers for the Atlas simulator tests: headers, JSON checks, dataset and row builders, SSE reading."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.clock import ManualClock, iso_z
from bot.sandbox.credentials import ATLAS_KEY, ATLAS_KEY_2

Client = TestClient[web.Request, web.Application]
H1 = {"X-API-Key": ATLAS_KEY}
H2 = {"X-API-Key": ATLAS_KEY_2}


async def json_of(resp: aiohttp.ClientResponse, status: int) -> Any:
    """The JSON body of `resp`, after checking its status (the body is in the failure message)."""
    body = await resp.text()
    assert resp.status == status, body
    return json.loads(body) if body else None


async def make_dataset(
    client: Client, name: str = "ticks", headers: dict[str, str] = H1, **extra: Any
) -> int:
    """Create a dataset as `headers`' user and return its id."""
    body = {"name": name, "description": extra.pop("description", f"{name} data"), **extra}
    created = await json_of(await client.post("/api/datasets/", json=body, headers=headers), 201)
    return int(created["id"])


def minute_rows(n: int, clock: ManualClock, start_min: int = 0) -> list[dict[str, Any]]:
    """`n` rows one minute apart from the clock's now (plus `start_min`), values `price` = `n` = index."""
    t0 = clock.now()
    return [
        {
            "timestamp": iso_z(t0 + timedelta(minutes=start_min + i), millis=False),
            "values": {"price": i, "n": i},
        }
        for i in range(n)
    ]


async def bulk(client: Client, dataset: int, rows: list[dict[str, Any]], status: int = 201) -> Any:
    """`bulk_insert` as the first user, checking the status."""
    return await json_of(
        await client.post("/api/rows/bulk_insert/", json={"dataset": dataset, "rows": rows}, headers=H1),
        status,
    )


async def bulk_as(client: Client, ds: int, headers: dict[str, str], status: int) -> Any:
    """A one-row `bulk_insert` as `headers`' user, checking the status."""
    body = {"dataset": ds, "rows": [{"timestamp": "2026-11-20T12:00:00Z", "values": {"x": 1}}]}
    return await json_of(await client.post("/api/rows/bulk_insert/", json=body, headers=headers), status)


async def next_event(resp: aiohttp.ClientResponse) -> tuple[str, Any]:
    """The next SSE event as `(event type, decoded data)`; EOFError when the stream ends."""
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
