"""SQLite state store under `state_dir`: versioned migrations, a key-value table, append-only entries, cursors.

Durability: WAL mode, and every write runs in an explicit transaction (`BEGIN IMMEDIATE` ... `COMMIT`). A
transaction that did not commit leaves no trace (SQLite rolls the WAL back on open), and one that committed
survives the process being killed (SIGKILL) right after, whatever its durability. Durability against power loss
or a kernel crash is chosen per transaction: `transaction()` is *durable* by default (its commit is synced to
the disk, `synchronous=FULL`: a write that returned is on the disk), and the hot paths whose last moments can
be lost and redone (a feed's candles with their cursor, the recorder's queued rows, hand-offs already acted on)
ask for `durable=False` (`synchronous=NORMAL`: no sync at commit; the WAL is synced at the next durable commit or
checkpoint, so a power loss can roll back only the newest of these commits, in order and whole). A durable
commit syncs every commit before it too, so what precedes a request to the outside world (an order's intent, a
cancel, a withdrawal, the recorder's in-flight mark) is on the disk before the request is sent, with everything
it depends on. A fsync costs from a fraction of a millisecond to several on a busy disk, on the calling thread.
Transactions nest: an inner `transaction()` is a `SAVEPOINT`, so an inner failure that the outer code catches
undoes only the inner writes.

Values (kv values, entry payloads) are JSON with two tagged types so they read back as they were written:
`Decimal` as `{"$dec": "1.10"}` (exponent kept) and aware `datetime` as `{"$dt": "<iso>"}`. A user key that
starts with `$` is stored with one more `$` in front, so it never looks like a tag. Rows written before the
tags existed (plain JSON, Decimals as strings) still read back, as they were stored.

Timestamps (`updated_at`, `ts`) come from the injected clock, as UTC ISO text with microseconds.

Size over months: `prune_entries` and `prune_kv` delete what is no longer needed, and `maintain()` hands the
freed pages back to the file system (`PRAGMA incremental_vacuum`, on files created with
`auto_vacuum=INCREMENTAL`) and truncates the WAL (`wal_checkpoint(TRUNCATE)`). A file created before
auto-vacuum was enabled keeps `auto_vacuum=NONE` (SQLite can only change it with a full `VACUUM`, which
rewrites the file under an exclusive lock, so the store never does it on its own): there freed pages are
reused by later writes, the file stays at its high-water mark, and `maintain()` still bounds the WAL.

Calls are synchronous and short (sub-millisecond on local disk); the daemon calls them from the event loop
directly rather than paying a thread hop per row. Later issues add tables by appending to `MIGRATIONS`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.clock import Clock, WallClock, iso_fixed
from bot.errors import StateError

DB_NAME = "tradebot.sqlite3"
# The WAL file is truncated to at most this many bytes after a checkpoint.
WAL_SIZE_LIMIT = 64 * 1024 * 1024


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
    Migration(
        2,
        "rename the append-only log to entries and its stream column to topic",
        """
        ALTER TABLE log RENAME TO entries;
        ALTER TABLE entries RENAME COLUMN stream TO topic;
        DROP INDEX log_stream_seq;
        CREATE INDEX entries_topic_seq ON entries (topic, seq);
        """,
    ),
    Migration(
        3,
        "hand-off keys: an actionable evaluation is handed off once per (instance, candle)",
        """
        CREATE TABLE handoffs (
            instance TEXT NOT NULL,
            candle_time TEXT NOT NULL,
            created_at TEXT NOT NULL,
            payload TEXT NOT NULL,
            taken_at TEXT,
            PRIMARY KEY (instance, candle_time)
        );
        CREATE INDEX handoffs_pending ON handoffs (taken_at, created_at);
        """,
    ),
    Migration(
        4,
        "recorder: the outbox for Atlas, per-dataset heads, quarantine, and the datasets found or created",
        """
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            dataset TEXT NOT NULL,
            ts TEXT NOT NULL,
            row_values TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX outbox_dataset_ts ON outbox (dataset, ts);
        CREATE INDEX outbox_dataset_seq ON outbox (dataset, seq);
        CREATE TABLE outbox_heads (
            dataset TEXT PRIMARY KEY,
            last_ts TEXT NOT NULL
        );
        CREATE TABLE outbox_quarantine (
            seq INTEGER PRIMARY KEY,
            dataset TEXT NOT NULL,
            ts TEXT NOT NULL,
            row_values TEXT NOT NULL,
            reason TEXT NOT NULL,
            quarantined_at TEXT NOT NULL
        );
        CREATE TABLE recorder_datasets (
            dataset TEXT PRIMARY KEY,
            atlas_id INTEGER,
            name TEXT NOT NULL,
            generation INTEGER NOT NULL DEFAULT 1,
            state TEXT NOT NULL DEFAULT 'ok',
            sent_rows INTEGER NOT NULL DEFAULT 0,
            note TEXT NOT NULL DEFAULT '',
            updated_at TEXT NOT NULL
        );
        """,
    ),
    Migration(
        5,
        "execution: the order journal (intents before requests, every state change) and fills by fill id",
        """
        CREATE TABLE orders (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            instance TEXT NOT NULL,
            market TEXT NOT NULL,
            side TEXT NOT NULL,
            price TEXT NOT NULL,
            amount TEXT NOT NULL,
            purpose TEXT NOT NULL,
            candle_time TEXT,
            state TEXT NOT NULL,
            exchange_id TEXT,
            filled TEXT NOT NULL DEFAULT '0',
            fee TEXT NOT NULL DEFAULT '0',
            note TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX orders_once_per_candle ON orders (instance, candle_time, purpose)
            WHERE candle_time IS NOT NULL;
        CREATE INDEX orders_state ON orders (state);
        CREATE UNIQUE INDEX orders_exchange_id ON orders (exchange_id) WHERE exchange_id IS NOT NULL;
        CREATE TABLE fills (
            fill_id TEXT PRIMARY KEY,
            order_id INTEGER NOT NULL REFERENCES orders(id),
            instance TEXT NOT NULL,
            market TEXT NOT NULL,
            side TEXT NOT NULL,
            price TEXT NOT NULL,
            amount TEXT NOT NULL,
            fee TEXT NOT NULL,
            fee_coin TEXT NOT NULL,
            maker INTEGER NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX fills_instance ON fills (instance, at);
        """,
    ),
    Migration(
        6,
        "paper trading: the paper account's balances, orders, fills and market observations",
        """
        CREATE TABLE paper_balances (
            coin TEXT PRIMARY KEY,
            available TEXT NOT NULL,
            frozen TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE paper_orders (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            market TEXT NOT NULL,
            side TEXT NOT NULL,
            price TEXT NOT NULL,
            amount TEXT NOT NULL,
            filled TEXT NOT NULL DEFAULT '0',
            frozen TEXT NOT NULL,
            fee_percent TEXT NOT NULL,
            state TEXT NOT NULL,
            after_look INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            closed_at TEXT
        );
        CREATE INDEX paper_orders_state ON paper_orders (state, market);
        CREATE TABLE paper_fills (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            order_id INTEGER NOT NULL REFERENCES paper_orders(id),
            market TEXT NOT NULL,
            side TEXT NOT NULL,
            price TEXT NOT NULL,
            amount TEXT NOT NULL,
            fee TEXT NOT NULL,
            fee_coin TEXT NOT NULL,
            maker INTEGER NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX paper_fills_order ON paper_fills (order_id, created_at);
        CREATE TABLE paper_looks (
            market TEXT PRIMARY KEY,
            look INTEGER NOT NULL,
            at TEXT NOT NULL,
            last TEXT NOT NULL,
            bid TEXT NOT NULL,
            ask TEXT NOT NULL,
            low_24h TEXT NOT NULL,
            high_24h TEXT NOT NULL,
            volume_24h TEXT NOT NULL
        );
        """,
    ),
    Migration(
        7,
        "journal per broker: paper and live orders and fills of one state_dir never mix",
        """
        ALTER TABLE orders ADD COLUMN broker TEXT NOT NULL DEFAULT 'paper';
        ALTER TABLE fills ADD COLUMN broker TEXT NOT NULL DEFAULT 'paper';
        DROP INDEX orders_exchange_id;
        CREATE UNIQUE INDEX orders_exchange_id ON orders (broker, exchange_id) WHERE exchange_id IS NOT NULL;
        DROP INDEX orders_once_per_candle;
        CREATE UNIQUE INDEX orders_once_per_candle ON orders (broker, instance, candle_time, purpose)
            WHERE candle_time IS NOT NULL;
        CREATE INDEX orders_broker_state ON orders (broker, state);
        CREATE INDEX fills_broker_instance ON fills (broker, instance, at);
        """,
    ),
    Migration(
        8,
        "wallet: balances with what explains them, transfers seen, fills accounted, the sweep journal",
        """
        CREATE TABLE wallet_balances (
            mode TEXT NOT NULL,
            coin TEXT NOT NULL,
            available TEXT NOT NULL,
            frozen TEXT NOT NULL,
            pending TEXT NOT NULL,
            expected TEXT NOT NULL,
            residual TEXT NOT NULL DEFAULT '0',
            split_off TEXT NOT NULL DEFAULT '0',
            updated_at TEXT NOT NULL,
            PRIMARY KEY (mode, coin)
        );
        CREATE TABLE wallet_transfers (
            mode TEXT NOT NULL,
            kind TEXT NOT NULL,
            ext_id INTEGER NOT NULL,
            coin TEXT NOT NULL,
            address TEXT NOT NULL,
            amount TEXT NOT NULL,
            fee TEXT NOT NULL,
            status TEXT NOT NULL,
            txid TEXT,
            confirmations INTEGER NOT NULL DEFAULT 0,
            date TEXT NOT NULL,
            accounted TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (mode, kind, ext_id)
        );
        CREATE INDEX wallet_transfers_seen ON wallet_transfers (mode, updated_at);
        CREATE TABLE wallet_fills (
            mode TEXT NOT NULL,
            fill_id TEXT NOT NULL,
            order_id TEXT NOT NULL,
            market TEXT NOT NULL,
            side TEXT NOT NULL,
            price TEXT NOT NULL,
            amount TEXT NOT NULL,
            fee TEXT NOT NULL,
            fee_coin TEXT NOT NULL,
            state TEXT NOT NULL,
            at TEXT NOT NULL,
            seen_at TEXT NOT NULL,
            PRIMARY KEY (mode, fill_id)
        );
        CREATE INDEX wallet_fills_state ON wallet_fills (mode, state);
        CREATE TABLE wallet_sweeps (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            coin TEXT NOT NULL,
            address TEXT NOT NULL,
            amount TEXT NOT NULL,
            fee TEXT NOT NULL,
            day TEXT NOT NULL,
            state TEXT NOT NULL,
            withdrawal_id INTEGER UNIQUE,
            checks INTEGER NOT NULL DEFAULT 0,
            note TEXT NOT NULL DEFAULT '',
            intended_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX wallet_sweeps_coin_state ON wallet_sweeps (coin, state);
        CREATE INDEX wallet_sweeps_day ON wallet_sweeps (day, coin);
        """,
    ),
    Migration(
        9,
        "paper looks carry the volume estimate's unspent negative remainder to the next look",
        """
        ALTER TABLE paper_looks ADD COLUMN carry TEXT NOT NULL DEFAULT '0';
        """,
    ),
    Migration(
        10,
        "paper looks keep a smoothed traded-volume rate instead (the carry column is no longer read)",
        """
        ALTER TABLE paper_looks ADD COLUMN rate TEXT;
        """,
    ),
]


# -- values -----------------------------------------------------------------------------------------------

_DEC = "$dec"
_DT = "$dt"


def _encode(value: Any) -> Any:
    """`value` as plain JSON data, with Decimals and datetimes tagged and `$` keys escaped."""
    if value is None or isinstance(value, str | int | float):  # bool is an int
        return value
    if isinstance(value, Decimal):
        return {_DEC: str(value)}
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise TypeError(f"naive datetime {value.isoformat()} cannot be stored; use an aware one")
        return {_DT: value.isoformat()}
    if isinstance(value, Mapping):
        return {(f"${k}" if isinstance(k, str) and k.startswith("$") else k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not storable as JSON: {type(value).__name__}")


def _decode_object(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        ((key, val),) = obj.items()
        if isinstance(val, str):
            if key == _DEC:
                return Decimal(val)
            if key == _DT:
                return datetime.fromisoformat(val)
    if any(k.startswith("$$") for k in obj):
        return {(k[1:] if k.startswith("$$") else k): v for k, v in obj.items()}
    return obj


def dumps(value: Any) -> str:
    """JSON text for the store: Decimals and aware datetimes tagged so `loads` returns them as they were."""
    return json.dumps(_encode(value), separators=(",", ":"), sort_keys=True)


def loads(text: str) -> Any:
    """The inverse of `dumps`; plain JSON (rows written before the tags) reads back unchanged."""
    return json.loads(text, object_hook=_decode_object)


_iso = iso_fixed  # the store's timestamps: fixed width, comparable as text


@dataclass(frozen=True, slots=True)
class Entry:
    """One appended entry: its global sequence number, its topic, when it was appended, its payload."""

    seq: int
    topic: str
    ts: datetime
    payload: dict[str, Any]


class Store:
    """One SQLite database file; thread-confined to its creator except through `transaction`."""

    def __init__(self, path: Path | str, migrations: Sequence[Migration] = MIGRATIONS, *,
                 clock: Clock | None = None) -> None:
        self.path = Path(path)
        self.clock: Clock = clock or WallClock()
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0
        self._tx_id = 0
        self._before_commit: list[Callable[[sqlite3.Connection], None]] = []
        self._after_commit: list[Callable[[], None]] = []
        # Only takes effect on a file without tables yet (a new store); must come before WAL and the schema.
        self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._sync = "FULL"  # the connection's current setting (changed only between transactions)
        self._durable = True  # the transaction in progress must be synced at commit
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        self._migrate(migrations)

    @classmethod
    def open(cls, state_dir: Path | str, name: str = DB_NAME, *, clock: Clock | None = None) -> Store:
        """Open (creating if needed) the store in `state_dir`."""
        return cls(Path(state_dir) / name, clock=clock)

    def _now(self) -> str:
        return _iso(self.clock.now())

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
        pending = [m for m in migrations if m.version > current]
        if not pending:
            return
        # All pending migrations in one transaction: a failure anywhere leaves the file as it was.
        # executescript would COMMIT on its own; run statements one by one inside our transaction.
        with self.transaction() as conn:
            for m in pending:
                for stmt in _split_sql(m.sql):
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {int(m.version)}")

    # -- transactions ---------------------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, durable: bool | None = None) -> Iterator[sqlite3.Connection]:
        """`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on any exception.

        A nested call is a savepoint (`SAVEPOINT sp_N` ... `RELEASE sp_N`): on an exception it rolls back
        to the savepoint, undoing only its own writes, and re-raises; the outer transaction goes on if the
        outer code catches the exception.

        `durable` (see the module docstring): the outermost transaction is durable unless it says
        `durable=False`; a savepoint inherits it, and one that says `durable=True` inside a non-durable
        transaction makes the whole commit durable (the WAL is synced right after the commit, before the
        after-commit hooks run).
        """
        with self._lock:
            if self._depth:
                if durable:
                    self._durable = True
                name = f"sp_{self._depth}"
                self._conn.execute(f"SAVEPOINT {name}")
                self._depth += 1
                try:
                    yield self._conn
                except BaseException:
                    self._depth -= 1
                    # SQLite may already have rolled the whole transaction back (disk full, I/O error):
                    # then there is no savepoint left, and the original exception is what matters.
                    if self._conn.in_transaction:
                        self._conn.execute(f"ROLLBACK TO {name}")
                        self._conn.execute(f"RELEASE {name}")
                    raise
                else:
                    self._depth -= 1
                    self._conn.execute(f"RELEASE {name}")
                return
            self._durable = durable is None or durable
            want = "FULL" if self._durable else "NORMAL"
            if want != self._sync:  # SQLite takes this only outside a transaction
                self._conn.execute(f"PRAGMA synchronous={want}")
                self._sync = want
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            self._tx_id += 1
            try:
                yield self._conn
                for hook in self._before_commit:  # may add rows; an exception rolls everything back
                    hook(self._conn)
            except BaseException:
                self._depth = 0
                self._before_commit.clear()
                self._after_commit.clear()
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            else:
                self._depth = 0
                self._before_commit.clear()
                after, self._after_commit = self._after_commit, []
                if not self._conn.in_transaction:
                    raise StateError("the transaction was rolled back by SQLite after an error inside it; "
                                     "nothing was committed")
                self._conn.execute("COMMIT")
                if self._durable and self._sync != "FULL":  # a durable savepoint in a non-durable transaction
                    self._sync_wal()
                for done in after:  # side effects outside the store, only once the state is durable
                    done()
            finally:
                self._after_commit.clear()

    def _sync_wal(self) -> None:
        """Sync the WAL file to the disk (what a commit under `synchronous=FULL` does)."""
        if str(self.path) == ":memory:":
            return
        fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @property
    def tx_id(self) -> int | None:
        """An id of the outermost transaction in progress (None outside one): lets a writer that batches its
        rows until commit tell one transaction from the next."""
        return self._tx_id if self._depth else None

    @property
    def depth(self) -> int:
        """How deep the current transaction nests (0 outside one, 1 in the outermost, more in savepoints)."""
        return self._depth

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Run `hook` right after the current outermost transaction commits (never if it rolls back): for
        side effects outside the store, e.g. handing a committed hand-off to a queue. Outside a transaction
        it runs at once."""
        if not self._depth:
            hook()
            return
        self._after_commit.append(hook)

    def before_commit(self, hook: Callable[[sqlite3.Connection], None]) -> None:
        """Run `hook` inside the current outermost transaction right before it commits (dropped if it rolls
        back). For writers that batch many small writes of one transaction into one statement."""
        if not self._depth:
            raise StateError("before_commit needs a transaction in progress")
        self._before_commit.append(hook)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run a read-only query."""
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    # -- key-value ------------------------------------------------------------------------------------

    def kv_get(self, key: str, default: Any = None) -> Any:
        rows = self.query("SELECT value FROM kv WHERE key = ?", (key,))
        return loads(rows[0]["value"]) if rows else default

    def kv_set(self, key: str, value: Any) -> None:
        text = dumps(value)
        with self.transaction() as c:
            c.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (key, text, self._now()),
            )

    def kv_delete(self, key: str) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM kv WHERE key = ?", (key,))

    def prune_kv(self, prefix: str, older_than: datetime) -> int:
        """Delete the keys starting with `prefix` last written before `older_than`; returns how many."""
        with self.transaction() as c:
            cur = c.execute("DELETE FROM kv WHERE substr(key, 1, ?) = ? AND updated_at < ?",
                            (len(prefix), prefix, _iso(older_than)))
            return int(cur.rowcount)

    # -- append-only entries --------------------------------------------------------------------------

    def append(self, topic: str, payload: dict[str, Any]) -> int:
        """Append one entry to `topic`; returns its sequence number (global, increasing, never reused)."""
        return self.append_many(topic, [payload])[-1]

    def append_many(self, topic: str, payloads: Sequence[dict[str, Any]]) -> list[int]:
        """Append several entries to `topic` atomically; returns their sequence numbers."""
        texts = [dumps(p) for p in payloads]  # encode first: a bad value writes nothing
        ts = self._now()
        seqs: list[int] = []
        with self.transaction() as c:
            for text in texts:
                cur = c.execute("INSERT INTO entries (topic, ts, payload) VALUES (?, ?, ?)", (topic, ts, text))
                seqs.append(int(cur.lastrowid or 0))
        return seqs

    def read(self, topic: str, after: int = 0, limit: int = 1000) -> list[Entry]:
        """Entries of `topic` with seq > `after`, oldest first, at most `limit`."""
        rows = self.query(
            "SELECT seq, topic, ts, payload FROM entries WHERE topic = ? AND seq > ? ORDER BY seq LIMIT ?",
            (topic, after, limit),
        )
        return [Entry(r["seq"], r["topic"], datetime.fromisoformat(r["ts"]), loads(r["payload"])) for r in rows]

    def count(self, topic: str, after: int = 0) -> int:
        """How many entries of `topic` have seq > `after`."""
        rows = self.query("SELECT COUNT(*) AS n FROM entries WHERE topic = ? AND seq > ?", (topic, after))
        return int(rows[0]["n"])

    def prune_entries(self, topic: str, upto_seq: int) -> int:
        """Delete the entries of `topic` with seq <= `upto_seq` (delivered ones); returns how many.

        Sequence numbers are never reused (`AUTOINCREMENT`), so cursors stay valid after a prune.
        """
        with self.transaction() as c:
            cur = c.execute("DELETE FROM entries WHERE topic = ? AND seq <= ?", (topic, upto_seq))
            return int(cur.rowcount)

    # -- cursors --------------------------------------------------------------------------------------

    def cursor_get(self, name: str) -> int:
        rows = self.query("SELECT position FROM cursors WHERE name = ?", (name,))
        return int(rows[0]["position"]) if rows else 0

    def cursor_set(self, name: str, position: int) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO cursors (name, position, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
                (name, position, self._now()),
            )

    # -- maintenance ----------------------------------------------------------------------------------

    @property
    def auto_vacuum(self) -> str:
        """`none`, `full` or `incremental`: how this file hands freed pages back (fixed when it was created)."""
        mode = int(self.query("PRAGMA auto_vacuum")[0][0])
        return {0: "none", 1: "full", 2: "incremental"}.get(mode, str(mode))

    def maintain(self, max_pages: int | None = None) -> dict[str, int]:
        """Give freed pages back to the file system and truncate the WAL; call it now and then (say hourly,
        after pruning). Returns the pages freed and the WAL checkpoint figures. Not inside a transaction."""
        with self._lock:
            if self._depth:
                raise StateError("maintain() cannot run inside a transaction")
            free_before = int(self._conn.execute("PRAGMA freelist_count").fetchone()[0])
            if self.auto_vacuum == "incremental" and free_before:
                # The pragma frees one page per step; `execute` steps a row-less statement only once,
                # `executescript` steps it to the end (and commits nothing: we are outside a transaction).
                arg = f"({int(max_pages)})" if max_pages is not None else ""
                self._conn.executescript(f"PRAGMA incremental_vacuum{arg};")
            free_after = int(self._conn.execute("PRAGMA freelist_count").fetchone()[0])
            busy, wal_pages, checkpointed = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return {"pages_freed": free_before - free_after, "free_pages": free_after, "wal_busy": int(busy),
                "wal_pages": int(wal_pages), "wal_checkpointed": int(checkpointed)}

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (our migrations contain no `;` inside literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]
