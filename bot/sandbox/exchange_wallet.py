"""The CoinBTR simulator's wallet: withdrawals that move through statuses over minutes, and deposits.

A withdrawal takes `amount + withdrawal_fee` out of available funds at once, then moves
`pending` → `signed` (after 1 minute, when it gets its txid) → `sent` (3 minutes) → `confirmed`
(8 minutes). A withdrawal picked to fail (seeded probability, or `fail_next`) becomes `failed` at the
moment it would have been sent, after the exchange accepted it, and the amount and fee are refunded.

An injected deposit appears at once with 0 confirmations, gains the coin's confirmations per minute, is
shown as the balance's `pending` until it has enough, then is credited to available funds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from bot.clock import Clock
from bot.sandbox.exchange import Ledger
from bot.sandbox.exchange_rules import (
    BAD_ADDRESS,
    COINS,
    INVALID_PARAMS,
    ExchangeError,
    deposit_address,
    txid_for,
    valid_address,
)

# Minutes after the request at which a withdrawal reaches each status.
SIGNED_AFTER = 1
SENT_AFTER = 3
CONFIRMED_AFTER = 8
FINAL_WITHDRAWAL_STATUSES = frozenset({"confirmed", "failed"})


@dataclass(slots=True)
class SimWithdrawal:
    """A withdrawal request and where it got to."""

    id: int
    username: str
    coin: str
    address: str
    amount: Decimal
    fee_amount: Decimal
    date: datetime
    will_fail: bool
    status: str = "pending"
    txid: str | None = None


@dataclass(slots=True)
class SimDeposit:
    """An incoming transfer and its confirmations so far."""

    id: int
    username: str
    coin: str
    address: str
    amount: Decimal
    txid: str
    date: datetime
    confirmations: int = 0
    confirmed: bool = False


class TransferDesk:
    """Withdrawals and deposits of every user, advanced on the injected clock."""

    def __init__(self, clock: Clock, ledger: Ledger, seed: int = 42, failure_rate: float = 0.1) -> None:
        self.clock = clock
        self.ledger = ledger
        self.seed = seed
        self.failure_rate = failure_rate
        self.withdrawals: list[SimWithdrawal] = []
        self.deposits: list[SimDeposit] = []
        self._rng = random.Random(f"{seed}:withdrawals")
        self._draws = 0  # how many failure draws were made (persisted, so the seeded sequence continues)
        self._fail_next = 0
        self._next_withdrawal_id = 301
        self._next_deposit_id = 701

    def counters(self) -> dict[str, int]:
        """Id counters, scripted failures and the seeded draw count, as plain data (for persistence)."""
        return {"next_withdrawal_id": self._next_withdrawal_id, "next_deposit_id": self._next_deposit_id,
                "fail_next": self._fail_next, "draws": self._draws}

    def restore(self, withdrawals: list[SimWithdrawal], deposits: list[SimDeposit], counters: dict[str, Any]) -> None:
        """Continue from persisted state (the inverse of `counters()` plus the two lists)."""
        self.withdrawals = sorted(withdrawals, key=lambda w: w.id)
        self.deposits = sorted(deposits, key=lambda d: d.id)
        self._next_withdrawal_id = max([int(counters["next_withdrawal_id"]), self._next_withdrawal_id,
                                        *[w.id + 1 for w in withdrawals]])
        self._next_deposit_id = max([int(counters["next_deposit_id"]), self._next_deposit_id,
                                     *[d.id + 1 for d in deposits]])
        self._fail_next = int(counters.get("fail_next", 0))
        self._rng = random.Random(f"{self.seed}:withdrawals")
        self._draws = int(counters.get("draws", 0))
        for _ in range(self._draws):
            self._rng.random()

    def address(self, username: str, coin: str) -> str:
        """The user's deposit address for `coin`; 1001 for an unknown coin."""
        if coin not in COINS:
            raise ExchangeError(INVALID_PARAMS, f"unknown coin {coin!r}")
        return deposit_address(self.seed, username, coin)

    def fail_next(self) -> None:
        """Make the next accepted withdrawal fail after being accepted."""
        self._fail_next += 1

    def withdraw(self, username: str, coin: str, address: str, amount: Decimal) -> SimWithdrawal:
        """Accept a withdrawal and debit amount plus fee, or raise 1001/1002/1006."""
        spec = COINS.get(coin)
        if spec is None:
            raise ExchangeError(INVALID_PARAMS, f"unknown coin {coin!r}")
        if amount <= 0 or amount != amount.quantize(Decimal(1).scaleb(-spec.decimals)):
            raise ExchangeError(INVALID_PARAMS, f"amount: positive, at most {spec.decimals} decimals")
        if not valid_address(coin, address):
            raise ExchangeError(BAD_ADDRESS, "destination address is not valid")
        if amount < spec.minimum_withdrawal:
            raise ExchangeError(INVALID_PARAMS, f"minimum withdrawal is {spec.minimum_withdrawal}")
        self.ledger.debit(username, coin, amount + spec.withdrawal_fee)
        # Draw for every withdrawal, scripted or not, so the seeded sequence does not depend on scripting.
        draw = self._rng.random()
        self._draws += 1
        will_fail = draw < self.failure_rate
        if self._fail_next:
            self._fail_next -= 1
            will_fail = True
        w = SimWithdrawal(
            id=self._next_withdrawal_id, username=username, coin=coin, address=address, amount=amount,
            fee_amount=spec.withdrawal_fee, date=self.clock.now(), will_fail=will_fail,
        )
        self._next_withdrawal_id += 1
        self.withdrawals.append(w)
        return w

    def inject_deposit(
        self, username: str, coin: str, amount: Decimal, address: str | None = None, *,
        confirmations: int = 0, confirmed: bool = False,
    ) -> SimDeposit:
        """An incoming transfer to the user, starting at `confirmations` (default 0). With `confirmed`, or
        with as many confirmations as the coin needs, it is credited at once."""
        if coin not in COINS or amount <= 0 or confirmations < 0:
            raise ValueError(f"bad deposit: {coin} {amount} ({confirmations} confirmations)")
        needed = COINS[coin].confirmations_needed
        d = SimDeposit(
            id=self._next_deposit_id, username=username, coin=coin,
            address=address or self.address(username, coin), amount=amount,
            txid=txid_for(self.seed, "deposit", self._next_deposit_id), date=self.clock.now(),
            confirmations=max(confirmations, needed) if confirmed else confirmations,
        )
        self._next_deposit_id += 1
        self.deposits.append(d)
        if d.confirmations >= needed:
            d.confirmed = True
            self.ledger.credit(d.username, d.coin, d.amount)
        return d

    def fail(self, withdrawal_id: int) -> SimWithdrawal:
        """Fail a withdrawal that is not final yet (pending, signed or sent): amount and fee are refunded.
        `KeyError` when there is no such withdrawal, `ValueError` when it is already confirmed or failed."""
        w = next((w for w in self.withdrawals if w.id == withdrawal_id), None)
        if w is None:
            raise KeyError(withdrawal_id)
        if w.status in FINAL_WITHDRAWAL_STATUSES:
            raise ValueError(f"withdrawal {withdrawal_id} is already {w.status}")
        w.status = "failed"
        self.ledger.credit(w.username, w.coin, w.amount + w.fee_amount)
        return w

    def withdrawals_of(self, username: str) -> list[SimWithdrawal]:
        """The user's withdrawals, newest first."""
        return [w for w in reversed(self.withdrawals) if w.username == username]

    def deposits_of(self, username: str) -> list[SimDeposit]:
        """The user's deposits, newest first."""
        return [d for d in reversed(self.deposits) if d.username == username]

    def pending(self, username: str, coin: str) -> Decimal:
        """Deposits of `coin` still waiting for confirmations."""
        waiting = [d for d in self.deposits if d.username == username and d.coin == coin and not d.confirmed]
        return sum((d.amount for d in waiting), Decimal(0))

    def process(self) -> None:
        """Advance every withdrawal and deposit to where the clock says it is."""
        now = self.clock.now()
        for w in self.withdrawals:
            if w.status in FINAL_WITHDRAWAL_STATUSES:
                continue
            elapsed = now - w.date
            if elapsed >= timedelta(minutes=SIGNED_AFTER) and w.status == "pending":
                w.status = "signed"
                w.txid = txid_for(self.seed, "withdrawal", w.id)
            if elapsed >= timedelta(minutes=SENT_AFTER) and w.status == "signed":
                if w.will_fail:
                    w.status = "failed"
                    self.ledger.credit(w.username, w.coin, w.amount + w.fee_amount)
                    continue
                w.status = "sent"
            if elapsed >= timedelta(minutes=CONFIRMED_AFTER) and w.status == "sent":
                w.status = "confirmed"
        for d in self.deposits:
            spec = COINS[d.coin]
            minutes = int((now - d.date).total_seconds() // 60)
            d.confirmations = max(d.confirmations, minutes * spec.confirmations_per_minute)
            if not d.confirmed and d.confirmations >= spec.confirmations_needed:
                d.confirmed = True
                self.ledger.credit(d.username, d.coin, d.amount)
