"""Durable state of the CoinBTR simulator: one SQLite file (WAL, `synchronous=NORMAL`: it
survives a SIGKILL, not a power cut) in the sandbox's state_dir.

Kept: every order (with its fill progress), every fill, each user's available and frozen balance per coin,
withdrawals and deposits with their statuses, the order/fill/withdrawal/deposit id counters (so an id is
never handed out twice, across any number of restarts), the liquidity taken from this minute's synthetic
book, scripted withdrawal failures, how many seeded failure draws were made (the sequence continues where it
was), and which users got their starting balances. Not kept: rate-limit windows, fault settings and request
counters (they start fresh, like a real server's after a restart). The market needs nothing: it is a pure
function of the seed and the clock.

`save(sim)` runs after every request, before its answer is sent (see `coinbtr.create_app`), and writes in
one transaction only what changed since the last save: new fills (they never change), orders and
withdrawals that are not final yet, deposits, balances and counters whose encoding changed. An order that is
filled or cancelled, or a withdrawal that is confirmed or failed, is written a last time and then never
looked at again, so a save costs O(open things), not O(history). A save that finds nothing changed writes
nothing. Decimals are stored as their exact strings, times as ISO 8601 with microseconds and offset.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bot.domain import Side
from bot.sandbox.exchange import SimFill, SimOrder
from bot.sandbox.exchange_wallet import FINAL_WITHDRAWAL_STATUSES, SimDeposit, SimWithdrawal

if TYPE_CHECKING:
    from bot.sandbox.coinbtr import CoinbtrSim

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger (
    username TEXT NOT NULL, coin TEXT NOT NULL, available TEXT NOT NULL, frozen TEXT NOT NULL,
    PRIMARY KEY (username, coin));
CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fills (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS withdrawals (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deposits (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
"""

T = TypeVar("T")


def encode(obj: Any) -> str:
    """A simulator dataclass as JSON: Decimal as its exact string, datetime as ISO 8601, Side as its value."""

    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, datetime):
            return value.isoformat()
        return value

    return json.dumps({f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)},
                      separators=(",", ":"))


def decode(cls: type[T], text: str) -> T:
    """The inverse of `encode`, guided by the dataclass's field annotations."""
    raw = json.loads(text)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        value, kind = raw[f.name], str(f.type)
        if value is None:
            kwargs[f.name] = None
        elif "Decimal" in kind:
            kwargs[f.name] = Decimal(value)
        elif "datetime" in kind:
            kwargs[f.name] = datetime.fromisoformat(value)
        elif "Side" in kind:
            kwargs[f.name] = Side(value)
        else:
            kwargs[f.name] = value
    return cls(**kwargs)


class ExchangeStore:
    """Loads a `CoinbtrSim`'s state from `path` and saves what changed after each request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # Survives a SIGKILL (WAL); not synced to the disk per save, which held the simulators' one event loop
        # for milliseconds on every request that changed something (see `atlas_store`).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        # What was last written for things that may still change, by (table, key).
        self._written: dict[tuple[str, Any], str] = {}
        self._live_orders: dict[int, SimOrder] = {}  # written while open: looked at on every save
        self._live_withdrawals: dict[int, SimWithdrawal] = {}
        self._seen_next_order = 0  # orders with an id from here on were not looked at yet
        self._fills_saved = 0  # fills and withdrawals are append-only lists: how much of each was seen
        self._withdrawals_seen = 0

    def _forget(self) -> None:
        """Forget what was written: the next save rewrites every order, fill, transfer and balance."""
        self._written.clear()
        self._live_orders.clear()
        self._live_withdrawals.clear()
        self._seen_next_order = 0
        self._fills_saved = 0
        self._withdrawals_seen = 0

    def close(self) -> None:
        self._db.close()

    def has_state(self) -> bool:
        """Whether a simulator was saved here before."""
        return self._db.execute("SELECT 1 FROM meta WHERE key = 'version'").fetchone() is not None

    def meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    # -- load ------------------------------------------------------------------------------------

    def load(self, sim: CoinbtrSim) -> set[str]:
        """Put the saved state into `sim`; returns the users that already got their starting balances."""
        version = self.meta("version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"{self.path}: unknown sandbox state version {version!r}")

        def rows(table: str, cls: type[T]) -> list[T]:
            return [decode(cls, r[0]) for r in self._db.execute(f"SELECT data FROM {table} ORDER BY id")]

        orders, fills = rows("orders", SimOrder), rows("fills", SimFill)
        withdrawals, deposits = rows("withdrawals", SimWithdrawal), rows("deposits", SimDeposit)
        sim.ledger.restore({
            (u, c): (Decimal(a), Decimal(f))
            for u, c, a, f in self._db.execute("SELECT username, coin, available, frozen FROM ledger")
        })
        sim.engine.restore(orders, fills, self.meta("engine"))
        sim.desk.restore(withdrawals, deposits, self.meta("desk"))
        # Prime the caches with what is on disk, so the first save writes only real changes.
        for o in orders:
            if o.is_open:
                self._live_orders[o.id] = o
                self._written[("orders", o.id)] = encode(o)
        for w in withdrawals:
            if w.status not in FINAL_WITHDRAWAL_STATUSES:
                self._live_withdrawals[w.id] = w
                self._written[("withdrawals", w.id)] = encode(w)
        for d in deposits:
            self._written[("deposits", d.id)] = encode(d)
        for (u, c), (a, f) in sim.ledger.entries().items():
            self._written[("ledger", (u, c))] = f"{a}|{f}"
        for key, value in self._db.execute("SELECT key, value FROM meta"):
            self._written[("meta", key)] = value
        self._seen_next_order = sim.engine.next_order_id
        self._fills_saved = len(sim.engine.fills)
        self._withdrawals_seen = len(sim.desk.withdrawals)
        return set(self.meta("funded") or [])

    # -- save ------------------------------------------------------------------------------------

    def save(self, sim: CoinbtrSim, funded: Iterable[str]) -> int:
        """Write what changed since the last save in one transaction; returns the number of rows written."""
        writes: list[tuple[str, tuple[Any, ...]]] = []

        def put(table: str, key: Any, text: str, sql: str, params: tuple[Any, ...]) -> None:
            if self._written.get((table, key)) != text:
                writes.append((sql, params))
                self._written[(table, key)] = text

        upsert = "INSERT OR REPLACE INTO {} (id, data) VALUES (?, ?)"
        engine, desk = sim.engine, sim.desk
        new_orders = [engine.orders[i] for i in range(self._seen_next_order, engine.next_order_id)
                      if i in engine.orders]
        self._seen_next_order = max(self._seen_next_order, engine.next_order_id)
        for o in [*self._live_orders.values(), *new_orders]:
            text = encode(o)
            put("orders", o.id, text, upsert.format("orders"), (o.id, text))
            if o.is_open:
                self._live_orders[o.id] = o
            else:
                self._live_orders.pop(o.id, None)
                self._written.pop(("orders", o.id), None)
        for f in engine.fills[self._fills_saved:]:
            writes.append((upsert.format("fills"), (f.id, encode(f))))
        self._fills_saved = len(engine.fills)
        new_withdrawals = desk.withdrawals[self._withdrawals_seen:]
        self._withdrawals_seen = len(desk.withdrawals)
        for w in [*self._live_withdrawals.values(), *new_withdrawals]:
            text = encode(w)
            put("withdrawals", w.id, text, upsert.format("withdrawals"), (w.id, text))
            if w.status in FINAL_WITHDRAWAL_STATUSES:
                self._live_withdrawals.pop(w.id, None)
                self._written.pop(("withdrawals", w.id), None)
            else:
                self._live_withdrawals[w.id] = w
        for d in desk.deposits:
            text = encode(d)
            put("deposits", d.id, text, upsert.format("deposits"), (d.id, text))
        for (u, c), (available, frozen) in sim.ledger.entries().items():
            put("ledger", (u, c), f"{available}|{frozen}",
                "INSERT OR REPLACE INTO ledger (username, coin, available, frozen) VALUES (?, ?, ?, ?)",
                (u, c, str(available), str(frozen)))
        meta = {"version": SCHEMA_VERSION, "seed": sim.seed, "funded": sorted(funded),
                "engine": engine.counters(), "desk": desk.counters()}
        for key, value in meta.items():
            text = json.dumps(value, separators=(",", ":"))
            put("meta", key, text, "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, text))
        if writes:
            self._db.execute("BEGIN")
            try:
                for sql, params in writes:
                    self._db.execute(sql, params)
            except BaseException:
                self._db.execute("ROLLBACK")
                self._forget()  # the next save writes everything again
                raise
            self._db.execute("COMMIT")
        return len(writes)
