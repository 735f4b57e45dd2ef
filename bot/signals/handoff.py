"""Hand-off keys: an actionable evaluation is handed to execution at most once per (instance, candle).

A key is claimed inside the feed's transaction, together with the stream's cursor, so a crash anywhere
either loses both (the cycle runs again after a restart and claims the key then) or keeps both (the candle
is never handed off again, even if something re-evaluates it). The row also holds the evaluation, so an
execution that was not running when the key committed can still find it (`pending`) and mark it `taken`.
Old keys are pruned so the file stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.clock import Clock
from bot.store import Store, dumps, loads


@dataclass(frozen=True, slots=True)
class Handoff:
    """One claimed hand-off as stored."""

    instance: str
    candle_time: str
    created_at: str
    payload: dict[str, Any]
    taken_at: str | None


class Handoffs:
    """The store's hand-off keys."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def claim(self, instance: str, candle_time: datetime, payload: dict[str, Any]) -> bool:
        """Record the hand-off of (instance, candle); False if it was handed off before."""
        with self.store.transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO handoffs (instance, candle_time, created_at, payload) VALUES (?, ?, ?, ?)",
                (instance, candle_time.isoformat(), self.clock.now().isoformat(), dumps(payload)))
            return cur.rowcount == 1

    def pending(self) -> list[Handoff]:
        """Hand-offs nobody has taken yet, oldest first."""
        rows = self.store.query(
            "SELECT instance, candle_time, created_at, payload, taken_at FROM handoffs "
            "WHERE taken_at IS NULL ORDER BY created_at, instance")
        return [Handoff(r["instance"], r["candle_time"], r["created_at"], loads(r["payload"]), None)
                for r in rows]

    def take(self, instance: str, candle_time: datetime) -> bool:
        """Mark a hand-off as taken by its consumer; False if it was taken already (or never claimed)."""
        with self.store.transaction() as conn:
            cur = conn.execute(
                "UPDATE handoffs SET taken_at = ? WHERE instance = ? AND candle_time = ? AND taken_at IS NULL",
                (self.clock.now().isoformat(), instance, candle_time.isoformat()))
            return cur.rowcount == 1

    def count(self) -> int:
        return int(self.store.query("SELECT COUNT(*) AS n FROM handoffs")[0]["n"])

    def prune(self, older_than: datetime) -> int:
        """Delete keys of candles older than `older_than`: no feed re-emits candles that old."""
        with self.store.transaction() as conn:
            cur = conn.execute("DELETE FROM handoffs WHERE candle_time < ?", (older_than.isoformat(),))
            return int(cur.rowcount)
