"""Atlas simulator, rows: query, single and bulk insert, CSV/JSON download, NDJSON live and SSE stream.

Downloads and live output are streamed in batches so a large dataset never sits in memory as one body.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from bot.sandbox.atlas_rows import (
    MAX_BULK_ROWS,
    AtlasError,
    StoredRow,
    format_ts,
    from_micros,
    parse_row,
)
from bot.sandbox.atlas_web import (
    AtlasSim,
    body_int,
    json_body,
    page,
    page_params,
    query_int,
    query_time,
    sim_of,
    user_of,
)

DEFAULT_LIVE_LIMIT = 1000
DEFAULT_POLL_S = 2.0
_ORDERINGS = {"timestamp": False, "-timestamp": True}


def wire_row(row: StoredRow) -> dict[str, Any]:
    """The `/api/rows/` shape: `{"timestamp", "values"}`."""
    return {"timestamp": format_ts(row.ts), "values": row.values}


def flat_row(row: StoredRow) -> dict[str, Any]:
    """The live/stream shape: values beside `timestamp` (which wins a name clash)."""
    return {**row.values, "timestamp": format_ts(row.ts)}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


async def list_rows(request: web.Request) -> web.Response:
    """`GET /api/rows/?dataset=&start=&end=&ordering=&limit=&offset=`: read access, paginated."""
    user, store = user_of(request), sim_of(request).store
    dataset_id = query_int(request, "dataset")
    store.require(user, dataset_id, write=False)
    start, end = query_time(request, "start"), query_time(request, "end")
    ordering = request.query.get("ordering", "timestamp")
    if ordering not in _ORDERINGS:
        raise AtlasError(400, "invalid parameter", "ordering must be timestamp or -timestamp")
    limit, offset = page_params(request)
    count = store.rows.count_rows(dataset_id, start, end)
    rows = store.rows.query_rows(
        dataset_id, start, end, descending=_ORDERINGS[ordering], limit=limit, offset=offset
    )
    return web.json_response(page(request, count, limit, offset, [wire_row(r) for r in rows]))


async def insert_row(request: web.Request) -> web.Response:
    """`POST /api/rows/`: one row; owner only."""
    user, sim = user_of(request), sim_of(request)
    body = await json_body(request)
    dataset_id = body_int(body, "dataset")
    sim.store.require(user, dataset_id, write=True)
    ts, values = parse_row(body, columns=_declared(sim, dataset_id))
    sim.store.rows.insert_rows(dataset_id, [(ts, values)])
    sim.notify_rows()
    return web.json_response(
        {"dataset": dataset_id, "timestamp": format_ts(from_micros(ts)), "values": json.loads(values)},
        status=201,
    )


def _declared(sim: AtlasSim, dataset_id: int) -> dict[str, str]:
    return {c["name"]: c["dtype"] for c in sim.store.list_columns(dataset_id)}


async def bulk_insert(request: web.Request) -> web.Response:
    """`POST /api/rows/bulk_insert/`: up to 10,000 rows, all or nothing, never de-duplicated."""
    user, sim = user_of(request), sim_of(request)
    body = await json_body(request)
    dataset_id = body_int(body, "dataset")
    sim.store.require(user, dataset_id, write=True)
    raw_rows = body.get("rows")
    if not isinstance(raw_rows, list):
        raise AtlasError(400, "invalid request body", "rows must be an array")
    if len(raw_rows) > MAX_BULK_ROWS:
        raise AtlasError(
            400, "too many rows", f"at most {MAX_BULK_ROWS} rows per request, got {len(raw_rows)}"
        )
    # Validate everything before touching the database: one bad row stores nothing.
    declared = _declared(sim, dataset_id)
    parsed = [parse_row(raw, i, declared) for i, raw in enumerate(raw_rows)]
    inserted = sim.store.rows.insert_rows(dataset_id, parsed)
    sim.notify_rows()
    return web.json_response({"inserted": inserted, "total": len(raw_rows)}, status=201)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return _dumps(value)  # numbers, booleans, nested objects: their JSON spelling


def _csv_chunk(rows: Iterable[StoredRow], keys: list[str], header: bool) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(["timestamp", *keys])
    for r in rows:
        writer.writerow([format_ts(r.ts), *(_csv_cell(r.values.get(k)) for k in keys)])
    return buf.getvalue().encode()


async def bulk_download(request: web.Request) -> web.StreamResponse:
    """`GET /api/rows/bulk_download/?dataset=&output=json|csv&start=&end=`: every row, ascending, streamed."""
    user, store = user_of(request), sim_of(request).store
    dataset_id = query_int(request, "dataset")
    store.require(user, dataset_id, write=False)
    output = request.query.get("output", "json")
    if output not in ("json", "csv"):
        raise AtlasError(400, "invalid parameter", "output must be json or csv")
    start, end = query_time(request, "start"), query_time(request, "end")
    resp = web.StreamResponse()
    if output == "csv":
        resp.content_type = "text/csv"
        resp.headers["Content-Disposition"] = f'attachment; filename="dataset_{dataset_id}.csv"'
        declared = [c["name"] for c in store.list_columns(dataset_id)]
        keys = declared + [k for k in store.rows.value_keys(dataset_id) if k not in declared]
    else:
        resp.content_type = "application/json"
    await resp.prepare(request)
    first = True
    if output == "csv":
        await resp.write(_csv_chunk([], keys, header=True))
    else:
        await resp.write(b"[")
    for batch in store.rows.iter_rows(dataset_id, start, end):
        if output == "csv":
            await resp.write(_csv_chunk(batch, keys, header=False))
        else:
            text = ",".join(_dumps(wire_row(r)) for r in batch)
            await resp.write(("" if first else ",").encode() + text.encode())
        first = False
    if output == "json":
        await resp.write(b"]")
    await resp.write_eof()
    return resp


async def live(request: web.Request) -> web.StreamResponse:
    """`GET /api/rows/live/?dataset=&limit=`: NDJSON of the newest `limit` rows in ascending order."""
    user, store = user_of(request), sim_of(request).store
    dataset_id = query_int(request, "dataset")
    store.require(user, dataset_id, write=False)
    limit = query_int(request, "limit", DEFAULT_LIVE_LIMIT, minimum=1)
    rows = store.rows.query_rows(dataset_id, None, None, descending=True, limit=limit, offset=0)
    rows.reverse()
    resp = web.StreamResponse()
    resp.content_type = "application/x-ndjson"
    await resp.prepare(request)
    for i in range(0, len(rows), 1000):
        await resp.write("".join(_dumps(flat_row(r)) + "\n" for r in rows[i : i + 1000]).encode())
    await resp.write_eof()
    return resp


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {_dumps(data)}\n\n".encode()


async def stream(request: web.Request) -> web.StreamResponse:
    """`GET /api/rows/stream/?dataset=&poll_interval=`: SSE `connected`, `data`, `heartbeat`, `error`.

    `poll_interval` is in seconds of the simulator's clock (fractions allowed); a heartbeat goes out after
    each interval without new rows. New rows are pushed as soon as they are inserted.
    """
    sim = sim_of(request)
    user = user_of(request)
    dataset_id = query_int(request, "dataset")
    sim.store.require(user, dataset_id, write=False)
    try:
        poll_s = float(request.query.get("poll_interval", DEFAULT_POLL_S))
    except ValueError:
        raise AtlasError(400, "invalid parameter", "poll_interval must be a number") from None
    if not poll_s > 0:
        raise AtlasError(400, "invalid parameter", "poll_interval must be positive")
    resp = web.StreamResponse(headers={"Cache-Control": "no-cache"})
    resp.content_type = "text/event-stream"
    await resp.prepare(request)
    last_id = sim.store.rows.max_row_id()
    loop = asyncio.get_running_loop()
    try:
        await resp.write(
            _sse("connected", {"dataset_id": dataset_id, "message": "Connected to real-time stream"})
        )
        deadline = loop.time() + poll_s / sim.clock.speed
        while not sim.closing:
            await sim.wait_rows(deadline - loop.time())
            if sim.closing:
                break
            if not sim.store.dataset_exists(dataset_id):
                await resp.write(_sse("error", {"error": "Dataset not found", "details": f"{dataset_id}"}))
                break
            rows = sim.store.rows.rows_after_id(dataset_id, last_id)
            for r in rows:
                await resp.write(_sse("data", flat_row(r)))
                last_id = r.id
            if loop.time() >= deadline:
                if not rows:
                    await resp.write(_sse("heartbeat", {"timestamp": format_ts(sim.clock.now())}))
                deadline = loop.time() + poll_s / sim.clock.speed
    except ConnectionResetError:
        return resp  # the client went away; nothing more to send
    return resp


def add_routes(app: web.Application) -> None:
    """Register the `/api/rows/...` routes."""
    app.router.add_get("/api/rows/", list_rows)
    app.router.add_post("/api/rows/", insert_row)
    app.router.add_post("/api/rows/bulk_insert/", bulk_insert)
    app.router.add_get("/api/rows/bulk_download/", bulk_download)
    app.router.add_get("/api/rows/live/", live)
    app.router.add_get("/api/rows/stream/", stream)
