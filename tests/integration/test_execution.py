"""The order manager with the live broker against the simulated CoinBTR: outcomes checked on the exchange.

Every invariant is read from the simulator's own state (`/_sandbox/state`): orders on the exchange, never
the bot's account of itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.clients.coinbtr import CoinbtrClient
from bot.clock import ManualClock
from bot.domain import Candle, Side
from bot.events import Evaluation, EventBus
from bot.execution.journal import Journal
from bot.execution.live import LiveBroker
from bot.execution.manager import OrderManager
from bot.execution.states import OrderState
from bot.sandbox.runner import Sandbox
from bot.settings import Settings, load_settings
from bot.signals.handoff import Handoffs
from bot.store import Store

ROOT = Path(__file__).resolve().parents[2]
PLACE = "/api/v1/trading/place"


def settings_for(tmp_path: Path) -> Settings:
    text = (ROOT / "config" / "paper.toml").read_text()
    text = text.replace('state_dir = "var"', f'state_dir = "{tmp_path / "var"}"').replace(
        'mode = "paper"', 'mode = "live"')
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    return load_settings(cfg)


class Rig:
    def __init__(self, sb: Sandbox, clock: ManualClock, settings: Settings) -> None:
        self.sb, self.clock, self.settings = sb, clock, settings
        self.store = Store.open(settings.state_dir, clock=clock)
        self.events = EventBus()
        self.client = CoinbtrClient.create(settings.coinbtr, clock, base_url=sb.urls["coinbtr"])
        self.journal = Journal(self.store, clock, self.events, broker="live")
        self.handoffs = Handoffs(self.store, clock)
        self.manager = OrderManager(settings, clock, self.store, self.events, self.journal,
                                    LiveBroker(self.client, clock), self.handoffs)

    def evaluation(self, action: str, instance: str = "btc-rsi", minute: int = 0) -> Evaluation:
        t = self.clock.now() - timedelta(minutes=1 + minute)
        candle = Candle(t, Decimal(1), Decimal(1), Decimal(1), Decimal(1), Decimal(1))
        cfg = self.manager.instances[instance]
        self.handoffs.claim(instance, t, {"instance": instance})
        return Evaluation(at=self.clock.now(), instance=instance, strategy=cfg.strategy, market=cfg.market,
                          stream=cfg.feed.key, candle=candle, action=action, reason="test", values={},
                          actionable=True, note="", order_amount=cfg.order_amount, ttl_seconds=60, handoff=True)

    async def exchange(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.get(self.sb.urls["coinbtr"] + "/_sandbox/state") as r:
            return dict(await r.json())

    async def close(self) -> None:
        await self.client.close()
        self.store.close()


@pytest.fixture
async def rig(clock: ManualClock, tmp_path: Path) -> AsyncIterator[Rig]:
    settings = settings_for(tmp_path)
    async with Sandbox(clock, settings=settings) as sb:
        r = Rig(sb, clock, settings)
        await r.manager.reconcile()
        yield r
        await r.close()


def mine(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in state["orders"] if o.get("user") == "paper"]


async def test_the_same_instance_and_candle_evaluated_twice_places_one_order(rig: Rig) -> None:
    ev = rig.evaluation("buy")
    await rig.manager.act(ev)
    await rig.manager.act(ev)  # the evaluation ran twice (a crash before its cursor moved)
    assert len(mine(await rig.exchange())) == 1
    (order,) = rig.journal.for_instance("btc-rsi")
    assert order.state in (OrderState.OPEN, OrderState.PARTIALLY_FILLED, OrderState.FILLED)


async def test_a_place_applied_whose_answer_is_lost_is_adopted_never_resent(rig: Rig) -> None:
    rig.sb.faults["coinbtr"].script("drop_after", method="POST", path_prefix=PLACE)
    await rig.manager.act(rig.evaluation("buy"))
    (order,) = rig.journal.for_instance("btc-rsi")
    assert order.state is OrderState.UNKNOWN
    await rig.manager.follow()
    (order,) = rig.journal.for_instance("btc-rsi")
    on_exchange = mine(await rig.exchange())
    assert len(on_exchange) == 1 and order.exchange_id == str(on_exchange[0]["id"])
    assert order.state in (OrderState.OPEN, OrderState.PARTIALLY_FILLED, OrderState.FILLED)


async def test_a_refused_connection_is_never_placed_and_the_next_signal_places_once(rig: Rig) -> None:
    cfg = rig.manager.instances["btc-rsi"]
    book = (await rig.manager.broker.books())[cfg.market]
    price = (await rig.manager.broker.order_book(cfg.market)).bids[0].price
    await rig.sb.stop_service("coinbtr")  # connection refused: provably nothing was sent
    await rig.client.http.close()  # no pooled keep-alive connection: the next request must connect
    await rig.manager._place(cfg, book, Side.BUY, price, cfg.order_amount, "entry", rig.clock.now())
    await rig.sb.start_service("coinbtr")
    (order,) = rig.journal.for_instance("btc-rsi")
    assert order.state is OrderState.CANCELLED and "not placed" in order.note
    assert mine(await rig.exchange()) == []
    await rig.manager.act(rig.evaluation("buy", minute=1))  # safe to act again: one order
    assert len(mine(await rig.exchange())) == 1


async def test_a_connection_dropped_before_the_exchange_applied_is_closed_as_never_placed(
        rig: Rig, clock: ManualClock) -> None:
    rig.sb.faults["coinbtr"].script("drop_before", method="POST", path_prefix=PLACE)
    await rig.manager.act(rig.evaluation("buy"))
    (order,) = rig.journal.for_instance("btc-rsi")
    assert order.state is OrderState.UNKNOWN  # from our side the request may have landed
    await rig.manager.follow()
    assert rig.journal.get(order.id).state is OrderState.UNKNOWN  # not visible yet: not given up yet
    clock.advance(200)
    await rig.manager.follow()
    assert rig.journal.get(order.id).state is OrderState.CANCELLED and mine(await rig.exchange()) == []


async def test_a_5xx_after_sending_is_unknown_then_resolved_from_the_exchange(rig: Rig, clock: ManualClock) -> None:
    rig.sb.faults["coinbtr"].script("500", method="POST", path_prefix=PLACE)
    await rig.manager.act(rig.evaluation("buy"))
    (order,) = rig.journal.for_instance("btc-rsi")
    assert order.state is OrderState.UNKNOWN
    # Nothing more is placed on that market while it is unresolved.
    await rig.manager.act(rig.evaluation("buy", instance="btc-macd-sfox", minute=1))
    assert rig.journal.for_instance("btc-macd-sfox") == []
    clock.advance(200)  # past the grace in which a lost place may still show up
    await rig.manager.follow()
    (order,) = rig.journal.for_instance("btc-rsi")
    assert len(mine(await rig.exchange())) == (0 if order.state is OrderState.CANCELLED else 1)
    assert order.state is not OrderState.UNKNOWN


async def test_partial_fills_over_minutes_then_a_ttl_cancel_keeps_what_filled(rig: Rig, clock: ManualClock) -> None:
    ev = rig.evaluation("buy")
    await rig.manager.act(ev)
    for _ in range(30):
        clock.advance(60)
        await rig.manager.follow()
        (order,) = rig.journal.for_instance("btc-rsi")
        if order.state not in (OrderState.OPEN, OrderState.PARTIALLY_FILLED):
            break
    (order,) = rig.journal.for_instance("btc-rsi")
    assert order.state in (OrderState.FILLED, OrderState.CANCELLED)
    state = await rig.exchange()
    fills = [f for o in mine(state) for f in o.get("fills", [])]
    filled = sum((Decimal(f["amount"]) for f in fills), Decimal(0))
    assert order.filled == filled  # the journal's fills are the exchange's fills, to the last unit
    if order.state is OrderState.CANCELLED:
        assert "ttl" in order.note
        assert not [o for o in mine(state) if o.get("status") == "open"]


async def test_an_opposite_signal_cancels_the_working_order_first(rig: Rig) -> None:
    await rig.manager.act(rig.evaluation("buy"))
    (buy,) = rig.journal.for_instance("btc-rsi")
    await rig.manager.act(rig.evaluation("sell", minute=1))
    buy = rig.journal.get(buy.id)
    assert buy.state in (OrderState.CANCELLED, OrderState.FILLED)
    assert not [o for o in mine(await rig.exchange()) if o.get("status") == "open" and o["side"] == "buy"]


async def test_a_batch_sends_the_cancels_of_its_opposite_signals_together_before_its_orders(rig: Rig) -> None:
    # Two instances flip on one candle: both cancels reach the exchange before either new order, not
    # cancel, place, cancel, place (each cancel a round trip the second instance's order would wait for).
    names = ("btc-rsi", "eth-bollinger")
    broker = rig.manager.broker
    for name in names:  # a buy larger than the best ask's level at its price: filled in part, the rest works
        cfg = rig.manager.instances[name]
        step = (await broker.books())[cfg.market].amount_step
        ask = (await broker.order_book(cfg.market)).asks[0]
        amount = (ask.amount * 3 / 2).quantize(step)
        order = rig.journal.intend(name, cfg.market, Side.BUY, ask.price, amount, "entry", rig.clock.now())
        assert order is not None
        oid = await broker.place(cfg.market, Side.BUY, ask.price, amount)
        order = rig.journal.move(order.id, OrderState.OPEN, exchange_id=str(oid))
        order = await rig.manager.tracker.refresh(order, {oid})
        assert order.state is OrderState.PARTIALLY_FILLED
    before = len(rig.sb.faults["coinbtr"].request_log())  # far below the log's bound
    await rig.manager.act_batch([rig.evaluation("sell", minute=1),
                                 rig.evaluation("sell", instance="eth-bollinger", minute=1)])
    calls = [c for _, c in rig.sb.faults["coinbtr"].request_log()[before:]
             if c.startswith("POST") and ("/cancel" in c or "/place/" in c)]
    assert ["cancel" if "/cancel" in c else "place" for c in calls] == ["cancel", "cancel", "place", "place"]
    state = await rig.exchange()
    assert not [o for o in mine(state) if o.get("status") == "open" and o["side"] == "buy"]
    assert len([o for o in mine(state) if o["side"] == "sell"]) == 2


async def test_a_batch_reads_the_books_of_its_markets_together_before_its_orders(
        rig: Rig, clock: ManualClock) -> None:
    clock.advance(60)  # no book read kept from before
    before = len(rig.sb.faults["coinbtr"].request_log())
    await rig.manager.act_batch([rig.evaluation("buy"), rig.evaluation("buy", instance="eth-bollinger")])
    calls = [c for _, c in rig.sb.faults["coinbtr"].request_log()[before:] if "orderbook" in c or "/place/" in c]
    assert ["book" if "orderbook" in c else "place" for c in calls] == ["book", "book", "place", "place"]
    assert len(mine(await rig.exchange())) == 2


async def test_a_batch_repeating_its_instances_intents_reads_no_book(rig: Rig, clock: ManualClock) -> None:
    for name in ("btc-rsi", "eth-bollinger"):
        await rig.manager.act(rig.evaluation("buy", instance=name))
    clock.advance(60)  # no book read kept from before
    before = len(rig.sb.faults["coinbtr"].request_log())
    await rig.manager.act_batch([rig.evaluation("buy", minute=1), rig.evaluation("buy", instance="eth-bollinger",
                                                                                 minute=1)])
    calls = [c for _, c in rig.sb.faults["coinbtr"].request_log()[before:] if "orderbook" in c or "/place/" in c]
    assert calls == []  # both buys still work: nothing to price, nothing asked
    assert len(mine(await rig.exchange())) == 2


async def test_cancel_all_leaves_nothing_open_on_the_exchange(rig: Rig) -> None:
    await rig.manager.act(rig.evaluation("buy"))
    await rig.manager.act(rig.evaluation("buy", instance="eth-bollinger"))
    await rig.manager.cancel_all("stop")
    assert not [o for o in mine(await rig.exchange()) if o.get("status") == "open"]
    assert all(o.state in (OrderState.CANCELLED, OrderState.FILLED) for o in rig.journal.unfinished()) or \
        rig.journal.unfinished() == []


async def test_cancel_all_finds_a_place_whose_answer_was_lost_and_cancels_it_too(rig: Rig) -> None:
    # The stop (on_stop = "cancel") or the kill switch right after a place whose answer was lost: the order
    # landed, so it is adopted and cancelled like the others, not left open on the exchange.
    rig.sb.faults["coinbtr"].script("drop_after", method="POST", path_prefix=PLACE)
    await rig.manager.act(rig.evaluation("buy"))
    (order,) = rig.journal.for_instance("btc-rsi")
    assert order.state is OrderState.UNKNOWN
    await rig.manager.cancel_all("stop")
    (on_exchange,) = mine(await rig.exchange())
    assert on_exchange["status"] != "open"
    (order,) = rig.journal.for_instance("btc-rsi")
    assert order.exchange_id == str(on_exchange["id"])
    assert order.state in (OrderState.CANCELLED, OrderState.FILLED)


async def test_a_cancel_that_races_a_fill_ends_in_the_truth(rig: Rig) -> None:
    cfg = rig.manager.instances["btc-rsi"]
    broker = rig.manager.broker
    ob = await broker.order_book(cfg.market)
    price = ob.asks[0].price  # marketable: the exchange fills it at once
    amount = min(cfg.order_amount, ob.asks[0].amount)
    order = rig.journal.intend(cfg.name, cfg.market, Side.BUY, price, amount, "entry", rig.clock.now())
    assert order is not None
    oid = await broker.place(cfg.market, Side.BUY, price, amount)
    order = rig.journal.move(order.id, OrderState.OPEN, exchange_id=str(oid))  # we have not looked since
    order = await rig.manager.tracker.cancel(order, "opposite signal")  # the exchange answers 1003: not open
    assert order.state is OrderState.FILLED and order.filled == amount
    fills = [f for o in mine(await rig.exchange()) for f in o.get("fills", [])]
    assert sum((Decimal(f["amount"]) for f in fills), Decimal(0)) == amount


async def test_orders_of_an_instance_no_longer_configured_are_reported_and_cancelled(rig: Rig) -> None:
    broker = rig.manager.broker
    ob = await broker.order_book("btc-mxn")
    price = ob.bids[-1].price  # far from the touch: it rests
    order = rig.journal.intend("renamed-away", "btc-mxn", Side.BUY, price, Decimal("0.001"), "entry", rig.clock.now())
    assert order is not None
    oid = await broker.place("btc-mxn", Side.BUY, price, Decimal("0.001"))
    rig.journal.move(order.id, OrderState.OPEN, exchange_id=str(oid))
    await rig.manager.reconcile()  # the next start
    status = rig.manager.status()
    assert status["orphans"]["renamed-away"]["market"] == "btc-mxn"
    assert rig.journal.get(order.id).state is OrderState.CANCELLED
    assert not [o for o in mine(await rig.exchange()) if o.get("status") == "open"]


async def stop_while_the_place_is_held(rig: Rig) -> None:
    """Run the manager with every place held 0.2 s at the exchange, cancel its task (the daemon's stop) while
    one is held, then check that the order recorded its outcome: on the exchange and owned by the journal."""
    import asyncio

    faults = rig.sb.faults["coinbtr"]
    faults.configure(latency_s=0.2)
    faults.script("latency", path_prefix=PLACE)
    task = asyncio.create_task(rig.manager.run())
    for _ in range(10_000):  # until the place is being held at the exchange
        if faults.snapshot()["faults"].get("latency"):
            break
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (order,) = rig.journal.for_instance("btc-rsi")
    on_exchange = mine(await rig.exchange())
    assert len(on_exchange) == 1 and order.exchange_id == str(on_exchange[0]["id"])
    assert order.state in (OrderState.OPEN, OrderState.PARTIALLY_FILLED, OrderState.FILLED)


async def test_a_stop_during_a_place_lets_it_record_its_outcome_before_the_task_ends(rig: Rig) -> None:
    # bench/crash.py: SIGTERM while a place was in flight cancelled it mid-request; the journal kept the order
    # SUBMITTING, on_stop's cancel did not see it, and it stayed open on the exchange with no journal owner.
    ev = rig.evaluation("buy")
    rig.handoffs.take(ev.instance, ev.candle.time)  # handed over through the queue only (the rig's payload is bare)
    rig.manager.queue.put_nowait(ev)
    await stop_while_the_place_is_held(rig)


async def test_a_stop_during_a_place_of_a_hand_off_pending_from_before_a_restart_lets_it_record_its_outcome(
        rig: Rig) -> None:
    # tests/e2e/test_execution_daemon.py caught it: a daemon stopped right after start-up, while it acted on
    # a hand-off its killed predecessor left pending, cut that place mid-request; the order landed on the
    # exchange and the journal kept it SUBMITTING.
    from bot.signals.evaluator import _payload

    ev = rig.evaluation("buy")
    rig.handoffs.take(ev.instance, ev.candle.time)
    later = replace(ev, candle=replace(ev.candle, time=ev.candle.time + timedelta(minutes=1)))
    rig.handoffs.claim(ev.instance, later.candle.time, _payload(later))  # pending from before: not queued
    await stop_while_the_place_is_held(rig)


async def test_a_stop_during_a_batch_sends_nothing_more_and_leaves_the_rest_pending(rig: Rig) -> None:
    # bench/daemon.py: after SIGTERM a batch kept going past the stop and hit a closed store. Now the order in
    # flight records its outcome and the batch sends nothing more (its other hand-offs are not taken: the next
    # start acts on them while their candle is fresh).
    import asyncio

    faults = rig.sb.faults["coinbtr"]
    faults.configure(latency_s=0.2)
    faults.script("latency", path_prefix=PLACE)
    first, second = rig.evaluation("buy"), rig.evaluation("buy", instance="eth-bollinger")
    for ev in (first, second):  # handed over through the queue only (the rig's payloads are bare)
        rig.handoffs.take(ev.instance, ev.candle.time)
    rig.manager.queue.put_nowait(first)
    rig.manager.queue.put_nowait(second)
    task = asyncio.create_task(rig.manager.run())
    for _ in range(10_000):  # until the first place is being held at the exchange
        if faults.snapshot()["faults"].get("latency"):
            break
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [o.instance for o in rig.journal.unfinished()] == ["btc-rsi"]  # the second was never sent
    assert len(mine(await rig.exchange())) == 1


async def test_work_that_can_wait_waits_until_the_batch_of_a_queued_hand_off_has_sent_its_order(rig: Rig) -> None:
    # bench/daemon.py: an order waiting on the exchange's answer then waited behind the evaluations of the
    # streams whose candles arrived meanwhile (p99 215 ms against 30 ms for the orders that did not). From the
    # hand-off's commit until its batch's place is sent, a stream's evaluation (`Priority.defer`) waits.
    import asyncio
    import contextlib

    from bot.priority import OrdersFirst

    priority = rig.manager.priority = OrdersFirst(max_defer_s=30)
    faults = rig.sb.faults["coinbtr"]
    faults.configure(latency_s=0.2)
    faults.script("latency", path_prefix=PLACE)
    ev = rig.evaluation("buy")
    rig.handoffs.take(ev.instance, ev.candle.time)  # handed over through the queue only (the rig's payload is bare)
    task = asyncio.create_task(rig.manager.run())
    await asyncio.sleep(0)  # the execution task runs: waiting for hand-offs
    with rig.store.transaction():
        rig.events.publish(ev)  # the feed's commit: the hand-off is queued once it is durable
    assert priority.held
    await priority.defer()  # a stream's evaluation: goes on once the order is on the exchange
    assert priority.gave_up == 0 and priority.deferred == 1
    assert len(mine(await rig.exchange())) == 1
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert not priority.held  # a stopped manager holds nothing back
    (order,) = rig.journal.for_instance("btc-rsi")
    assert order.state in (OrderState.OPEN, OrderState.PARTIALLY_FILLED, OrderState.FILLED)


async def test_a_hand_off_queued_while_the_execution_task_does_not_run_holds_nothing_back(rig: Rig) -> None:
    # A cold review caught it: start-up's catch-up replays the missed candles before the execution task starts,
    # and its newest can hand off; a hold taken then held every other stream's catch-up 50 ms per candle.
    from bot.priority import OrdersFirst

    priority = rig.manager.priority = OrdersFirst(max_defer_s=30)
    ev = rig.evaluation("buy")
    rig.handoffs.take(ev.instance, ev.candle.time)
    with rig.store.transaction():
        rig.events.publish(ev)
    assert rig.manager.queue.qsize() == 1 and not priority.held  # queued for `run`, nothing held back
    await priority.defer()
    assert priority.deferred == 0


async def test_a_holding_worth_less_than_the_books_minimum_value_is_dust_and_never_blocks_the_next_buy(
        rig: Rig) -> None:
    # A partly filled buy, then cancelled, left 0.00012 ETH: above eth-mxn's minimum amount (0.0001), so not
    # dust by amount, but worth about 6-8 MXN, under the book's minimum value (10 MXN), so no sell can place
    # it. It used to leave the instance "long" for good: every sell skipped, every buy "already long".
    from bot.domain import Fill

    name = "eth-bollinger"
    order = rig.journal.intend(name, "eth-mxn", Side.BUY, Decimal("60000"), Decimal("0.01"), "entry", None)
    assert order is not None
    rig.journal.move(order.id, OrderState.OPEN, exchange_id="990001")
    rig.journal.add_fill(order.id, Fill(id=990001, order_id=990001, market="eth-mxn", side=Side.BUY,
                                        price=Decimal("60000"), amount=Decimal("0.00012"), fee_amount=Decimal(0),
                                        fee_coin="eth", maker=True, created_at=rig.clock.now()))
    rig.journal.move(order.id, OrderState.CANCELLED, note="opposite signal (sell)")
    assert rig.journal.position(name, "eth") == Decimal("0.00012")

    await rig.manager.act(rig.evaluation("sell", name, minute=1))
    assert "minimum 10" in rig.manager.skipped[name]
    assert "worth less than the book's minimum value" in rig.manager.dust[name]
    assert not mine(await rig.exchange())  # nothing could be sold

    await rig.manager.act(rig.evaluation("buy", name, minute=0))
    (placed,) = mine(await rig.exchange())  # the next buy goes ahead, as after any dust
    assert placed["side"].lower() == "buy" and Decimal(placed["amount"]) == Decimal("0.01")
