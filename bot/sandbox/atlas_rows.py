"""The lower layer of the Atlas simulator's store: errors, transactions, row wire format and the row table.

Timestamps are kept as integer microseconds since the epoch so ordering and range filters are exact and
microseconds survive the round trip; values are kept as the JSON text the client sent.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.clock import parse_iso

MAX_BULK_ROWS = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AtlasError(Exception):
    """A request Atlas refuses; carries the HTTP status and the seed's `{"error", "details"}` body."""

    def __init__(self, status: int, error: str, details: str = "") -> None:
        self.status = status
        self.error = error
        self.details = details
        super().__init__(f"{status} {error}: {details}")


class transaction:  # lower-case: reads like a function at the call site, `with transaction(db):`
    """`BEGIN` ... `COMMIT`, or `ROLLBACK` on any exception, on an autocommit-mode connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")


@dataclass(frozen=True)
class StoredRow:
    """One timeseries row as stored: insertion id, UTC time and its JSON values."""

    id: int
    ts: datetime
    values: dict[str, Any]


def to_micros(t: datetime) -> int:
    """Microseconds since the epoch, exact (no float rounding)."""
    delta = t.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    """Inverse of `to_micros`."""
    return _EPOCH + timedelta(microseconds=us)


def format_ts(t: datetime) -> str:
    """UTC ISO 8601 with `Z`; microseconds only when there are any."""
    # isoformat() already drops a zero microsecond part, and is several times faster than strftime.
    return t.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def parse_row(raw: Any, index: int | None = None, columns: dict[str, str] | None = None) -> tuple[int, str]:
    """Validate one `{"timestamp", "values"}` row into `(micros, values_json)` or raise a 400. A value of a
    declared column (`float`/`int`) must be a number or null."""
    where = "row" if index is None else f"row {index}"
    if not isinstance(raw, dict):
        raise AtlasError(400, "invalid row", f"{where} is not an object")
    ts = raw.get("timestamp")
    if not isinstance(ts, str):
        raise AtlasError(400, "invalid row", f"{where}: timestamp must be an ISO 8601 string")
    try:
        when = parse_iso(ts)
    except ValueError:
        raise AtlasError(400, "invalid row", f"{where}: unparseable timestamp {ts[:40]!r}") from None
    values = raw.get("values", {})
    if not isinstance(values, dict):
        raise AtlasError(400, "invalid row", f"{where}: values must be an object")
    for name, dtype in (columns or {}).items():
        v = values.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise AtlasError(400, "invalid row", f"{where}: {name} must be a {dtype} (column {name!r}), got {v!r:.40}")
    return to_micros(when), json.dumps(values, separators=(",", ":"))

class RowStore:
    """Rows of every dataset, on the connection the rest of the Atlas store uses."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db


    def insert_rows(self, dataset_id: int, rows: list[tuple[int, str]]) -> int:
        """Store already-validated rows in one transaction; no de-duplication."""
        with transaction(self._db):
            self._db.executemany(
                "INSERT INTO rows (dataset_id, ts, vals) VALUES (?, ?, ?)",
                [(dataset_id, ts, vals) for ts, vals in rows],
            )
        return len(rows)

    def count_rows(self, dataset_id: int, start: datetime | None, end: datetime | None) -> int:
        """Rows of a dataset with `start <= ts <= end`."""
        where, params = _range(dataset_id, start, end)
        return int(self._db.execute(f"SELECT COUNT(*) FROM rows WHERE {where}", params).fetchone()[0])

    def query_rows(
        self, dataset_id: int, start: datetime | None, end: datetime | None, *,
        descending: bool, limit: int, offset: int,
    ) -> list[StoredRow]:
        """One page of rows in time order (ties broken by insertion order)."""
        where, params = _range(dataset_id, start, end)
        direction = "DESC" if descending else "ASC"
        rows = self._db.execute(
            f"SELECT id, ts, vals FROM rows WHERE {where} ORDER BY ts {direction}, id {direction}"
            " LIMIT ? OFFSET ?",
            (*params, limit, offset),
        ).fetchall()
        return [_stored(r) for r in rows]

    def iter_rows(
        self, dataset_id: int, start: datetime | None, end: datetime | None, batch: int = 2000
    ) -> Iterator[list[StoredRow]]:
        """All rows in ascending time order, in batches, by keyset so no cursor is held between batches."""
        where, params = _range(dataset_id, start, end)
        last: tuple[int, int] | None = None
        while True:
            extra = ""
            extra_params: tuple[int, ...] = ()
            if last is not None:
                # A row-value comparison lets SQLite seek the (dataset_id, ts, id) index.
                extra, extra_params = " AND (ts, id) > (?, ?)", last
            rows = self._db.execute(
                f"SELECT id, ts, vals FROM rows WHERE {where}{extra} ORDER BY ts, id LIMIT ?",
                (*params, *extra_params, batch),
            ).fetchall()
            if not rows:
                return
            last = (rows[-1]["ts"], rows[-1]["id"])
            yield [_stored(r) for r in rows]

    def value_keys(self, dataset_id: int) -> list[str]:
        """Every key used in any row's values, sorted."""
        rows = self._db.execute(
            "SELECT DISTINCT j.key FROM rows r, json_each(r.vals) j WHERE r.dataset_id = ? ORDER BY j.key",
            (dataset_id,),
        ).fetchall()
        return [r[0] for r in rows]

    def rows_after_id(self, dataset_id: int, after_id: int) -> list[StoredRow]:
        """Rows inserted after row id `after_id`, in insertion order (what a live stream pushes)."""
        rows = self._db.execute(
            "SELECT id, ts, vals FROM rows WHERE dataset_id = ? AND id > ? ORDER BY id",
            (dataset_id, after_id),
        ).fetchall()
        return [_stored(r) for r in rows]

    def max_row_id(self) -> int:
        """The newest row id in the store (0 when empty)."""
        return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM rows").fetchone()[0])



def _range(dataset_id: int, start: datetime | None, end: datetime | None) -> tuple[str, tuple[int, ...]]:
    where = "dataset_id = ?"
    params: list[int] = [dataset_id]
    if start is not None:
        where += " AND ts >= ?"
        params.append(to_micros(start))
    if end is not None:
        where += " AND ts <= ?"
        params.append(to_micros(end))
    return where, tuple(params)


def _stored(r: sqlite3.Row) -> StoredRow:
    return StoredRow(r["id"], from_micros(r["ts"]), json.loads(r["vals"]))
