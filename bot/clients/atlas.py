"""Atlas client: datasets, columns, tags, access, rows, downloads and streams (`shared/contracts/atlas.md`).

Routes, field names and parsers live in `atlas_wire.py`; this module does the requests. Errors follow
the shared family: 401/403 `AuthError` (403: the key may not write someone else's dataset), 404
`NotFound` (e.g. deleted), other 4xx `Rejected` carrying Atlas's `error: details`; 5xx and connection
trouble on reads are retried, then `TemporaryError`.

Atlas inserts are **not idempotent**: the same rows sent twice are stored twice. So `bulk_insert` and
`insert_row` are never retried automatically; a drop or 5xx after sending raises `OutcomeUnknown`
(`BulkInsertUnknown` from `bulk_insert`, saying how many rows were confirmed). Resolve it with
`newest_timestamp(dataset_id)` and send only the rows newer than that: `bulk_insert` sends rows in time
order, so when each batch is newer than what the dataset already holds (the recorder appends), every
row up to the newest stored timestamp is in.

Usage::

    async with AtlasClient.create(settings.atlas, clock) as atlas:
        ds = await atlas.ensure_dataset("tradebot.candles", "1m candles", {"source": "atmos"},
                                        columns={"close": "float"}, tags=["public"])
        await atlas.bulk_insert(ds.id, [AtlasRow(t, {"close": Decimal("1.5")})])
        async with contextlib.aclosing(atlas.rows(ds.id, start=t0)) as rows:
            async for row in rows: ...

The iterators (`rows`, `bulk_download`, `live`, `stream`) hold a connection while open: leave them by
exhausting them or through `contextlib.aclosing`.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import structlog

from bot.clients import atlas_streams
from bot.clients import atlas_wire as w
from bot.clients.atlas_streams import Output
from bot.clients.atlas_wire import Access, AtlasRow, Column, Dataset, StreamEvent, Tag
from bot.clients.base import ServiceClient
from bot.clock import Clock
from bot.errors import AuthError, MalformedResponse, NotFound, OutcomeUnknown, Rejected
from bot.http import HttpService, RawJson, Response, RollingWindowLimiter
from bot.settings import AtlasSettings

__all__ = ["Access", "AtlasClient", "AtlasRow", "BulkInsertUnknown", "Column", "Dataset", "StreamEvent",
           "Tag"]

log = structlog.get_logger(__name__)
T = TypeVar("T")
# The contract states no rate limit; this only stops a runaway loop from hammering the deployment.
REQUESTS_PER_MINUTE = 600


class BulkInsertUnknown(OutcomeUnknown):
    """A `bulk_insert` chunk may or may not have been stored. `confirmed` rows (the earlier chunks, all
    older than the ambiguous ones) are stored for sure; `pending` rows from `pending_from` to `pending_to`
    may be. Resolve with `newest_timestamp`."""

    def __init__(self, message: str, *, confirmed: int, pending: int, pending_from: datetime,
                 pending_to: datetime, **kw: Any) -> None:
        self.confirmed = confirmed
        self.pending = pending
        self.pending_from = pending_from
        self.pending_to = pending_to
        super().__init__(message, **kw)

    @property
    def kind(self) -> str:
        """Counted like any unknown outcome."""
        return "outcome_unknown"


def _ok(resp: Response) -> Any:
    if not resp.ok:
        raise atlas_streams.error_for(resp)
    return resp.data


def _ds(dataset_id: int) -> str:
    return str(int(dataset_id))


class AtlasClient(ServiceClient):
    """Atlas API client over one shared `HttpService`."""

    @classmethod
    def create(cls, settings: AtlasSettings, clock: Clock, *, base_url: str | None = None,
               api_key: str | None = None, rng: random.Random | None = None) -> AtlasClient:
        """A client with its own session; `api_key` overrides the settings' key."""
        key = api_key if api_key is not None else settings.api_key.get_secret_value()
        http = HttpService(w.SERVICE, base_url or settings.base_url, clock,
                           RollingWindowLimiter(clock, REQUESTS_PER_MINUTE),
                           headers={w.AUTH_HEADER: key} if key else None, rng=rng)
        return cls(http)

    # -- plumbing

    async def _get(self, path: str, parse: Callable[[Any], T], params: Mapping[str, str] | None = None) -> T:
        return await self.http.call("GET", path, lambda r: parse(_ok(r)), params=params)

    async def _send(self, method: str, path: str, body: Any, parse: Callable[[Any], T], *,
                    idempotent: bool) -> T:
        return await self.http.call(method, path, lambda r: parse(_ok(r)), json=body, idempotent=idempotent)

    async def _all(self, path: str, params: Mapping[str, str], item: Callable[[Any], T],
                   page_size: int) -> AsyncGenerator[T, None]:
        """Every item of a paginated list, by `limit`/`offset` (not the server's `next` URL, which names
        the server's own idea of its host)."""
        offset = 0
        while True:
            page = await self._get(path, lambda d: w.parse_page(d, item),
                                   {**params, w.Q_LIMIT: str(page_size), w.Q_OFFSET: str(offset)})
            for x in page.items:
                yield x
            offset += len(page.items)
            more = page.has_next if page.count is None else offset < page.count
            if not page.items or not more:
                return

    async def _collect(self, path: str, params: Mapping[str, str], item: Callable[[Any], T],
                       page_size: int = w.DEFAULT_LIST_PAGE) -> list[T]:
        return [x async for x in self._all(path, params, item, page_size)]

    # -- health

    async def health(self) -> dict[str, Any]:
        """`GET /health` (no auth needed): the server's status object."""
        return await self._get(w.ROUTE_HEALTH, lambda d: dict(w.as_object(d, "health")))

    # -- datasets

    async def list_datasets(self, search: str | None = None, *,
                            page_size: int = w.DEFAULT_LIST_PAGE) -> list[Dataset]:
        """Every readable dataset whose name or description contains `search` (case-insensitive)."""
        params = {w.Q_SEARCH: search} if search else {}
        return await self._collect(w.ROUTE_DATASETS, params, w.parse_dataset, page_size)

    async def search_datasets(self, filters: Mapping[str, Any], *,
                              page_size: int = w.DEFAULT_LIST_PAGE) -> list[Dataset]:
        """Readable datasets whose metadata matches every filter exactly (at least one filter)."""
        if not filters:
            raise ValueError("metadata search needs at least one filter")
        params = {str(k): w.query_value(v) for k, v in filters.items()}
        return await self._collect(w.ROUTE_DATASET_SEARCH, params, w.parse_dataset, page_size)

    async def get_dataset(self, dataset_id: int) -> Dataset:
        """One dataset (`NotFound` once deleted, `AuthError` without read access)."""
        return await self._get(w.ROUTE_DATASET.format(id=_ds(dataset_id)), w.parse_dataset)

    async def create_dataset(self, name: str, description: str = "",
                             metadata: Mapping[str, Any] | None = None) -> Dataset:
        """Create a dataset we own. A second one with the same name is `Rejected` (HTTP 400)."""
        body = {w.F_NAME: name, w.F_DESCRIPTION: description, w.F_METADATA: w.wire_value(dict(metadata or {}))}
        return await self._send("POST", w.ROUTE_DATASETS, body, w.parse_dataset, idempotent=False)

    async def update_dataset(self, dataset_id: int, name: str, description: str,
                             metadata: Mapping[str, Any]) -> Dataset:
        """Replace name, description and metadata (owner only)."""
        body = {w.F_NAME: name, w.F_DESCRIPTION: description, w.F_METADATA: w.wire_value(dict(metadata))}
        path = w.ROUTE_DATASET.format(id=_ds(dataset_id))
        return await self._send("PUT", path, body, w.parse_dataset, idempotent=True)

    async def delete_dataset(self, dataset_id: int) -> None:
        """Delete a dataset and all its rows (owner only). Not retried: a retry after a lost answer would
        report `NotFound` for a delete that worked."""
        await self._send("DELETE", w.ROUTE_DATASET.format(id=_ds(dataset_id)), None, lambda _d: None,
                         idempotent=False)

    async def patch_metadata(self, dataset_id: int, metadata: Mapping[str, Any]) -> Dataset:
        """Merge fields into the metadata (owner only); safe to repeat, so retried."""
        path = w.ROUTE_DATASET_METADATA.format(id=_ds(dataset_id))
        return await self._send("PATCH", path, w.wire_value(dict(metadata)), w.parse_dataset, idempotent=True)

    async def replace_metadata(self, dataset_id: int, metadata: Mapping[str, Any]) -> Dataset:
        """Replace the whole metadata (owner only)."""
        path = w.ROUTE_DATASET_METADATA.format(id=_ds(dataset_id))
        return await self._send("PUT", path, w.wire_value(dict(metadata)), w.parse_dataset, idempotent=True)

    async def find_dataset(self, name: str) -> Dataset | None:
        """The dataset named exactly `name` that we own, if any. Datasets of others shared with us can
        carry the same name, so ownership is checked, not assumed."""
        for ds in await self.list_datasets(search=name):
            if ds.name == name and (await self.check_access(ds.id)).is_owner:
                return ds
        return None

    async def ensure_dataset(self, name: str, description: str = "", metadata: Mapping[str, Any] | None = None,
                             columns: Mapping[str, str] | None = None,
                             tags: Sequence[str] = ()) -> Dataset:
        """Find our dataset `name` or create it, then make sure it has `metadata` (merged), `columns`
        (name → dtype) and `tags`. Idempotent: safe on every start-up and from several processes (a
        create that loses the name race, or whose answer was lost, is resolved by reading again)."""
        metadata = dict(metadata or {})
        ds = await self.find_dataset(name)
        if ds is None:
            try:
                ds = await self.create_dataset(name, description, metadata)
            except (Rejected, OutcomeUnknown, MalformedResponse) as err:
                if isinstance(err, AuthError | NotFound):
                    raise
                ds = await self.find_dataset(name)
                if ds is None:
                    raise
                log.info("atlas.dataset_found_after_create", dataset=ds.id, name=name, kind=err.kind)
        changed = False
        # Compared in wire form: the server's copy may come back with Decimal where we hold float.
        wanted_meta, have_meta = w.wire_value(metadata), w.wire_value(ds.metadata)
        stale = {k: v for k, v in wanted_meta.items() if k not in have_meta or have_meta[k] != v}
        if stale:
            ds = await self.patch_metadata(ds.id, stale)
        if columns:
            changed |= await self.ensure_columns(ds.id, columns)
        if tags:
            have = {t.name for t in await self.dataset_tags(ds.id)}
            for tag in tags:
                if tag not in have:
                    await self.assign_tag(ds.id, tag_name=tag)
                    changed = True
        return await self.get_dataset(ds.id) if changed else ds

    async def ensure_columns(self, dataset_id: int, columns: Mapping[str, str]) -> bool:
        """Declare the `columns` (name → dtype) the dataset lacks; True if any was added. Idempotent."""
        have = {c.name for c in await self.list_columns(dataset_id)}
        missing = [(n, d) for n, d in columns.items() if n not in have]
        for col, dtype in missing:
            try:
                await self.create_column(dataset_id, col, dtype)
            except (Rejected, OutcomeUnknown) as err:
                # Another process declared it first, or our answer was lost: fine if it is there now.
                if isinstance(err, AuthError | NotFound):
                    raise
                if col not in {c.name for c in await self.list_columns(dataset_id)}:
                    raise
        return bool(missing)

    # -- columns

    async def list_columns(self, dataset_id: int) -> list[Column]:
        """Declared columns of a dataset."""
        return await self._collect(w.ROUTE_COLUMNS, {w.Q_DATASET: _ds(dataset_id)}, w.parse_column)

    async def create_column(self, dataset_id: int, name: str, dtype: str) -> Column:
        """Declare a column (`float` or `int`); a duplicate name is `Rejected`. The answer's shape is not
        fixed (bare, wrapped or a message): without an object in it the column is read back."""
        body = {w.F_DATASET: int(dataset_id), w.F_NAME: name, w.F_DTYPE: dtype}
        obj = await self._send("POST", w.ROUTE_COLUMNS, body, lambda d: w.mutation_object(d, "column"),
                               idempotent=False)
        if obj is not None:
            return w.parse_column(obj)
        for col in await self.list_columns(dataset_id):
            if col.name == name:
                return col
        raise MalformedResponse(f"column {name!r} was not there after a create that answered only a message",
                                service=w.SERVICE)

    # -- tags and access

    async def list_tags(self) -> list[Tag]:
        """Every tag of the deployment."""
        return await self._get(w.ROUTE_TAGS, lambda d: w.parse_list(d, w.parse_tag))

    async def acquire_tag(self, tag_name: str, secret: str | None = None) -> None:
        """Acquire a tag for ourselves (private tags need their secret); repeating it is harmless."""
        body: dict[str, Any] = {w.F_TAG_NAME: tag_name}
        if secret is not None:
            body[w.F_SECRET] = secret
        await self._send("POST", w.ROUTE_TAG_ACQUIRE, body, lambda _d: None, idempotent=False)

    async def dataset_tags(self, dataset_id: int) -> list[Tag]:
        """Tags assigned to a dataset."""
        return await self._get(w.ROUTE_DATASET_TAGS.format(id=_ds(dataset_id)),
                               lambda d: w.parse_list(d, w.parse_tag))

    async def assign_tag(self, dataset_id: int, *, tag_name: str | None = None, tag_id: int | None = None) -> Tag:
        """Assign a tag (by name or id) to our dataset; assigning it again is harmless."""
        if (tag_name is None) == (tag_id is None):
            raise ValueError("give exactly one of tag_name and tag_id")
        body: dict[str, Any] = {w.F_TAG_NAME: tag_name} if tag_name is not None else {w.F_TAG_ID: tag_id}
        path = w.ROUTE_DATASET_TAGS.format(id=_ds(dataset_id))
        # Never resent: whatever the answer looked like, the dataset's tags say what happened.
        obj = await self._send("POST", path, body, lambda d: w.mutation_object(d, "tag"), idempotent=False)
        if obj is not None:
            return w.parse_tag(obj)
        for tag in await self.dataset_tags(dataset_id):
            if tag.name == tag_name or tag.id == tag_id:
                return tag
        raise MalformedResponse(f"tag {tag_name or tag_id} not on dataset {dataset_id} after assigning it",
                                service=w.SERVICE)

    async def remove_tag(self, dataset_id: int, tag_id: int) -> None:
        """Remove a tag from our dataset."""
        path = w.ROUTE_DATASET_TAG.format(id=_ds(dataset_id), tag_id=str(int(tag_id)))
        await self._send("DELETE", path, None, lambda _d: None, idempotent=False)

    async def check_access(self, dataset_id: int, require_write: bool = False) -> Access:
        """Whether we may read (or, with `require_write`, write) a dataset, and through which tags."""
        body = {w.F_DATASET_ID: int(dataset_id), w.F_REQUIRE_WRITE: require_write}
        return await self._send("POST", w.ROUTE_ACCESS_CHECK, body, w.parse_access, idempotent=True)

    # -- rows

    def rows(self, dataset_id: int, start: datetime | None = None, end: datetime | None = None, *,
             descending: bool = False, page_size: int = 1000) -> AsyncGenerator[AtlasRow, None]:
        """Every row with `start <= timestamp <= end`, in time order, fetched page by page."""
        params = {w.Q_DATASET: _ds(dataset_id), w.Q_ORDERING: w.ORDER_DESC if descending else w.ORDER_ASC}
        if start is not None:
            params[w.Q_START] = w.wire_time(start)
        if end is not None:
            params[w.Q_END] = w.wire_time(end)
        return self._all(w.ROUTE_ROWS, params, w.parse_row, min(page_size, w.MAX_PAGE))

    async def newest_timestamp(self, dataset_id: int) -> datetime | None:
        """The newest stored timestamp of a dataset (None when it has no rows)."""
        params = {w.Q_DATASET: _ds(dataset_id), w.Q_ORDERING: w.ORDER_DESC, w.Q_LIMIT: "1"}
        page = await self._get(w.ROUTE_ROWS, lambda d: w.parse_page(d, w.parse_row), params)
        return page.items[0].timestamp if page.items else None

    async def insert_row(self, dataset_id: int, row: AtlasRow) -> None:
        """Insert one row (owner only). Never retried: see the module docstring."""
        body = {w.F_DATASET: int(dataset_id), **w.wire_row(row)}
        await self._send("POST", w.ROUTE_ROWS, body, lambda _d: None, idempotent=False)

    async def bulk_insert(self, dataset_id: int, rows: Iterable[AtlasRow],
                          chunk_size: int = w.MAX_BULK_ROWS) -> int:
        """Insert rows in time order, at most `chunk_size` (≤ 10,000) per request; returns rows stored.

        Never retried. A chunk whose outcome is unknown raises `BulkInsertUnknown` (earlier chunks are
        confirmed). Any other error after the first chunk also leaves the earlier chunks stored: resolve
        with `newest_timestamp` before sending again."""
        if not 0 < chunk_size <= w.MAX_BULK_ROWS:
            raise ValueError(f"chunk_size must be 1..{w.MAX_BULK_ROWS}")
        ordered = sorted(rows, key=lambda r: r.timestamp)
        wire = [w.wire_row(r) for r in ordered]  # encode everything first: a bad row sends nothing
        stored = 0
        for i in range(0, len(wire), chunk_size):
            chunk = wire[i : i + chunk_size]
            body = {w.F_DATASET: int(dataset_id), w.F_ROWS: chunk}
            try:
                parse = functools.partial(w.parse_inserted, sent=len(chunk))
                stored += await self._send("POST", w.ROUTE_BULK_INSERT, body, parse, idempotent=False)
            except OutcomeUnknown as err:
                raise BulkInsertUnknown(
                    f"bulk_insert outcome unknown after {stored} confirmed rows: {err.message}",
                    confirmed=stored, pending=len(chunk), pending_from=ordered[i].timestamp,
                    pending_to=ordered[i + len(chunk) - 1].timestamp, service=err.service,
                    status=err.status,
                ) from None
        log.debug("atlas.bulk_insert", dataset=dataset_id, rows=stored)
        return stored

    async def bulk_insert_encoded(self, dataset_id: int, rows: Sequence[tuple[datetime, str]]) -> int:
        """`bulk_insert` for rows whose values are already JSON text (see `atlas_wire.values_json`), at most
        10,000, in one request (atomic); the body is built in a thread. Never retried: an ambiguous answer
        raises `BulkInsertUnknown`."""
        if not 0 < len(rows) <= w.MAX_BULK_ROWS:
            raise ValueError(f"1..{w.MAX_BULK_ROWS} rows per request, got {len(rows)}")
        body = RawJson(await asyncio.to_thread(w.encode_bulk, dataset_id, rows))
        parse = functools.partial(w.parse_inserted, sent=len(rows))
        try:
            return await self._send("POST", w.ROUTE_BULK_INSERT, body, parse, idempotent=False)
        except OutcomeUnknown as err:
            times = sorted(t for t, _v in rows)
            raise BulkInsertUnknown(f"bulk_insert outcome unknown: {err.message}", confirmed=0, pending=len(rows),
                                    pending_from=times[0], pending_to=times[-1], service=err.service,
                                    status=err.status) from None

    # -- downloads and streams (see `atlas_streams`)

    def download_chunks(self, dataset_id: int, output: Output = "json", start: datetime | None = None,
                        end: datetime | None = None) -> AsyncGenerator[bytes, None]:
        """The raw `bulk_download` body as it arrives (for saving to a file)."""
        return atlas_streams.download_chunks(self.http, dataset_id, output, start, end)

    def bulk_download(self, dataset_id: int, output: Output = "json", start: datetime | None = None,
                      end: datetime | None = None) -> AsyncGenerator[AtlasRow, None]:
        """Every row (ascending) of `bulk_download` in JSON or CSV, parsed while the body streams in."""
        return atlas_streams.bulk_download(self.http, dataset_id, output, start, end)

    def live(self, dataset_id: int, limit: int = 1000) -> AsyncGenerator[AtlasRow, None]:
        """The newest `limit` rows, ascending, from the NDJSON `live` endpoint."""
        return atlas_streams.live(self.http, dataset_id, limit)

    def stream(self, dataset_id: int, poll_interval: float = 2.0,
               read_timeout: float | None = None) -> AsyncGenerator[StreamEvent, None]:
        """Server-Sent Events: `connected`, `data` (with `.row`), `heartbeat`, `error`. Runs until the
        server ends it or the caller closes it; a drop mid-stream raises `TemporaryError` (reconnect and
        fill the gap from `rows(start=last seen)`)."""
        return atlas_streams.stream(self.http, dataset_id, poll_interval, read_timeout)
