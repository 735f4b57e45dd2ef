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
    """A candle of a stream closed. `backfill` marks candles fetched late (after a restart or outage)."""

    KIND: ClassVar[str] = "candle_closed"
    stream: str
    candle: Candle
    backfill: bool = False


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
