"""The order journal: intent before request, once per (instance, candle), fills de-duplicated, outbox rows."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.clock import ManualClock
from bot.domain import Fill, Side
from bot.events import Event, EventBus, FillSeen, OrderChanged
from bot.execution.journal import Journal
from bot.execution.states import IllegalTransition, OrderState
from bot.recorder.datasets import UNORDERED
from bot.recorder.outbox import Outbox
from bot.store import Store


@pytest.fixture
def rig(tmp_path: Path, clock: ManualClock) -> tuple[Journal, Store, list[Event]]:
    store = Store.open(tmp_path, clock=clock)
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe("test", seen.append)
    return Journal(store, clock, bus, Outbox(store, clock, UNORDERED)), store, seen


def fill(fid: int, amount: str, clock: ManualClock, fee: str = "0.000001") -> Fill:
    return Fill(fid, 77, "btc-mxn", Side.BUY, Decimal("1000000"), Decimal(amount), Decimal(fee), "btc", True,
                clock.now())


def test_an_intent_is_committed_submitting_once_per_instance_and_candle(
        rig: tuple[Journal, Store, list[Event]], clock: ManualClock) -> None:
    journal, store, seen = rig
    candle = clock.now() - timedelta(minutes=1)
    order = journal.intend("btc-rsi", "btc-mxn", Side.BUY, Decimal("1000000"), Decimal("0.001"), "entry", candle)
    assert order is not None and order.state is OrderState.SUBMITTING
    # The same evaluation again (after a crash): no second order.
    assert journal.intend("btc-rsi", "btc-mxn", Side.BUY, Decimal("1000000"), Decimal("0.001"), "entry",
                          candle) is None
    assert len(journal.for_instance("btc-rsi")) == 1
    assert [e.state for e in seen if isinstance(e, OrderChanged)] == ["submitting"]
    rows = store.query("SELECT dataset, row_values FROM outbox")
    assert [r["dataset"] for r in rows] == ["orders/btc-mxn"] and '"state":"submitting"' in rows[0]["row_values"]


def test_fills_are_accounted_once_and_move_the_order(
        rig: tuple[Journal, Store, list[Event]], clock: ManualClock) -> None:
    journal, store, seen = rig
    order = journal.intend("btc-rsi", "btc-mxn", Side.BUY, Decimal("1000000"), Decimal("0.003"), "entry", clock.now())
    assert order is not None
    journal.move(order.id, OrderState.OPEN, exchange_id="77")
    assert journal.add_fill(order.id, fill(1, "0.001", clock))
    assert not journal.add_fill(order.id, fill(1, "0.001", clock))  # the same fill id again
    assert journal.get(order.id).state is OrderState.PARTIALLY_FILLED
    assert journal.add_fill(order.id, fill(2, "0.001", clock))
    assert journal.get(order.id).state is OrderState.PARTIALLY_FILLED
    assert journal.add_fill(order.id, fill(3, "0.001", clock))
    done = journal.get(order.id)
    assert (done.state, done.filled, done.fee) == (OrderState.FILLED, Decimal("0.003"), Decimal("0.000003"))
    assert journal.position("btc-rsi", "btc") == Decimal("0.002997")  # bought, net of the fee in btc
    assert len([e for e in seen if isinstance(e, FillSeen)]) == 3
    assert [r["dataset"] for r in store.query("SELECT dataset FROM outbox WHERE dataset LIKE 'fills/%'")] == [
        "fills/btc-mxn"] * 3
    assert journal.unfinished() == []


def test_a_fill_while_cancelling_is_kept_and_the_state_waits_for_the_truth(
        rig: tuple[Journal, Store, list[Event]], clock: ManualClock) -> None:
    journal, _store, _seen = rig
    order = journal.intend("i", "btc-mxn", Side.BUY, Decimal("1000000"), Decimal("0.002"), "entry", clock.now())
    assert order is not None
    journal.move(order.id, OrderState.OPEN, exchange_id="77")
    journal.move(order.id, OrderState.CANCELLING)
    journal.add_fill(order.id, fill(9, "0.001", clock))
    assert journal.get(order.id).state is OrderState.CANCELLING and journal.get(order.id).filled == Decimal("0.001")
    assert journal.move(order.id, OrderState.CANCELLED).filled == Decimal("0.001")


def test_an_illegal_move_raises_and_writes_nothing(rig: tuple[Journal, Store, list[Event]],
                                                   clock: ManualClock) -> None:
    journal, store, _seen = rig
    order = journal.intend("i", "btc-mxn", Side.SELL, Decimal("1000000"), Decimal("0.002"), "exit", clock.now())
    assert order is not None
    journal.move(order.id, OrderState.REJECTED, note="1002 insufficient funds")
    before = store.query("SELECT COUNT(*) AS n FROM outbox")[0]["n"]
    with pytest.raises(IllegalTransition):
        journal.move(order.id, OrderState.OPEN)
    assert journal.get(order.id).state is OrderState.REJECTED
    assert store.query("SELECT COUNT(*) AS n FROM outbox")[0]["n"] == before


def test_paper_and_live_orders_of_one_state_dir_never_mix(tmp_path: Path, clock: ManualClock) -> None:
    store = Store.open(tmp_path, clock=clock)
    paper = Journal(store, clock, EventBus(), broker="paper")
    live = Journal(store, clock, EventBus(), broker="live")
    for journal in (paper, live):  # the same exchange id and fill id on both sides
        order = journal.intend("i", "btc-mxn", Side.BUY, Decimal("1000000"), Decimal("0.001"), "entry", clock.now())
        assert order is not None
        journal.move(order.id, OrderState.OPEN, exchange_id="1")
        assert journal.add_fill(order.id, fill(1, "0.001", clock, fee="0"))
    assert paper.position("i", "btc") == live.position("i", "btc") == Decimal("0.001")
    assert len(paper.for_instance("i")) == len(live.for_instance("i")) == 1
    store.close()


def test_positions_and_day_flows_kept_in_memory_match_the_fills_and_ignore_rolled_back_ones(
        tmp_path: Path, rig: tuple[Journal, Store, list[Event]], clock: ManualClock) -> None:
    journal, store, _ = rig
    day = clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    order = journal.intend("btc-rsi", "btc-mxn", Side.BUY, Decimal("1000000"), Decimal("0.003"), "entry", None)
    assert order is not None
    assert journal.position("btc-rsi", "btc") == 0 and journal.day_flows(day) == ({}, {})  # now kept
    journal.add_fill(order.id, fill(1, "0.001", clock))
    with pytest.raises(RuntimeError), store.transaction():  # a fill whose transaction rolls back moves nothing
        journal.add_fill(order.id, fill(2, "0.001", clock))
        raise RuntimeError("rolled back")
    journal.add_fill(order.id, fill(3, "0.001", clock, fee="0.000002"))
    assert journal.position("btc-rsi", "btc") == Decimal("0.001997")
    cash, moved = journal.day_flows(day)
    assert cash == {"mxn": Decimal("-2000.000")} and moved == {"btc-mxn": Decimal("0.001997")}
    # What a fresh journal reads from the store is the same.
    fresh = Journal(store, clock, EventBus())
    assert fresh.position("btc-rsi", "btc") == journal.position("btc-rsi", "btc")
    assert fresh.day_flows(day) == journal.day_flows(day)
