"""Deposits and withdrawals as the watcher remembers them, and the events their changes make.

`TransferBook` runs inside the watcher's poll transaction: each transfer listed by the exchange is compared
with its stored row (`wallet_transfers`); a new one or a status change becomes an event (deposit seen,
deposit confirmed, withdrawal status changed, withdrawal failed with its refund), and the change of its
effect on the coin's total is added to what explains this poll's balance changes. The effect already
accounted is stored with the row, so a restart never counts a transfer twice.

`Emitter` publishes an event now (inside the transaction: the recorder's row commits with it) and writes its
log line only once the transaction committed, so each event is logged once.
"""

from __future__ import annotations

from dataclasses import fields
from decimal import Decimal
from typing import Any

from bot.clock import Clock
from bot.domain import Deposit, Withdrawal
from bot.events import DepositConfirmed, DepositSeen, Event, EventBus, WithdrawalChanged, WithdrawalFailed
from bot.logs import get_logger
from bot.recorder.outbox import ts_text
from bot.store import Store
from bot.wallet import ledger

log = get_logger("bot.wallet")

DEPOSIT, WITHDRAWAL = "deposit", "withdrawal"


class Emitter:
    """Publish now, log after commit (see the module docstring)."""

    def __init__(self, store: Store, clock: Clock, events: EventBus) -> None:
        self.store = store
        self.clock = clock
        self.events = events

    def event(self, event: Event, log_event: str, *, warn: bool = False) -> None:
        self.events.publish(event)
        data = {f.name: getattr(event, f.name) for f in fields(event) if f.name != "at"}
        data = {k: (f"{v:f}" if isinstance(v, Decimal) else
                    {kk: f"{vv:f}" for kk, vv in v.items()} if isinstance(v, dict) else v) for k, v in data.items()}
        emit = log.warning if warn else log.info
        self.store.after_commit(lambda: emit(log_event, **data))


def write(store: Store, sql: str, params: tuple[Any, ...]) -> None:
    """One statement in the caller's transaction (a savepoint of it)."""
    with store.transaction() as conn:
        conn.execute(sql, params)


class TransferBook:
    """The `wallet_transfers` table (see the module docstring)."""

    def __init__(self, store: Store, emit: Emitter, mode: str = "live") -> None:
        self.store = store
        self.emit = emit
        self.mode = mode

    def _row(self, kind: str, ext_id: int) -> Any:
        rows = self.store.query("SELECT * FROM wallet_transfers WHERE mode = ? AND kind = ? AND ext_id = ?",
                                (self.mode, kind, ext_id))
        return rows[0] if rows else None

    def _upsert(self, kind: str, ext_id: int, coin: str, address: str, amount: Decimal, fee: Decimal, status: str,
                txid: str | None, confirmations: int, date: str, accounted: Decimal, new: bool) -> None:
        now = ts_text(self.emit.clock.now())
        if new:
            write(self.store, "INSERT INTO wallet_transfers (mode, kind, ext_id, coin, address, amount, fee, status, "
                  "txid, confirmations, date, accounted, first_seen, updated_at) VALUES "
                  "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (self.mode, kind, ext_id, coin, address, str(amount), str(fee), status, txid, confirmations, date,
                   str(accounted), now, now))
        else:
            write(self.store, "UPDATE wallet_transfers SET status = ?, txid = ?, confirmations = ?, accounted = ?, "
                  "updated_at = ? WHERE mode = ? AND kind = ? AND ext_id = ?",
                  (status, txid, confirmations, str(accounted), now, self.mode, kind, ext_id))

    def _account(self, kind: str, coin: str, effect: Decimal, row: Any, baseline: bool,
                 explained: dict[str, dict[str, Decimal]]) -> Decimal:
        """Add the change of this transfer's effect to `explained`; returns the effect now accounted."""
        before = Decimal(row["accounted"]) if row is not None else (effect if baseline else ledger.ZERO)
        change = effect - before
        ledger.add(explained, coin, ledger.transfer_reason(kind, change), change)
        return effect

    def deposit(self, d: Deposit, baseline: bool, explained: dict[str, dict[str, Decimal]]) -> None:
        """One listed deposit (`baseline`: the watcher's first look, whose totals already include it)."""
        row = self._row(DEPOSIT, d.id)
        status = "confirmed" if d.confirmed else "pending"
        if row is not None and row["status"] == status and int(row["confirmations"]) == d.confirmations:
            return
        effect = ledger.transfer_effect(ledger.DEPOSIT, status, d.confirmed, d.amount, ledger.ZERO)
        accounted = self._account(DEPOSIT, d.coin, effect, row, baseline, explained)
        self._upsert(DEPOSIT, d.id, d.coin, d.address, d.amount, ledger.ZERO, status, d.txid, d.confirmations,
                     ts_text(d.date), accounted, row is None)
        now = self.emit.clock.now()
        if row is None:
            self.emit.event(DepositSeen(at=now, deposit_id=d.id, coin=d.coin, amount=d.amount, address=d.address,
                                        txid=d.txid, confirmations=d.confirmations, confirmed=d.confirmed),
                            "wallet.deposit_seen")
        if d.confirmed and (row is None or row["status"] != "confirmed"):
            self.emit.event(DepositConfirmed(at=now, deposit_id=d.id, coin=d.coin, amount=d.amount,
                                             address=d.address, txid=d.txid, confirmations=d.confirmations),
                            "wallet.deposit_confirmed")

    def withdrawal(self, w: Withdrawal, baseline: bool, explained: dict[str, dict[str, Decimal]]) -> None:
        """One listed withdrawal (the bot's sweeps and any other)."""
        row = self._row(WITHDRAWAL, w.id)
        status = w.status.value
        if row is not None and row["status"] == status and row["txid"] == w.txid:
            return
        effect = ledger.transfer_effect(ledger.WITHDRAWAL, status, False, w.amount, w.fee_amount)
        accounted = self._account(WITHDRAWAL, w.coin, effect, row, baseline, explained)
        self._upsert(WITHDRAWAL, w.id, w.coin, w.address, w.amount, w.fee_amount, status, w.txid, 0,
                     ts_text(w.date), accounted, row is None)
        previous = "" if row is None else str(row["status"])
        if previous == status:
            return  # only the txid arrived
        now = self.emit.clock.now()
        self.emit.event(WithdrawalChanged(at=now, withdrawal_id=w.id, coin=w.coin, amount=w.amount,
                                          fee=w.fee_amount, address=w.address, status=status, previous=previous,
                                          txid=w.txid), "wallet.withdrawal_changed")
        if status == ledger.FAILED:
            self.emit.event(WithdrawalFailed(at=now, withdrawal_id=w.id, coin=w.coin, amount=w.amount,
                                             fee=w.fee_amount, address=w.address, refund=w.amount + w.fee_amount),
                            "wallet.withdrawal_failed", warn=True)

    def withdrawal_status(self, withdrawal_id: int) -> str | None:
        """The last status seen of a withdrawal (None when it was never listed)."""
        row = self._row(WITHDRAWAL, withdrawal_id)
        return None if row is None else str(row["status"])

    def recent(self, mode: str, limit: int = 10) -> list[dict[str, Any]]:
        """The transfers that changed last, newest first (for `/status`)."""
        rows = self.store.query("SELECT * FROM wallet_transfers WHERE mode = ? ORDER BY updated_at DESC, ext_id DESC "
                                "LIMIT ?", (mode, limit))
        return [{"kind": r["kind"], "id": r["ext_id"], "coin": r["coin"], "amount": r["amount"], "fee": r["fee"],
                 "status": r["status"], "address": r["address"], "txid": r["txid"],
                 "confirmations": r["confirmations"], "date": r["date"], "updated_at": r["updated_at"]}
                for r in rows]

