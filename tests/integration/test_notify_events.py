"""The events notifications need that the order path publishes: an order whose outcome is still unknown past
the grace (once per order), and the daily loss limit reached (once per coin and UTC day)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.clock import ManualClock
from bot.domain import Side
from bot.errors import OutcomeUnknown
from bot.events import DailyLossLimitReached, Event, EventBus, OrderUnresolved
from bot.execution import risk
from bot.execution.journal import Journal
from bot.execution.manager import OrderManager
from bot.execution.states import OrderState
from bot.execution.tracker import UNKNOWN_GRACE, Tracker
from bot.settings import RiskSettings
from bot.store import Store


class TwoCandidates:
    """A broker whose look-up of a lost place always finds two matching orders (it must never guess)."""

    async def find_order(self, *args: Any) -> int | None:
        raise OutcomeUnknown("2 orders match the lost place")


@pytest.fixture
def store(tmp_path: Path, clock: ManualClock) -> Iterator[Store]:
    s = Store.open(tmp_path, clock=clock)
    yield s
    s.close()


async def test_an_order_still_unknown_past_the_grace_is_published_once(store: Store, clock: ManualClock) -> None:
    bus, seen = EventBus(), list[Event]()
    bus.subscribe("test", seen.append, OrderUnresolved)
    journal = Journal(store, clock, bus, broker="live")
    order = journal.intend("btc-rsi", "btc-mxn", Side.BUY, Decimal("100"), Decimal("0.5"), "entry", None)
    assert order is not None
    order = journal.move(order.id, OrderState.UNKNOWN, note="the place answer was lost")
    tracker = Tracker(clock, journal, TwoCandidates())  # type: ignore[arg-type]
    await tracker.resolve_unknown(order)
    assert seen == []  # inside the grace: still being looked up
    clock.advance(UNKNOWN_GRACE.total_seconds())
    await tracker.resolve_unknown(order)
    await tracker.resolve_unknown(order)
    assert len(seen) == 1
    ev = seen[0]
    assert isinstance(ev, OrderUnresolved)
    assert (ev.order_id, ev.instance, ev.market, ev.side, ev.price, ev.amount) == (
        order.id, "btc-rsi", "btc-mxn", "buy", Decimal("100"), Decimal("0.5"))
    assert ev.age_s == UNKNOWN_GRACE.total_seconds() and "2 orders match" in ev.reason


class _Manager:
    """What `OrderManager._announce_loss_limit` uses: limits, clock and the bus."""

    def __init__(self, clock: ManualClock, bus: EventBus) -> None:
        self.limits = risk.Limits.from_settings(RiskSettings(daily_loss_limit={"mxn": Decimal("1000")}))
        self.clock, self.events = clock, bus
        self._loss_told: set[tuple[str, datetime]] = set()

    def announce(self, coin: str, pnl: str) -> None:
        OrderManager._announce_loss_limit(self, coin, risk.RiskState(pnl_today={coin: Decimal(pnl)}))  # type: ignore[arg-type]


def test_the_daily_loss_limit_is_announced_once_per_coin_and_utc_day(clock: ManualClock) -> None:
    bus, seen = EventBus(), list[Event]()
    bus.subscribe("test", seen.append, DailyLossLimitReached)
    m = _Manager(clock, bus)
    m.announce("mxn", "-999.99")
    assert seen == []
    m.announce("mxn", "-1000")
    m.announce("mxn", "-1500")
    m.announce("usd", "-5000")  # no limit configured for it: buys are blocked anyway, nothing "reached"
    assert [(e.coin, e.pnl, e.limit) for e in seen if isinstance(e, DailyLossLimitReached)] == [
        ("mxn", Decimal("-1000"), Decimal("1000"))]
    clock.advance(timedelta(days=1).total_seconds())
    m.announce("mxn", "-1200")
    assert len(seen) == 2
