"""The outbox: rows for Atlas, appended in the caller's store transaction, drained in batches.

`append` never touches the network: a fill and its row, a closed candle and its row, commit together or
not at all. Timestamps are unique within a dataset, so "is this row in Atlas?" has a sound answer: an
ordered dataset (candles, ticks, evaluations, orders, ...) bumps a timestamp that does not move past the
previous one by a microsecond; a dataset of late-arriving rows (sensor readings) keys rows by their own
time and a repeat of a pending row is the same row.

Values are stored as the JSON Atlas will get (Decimals as numbers), so draining is a read, not a re-encode.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.clients.atlas_wire import values_json
from bot.clock import Clock, iso_fixed
from bot.store import Store

MICRO = timedelta(microseconds=1)


ts_text = iso_fixed  # fixed-width UTC ISO with microseconds: sorts as text in time order


@dataclass(frozen=True, slots=True)
class OutRow:
    """One pending row: `raw` is its values as the JSON text Atlas gets."""

    seq: int
    dataset: str
    ts: datetime
    raw: str

    @property
    def values(self) -> dict[str, Any]:
        return dict(json.loads(self.raw))


class Outbox:
    """The store's outbox table (see the module docstring)."""

    def __init__(self, store: Store, clock: Clock, unordered: Sequence[str] = ()) -> None:
        self.store = store
        self.clock = clock
        self._unordered = tuple(unordered)  # dataset key prefixes whose rows arrive late (sensor/)
        self._heads: dict[str, str] = {r["dataset"]: r["last_ts"] for r in store.query(
            "SELECT dataset, last_ts FROM outbox_heads")}
        self._tx: int | None = None
        self._rows: list[tuple[str, str, str, str]] = []
        self._touched: set[str] = set()
        self._created = ""
        self.appended = 0

    def append(self, dataset: str, ts: datetime, values: Mapping[str, Any]) -> datetime:
        """Queue one row with the caller's transaction (written in one statement when it commits), or in
        a transaction of its own outside one; returns the timestamp it got."""
        return self.append_many(dataset, [(ts, values)])[0]

    def append_many(self, dataset: str, rows: Sequence[tuple[datetime, Mapping[str, Any]]]) -> list[datetime]:
        """Queue rows of one dataset (see `append`)."""
        tx = self.store.tx_id
        if tx is None or self._tx != tx:
            self._created = ts_text(self.clock.now())
        out: list[datetime] = []
        ordered = not dataset.startswith(self._unordered)
        head = self._heads.get(dataset)
        batch: list[tuple[str, str, str, str]] = []
        for ts, values in rows:
            text = ts_text(ts)
            if ordered and head is not None and text <= head:
                ts = datetime.fromisoformat(head) + MICRO
                text = ts_text(ts)
            batch.append((dataset, text, values_json(values), self._created))
            if head is None or text > head:
                head = text
            out.append(ts)
        if head is not None:
            self._heads[dataset] = head
        self.appended += len(batch)
        if tx is None or self.store.depth > 1:
            # Outside a transaction, or inside a savepoint (whose rollback must take these rows with it):
            # written now. In the outermost transaction of a cycle: one statement at its commit. Queued rows
            # are not synced to the disk on their own (see `Store`): the next durable commit takes them along.
            with self.store.transaction(durable=False) as conn:
                self._write(conn, batch, {dataset})
            return out
        if self._tx != tx:  # first row of this transaction: all of them are written at its commit
            self._tx, self._rows, self._touched = tx, [], set()
            rows_ref, touched_ref = self._rows, self._touched
            self.store.before_commit(lambda conn: self._write(conn, rows_ref, touched_ref))
        self._rows.extend(batch)
        self._touched.add(dataset)
        return out

    def _write(self, conn: Any, rows: list[tuple[str, str, str, str]], touched: set[str]) -> None:
        conn.executemany("INSERT OR IGNORE INTO outbox (dataset, ts, row_values, created_at) VALUES (?, ?, ?, ?)",
                         rows)
        conn.executemany("INSERT INTO outbox_heads (dataset, last_ts) VALUES (?, ?) ON CONFLICT(dataset) "
                         "DO UPDATE SET last_ts = excluded.last_ts", [(d, self._heads[d]) for d in touched])

    # -- the drain side (may run on its own connection, see `bot.recorder.drain`) ---------------------------

    @staticmethod
    def pending_datasets(store: Store) -> list[str]:
        return [r["dataset"] for r in store.query("SELECT DISTINCT dataset FROM outbox ORDER BY dataset")]

    @staticmethod
    def batch(store: Store, dataset: str, limit: int) -> list[OutRow]:
        """The oldest `limit` pending rows of `dataset`, in append order."""
        rows = store.query("SELECT seq, ts, row_values FROM outbox WHERE dataset = ? ORDER BY seq LIMIT ?",
                           (dataset, limit))
        return [OutRow(r["seq"], dataset, datetime.fromisoformat(r["ts"]), r["row_values"]) for r in rows]

    @staticmethod
    def delete_range(store: Store, dataset: str, first: int, last: int) -> None:
        """Forget the dataset's rows with seq in `first..last` (Atlas confirmed them)."""
        with store.transaction() as conn:
            conn.execute("DELETE FROM outbox WHERE dataset = ? AND seq BETWEEN ? AND ?", (dataset, first, last))

    @staticmethod
    def first_seq_after(store: Store, dataset: str, seq: int, skip: int) -> int | None:
        """The seq `skip` rows after `seq` in the dataset (None when there are fewer): a delete step's end."""
        rows = store.query("SELECT seq FROM outbox WHERE dataset = ? AND seq >= ? ORDER BY seq LIMIT 1 OFFSET ?",
                           (dataset, seq, skip))
        return int(rows[0]["seq"]) if rows else None

    @staticmethod
    def count_range(store: Store, dataset: str, first: int, last: int) -> int:
        rows = store.query("SELECT COUNT(*) AS n FROM outbox WHERE dataset = ? AND seq BETWEEN ? AND ?",
                           (dataset, first, last))
        return int(rows[0]["n"])

    @staticmethod
    def quarantine(store: Store, rows: Sequence[OutRow], reason: str, at: datetime) -> None:
        """Move rows Atlas rejects as invalid aside, with the reason: they never block the rows behind."""
        with store.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO outbox_quarantine (seq, dataset, ts, row_values, reason, quarantined_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(r.seq, r.dataset, ts_text(r.ts), r.raw, reason[:500], ts_text(at)) for r in rows])
            conn.executemany("DELETE FROM outbox WHERE seq = ?", [(r.seq,) for r in rows])

    @staticmethod
    def backlog(store: Store) -> dict[str, dict[str, Any]]:
        """Pending rows per dataset with the oldest row's append time."""
        rows = store.query("SELECT dataset, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox GROUP BY dataset")
        return {r["dataset"]: {"rows": int(r["n"]), "oldest": r["oldest"]} for r in rows}

    @staticmethod
    def quarantined(store: Store) -> dict[str, int]:
        rows = store.query("SELECT dataset, COUNT(*) AS n FROM outbox_quarantine GROUP BY dataset")
        return {r["dataset"]: int(r["n"]) for r in rows}
