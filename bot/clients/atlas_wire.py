"""Atlas wire format: routes, field names, the objects the client returns, and pure parsers/encoders.

Everything here is synchronous and side-effect free; `bot.clients.atlas` does the I/O. Every parser
raises only `MalformedResponse` (service `atlas`) on input it cannot understand. The contract's
*(assumed)* parts are marked in the block below (`shared/contracts/atlas.md`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from bot.clock import parse_iso
from bot.errors import MalformedResponse

# ------------------------------------------------------------------------------ wire format (contract)
SERVICE = "atlas"
AUTH_HEADER = "X-API-Key"  # (assumed) on every request except GET /health
ROUTE_HEALTH = "/health"
ROUTE_DATASETS = "/api/datasets/"  # paths keep the seed's trailing slash (assumed)
ROUTE_DATASET = "/api/datasets/{id}/"
ROUTE_DATASET_SEARCH = "/api/datasets/search/"
ROUTE_DATASET_METADATA = "/api/datasets/{id}/metadata/"
ROUTE_DATASET_TAGS = "/api/datasets/{id}/tags/"
ROUTE_DATASET_TAG = "/api/datasets/{id}/tags/{tag_id}/"
ROUTE_TAGS = "/api/tags/"
ROUTE_TAG_ACQUIRE = "/api/tags/acquire/"
ROUTE_ACCESS_CHECK = "/api/access/check/"
ROUTE_COLUMNS = "/api/columns/"
ROUTE_ROWS = "/api/rows/"
ROUTE_BULK_INSERT = "/api/rows/bulk_insert/"
ROUTE_BULK_DOWNLOAD = "/api/rows/bulk_download/"
ROUTE_LIVE = "/api/rows/live/"
ROUTE_STREAM = "/api/rows/stream/"
Q_SEARCH, Q_LIMIT, Q_OFFSET, Q_DATASET = "search", "limit", "offset", "dataset"
Q_START, Q_END, Q_ORDERING, Q_OUTPUT, Q_POLL = "start", "end", "ordering", "output", "poll_interval"
ORDER_ASC, ORDER_DESC = "timestamp", "-timestamp"
F_COUNT, F_NEXT, F_RESULTS = "count", "next", "results"
F_ID, F_NAME, F_DESCRIPTION, F_METADATA, F_COLUMNS = "id", "name", "description", "metadata", "columns"
F_CREATED, F_UPDATED, F_DTYPE, F_DATASET = "created_at", "updated_at", "dtype", "dataset"
F_IS_PUBLIC, F_TAG_NAME, F_TAG_ID, F_SECRET = "is_public", "tag_name", "tag_id", "secret"
F_DATASET_ID, F_REQUIRE_WRITE = "dataset_id", "require_write"
F_HAS_ACCESS, F_IS_OWNER, F_MATCHING_TAGS = "has_access", "is_owner", "matching_tags"
F_TIMESTAMP, F_VALUES, F_ROWS, F_INSERTED = "timestamp", "values", "rows", "inserted"
F_ERROR, F_DETAILS = "error", "details"
MAX_BULK_ROWS = 10_000  # (assumed) per bulk_insert request; more is HTTP 400
MAX_PAGE = 10_000  # rows asked per GET /api/rows/ page; a server may clamp it lower (we follow `count`)
DEFAULT_LIST_PAGE = 250
SSE_CONNECTED, SSE_DATA, SSE_HEARTBEAT, SSE_ERROR = "connected", "data", "heartbeat", "error"
COLUMN_DTYPES = ("float", "int")
# ------------------------------------------------------------------------------------------------------

T = TypeVar("T")
_PARSE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, ArithmeticError, OverflowError)


def malformed(what: str) -> MalformedResponse:
    """A `MalformedResponse` of this service."""
    return MalformedResponse(what, service=SERVICE)


# ---------------------------------------------------------------------------------------------- objects


@dataclass(frozen=True, slots=True)
class Column:
    """A declared column of a dataset (schema documentation; rows may carry any keys)."""

    name: str
    dtype: str
    id: int | None = None
    dataset: int | None = None


@dataclass(frozen=True, slots=True)
class Dataset:
    """An Atlas dataset as the server describes it."""

    id: int
    name: str
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    columns: tuple[Column, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Tag:
    """An access tag."""

    id: int
    name: str
    description: str = ""
    is_public: bool = False


@dataclass(frozen=True, slots=True)
class Access:
    """The answer of the access check for one dataset."""

    has_access: bool
    is_owner: bool
    matching_tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AtlasRow:
    """One timeseries row: an aware UTC time and its values (JSON-compatible; `Decimal` allowed on insert)."""

    timestamp: datetime
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list endpoint: items, the total `count` (None if not sent) and whether more follow."""

    items: list[T]
    count: int | None
    has_next: bool


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One Server-Sent Event: its type, decoded `data` (JSON, or the raw text) and, for `data`, the row."""

    event: str
    data: Any
    row: AtlasRow | None = None


# ---------------------------------------------------------------------------------------------- parsers


def _str(obj: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise malformed(f"{key}: expected a string")
    return value


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise malformed(f"{key}: expected an integer")
    return value


def _opt_int(obj: Mapping[str, Any], key: str) -> int | None:
    return None if obj.get(key) is None else _int(obj, key)


def parse_time(value: Any, key: str) -> datetime:
    """An ISO 8601 wire time as aware UTC."""
    if not isinstance(value, str):
        raise malformed(f"{key}: expected an ISO 8601 string")
    try:
        return parse_iso(value)
    except _PARSE_ERRORS:
        raise malformed(f"{key}: not an ISO 8601 time: {value[:40]!r}") from None


def _opt_time(obj: Mapping[str, Any], key: str) -> datetime | None:
    return None if obj.get(key) is None else parse_time(obj[key], key)


def as_object(value: Any, what: str) -> dict[str, Any]:
    """`value` if it is a JSON object, else `MalformedResponse` naming `what`."""
    if not isinstance(value, dict):
        raise malformed(f"{what} is not an object")
    return value


def exact_values(value: Any) -> Any:
    """Row values as read back: non-integral numbers as `Decimal` (via `repr` for a JSON float, which is
    the exact text the server sent), so every read path (rows, downloads, live, stream) agrees whether
    its JSON was decoded with `parse_float=Decimal` or not."""
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return value  # not a number Atlas can have stored; left for the caller to judge
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: exact_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [exact_values(v) for v in value]
    return value


def parse_column(obj: Any) -> Column:
    """A column object."""
    o = as_object(obj, "column")
    return Column(name=_str(o, F_NAME), dtype=_str(o, F_DTYPE), id=_opt_int(o, F_ID),
                  dataset=_opt_int(o, F_DATASET))


def parse_dataset(obj: Any) -> Dataset:
    """A dataset object."""
    o = as_object(obj, "dataset")
    metadata = o.get(F_METADATA) or {}
    columns = o.get(F_COLUMNS) or []
    if not isinstance(metadata, dict) or not isinstance(columns, list):
        raise malformed("dataset: metadata must be an object and columns a list")
    return Dataset(
        id=_int(o, F_ID), name=_str(o, F_NAME), description=_str(o, F_DESCRIPTION, ""),
        metadata=dict(metadata), columns=tuple(parse_column(c) for c in columns),
        created_at=_opt_time(o, F_CREATED), updated_at=_opt_time(o, F_UPDATED),
    )


def mutation_object(data: Any, kind: str) -> dict[str, Any] | None:
    """The object a tag/column mutation answered with: bare, or wrapped under `kind` (`{"message", "tag":
    {...}}`); None when the answer carries only a message (or anything else): the caller reads the state
    back instead of trusting or resending."""
    if isinstance(data, dict):
        inner = data.get(kind)
        if isinstance(inner, dict):
            return inner
        if F_NAME in data:
            return data
    return None


def parse_tag(obj: Any) -> Tag:
    """A tag object."""
    o = as_object(obj, "tag")
    public = o.get(F_IS_PUBLIC, False)
    if not isinstance(public, bool):
        raise malformed(f"{F_IS_PUBLIC}: expected a boolean")
    return Tag(id=_int(o, F_ID), name=_str(o, F_NAME), description=_str(o, F_DESCRIPTION, ""),
               is_public=public)


def parse_access(obj: Any) -> Access:
    """The access-check answer."""
    o = as_object(obj, "access check")
    has, owner, tags = o.get(F_HAS_ACCESS), o.get(F_IS_OWNER, False), o.get(F_MATCHING_TAGS) or []
    if not isinstance(has, bool) or not isinstance(owner, bool):
        raise malformed("access check: has_access/is_owner must be booleans")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise malformed("access check: matching_tags must be a list of strings")
    return Access(has_access=has, is_owner=owner, matching_tags=tuple(tags))


def parse_row(obj: Any) -> AtlasRow:
    """A `/api/rows/` row: `{"timestamp", "values": {...}}`."""
    o = as_object(obj, "row")
    values = o.get(F_VALUES, {})
    if not isinstance(values, dict):
        raise malformed("row: values must be an object")
    return AtlasRow(parse_time(o.get(F_TIMESTAMP), F_TIMESTAMP), exact_values(values))


def parse_flat_row(obj: Any) -> AtlasRow:
    """A live/stream row: the values flattened beside `timestamp`."""
    o = as_object(obj, "row")
    values = {k: v for k, v in o.items() if k != F_TIMESTAMP}
    return AtlasRow(parse_time(o.get(F_TIMESTAMP), F_TIMESTAMP), exact_values(values))


def parse_page(data: Any, item: Callable[[Any], T]) -> Page[T]:
    """The seed's paginated shape `{"count", "next", "results"}`; a bare JSON array is one whole page."""
    if isinstance(data, list):
        return Page([item(x) for x in data], len(data), False)
    o = as_object(data, "page")
    results = o.get(F_RESULTS)
    if not isinstance(results, list):
        raise malformed(f"page has no {F_RESULTS!r} list")
    count = _opt_int(o, F_COUNT)
    nxt = o.get(F_NEXT)
    if nxt is not None and not isinstance(nxt, str):
        raise malformed(f"{F_NEXT}: expected a string or null")
    return Page([item(x) for x in results], count, bool(nxt))


def parse_list(data: Any, item: Callable[[Any], T]) -> list[T]:
    """A list answer (plain array, or a paginated page's results)."""
    return parse_page(data, item).items


def parse_inserted(data: Any, sent: int) -> int:
    """Rows stored by an insert that answered 2xx. The insert is atomic, so a 2xx body that does not say
    how many (or is odd) still means all `sent` rows were stored."""
    if isinstance(data, dict):
        n = data.get(F_INSERTED)
        if isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= sent:
            return n
    return sent


def error_message(data: Any, status: int) -> str:
    """`error: details` from the seed's error body, else `HTTP <status>`."""
    if isinstance(data, dict):
        err, details = data.get(F_ERROR), data.get(F_DETAILS)
        parts = [str(p)[:150] for p in (err, details) if isinstance(p, str) and p]
        if parts:
            return ": ".join(parts)
    return f"HTTP {status}"


# ---------------------------------------------------------------------------------------------- encoders


def wire_time(t: datetime) -> str:
    """ISO 8601 UTC with `Z`, microseconds when there are any. Naive datetimes are refused (ambiguous)."""
    if t.tzinfo is None:
        raise ValueError("timestamps sent to Atlas must be timezone-aware")
    return t.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("non-finite Decimal cannot be recorded")
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"cannot record a {type(value).__name__}")


_VALUES_ENCODER = json.JSONEncoder(default=_json_default, separators=(",", ":"), allow_nan=False)


def values_json(values: Mapping[str, Any]) -> str:
    """A row's values as the JSON text `bulk_insert` sends (Decimals as numbers, like `wire_value`). A
    non-finite number (NaN, infinity: JSON has none) is recorded as null, never lost with its row."""
    data = values if isinstance(values, dict) else dict(values)
    try:
        return _VALUES_ENCODER.encode(data)
    except ValueError:
        return _VALUES_ENCODER.encode(_finite(data))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Decimal) and not value.is_finite():
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def encode_bulk(dataset_id: int, rows: Sequence[tuple[datetime, str]]) -> bytes:
    """A whole `bulk_insert` body from rows whose values are already JSON text (`values_json`)."""
    parts = [f'{{"{F_TIMESTAMP}":"{wire_time(t)}","{F_VALUES}":{v}}}' for t, v in rows]
    return f'{{"{F_DATASET}":{int(dataset_id)},"{F_ROWS}":[{",".join(parts)}]}}'.encode()


def wire_value(value: Any) -> Any:
    """A value as JSON. `Decimal` goes out as a JSON number (int when integral): Atlas columns are `float`
    or `int` and the server stores doubles, so a string would change the column's type for nothing."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("non-finite Decimal cannot be recorded")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {str(k): wire_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [wire_value(v) for v in value]
    return value


def wire_row(row: AtlasRow) -> dict[str, Any]:
    """A row for `bulk_insert`/insert: `{"timestamp", "values"}`."""
    return {F_TIMESTAMP: wire_time(row.timestamp), F_VALUES: wire_value(row.values)}


def query_value(value: Any) -> str:
    """A metadata-search filter value as a query string: strings as they are, others in JSON spelling."""
    return value if isinstance(value, str) else json.dumps(wire_value(value))
