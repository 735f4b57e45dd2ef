"""SQLite state store under `state_dir`: versioned migrations, a key-value table, append-only logs, cursors.

Durability: WAL mode with `synchronous=FULL`, and every write runs in an explicit transaction
(`BEGIN IMMEDIATE` ... `COMMIT`). A write that returned is on disk — a process killed with SIGKILL right after
loses nothing — and a transaction that did not commit leaves no trace (SQLite rolls the WAL back on open).

Calls are synchronous and short (sub-millisecond on local disk); the daemon calls them from the event loop
directly rather than paying a thread hop per row. Later issues add tables by appending to `MIGRATIONS`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.errors import StateError

DB_NAME = "tradebot.sqlite3"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sql: str


# Append only. Never edit a migration that has shipped; add a new one.
MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "key-value, append-only logs, cursors",
        """
        CREATE TABLE kv (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE log (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            stream TEXT NOT NULL,
            ts TEXT NOT NULL,
            payload TEXT NOT NULL
        );
        CREATE INDEX log_stream_seq ON log (stream, seq);
        CREATE TABLE cursors (
            name TEXT PRIMARY KEY,
            position INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        );
        """,
    ),
]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(value: Any) -> str:
    """JSON for the store: Decimals as strings (exact), datetimes as ISO text."""
    return json.dumps(value, default=_json_default, separators=(",", ":"), sort_keys=True)


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class LogEntry:
    seq: int
    stream: str
    ts: str
    payload: dict[str, Any]


class Store:
    """One SQLite database file; thread-confined to its creator except through `transaction`."""

    def __init__(self, path: Path | str, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._migrate(migrations)

    @classmethod
    def open(cls, state_dir: Path | str, name: str = DB_NAME) -> Store:
        """Open (creating if needed) the store in `state_dir`."""
        return cls(Path(state_dir) / name)

    # -- schema ---------------------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        row = self._conn.execute("PRAGMA user_version").fetchone()
        return int(row[0])

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        versions = [m.version for m in migrations]
        if versions != sorted(versions) or len(set(versions)) != len(versions):
            raise StateError("migrations must have unique, increasing versions")
        current = self.schema_version
        known = versions[-1] if versions else 0
        if current > known:
            raise StateError(
                f"state store {self.path} has schema version {current}, newer than this tradebot ({known}); "
                "refusing to touch it"
            )
        for m in migrations:
            if m.version <= current:
                continue
            # executescript would COMMIT on its own; run statements one by one inside our transaction.
            with self.transaction() as conn:
                for stmt in _split_sql(m.sql):
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {int(m.version)}")

    # -- transactions ---------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on any exception. Nested calls join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._conn
            except BaseException:
                self._depth = 0
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._depth = 0
                self._conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run a read-only query."""
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    # -- key-value ------------------------------------------------------------------------------------

    def kv_get(self, key: str, default: Any = None) -> Any:
        rows = self.query("SELECT value FROM kv WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def kv_set(self, key: str, value: Any) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (key, dumps(value), _now()),
            )

    def kv_delete(self, key: str) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM kv WHERE key = ?", (key,))

    # -- append-only logs -----------------------------------------------------------------------------

    def append(self, stream: str, payload: dict[str, Any]) -> int:
        """Append one entry to `stream`; returns its sequence number (global, increasing)."""
        return self.append_many(stream, [payload])[-1]

    def append_many(self, stream: str, payloads: Sequence[dict[str, Any]]) -> list[int]:
        """Append several entries atomically."""
        ts = _now()
        seqs: list[int] = []
        with self.transaction() as c:
            for p in payloads:
                cur = c.execute("INSERT INTO log (stream, ts, payload) VALUES (?, ?, ?)", (stream, ts, dumps(p)))
                seqs.append(int(cur.lastrowid or 0))
        return seqs

    def read(self, stream: str, after: int = 0, limit: int = 1000) -> list[LogEntry]:
        """Entries of `stream` with seq > `after`, oldest first."""
        rows = self.query(
            "SELECT seq, stream, ts, payload FROM log WHERE stream = ? AND seq > ? ORDER BY seq LIMIT ?",
            (stream, after, limit),
        )
        return [LogEntry(r["seq"], r["stream"], r["ts"], json.loads(r["payload"])) for r in rows]

    def count(self, stream: str, after: int = 0) -> int:
        rows = self.query("SELECT COUNT(*) AS n FROM log WHERE stream = ? AND seq > ?", (stream, after))
        return int(rows[0]["n"])

    # -- cursors --------------------------------------------------------------------------------------

    def cursor_get(self, name: str) -> int:
        rows = self.query("SELECT position FROM cursors WHERE name = ?", (name,))
        return int(rows[0]["position"]) if rows else 0

    def cursor_set(self, name: str, position: int) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO cursors (name, position, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
                (name, position, _now()),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (our migrations contain no `;` inside literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]
