"""Runs every configured strategy instance on each closed candle of its stream.

Every closed candle of a strategy's stream yields exactly one evaluation. The signal and the indicator
values behind it are logged and handed to the sinks (execution and recording subscribe here). A signal is
marked `actionable=False` when the data is stale (the candle ended more than two periods plus the grace
ago: warm-up backfill after a restart, or a feed that fell behind) or the strategy is still warming up, so
nothing downstream trades on old news.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.clock import Clock
from bot.domain import Action, Candle, Signal
from bot.logs import get_logger
from bot.market.feeds import ClosedCandle
from bot.settings import Settings, StrategySettings
from bot.strategy import CandleWindow, Strategy, StrategyParams, load_strategy, window_size

log = get_logger("bot.market.evaluator")


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One evaluation of one strategy instance on one closed candle."""

    instance: str
    strategy: str
    market: str
    stream: str
    candle: Candle
    signal: Signal
    actionable: bool
    note: str  # why it is not actionable, or ""
    order_amount: Any
    ttl_seconds: int


Sink = Callable[[Evaluation], Awaitable[None]]


class Instance:
    """A configured strategy instance: its strategy, validated params and trailing window."""

    def __init__(self, cfg: StrategySettings, strategy: Strategy[Any], params: StrategyParams) -> None:
        self.cfg = cfg
        self.strategy = strategy
        self.params = params
        self.window = CandleWindow(window_size(strategy, params))
        self.warmup = strategy.warmup(params)
        self.evaluations = 0
        self.counts: dict[str, int] = {a.value: 0 for a in Action}
        self.last: Evaluation | None = None
        self._last_time: datetime | None = None

    def prime(self, candles: Sequence[Candle]) -> None:
        for c in candles:
            self._append(c)

    def _append(self, candle: Candle) -> bool:
        if self._last_time is not None and candle.time <= self._last_time:
            return False
        self.window.append(candle)
        self._last_time = candle.time
        return True


class Evaluator:
    """Maps streams to strategy instances and evaluates them on each closed candle."""

    def __init__(self, settings: Settings, clock: Clock, sinks: Sequence[Sink] = ()) -> None:
        self.clock = clock
        self.grace_s = settings.market.stale_grace_seconds
        self.sinks = list(sinks)
        self.instances: list[Instance] = []
        self.by_stream: dict[str, list[Instance]] = {}
        for cfg in settings.strategies:
            if not cfg.enabled:
                continue
            strat = load_strategy(cfg.strategy, settings.strategy_paths)
            inst = Instance(cfg, strat, strat.parse_params(cfg.params))
            self.instances.append(inst)
            self.by_stream.setdefault(cfg.feed.key, []).append(inst)

    def warmup_for(self, stream: str) -> int:
        """Closed candles the stream must provide before its strategies can decide."""
        return max((i.warmup for i in self.by_stream.get(stream, [])), default=1)

    def prime(self, stream: str, candles: Sequence[Candle]) -> None:
        for inst in self.by_stream.get(stream, []):
            inst.prime(candles)

    async def on_closed(self, event: ClosedCandle) -> None:
        for inst in self.by_stream.get(event.stream, []):
            ev = self.evaluate(inst, event, self.clock.now())
            if ev is None:
                continue
            for sink in self.sinks:
                try:
                    await sink(ev)
                except Exception:  # a sink's bug must not stop evaluation of the other instances
                    log.exception("evaluator.sink_failed", instance=inst.cfg.name)

    def evaluate(self, inst: Instance, event: ClosedCandle, now: datetime) -> Evaluation | None:
        """Append the candle to the instance's window and evaluate; None if the candle was a duplicate."""
        if not inst._append(event.candle):
            return None
        signal = inst.strategy.evaluate(inst.window.frame(), inst.params)
        age = (now - event.candle.end).total_seconds()
        limit = 2 * event.candle.period + self.grace_s
        note = ""
        if len(inst.window) < inst.warmup:
            note = "warming up"
        elif age > limit:
            note = f"stale: candle ended {age:.0f}s ago (limit {limit:.0f}s)"
        ev = Evaluation(inst.cfg.name, inst.strategy.name, inst.cfg.market, event.stream, event.candle,
                        signal, actionable=not note, note=note, order_amount=inst.cfg.order_amount,
                        ttl_seconds=inst.cfg.order_ttl_seconds)
        inst.evaluations += 1
        inst.counts[signal.action.value] += 1
        inst.last = ev
        log.info("signal", instance=inst.cfg.name, market=inst.cfg.market, stream=event.stream,
                 candle=event.candle.time.isoformat(), close=str(event.candle.close),
                 action=signal.action.value, reason=signal.reason,
                 values={k: round(v, 6) for k, v in signal.values.items()},
                 actionable=ev.actionable, note=note or None, backfill=event.backfill or None)
        return ev

    def status(self) -> list[dict[str, Any]]:
        out = []
        for inst in self.instances:
            last = inst.last
            out.append({
                "name": inst.cfg.name,
                "strategy": inst.strategy.name,
                "market": inst.cfg.market,
                "stream": inst.cfg.feed.key,
                "warmup": inst.warmup,
                "evaluations": inst.evaluations,
                "signals": dict(inst.counts),
                "last": None if last is None else {
                    "candle": last.candle.time.isoformat(),
                    "action": last.signal.action.value,
                    "reason": last.signal.reason,
                    "values": last.signal.values,
                    "actionable": last.actionable,
                },
            })
        return out
