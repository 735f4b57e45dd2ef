"""The one event path: typed, immutable events for everything the bot observes or does, and the bus.

Producers (feeds, the evaluator, the sensor feed, and later the order manager and the wallet watcher) get
the `EventBus` in their constructors and `publish` to it; subscribers (the metrics, the recorder,
execution, notifications) are attached in the composition root *before* any producer starts, so nothing
is missed, warm-up backfill included.

`publish` is synchronous on purpose: a subscriber can only do local, bounded work (count, append to the
store's outbox in the caller's transaction, put on its own queue). Anything that needs the network happens
in the subscriber's own task, so a slow subscriber never stalls polling. A subscriber that raises is
logged with its traceback and counted; the producer and the other subscribers carry on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from bot.domain import Candle, SensorReading
from bot.logs import get_logger

log = get_logger("bot.events")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event; `at` is the injected clock's time when it happened."""

    KIND: ClassVar[str] = "event"
    at: datetime

    @property
    def kind(self) -> str:
        return self.KIND


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick(Event):
    """One poll of one stream: its newest candle as the bot saw it (partial or not), when it was seen."""

    KIND: ClassVar[str] = "tick"
    stream: str
    candle: Candle


@dataclass(frozen=True, slots=True, kw_only=True)
class CandleClosed(Event):
    """A candle of a stream closed. `backfill` marks candles fetched late (after a restart or outage).
    `fetched_mono` is the wall `time.monotonic()` at which the poll that delivered it returned (None for
    warm-up): where the closed-candle-to-order latency starts."""

    KIND: ClassVar[str] = "candle_closed"
    stream: str
    candle: Candle
    backfill: bool = False
    fetched_mono: float | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class CycleCommitted(Event):
    """The cycle of one closed candle (its evaluations, hand-off keys and cursor) committed, `seconds` of
    wall time after the poll that fetched it started (the tick latency)."""

    KIND: ClassVar[str] = "cycle_committed"
    stream: str
    candle_time: datetime
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation(Event):
    """One evaluation of one strategy instance on one closed candle.

    `actionable` is False while warming up or on stale data (`note` says why). `handoff` is True exactly
    once per (instance, candle): when this evaluation was actionable and its hand-off key was committed
    together with the stream's cursor. Only hand-offs may lead to money.
    """

    KIND: ClassVar[str] = "evaluation"
    instance: str
    strategy: str
    market: str
    stream: str
    candle: Candle
    action: str
    reason: str
    values: Mapping[str, float | None]
    actionable: bool
    note: str
    order_amount: Decimal
    ttl_seconds: int
    backfill: bool = False
    handoff: bool = False
    fetched_mono: float | None = field(default=None, compare=False)  # see `CandleClosed`


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationFailed(Event):
    """A strategy instance raised while evaluating a candle; only that instance's evaluation is lost."""

    KIND: ClassVar[str] = "evaluation_failed"
    instance: str
    stream: str
    candle: Candle
    error: str
    backfill: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SensorReadingSeen(Event):
    """A new (or late-uploaded) reading of one Atmotube device."""

    KIND: ClassVar[str] = "sensor_reading"
    device: str
    reading: SensorReading


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedStale(Event):
    """A stream's newest closed candle is too old: signals on it are suppressed."""

    KIND: ClassVar[str] = "feed_stale"
    stream: str
    age_s: float | None
    limit_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedFresh(Event):
    """A stale stream has fresh candles again."""

    KIND: ClassVar[str] = "feed_fresh"
    stream: str
    age_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRestarted(Event):
    """A supervised task raised and is being restarted after `delay_s`."""

    KIND: ClassVar[str] = "task_restarted"
    task: str
    error: str
    restarts: int
    delay_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmRaised(Event):
    """A condition a user must know about started (a service down, a strategy failing, ...)."""

    KIND: ClassVar[str] = "alarm_raised"
    name: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmCleared(Event):
    """A raised alarm's condition ended."""

    KIND: ClassVar[str] = "alarm_cleared"
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderChanged(Event):
    """An order of the bot changed state (journaled in the same transaction)."""

    KIND: ClassVar[str] = "order_changed"
    order_id: int  # the journal's id
    instance: str
    market: str
    side: str
    price: Decimal
    amount: Decimal
    filled: Decimal
    state: str
    previous: str
    exchange_id: str | None
    purpose: str
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FillSeen(Event):
    """A fill of one of the bot's orders, seen for the first time (de-duplicated by fill id)."""

    KIND: ClassVar[str] = "fill"
    order_id: int
    fill_id: str
    instance: str
    market: str
    side: str
    price: Decimal
    amount: Decimal
    fee: Decimal
    fee_coin: str
    maker: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class KillSwitchChanged(Event):
    """The kill switch went on or off; `source` is what caused it: "file" or "command"."""

    KIND: ClassVar[str] = "kill_switch_changed"
    on: bool
    reason: str
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BalancesObserved(Event):
    """One wallet poll that found a balance changed: every coin's `available`, `frozen` and `pending`."""

    KIND: ClassVar[str] = "balances_observed"
    mode: str  # "live" (the exchange account) or "paper" (the paper account)
    balances: Mapping[str, Mapping[str, Decimal]]
    changed: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceChanged(Event):
    """A coin's balance changed: `delta` of its total (available + frozen) and what explains it.

    `explained` maps a reason ("fill", "fee", "deposit", "withdrawal", "refund") to the part of the delta it
    accounts for; `unexplained` is what nothing accounts for yet (one poll of lag is allowed before it is
    flagged with `BalanceUnexplained`)."""

    KIND: ClassVar[str] = "balance_changed"
    mode: str
    coin: str
    available: Decimal
    frozen: Decimal
    pending: Decimal
    delta: Decimal
    available_delta: Decimal
    frozen_delta: Decimal
    pending_delta: Decimal
    explained: Mapping[str, Decimal]
    unexplained: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceUnexplained(Event):
    """A coin's total moved by `amount` and, a poll later, nothing the bot knows explains it (someone else
    may be using the account). `part` is "total" or "split" (frozen not matching the bot's open orders)."""

    KIND: ClassVar[str] = "balance_unexplained"
    mode: str
    coin: str
    part: str
    amount: Decimal
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DepositSeen(Event):
    """A deposit appeared on the account (usually pending: waiting for confirmations)."""

    KIND: ClassVar[str] = "deposit_seen"
    deposit_id: int
    coin: str
    amount: Decimal
    address: str
    txid: str | None
    confirmations: int
    confirmed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DepositConfirmed(Event):
    """A deposit got its confirmations and was credited."""

    KIND: ClassVar[str] = "deposit_confirmed"
    deposit_id: int
    coin: str
    amount: Decimal
    address: str
    txid: str | None
    confirmations: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WithdrawalChanged(Event):
    """A withdrawal was seen for the first time (`previous` "") or moved to another status."""

    KIND: ClassVar[str] = "withdrawal_changed"
    withdrawal_id: int
    coin: str
    amount: Decimal
    fee: Decimal
    address: str
    status: str
    previous: str
    txid: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class WithdrawalFailed(Event):
    """A withdrawal failed after the exchange accepted it; `refund` (amount and fee) goes back."""

    KIND: ClassVar[str] = "withdrawal_failed"
    withdrawal_id: int
    coin: str
    amount: Decimal
    fee: Decimal
    address: str
    refund: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepChanged(Event):
    """A sweep of the sweep journal changed state (journaled in the same transaction)."""

    KIND: ClassVar[str] = "sweep_changed"
    sweep_id: int
    coin: str
    address: str
    amount: Decimal
    fee: Decimal
    state: str
    previous: str
    withdrawal_id: int | None
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonStarted(Event):
    """The daemon is READY: scheduled and trading (`instances`: the enabled strategy instances)."""

    KIND: ClassVar[str] = "daemon_started"
    bot: str
    mode: str
    instances: tuple[str, ...]
    sandbox: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonStopping(Event):
    """The daemon began its stop (`reason`: a signal's name, "duration elapsed", ...)."""

    KIND: ClassVar[str] = "daemon_stopping"
    bot: str
    mode: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DailyLossLimitReached(Event):
    """Today's PnL in `coin` reached `-limit`: buys quoted in it are blocked until 00:00 UTC (published once
    per coin and UTC day, when an order is first held back by it)."""

    KIND: ClassVar[str] = "daily_loss_limit"
    coin: str
    pnl: Decimal
    limit: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderUnresolved(Event):
    """An order's place outcome is still unknown `age_s` clock seconds after it was sent (published once per
    order); nothing more is placed on its market until it is resolved."""

    KIND: ClassVar[str] = "order_unresolved"
    order_id: int
    instance: str
    market: str
    side: str
    price: Decimal
    amount: Decimal
    age_s: float
    reason: str


Subscriber = Callable[[Event], None]


@dataclass
class _Subscription:
    name: str
    fn: Subscriber
    kinds: frozenset[type[Event]] | None
    errors: int = 0


def finite(values: Mapping[str, Any]) -> dict[str, float | None]:
    """Indicator values with every non-finite number (NaN, ±inf) as None: never NaN in a log or a row."""
    out: dict[str, float | None] = {}
    for k, v in values.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            out[k] = None
            continue
        out[k] = f if math.isfinite(f) else None
    return out


@dataclass
class EventBus:
    """Delivers each published event to every subscriber, in subscription order, synchronously."""

    _subs: list[_Subscription] = field(default_factory=list)
    published: int = 0

    def subscribe(self, name: str, fn: Subscriber, *kinds: type[Event]) -> None:
        """Attach `fn` for events of `kinds` (all kinds when none are given)."""
        self._subs.append(_Subscription(name, fn, frozenset(kinds) if kinds else None))

    def publish(self, event: Event) -> None:
        """Hand `event` to each interested subscriber; a subscriber's exception is logged and counted."""
        self.published += 1
        for sub in self._subs:
            if sub.kinds is not None and type(event) not in sub.kinds:
                continue
            try:
                sub.fn(event)
            except Exception:
                sub.errors += 1
                log.exception("events.subscriber_failed", subscriber=sub.name, kind=event.kind)

    def subscriber_errors(self) -> dict[str, int]:
        return {s.name: s.errors for s in self._subs}
