"""HTTP plumbing shared by the Atlas simulator's handlers: the simulator object, auth, parameters, errors.

`AtlasSim` owns the store and a change signal that wakes live SSE streams when rows arrive, so a stream
pushes new data at once instead of only on its next poll.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from bot.clock import Clock, parse_iso
from bot.sandbox.atlas_rows import AtlasError
from bot.sandbox.atlas_store import AtlasStore, User

MAX_PAGE = 10_000  # larger `limit`s are clamped, like a paginator's max_limit
DEFAULT_PAGE = 250
MAX_ID = 2**63 - 1  # SQLite's integer range; a larger id would crash the driver instead of a 4xx


class AtlasSim:
    """State of one simulated Atlas deployment: its store, users (API key → username) and clock."""

    def __init__(self, clock: Clock, api_keys: dict[str, str], db_path: str = ":memory:", seed: int = 0) -> None:
        self.clock = clock
        # Mutations whose answer the contract leaves open (tags, columns) answer in one of three forms,
        # drawn from this seeded generator, so clients are tested against all of them.
        self._forms = random.Random(seed)
        self.store = AtlasStore(clock, db_path)
        for key, username in api_keys.items():
            self.store.add_user(key, username)
        self.closing = False
        self._changed = asyncio.Event()

    def notify_rows(self) -> None:
        """Wake every stream waiting for new rows."""
        # Swap before setting so a waiter that re-arms after waking waits for the *next* change.
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait_rows(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` wall seconds for new rows; True when some arrived."""
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout=max(0.0, timeout_s))
        except TimeoutError:
            return False
        return True

    def mutation_answer(self, kind: str, obj: dict[str, Any], message: str) -> dict[str, Any]:
        """The object bare, wrapped (`{"message", kind: obj}`) or only `{"message"}`, by the seeded draw."""
        form = self._forms.choice(("bare", "wrapped", "message"))
        if form == "bare":
            return obj
        if form == "wrapped":
            return {"message": message, kind: obj}
        return {"message": message}

    def shutdown(self) -> None:
        """Make open streams finish (called when the app shuts down)."""
        self.closing = True
        self.notify_rows()

    def close(self) -> None:
        """Close the database."""
        self.store.close()


SIM_KEY = web.AppKey("atlas_sim", AtlasSim)


def sim_of(request: web.Request) -> AtlasSim:
    """The simulator serving `request`."""
    return request.app[SIM_KEY]


def user_of(request: web.Request) -> User:
    """The user behind the request's `X-API-Key` (401 when missing or unknown)."""
    key = request.headers.get("X-API-Key", "")
    if not key:
        raise AtlasError(401, "Unauthorized", "missing X-API-Key header")
    user = sim_of(request).store.user_for_key(key)
    if user is None:
        raise AtlasError(401, "Unauthorized", "invalid API key")
    return user


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (400 otherwise)."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AtlasError(400, "invalid JSON", "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise AtlasError(400, "invalid request body", "expected a JSON object")
    return body


def body_int(body: dict[str, Any], name: str) -> int:
    """A required integer field of a JSON body (400 otherwise)."""
    value = body.get(name)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    # bool is an int in Python; `{"dataset": true}` is not a dataset id.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise AtlasError(400, "invalid request body", f"{name} must be a non-negative integer")
    return value


def body_str(body: dict[str, Any], name: str, default: str | None = None) -> str:
    """A string field of a JSON body; required (non-empty) unless a default is given."""
    value = body.get(name, default)
    if not isinstance(value, str) or (default is None and not value.strip()):
        raise AtlasError(400, "invalid request body", f"{name} must be a non-empty string")
    return value


def body_obj(body: dict[str, Any], name: str) -> dict[str, Any]:
    """An optional JSON object field (default `{}`)."""
    value = body.get(name, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AtlasError(400, "invalid request body", f"{name} must be an object")
    return value


def query_int(request: web.Request, name: str, default: int | None = None, minimum: int = 0) -> int:
    """An integer query parameter; required when `default` is None (400 when missing or malformed)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise AtlasError(400, "missing parameter", f"{name} is required")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise AtlasError(400, "invalid parameter", f"{name} must be an integer") from None
    if value < minimum:
        raise AtlasError(400, "invalid parameter", f"{name} must be >= {minimum}")
    return min(value, MAX_ID)


def path_id(request: web.Request, name: str = "id") -> int:
    """An integer path segment (the route pattern guarantees digits); out of range is a 404."""
    value = int(request.match_info[name])
    if value > MAX_ID:
        raise AtlasError(404, "Not found", f"no {name} {value}")
    return value


def query_time(request: web.Request, name: str) -> datetime | None:
    """An optional ISO 8601 query parameter, as aware UTC."""
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return parse_iso(raw)
    except ValueError:
        raise AtlasError(400, "invalid parameter", f"{name} must be an ISO 8601 datetime") from None


def page_params(request: web.Request) -> tuple[int, int]:
    """`(limit, offset)` of a list request."""
    limit = min(query_int(request, "limit", DEFAULT_PAGE, minimum=1), MAX_PAGE)
    return limit, query_int(request, "offset", 0)


def page(request: web.Request, count: int, limit: int, offset: int, results: list[Any]) -> dict[str, Any]:
    """The seed's paginated shape, with `next`/`previous` links built from the request URL."""
    nxt = None
    if offset + limit < count:
        nxt = str(request.url.update_query(limit=limit, offset=offset + limit))
    prev = None
    if offset > 0:
        prev = str(request.url.update_query(limit=limit, offset=max(0, offset - limit)))
    return {"count": count, "next": nxt, "previous": prev, "results": results}


def error_response(status: int, error: str, details: str = "") -> web.Response:
    """The seed's error body."""
    return web.json_response({"error": error, "details": details}, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every refusal (ours, aiohttp's 404/405, a crash) into the seed's `{"error", "details"}`."""
    try:
        return await handler(request)
    except AtlasError as exc:
        return error_response(exc.status, exc.error, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason, f"{request.method} {request.path}")
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:  # the simulator must answer like a server would, not drop the connection
        return error_response(500, "Internal Server Error", type(exc).__name__)
