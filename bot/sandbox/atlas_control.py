"""Control route of the Atlas simulator, for tests and tools (unauthenticated; never counted or faulted).

`GET /_sandbox/state` → every user, dataset and row:

    {"now": "...",
     "users": [{"username": "sandbox", "tags": ["public"]}],
     "datasets": [{"id", "owner", "name", "description", "metadata", "columns": [{"id", "dataset", "name",
                   "dtype", "created_at"}], "tags": ["public"], "created_at", "updated_at", "row_count": 2,
                   "rows": [{"timestamp": "2026-11-20T12:00:00Z", "values": {...}}]}]}

Datasets are in id order, rows in time order (ties in insertion order), as `/api/rows/` returns them.
`?dataset=ID` dumps only that dataset (404 when there is none); `?rows=0` leaves the rows out (`row_count`
stays), for a quick look at a big store.
"""

from __future__ import annotations

from datetime import UTC

from aiohttp import web

from bot.sandbox.atlas_data import wire_row
from bot.sandbox.atlas_web import MAX_ID, sim_of
from bot.sandbox.faults import CONTROL_PREFIX


async def get_state(request: web.Request) -> web.Response:
    store = sim_of(request).store
    raw = request.query.get("dataset")
    dataset_id = None
    if raw:
        if not raw.isdigit() or int(raw) > MAX_ID:
            return web.json_response({"error": "dataset must be a dataset id"}, status=400)
        dataset_id = int(raw)
    with_rows = request.query.get("rows", "1").lower() not in ("0", "false", "no")
    state = store.dump(dataset_id)
    if dataset_id is not None and not state["datasets"]:
        return web.json_response({"error": f"no dataset {dataset_id}"}, status=404)
    for ds in state["datasets"]:
        ds["row_count"] = store.rows.count_rows(ds["id"], None, None)
        if with_rows:
            ds["rows"] = [wire_row(r) for batch in store.rows.iter_rows(ds["id"], None, None) for r in batch]
    now = sim_of(request).clock.now().astimezone(UTC).isoformat().replace("+00:00", "Z")
    return web.json_response({"now": now, **state})


def add_control_routes(app: web.Application) -> None:
    """Atlas's own control route (faults, counters and clock come from `Faults`)."""
    app.router.add_get(CONTROL_PREFIX + "state", get_state)
