"""The recorder's subscriber: every event worth keeping becomes a row in the outbox.

It runs inside the producer's transaction where there is one (a closed candle and its evaluations commit
with the feed's cursor; sensor readings with the device's seen-set), so a row is recorded exactly when the
state change behind it is. It never touches the network.
"""

from __future__ import annotations

from typing import Any

from bot.domain import Candle
from bot.events import (
    BalancesObserved,
    BalanceUnexplained,
    CandleClosed,
    DepositConfirmed,
    DepositSeen,
    Evaluation,
    EvaluationFailed,
    Event,
    SensorReadingSeen,
    SweepChanged,
    Tick,
    WithdrawalChanged,
    WithdrawalFailed,
)
from bot.recorder import datasets as ds
from bot.recorder.outbox import Outbox


def candle_values(c: Candle) -> dict[str, Any]:
    values: dict[str, Any] = {"open": c.open, "high": c.high, "low": c.low, "close": c.close, "volume": c.volume}
    if c.trades is not None:
        values["trades"] = c.trades
    if c.vwap is not None:
        values["vwap"] = c.vwap
    return values


class RecorderSubscriber:
    """Maps events to outbox rows (see `bot.recorder.datasets` for what each dataset holds)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def on_event(self, event: Event) -> None:
        if isinstance(event, Tick):
            c = event.candle
            self.outbox.append(ds.key(ds.TICKS, event.stream), event.at,
                               {**candle_values(c), "candle": c.time.isoformat(), "partial": int(c.partial)})
        elif isinstance(event, CandleClosed):
            values = candle_values(event.candle)
            if event.backfill:
                values["backfill"] = 1
            self.outbox.append(ds.key(ds.CANDLES, event.stream), event.candle.time, values)
        elif isinstance(event, Evaluation):
            self.outbox.append(ds.key(ds.EVALUATIONS, event.instance), event.candle.time, {
                **event.values, "action": event.action, "reason": event.reason,
                "actionable": int(event.actionable), "note": event.note, "handoff": int(event.handoff),
                "close": event.candle.close, "stream": event.stream, "backfill": int(event.backfill)})
        elif isinstance(event, EvaluationFailed):
            self.outbox.append(ds.key(ds.EVALUATIONS, event.instance), event.candle.time, {
                "action": "error", "reason": event.error, "actionable": 0, "note": "the strategy raised",
                "handoff": 0, "close": event.candle.close, "stream": event.stream})
        elif isinstance(event, SensorReadingSeen):
            r = event.reading
            reading: dict[str, Any] = dict(r.values)
            if r.lat is not None:
                reading["lat"] = r.lat
            if r.lon is not None:
                reading["lon"] = r.lon
            self.outbox.append(ds.key(ds.SENSOR, event.device), r.time, reading)
        elif isinstance(event, BalancesObserved | BalanceUnexplained):
            self._balances(event)
        elif isinstance(event, DepositSeen | DepositConfirmed | WithdrawalChanged | WithdrawalFailed | SweepChanged):
            self._transfer(event)

    def _balances(self, event: BalancesObserved | BalanceUnexplained) -> None:
        """`balances/<account>`: a column per coin and field at each poll that saw a change; an unexplained
        change as a row of its own (`event = "unexplained"`)."""
        subject = ds.account(event.mode)
        if isinstance(event, BalancesObserved):
            row: dict[str, Any] = {"event": "observed", "changed": ",".join(event.changed)}
            for coin, values in event.balances.items():
                row.update({f"{coin}_{name}": amount for name, amount in values.items()})
        else:
            row = {"event": "unexplained", "coin": event.coin, "part": event.part, "amount": event.amount,
                   "detail": event.detail}
        self.outbox.append(ds.key(ds.BALANCES, subject), event.at, row)

    def _transfer(self, event: DepositSeen | DepositConfirmed | WithdrawalChanged | WithdrawalFailed | SweepChanged
                  ) -> None:
        """`transfers/coinbtr`: one row per transfer event (deposits, withdrawals, the bot's sweeps)."""
        row: dict[str, Any] = {"event": event.kind}
        if isinstance(event, DepositSeen | DepositConfirmed):
            row.update({"kind": "deposit", "id": event.deposit_id, "coin": event.coin, "amount": event.amount,
                        "address": event.address, "txid": event.txid, "confirmations": event.confirmations,
                        "status": "confirmed" if isinstance(event, DepositConfirmed) or event.confirmed else "pending"})
        elif isinstance(event, WithdrawalChanged):
            row.update({"kind": "withdrawal", "id": event.withdrawal_id, "coin": event.coin, "amount": event.amount,
                        "fee": event.fee, "address": event.address, "txid": event.txid, "status": event.status,
                        "previous": event.previous})
        elif isinstance(event, WithdrawalFailed):
            row.update({"kind": "withdrawal", "id": event.withdrawal_id, "coin": event.coin, "amount": event.amount,
                        "fee": event.fee, "address": event.address, "status": "failed", "refund": event.refund})
        else:
            row.update({"kind": "sweep", "id": event.sweep_id, "coin": event.coin, "amount": event.amount,
                        "fee": event.fee, "address": event.address, "status": event.state,
                        "previous": event.previous, "withdrawal_id": event.withdrawal_id, "note": event.note})
        self.outbox.append(ds.key(ds.TRANSFERS, ds.account("live")), event.at, row)
