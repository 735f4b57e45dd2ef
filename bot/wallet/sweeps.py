"""Policy-bound sweeps: what may be swept (pure), and the write-ahead sweep journal in the store.

`plan` decides, for one `[[wallet.sweeps]]` entry, how much to withdraw now:

    sweepable = available - keep - (what instances hold in the coin and is not already frozen by their
                sell orders) - withdrawal fee
    amount    = min(sweepable, max_per_day - swept today), rounded down to the coin's decimals

and nothing when that is below the coin's `minimum_withdrawal`. A sweep never takes coins an instance is
about to sell, never leaves less than `keep`, and never sends more than the day's cap (UTC day of the
intent; what counts is every sweep that is not known to have sent nothing or been refunded).

The journal: a sweep is committed as `intended` (with its event and outbox row) *before* the withdraw
request goes out. The answer moves it to `sent` (with the exchange's withdrawal id), `rejected` (the
exchange refused: nothing moved) or `not_sent` (provably never sent); a lost answer leaves it `unknown`.
`intended` after a restart means the same as `unknown`. An unknown sweep is resolved from `listwithdraws`
(`WalletApi.find_withdrawal`), never resent: found → `sent`; still absent after `UNRESOLVED_CHECKS` looks
and `UNRESOLVED_GRACE_S` clock seconds → `not_sent` (withdrawals, unlike orders, stay listed once made);
two candidates → stays `unknown` and says so. A sent sweep ends `confirmed` or `failed` (refund seen) as
the watcher sees its withdrawal's status. While a coin has a sweep that is not final, no other sweep of
that coin starts (one in flight per coin).
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from bot.clock import Clock
from bot.events import EventBus, SweepChanged
from bot.logs import get_logger
from bot.recorder.outbox import ts_text
from bot.store import Store

log = get_logger("bot.wallet.sweeps")

ZERO = Decimal(0)
UNRESOLVED_CHECKS = 3  # looks at listwithdraws before an unknown sweep may be declared not sent
UNRESOLVED_GRACE_S = 600.0  # ... and at least this many clock seconds after its intent


class SweepState(enum.StrEnum):
    INTENDED = "intended"
    UNKNOWN = "unknown"
    SENT = "sent"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    REJECTED = "rejected"
    NOT_SENT = "not_sent"


OPEN = frozenset({SweepState.INTENDED, SweepState.UNKNOWN, SweepState.SENT})
UNRESOLVED = frozenset({SweepState.INTENDED, SweepState.UNKNOWN})
# What counts against the day's cap: everything that may have moved money and was not given back.
COUNTED = frozenset({SweepState.INTENDED, SweepState.UNKNOWN, SweepState.SENT, SweepState.CONFIRMED})
MOVES: dict[SweepState, frozenset[SweepState]] = {
    SweepState.INTENDED: frozenset({SweepState.SENT, SweepState.UNKNOWN, SweepState.REJECTED, SweepState.NOT_SENT}),
    SweepState.UNKNOWN: frozenset({SweepState.SENT, SweepState.NOT_SENT}),
    SweepState.SENT: frozenset({SweepState.CONFIRMED, SweepState.FAILED}),
}


@dataclass(frozen=True, slots=True)
class Plan:
    """Withdraw `amount` now (the exchange also takes `fee`)."""

    amount: Decimal
    fee: Decimal


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to sweep now, and why."""

    reason: str


def plan(*, available: Decimal, keep: Decimal, held: Decimal, held_frozen: Decimal, fee: Decimal,
         minimum: Decimal, decimals: int, max_per_day: Decimal, swept_today: Decimal) -> Plan | Wait:
    """How much to sweep now (see the module docstring). `held` is what instances hold in the coin as
    positions, `held_frozen` the part of it their working sell orders already keep frozen (not available)."""
    reserved = max(ZERO, held - held_frozen)
    free = available - keep - reserved - fee
    room = max_per_day - swept_today
    if room <= 0:
        return Wait(f"the day's cap is reached ({swept_today} of {max_per_day} swept today)")
    amount = min(free, room).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_DOWN)
    if amount <= 0:
        return Wait(f"nothing above keep: available {available}, keep {keep}, held by instances {reserved}, "
                    f"fee {fee}")
    if amount < minimum:
        why = "the day's cap leaves" if room < free else "only"
        return Wait(f"{why} {amount} to sweep, below the minimum withdrawal {minimum}")
    return Plan(amount, fee)


@dataclass(frozen=True, slots=True)
class Sweep:
    """One journaled sweep."""

    id: int
    coin: str
    address: str
    amount: Decimal
    fee: Decimal
    day: str
    state: SweepState
    withdrawal_id: int | None
    checks: int
    note: str
    intended_at: datetime
    updated_at: str

    def public(self) -> dict[str, Any]:
        return {"sweep": self.id, "coin": self.coin, "address": self.address, "amount": str(self.amount),
                "fee": str(self.fee), "day": self.day, "state": self.state.value,
                "withdrawal_id": self.withdrawal_id, "note": self.note, "intended_at": self.intended_at.isoformat()}


def _sweep(r: sqlite3.Row) -> Sweep:
    return Sweep(int(r["id"]), r["coin"], r["address"], Decimal(r["amount"]), Decimal(r["fee"]), r["day"],
                 SweepState(r["state"]), r["withdrawal_id"], int(r["checks"]), r["note"],
                 datetime.fromisoformat(r["intended_at"]), r["updated_at"])


class IllegalSweepMove(RuntimeError):
    """A sweep was asked to move where its state machine does not go."""


class SweepJournal:
    """The `wallet_sweeps` table; every change is an event (the recorder's row commits with it)."""

    def __init__(self, store: Store, clock: Clock, events: EventBus) -> None:
        self.store = store
        self.clock = clock
        self.events = events

    def get(self, sweep_id: int) -> Sweep:
        return _sweep(self.store.query("SELECT * FROM wallet_sweeps WHERE id = ?", (sweep_id,))[0])

    def open(self, coin: str | None = None) -> list[Sweep]:
        """Sweeps not final yet (of one coin, or all), oldest first."""
        marks = ",".join("?" * len(OPEN))
        rows = self.store.query(f"SELECT * FROM wallet_sweeps WHERE state IN ({marks}) ORDER BY id",
                                tuple(s.value for s in OPEN))
        return [s for s in map(_sweep, rows) if coin is None or s.coin == coin]

    def swept_on(self, coin: str, day: str) -> Decimal:
        """What counts against `coin`'s cap on `day` (an ISO date, UTC)."""
        marks = ",".join("?" * len(COUNTED))
        rows = self.store.query(f"SELECT amount FROM wallet_sweeps WHERE coin = ? AND day = ? AND state IN ({marks})",
                                (coin, day, *(s.value for s in COUNTED)))
        return sum((Decimal(r["amount"]) for r in rows), ZERO)

    def claimed_ids(self) -> set[int]:
        """Withdrawal ids already owned by a sweep (never matched to another one)."""
        return {int(r["withdrawal_id"]) for r in self.store.query(
            "SELECT withdrawal_id FROM wallet_sweeps WHERE withdrawal_id IS NOT NULL")}

    def recent(self, limit: int = 10) -> list[Sweep]:
        return [_sweep(r) for r in self.store.query("SELECT * FROM wallet_sweeps ORDER BY id DESC LIMIT ?", (limit,))]

    def intend(self, coin: str, address: str, amount: Decimal, fee: Decimal) -> Sweep:
        """Commit the intent before the request is sent."""
        now = self.clock.now()
        with self.store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO wallet_sweeps (coin, address, amount, fee, day, state, intended_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (coin, address, str(amount), str(fee), now.date().isoformat(), SweepState.INTENDED.value,
                 ts_text(now), ts_text(now)))
            sweep = self.get(int(cur.lastrowid or 0))
            self._changed(sweep, "")
        return sweep

    def move(self, sweep_id: int, target: SweepState, *, withdrawal_id: int | None = None,
             note: str = "") -> Sweep:
        """Move a sweep to `target` (an illegal move raises `IllegalSweepMove` and writes nothing)."""
        with self.store.transaction() as conn:
            before = self.get(sweep_id)
            if target not in MOVES.get(before.state, frozenset()):
                raise IllegalSweepMove(f"sweep {sweep_id}: {before.state.value} -> {target.value}")
            conn.execute("UPDATE wallet_sweeps SET state = ?, withdrawal_id = COALESCE(?, withdrawal_id), "
                         "note = ?, updated_at = ? WHERE id = ?",
                         (target.value, withdrawal_id, note or before.note, ts_text(self.clock.now()), sweep_id))
            after = self.get(sweep_id)
            self._changed(after, before.state.value)
        return after

    def checked(self, sweep_id: int, note: str) -> Sweep:
        """One more look at listwithdraws found nothing for an unresolved sweep."""
        with self.store.transaction() as conn:
            conn.execute("UPDATE wallet_sweeps SET checks = checks + 1, note = ?, updated_at = ? WHERE id = ?",
                         (note, ts_text(self.clock.now()), sweep_id))
        return self.get(sweep_id)

    def _changed(self, sweep: Sweep, previous: str) -> None:
        self.events.publish(SweepChanged(
            at=self.clock.now(), sweep_id=sweep.id, coin=sweep.coin, address=sweep.address, amount=sweep.amount,
            fee=sweep.fee, state=sweep.state.value, previous=previous, withdrawal_id=sweep.withdrawal_id,
            note=sweep.note))
        fields = {"sweep": sweep.id, "coin": sweep.coin, "amount": str(sweep.amount), "fee": str(sweep.fee),
                  "state": sweep.state.value, "previous": previous or None, "withdrawal_id": sweep.withdrawal_id,
                  "address": sweep.address, "note": sweep.note or None}
        # Logged once the change is durable: a rolled-back change was never logged.
        self.store.after_commit(lambda: log.info("sweep.changed", **fields))
