"""The recorder's subscriber: every event worth keeping becomes a row in the outbox.

It runs inside the producer's transaction where there is one (a closed candle and its evaluations commit
with the feed's cursor; sensor readings with the device's seen-set), so a row is recorded exactly when the
state change behind it is. It never touches the network.
"""

from __future__ import annotations

from typing import Any

from bot.domain import Candle
from bot.events import CandleClosed, Evaluation, EvaluationFailed, Event, SensorReadingSeen, Tick
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
