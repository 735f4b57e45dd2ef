"""Atlas simulator: datasets, tags, access and columns over HTTP, exactly as `contracts/atlas.md` says.

Rows, downloads and streams are in `atlas_data.py`; the SQLite model in `atlas_store.py`. Every path
keeps the seed's trailing slash. Auth is `X-API-Key` on everything but `GET /health`.
"""

from __future__ import annotations

from aiohttp import web

from bot.sandbox import atlas_control, atlas_data
from bot.sandbox.atlas_rows import AtlasError
from bot.sandbox.atlas_web import (
    SIM_KEY,
    AtlasSim,
    body_int,
    body_obj,
    body_str,
    error_response,
    json_body,
    json_errors,
    page,
    page_params,
    path_id,
    query_int,
    sim_of,
    user_of,
)
from bot.sandbox.faults import Faults

__all__ = ["SIM_KEY", "AtlasSim", "create_app"]

# Query parameters of the metadata search that are paging, not filters.
_PAGING_PARAMS = frozenset({"limit", "offset"})


def _dataset_id(request: web.Request) -> int:
    return path_id(request)


async def health(request: web.Request) -> web.Response:
    """`GET /health`: no auth; reports the database."""
    sim = sim_of(request)
    ok = sim.store.ping()
    body = {
        "status": "healthy" if ok else "unhealthy",
        "time": sim.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "database": "connected" if ok else "disconnected",
    }
    return web.json_response(body, status=200 if ok else 503)


async def list_datasets(request: web.Request) -> web.Response:
    """`GET /api/datasets/?search=`: readable datasets, substring match on name or description."""
    user = user_of(request)
    limit, offset = page_params(request)
    found = sim_of(request).store.list_datasets(user, request.query.get("search"))
    return web.json_response(page(request, len(found), limit, offset, found[offset : offset + limit]))


async def search_datasets(request: web.Request) -> web.Response:
    """`GET /api/datasets/search/?key=value`: exact metadata matches; at least one filter."""
    user = user_of(request)
    limit, offset = page_params(request)
    filters = {k: v for k, v in request.query.items() if k not in _PAGING_PARAMS}
    if not filters:
        raise AtlasError(400, "at least one metadata filter is required", "use /api/datasets/ to list all")
    found = sim_of(request).store.search_metadata(user, filters)
    return web.json_response(page(request, len(found), limit, offset, found[offset : offset + limit]))


async def create_dataset(request: web.Request) -> web.Response:
    """`POST /api/datasets/`: the caller becomes the owner; names are unique per owner."""
    user = user_of(request)
    body = await json_body(request)
    created = sim_of(request).store.create_dataset(
        user, body_str(body, "name"), body_str(body, "description", ""), body_obj(body, "metadata")
    )
    return web.json_response(created, status=201)


async def get_dataset(request: web.Request) -> web.Response:
    """`GET /api/datasets/{id}/`: read access."""
    user, store = user_of(request), sim_of(request).store
    store.require(user, _dataset_id(request), write=False)
    return web.json_response(store.get_dataset(_dataset_id(request)))


async def update_dataset(request: web.Request) -> web.Response:
    """`PUT /api/datasets/{id}/`: owner only; replaces name, description and metadata."""
    user, store = user_of(request), sim_of(request).store
    store.require(user, _dataset_id(request), write=True)
    body = await json_body(request)
    updated = store.update_dataset(
        _dataset_id(request), body_str(body, "name"), body_str(body, "description", ""),
        body_obj(body, "metadata"),
    )
    return web.json_response(updated)


async def delete_dataset(request: web.Request) -> web.Response:
    """`DELETE /api/datasets/{id}/`: owner only; takes every row with it."""
    user, sim = user_of(request), sim_of(request)
    sim.store.require(user, _dataset_id(request), write=True)
    sim.store.delete_dataset(_dataset_id(request))
    sim.notify_rows()  # open streams on it notice and end with an error event
    return web.Response(status=204)


async def _set_metadata(request: web.Request, *, merge: bool) -> web.Response:
    user, store = user_of(request), sim_of(request).store
    store.require(user, _dataset_id(request), write=True)
    body = await json_body(request)
    return web.json_response(store.set_metadata(_dataset_id(request), body, merge=merge))


async def patch_metadata(request: web.Request) -> web.Response:
    """`PATCH /api/datasets/{id}/metadata/`: merge."""
    return await _set_metadata(request, merge=True)


async def put_metadata(request: web.Request) -> web.Response:
    """`PUT /api/datasets/{id}/metadata/`: replace."""
    return await _set_metadata(request, merge=False)


async def list_tags(request: web.Request) -> web.Response:
    """`GET /api/tags/`: every tag, as a plain array."""
    user_of(request)
    return web.json_response(sim_of(request).store.list_tags())


async def acquire_tag(request: web.Request) -> web.Response:
    """`POST /api/tags/acquire/`: public tags are free, private ones need their secret."""
    user = user_of(request)
    body = await json_body(request)
    secret = body.get("secret")
    tag = sim_of(request).store.acquire_tag(
        user, body_str(body, "tag_name"), secret if isinstance(secret, str) else None
    )
    return web.json_response(sim_of(request).mutation_answer("tag", tag, f"tag {tag['name']!r} acquired"))


async def dataset_tags(request: web.Request) -> web.Response:
    """`GET /api/datasets/{id}/tags/`: read access."""
    user, store = user_of(request), sim_of(request).store
    store.require(user, _dataset_id(request), write=False)
    return web.json_response(store.dataset_tags(_dataset_id(request)))


async def assign_tag(request: web.Request) -> web.Response:
    """`POST /api/datasets/{id}/tags/` with `tag_name` or `tag_id`: owner only."""
    user, store = user_of(request), sim_of(request).store
    store.require(user, _dataset_id(request), write=True)
    body = await json_body(request)
    if "tag_id" in body:
        tag = store.find_tag(tag_id=body_int(body, "tag_id"))
    else:
        tag = store.find_tag(name=body_str(body, "tag_name"))
    added = store.assign_tag(_dataset_id(request), tag["id"])
    return web.json_response(sim_of(request).mutation_answer("tag", tag, "Tag assigned"),
                             status=201 if added else 200)


async def remove_tag(request: web.Request) -> web.Response:
    """`DELETE /api/datasets/{id}/tags/{tag_id}/`: owner only."""
    user, store = user_of(request), sim_of(request).store
    store.require(user, _dataset_id(request), write=True)
    store.remove_tag(_dataset_id(request), path_id(request, "tag_id"))
    return web.Response(status=204)


async def check_access(request: web.Request) -> web.Response:
    """`POST /api/access/check/`: `{"has_access", "is_owner", "matching_tags"}`."""
    user = user_of(request)
    body = await json_body(request)
    access = sim_of(request).store.access(user, body_int(body, "dataset_id"))
    write = bool(body.get("require_write", False))
    has = access.is_owner or (not write and access.can_read)
    return web.json_response(
        {"has_access": has, "is_owner": access.is_owner, "matching_tags": access.matching_tags}
    )


async def list_columns(request: web.Request) -> web.Response:
    """`GET /api/columns/?dataset=`: read access; paginated like every list."""
    user, store = user_of(request), sim_of(request).store
    dataset_id = query_int(request, "dataset")
    store.require(user, dataset_id, write=False)
    limit, offset = page_params(request)
    columns = store.list_columns(dataset_id)
    return web.json_response(page(request, len(columns), limit, offset, columns[offset : offset + limit]))


async def create_column(request: web.Request) -> web.Response:
    """`POST /api/columns/`: owner only; dtype `float` or `int`."""
    user, store = user_of(request), sim_of(request).store
    body = await json_body(request)
    dataset_id = body_int(body, "dataset")
    store.require(user, dataset_id, write=True)
    column = store.create_column(dataset_id, body_str(body, "name"), body_str(body, "dtype"))
    return web.json_response(sim_of(request).mutation_answer("column", column, "Column created"), status=201)


def create_app(sim: AtlasSim, faults: Faults) -> web.Application:
    """The Atlas simulator as an aiohttp application, with fault injection and its control routes."""
    faults.error_factory = error_response
    app = web.Application(middlewares=[faults.middleware, json_errors], client_max_size=64 * 1024**2)
    app[SIM_KEY] = sim
    ds = r"/api/datasets/{id:\d+}"
    app.router.add_get("/health", health)
    app.router.add_get("/api/datasets/", list_datasets)
    app.router.add_post("/api/datasets/", create_dataset)
    app.router.add_get("/api/datasets/search/", search_datasets)
    app.router.add_get(ds + "/", get_dataset)
    app.router.add_put(ds + "/", update_dataset)
    app.router.add_delete(ds + "/", delete_dataset)
    app.router.add_patch(ds + "/metadata/", patch_metadata)
    app.router.add_put(ds + "/metadata/", put_metadata)
    app.router.add_get(ds + "/tags/", dataset_tags)
    app.router.add_post(ds + "/tags/", assign_tag)
    app.router.add_delete(ds + r"/tags/{tag_id:\d+}/", remove_tag)
    app.router.add_get("/api/tags/", list_tags)
    app.router.add_post("/api/tags/acquire/", acquire_tag)
    app.router.add_post("/api/access/check/", check_access)
    app.router.add_get("/api/columns/", list_columns)
    app.router.add_post("/api/columns/", create_column)
    atlas_data.add_routes(app)
    faults.add_control_routes(app)
    atlas_control.add_control_routes(app)

    async def _allow_streams(_app: web.Application) -> None:
        sim.closing = False  # the same sim may be served again after an outage (stop, then start)

    async def _stop_streams(_app: web.Application) -> None:
        sim.shutdown()

    app.on_startup.append(_allow_streams)
    app.on_shutdown.append(_stop_streams)
    return app
