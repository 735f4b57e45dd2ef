"""The event bus: delivery order, kind filters, a failing subscriber isolated; indicator values finite."""

from __future__ import annotations

import math
from decimal import Decimal

from structlog.testing import capture_logs

from bot.domain import Candle
from bot.events import CandleClosed, Event, EventBus, FeedFresh, Tick, finite
from tests.conftest import T0

CANDLE = Candle(T0, Decimal(1), Decimal(2), Decimal(1), Decimal(2), Decimal(5))


def test_subscribers_get_events_in_order_filtered_by_kind() -> None:
    bus = EventBus()
    every: list[Event] = []
    ticks: list[Event] = []
    bus.subscribe("all", every.append)
    bus.subscribe("ticks", ticks.append, Tick)
    events = [Tick(at=T0, stream="s", candle=CANDLE), CandleClosed(at=T0, stream="s", candle=CANDLE),
              FeedFresh(at=T0, stream="s", age_s=1.0)]
    for e in events:
        bus.publish(e)
    assert every == events
    assert ticks == events[:1]
    assert [e.kind for e in every] == ["tick", "candle_closed", "feed_fresh"]


def test_a_subscriber_that_raises_is_logged_counted_and_does_not_stop_the_others() -> None:
    bus = EventBus()
    after: list[Event] = []

    def broken(_e: Event) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe("broken", broken)
    bus.subscribe("after", after.append)
    with capture_logs() as logs:
        bus.publish(Tick(at=T0, stream="s", candle=CANDLE))
        bus.publish(Tick(at=T0, stream="s", candle=CANDLE))
    assert len(after) == 2
    assert bus.subscriber_errors() == {"broken": 2, "after": 0}
    failed = [e for e in logs if e["event"] == "events.subscriber_failed"]
    assert len(failed) == 2 and all(e["exc_info"] for e in failed)


def test_non_finite_indicator_values_become_none() -> None:
    out = finite({"rsi": float("nan"), "up": math.inf, "down": -math.inf, "ok": 1.5, "text": "x"})
    assert out == {"rsi": None, "up": None, "down": None, "ok": 1.5, "text": None}
