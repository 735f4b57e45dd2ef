"""The cycle of a stream against the simulators: isolation of instances, hand-off once per candle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bot.clients.atmos import AtmosClient
from bot.clock import ManualClock
from bot.events import AlarmCleared, AlarmRaised, CandleClosed, Evaluation, EvaluationFailed, Event, EventBus
from bot.feeds.feed import CandleFeed
from bot.feeds.sources import AtmosSource
from bot.sandbox.runner import Sandbox
from bot.settings import Settings, load_settings
from bot.signals.evaluator import Evaluator
from bot.signals.handoff import Handoffs
from bot.store import Store
from tests import user_strategies

ROOT = Path(__file__).resolve().parents[2]
STREAM = "atmos:binance:BTCUSDT"


def settings_for(tmp_path: Path) -> Settings:
    text = (ROOT / "config" / "paper.toml").read_text().split("[[strategies]]")[0]
    sdir = user_strategies.write(tmp_path / "strategies")
    text = text.replace('state_dir = "var"', f'state_dir = "{tmp_path / "var"}"')
    text = text.replace("strategy_paths = []", f'strategy_paths = ["{sdir}"]')
    cfg = tmp_path / "c.toml"
    cfg.write_text(text + user_strategies.entries_toml(sdir))
    return load_settings(cfg)


@pytest.fixture
async def sandbox(clock: ManualClock, tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(clock, settings=settings_for(tmp_path)) as sb:
        yield sb


def pipeline(sb: Sandbox, clock: ManualClock, store: Store, settings: Settings
             ) -> tuple[CandleFeed, Evaluator, list[Event], AtmosClient]:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe("test", seen.append)
    evaluator = Evaluator(settings, clock, bus, Handoffs(store, clock))
    client = AtmosClient.create(settings.atmos, clock, base_url=sb.urls["atmos"])
    feed = CandleFeed(STREAM, AtmosSource(client, "binance", "BTCUSDT"), store, clock, bus, evaluator)
    return feed, evaluator, seen, client


async def test_a_raising_strategy_costs_only_its_own_evaluations(
        sandbox: Sandbox, clock: ManualClock, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    store = Store.open(tmp_path / "state", clock=clock)
    clock.advance(2)
    feed, evaluator, seen, client = pipeline(sandbox, clock, store, settings)
    await feed.start()
    with capture_logs() as logs:
        for _ in range(6):
            clock.advance(60)
            await feed.poll()
    await client.close()
    closed = [e.candle.time for e in seen if isinstance(e, CandleClosed) and not e.backfill]
    assert len(closed) >= 5
    good = [e for e in seen if isinstance(e, Evaluation) and not e.backfill]
    failed = [e for e in seen if isinstance(e, EvaluationFailed) and not e.backfill]
    # The good instance on the same stream got every candle; the broken one failed on every candle.
    assert [e.candle.time for e in good if e.instance == "buyer"] == closed
    assert [e.candle.time for e in failed] == closed and {e.instance for e in failed} == {"broken"}
    # Logged once per candle, with the traceback.
    errors = [e for e in logs if e["event"] == "evaluation.failed"]
    assert [e["candle"] for e in errors] == [t.isoformat() for t in closed]
    assert all(e.get("exc_info") for e in errors)
    status = {s["name"]: s for s in evaluator.status()}
    assert status["broken"]["failures"] >= len(closed) and status["broken"]["failing"]
    assert "ZeroDivisionError" in status["broken"]["last_error"]
    assert status["buyer"]["failures"] == 0
    # One alarm while it keeps failing, not one per candle.
    assert sum(isinstance(e, AlarmRaised) for e in seen) == 1
    assert not any(isinstance(e, AlarmCleared) for e in seen)
    store.close()


async def test_actionable_evaluation_is_handed_off_once_even_if_the_candle_comes_again(
        sandbox: Sandbox, clock: ManualClock, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    store = Store.open(tmp_path / "state", clock=clock)
    clock.advance(2)
    feed, _evaluator, seen, client = pipeline(sandbox, clock, store, settings)
    await feed.start()
    for _ in range(3):
        clock.advance(60)
        await feed.poll()
    await client.close()
    first = [e for e in seen if isinstance(e, Evaluation) and e.instance == "buyer" and e.actionable]
    assert first and all(e.handoff for e in first)
    # Something re-emits the same candles (a lost cursor): they are evaluated again but never handed off.
    store.kv_delete(f"feed.{STREAM}.last_closed")
    clock.set(first[0].candle.end + timedelta(seconds=1))
    feed2, _e2, seen2, client2 = pipeline(sandbox, clock, store, settings)
    await feed2.start()
    for _ in range(3):
        clock.advance(60)
        await feed2.poll()
    await client2.close()
    again = [e for e in seen2 if isinstance(e, Evaluation) and e.instance == "buyer"
             and e.candle.time in {f.candle.time for f in first}]
    assert again and all(e.actionable and not e.handoff for e in again)
    assert Handoffs(store, clock).count() == len({e.candle.time for e in first + [
        e for e in seen2 if isinstance(e, Evaluation) and e.instance == "buyer" and e.handoff]})
    store.close()


async def test_evaluation_values_are_never_nan(sandbox: Sandbox, clock: ManualClock, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    store = Store.open(tmp_path / "state", clock=clock)
    feed, _evaluator, seen, client = pipeline(sandbox, clock, store, settings)
    await feed.start()
    clock.advance(60)
    await feed.poll()
    await client.close()
    evs = [e for e in seen if isinstance(e, Evaluation)]
    assert evs
    for e in evs:
        assert all(v is None or v == v for v in e.values.values())  # NaN != NaN
    store.close()


async def test_a_cycle_whose_commit_fails_skips_no_candle_and_repeats_none(
        sandbox: Sandbox, clock: ManualClock, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    store = Store.open(tmp_path / "state", clock=clock)
    clock.advance(2)
    feed, _evaluator, _seen, client = pipeline(sandbox, clock, store, settings)
    failures = {"left": 1}

    def disk_full_once(event: Event) -> None:  # the store fails at the commit of one candle
        if isinstance(event, CandleClosed) and not event.backfill and failures["left"]:
            failures["left"] -= 1

            def boom(_conn: object) -> None:
                raise OSError("disk full")
            store.before_commit(boom)

    feed.events.subscribe("disk", disk_full_once)
    await feed.start()
    start = clock.now()
    for _ in range(6):
        clock.advance(60)
        await feed.poll()
    await client.close()
    assert failures["left"] == 0
    handed = sorted(h.candle_time for h in Handoffs(store, clock).pending() if h.instance == "buyer")
    market = [b.time.isoformat() for b in sandbox.market.bars("binance:BTCUSDT", start - timedelta(minutes=1),
                                                                clock.now()) if not b.partial]
    # Every minute the market closed after the start was handed off exactly once, the failed one included.
    assert handed == [t for t in market if t >= handed[0]] and len(handed) >= 4
    store.close()
