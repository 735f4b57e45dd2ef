"""Runs every configured strategy instance on each closed candle of its stream (the cycle of a stream).

Every closed candle yields one evaluation per instance on the stream. Instances are isolated: one that
raises loses only its own evaluation (logged with the traceback, counted, shown on `/status`, an alarm while
it keeps failing); the others still evaluate. An evaluation is `actionable=False` when the data is stale
(the candle ended more than two periods plus the grace ago) or the instance is still warming up, so nothing
downstream trades on old news. Actionable evaluations are handed off once per (instance, candle): the key
is claimed in the feed's transaction (see `bot.feeds.feed`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from bot.clock import Clock
from bot.domain import Action, Candle
from bot.events import (
    AlarmCleared,
    AlarmRaised,
    CandleClosed,
    Evaluation,
    EvaluationFailed,
    Event,
    EventBus,
    finite,
)
from bot.logs import REDACTOR, get_logger
from bot.priority import OrdersFirst
from bot.settings import Settings, StrategySettings
from bot.signals.handoff import Handoffs
from bot.strategy import CandleWindow, Strategy, StrategyParams, load_strategy, window_size

log = get_logger("bot.signals")

# Hand-off keys older than this are pruned: no feed backfills that far (see bot.feeds.feed.MAX_BACKFILL).
HANDOFF_RETENTION = timedelta(days=8)
# A stream's evaluations hand the loop back once they have held it this long (wall seconds). Not after every
# instance: when every stream's candle closes in the same moment, yielding after each instance interleaves the
# streams, so each one's hand-off waits for nearly all the others' evaluations; in one go, a stream's
# evaluations (a few ms) finish before the next stream starts, and the loop is still never held for long.
YIELD_AFTER_S = 0.010


class Instance:
    """A configured strategy instance: its strategy, validated params, trailing window and counters."""

    def __init__(self, cfg: StrategySettings, strategy: Strategy[Any], params: StrategyParams) -> None:
        self.cfg = cfg
        self.strategy = strategy
        self.params = params
        self.window = CandleWindow(window_size(strategy, params))
        self.warmup = strategy.warmup(params)
        self.evaluations = 0
        self.failures = 0
        self.failing = False
        self.last_error: str | None = None
        self.handoffs = 0
        self.counts: dict[str, int] = {a.value: 0 for a in Action}
        self.last: Evaluation | None = None
        self._last_time: datetime | None = None

    @property
    def name(self) -> str:
        return self.cfg.name

    def prime(self, candles: Sequence[Candle]) -> None:
        for c in candles:
            self.append(c)

    def reset(self) -> None:
        """An empty window (primed again from history)."""
        self.window = CandleWindow(window_size(self.strategy, self.params))
        self._last_time = None

    def append(self, candle: Candle) -> bool:
        """Add the candle to the window; False if it is not newer than the last one."""
        if self._last_time is not None and candle.time <= self._last_time:
            return False
        self.window.append(candle)
        self._last_time = candle.time
        return True


class Evaluator:
    """Maps streams to strategy instances; evaluates them on each closed candle and commits the results."""

    def __init__(self, settings: Settings, clock: Clock, events: EventBus, handoffs: Handoffs,
                 priority: OrdersFirst | None = None) -> None:
        self.clock = clock
        self.priority = priority  # orders already decided go first (`bot.priority`)
        self.events = events
        self.handoffs = handoffs
        self.grace_s = settings.market.stale_grace_seconds
        self.instances: list[Instance] = []
        self.by_stream: dict[str, list[Instance]] = {}
        for cfg in settings.strategies:
            if not cfg.enabled:
                continue
            strat = load_strategy(cfg.strategy, settings.strategy_paths)
            inst = Instance(cfg, strat, strat.parse_params(cfg.params))
            self.instances.append(inst)
            self.by_stream.setdefault(cfg.feed.key, []).append(inst)
        self.by_name = {i.name: i for i in self.instances}

    def warmup_for(self, stream: str) -> int:
        return max((i.warmup for i in self.by_stream.get(stream, [])), default=1)

    def prime(self, stream: str, candles: Sequence[Candle]) -> None:
        for inst in self.by_stream.get(stream, []):
            inst.prime(candles)

    def reset(self, stream: str) -> None:
        for inst in self.by_stream.get(stream, []):
            inst.reset()

    async def evaluate(self, closed: CandleClosed) -> list[Event]:
        """One result per instance on the stream: an `Evaluation`, or an `EvaluationFailed` if it raised."""
        results: list[Event] = []
        if self.priority is not None:
            await self.priority.defer()
        began = time.monotonic()
        for inst in self.by_stream.get(closed.stream, []):
            result = self.evaluate_one(inst, closed, self.clock.now())
            if result is not None:
                results.append(result)
            if time.monotonic() - began >= YIELD_AFTER_S:  # many instances on one stream never hold the loop long
                await asyncio.sleep(0)
                began = time.monotonic()
        return results

    def evaluate_one(self, inst: Instance, closed: CandleClosed, now: datetime) -> Event | None:
        """Append the candle to the instance's window and evaluate; None if the candle was a duplicate."""
        candle = closed.candle
        if not inst.append(candle):
            return None
        try:
            signal = inst.strategy.evaluate(inst.window.frame(), inst.params)
            action, reason, values = signal.action.value, str(signal.reason), finite(signal.values)
        except Exception as exc:  # a user strategy's bug (or a malformed signal) costs only its own evaluation
            inst.failures += 1
            # The text of a user's exception may quote anything: scrubbed like a log line before it is
            # recorded (Atlas) or shown (/status).
            inst.last_error = str(REDACTOR.scrub(f"{type(exc).__name__}: {exc}"))
            log.exception("evaluation.failed", instance=inst.name, stream=closed.stream,
                          candle=candle.time.isoformat(), failures=inst.failures)
            return EvaluationFailed(at=now, instance=inst.name, stream=closed.stream, candle=candle,
                                    error=inst.last_error, backfill=closed.backfill)
        age = (now - candle.end).total_seconds()
        limit = 2 * candle.period + self.grace_s
        note = ""
        if len(inst.window) < inst.warmup:
            note = "warming up"
        elif age > limit:
            note = f"stale: candle ended {age:.0f}s ago (limit {limit:.0f}s)"
        return Evaluation(
            at=now, instance=inst.name, strategy=inst.strategy.name, market=inst.cfg.market,
            stream=closed.stream, candle=candle, action=action, reason=reason,
            values=values, actionable=not note, note=note,
            order_amount=Decimal(inst.cfg.order_amount), ttl_seconds=inst.cfg.order_ttl_seconds,
            backfill=closed.backfill, fetched_mono=closed.fetched_mono)

    def commit(self, results: list[Event]) -> None:
        """Inside the feed's transaction: claim the hand-off keys, then publish (and log) each result."""
        for ev in results:
            inst = self.by_name[ev.instance] if isinstance(ev, Evaluation | EvaluationFailed) else None
            if inst is None:
                continue
            if isinstance(ev, EvaluationFailed):
                if not inst.failing:
                    inst.failing = True
                    self.events.publish(AlarmRaised(at=ev.at, name=f"strategy:{inst.name}", detail=ev.error))
                self.events.publish(ev)
                continue
            assert isinstance(ev, Evaluation)
            if ev.actionable:
                ev = replace(ev, handoff=self.handoffs.claim(ev.instance, ev.candle.time, _payload(ev)))
            self._account(inst, ev)
            self.events.publish(ev)

    def _account(self, inst: Instance, ev: Evaluation) -> None:
        inst.evaluations += 1
        inst.counts[ev.action] = inst.counts.get(ev.action, 0) + 1
        inst.handoffs += int(ev.handoff)
        inst.last = ev
        if inst.failing:
            inst.failing = False
            self.events.publish(AlarmCleared(at=ev.at, name=f"strategy:{inst.name}"))
        log.info("signal", instance=ev.instance, market=ev.market, stream=ev.stream,
                 candle=ev.candle.time.isoformat(), close=str(ev.candle.close), action=ev.action,
                 reason=ev.reason, values={k: None if v is None else round(v, 6) for k, v in ev.values.items()},
                 actionable=ev.actionable, note=ev.note or None, backfill=ev.backfill or None,
                 handoff=ev.handoff or None)

    def prune(self) -> int:
        """Drop hand-off keys no feed can re-emit any more."""
        return self.handoffs.prune(self.clock.now() - HANDOFF_RETENTION)

    def status(self) -> list[dict[str, Any]]:
        out = []
        for inst in self.instances:
            last = inst.last
            out.append({
                "name": inst.name,
                "strategy": inst.strategy.name,
                "market": inst.cfg.market,
                "stream": inst.cfg.feed.key,
                "warmup": inst.warmup,
                "evaluations": inst.evaluations,
                "failures": inst.failures,
                "failing": inst.failing,
                "last_error": inst.last_error,
                "handoffs": inst.handoffs,
                "signals": dict(inst.counts),
                "last": None if last is None else {
                    "candle": last.candle.time.isoformat(),
                    "action": last.action,
                    "reason": last.reason,
                    "values": dict(last.values),
                    "actionable": last.actionable,
                },
            })
        return out


def _payload(ev: Evaluation) -> dict[str, Any]:
    """What a hand-off row keeps of its evaluation (enough for execution to act on it after a restart)."""
    return {"instance": ev.instance, "strategy": ev.strategy, "market": ev.market, "stream": ev.stream,
            "candle": ev.candle.time, "close": ev.candle.close, "action": ev.action, "reason": ev.reason,
            "order_amount": ev.order_amount, "ttl_seconds": ev.ttl_seconds}
