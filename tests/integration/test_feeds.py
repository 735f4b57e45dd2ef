"""Feeds against the simulators over HTTP: gaps, re-polled partial candles, restart backfill, budget."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bot.clients.atmos import AtmosClient
from bot.clients.registry import Clients
from bot.clients.sfox import SfoxClient
from bot.clock import ManualClock, floor_minute
from bot.events import CandleClosed, Event, EventBus, SensorReadingSeen
from bot.feeds.feed import CandleFeed
from bot.feeds.poller import Poller, first_run
from bot.feeds.sources import AtmosSource, SfoxSource
from bot.sandbox.runner import Sandbox
from bot.settings import Settings, load_settings
from bot.signals.evaluator import Evaluator
from bot.signals.handoff import Handoffs
from bot.store import Store

ROOT = Path(__file__).resolve().parents[2]


def settings_with(tmp_path: Path, extra: str = "") -> Settings:
    text = (ROOT / "config" / "paper.toml").read_text()
    text = text.split("[[strategies]]")[0]  # keep the sections, replace the strategies
    cfg = tmp_path / "c.toml"
    cfg.write_text(text.replace('state_dir = "var"', f'state_dir = "{tmp_path / "var"}"') + extra)
    return load_settings(cfg)


@pytest.fixture
async def sandbox(clock: ManualClock, tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(clock, settings=settings_with(tmp_path)) as sb:
        yield sb


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "state")


def closed_events(bus: EventBus) -> list[CandleClosed]:
    seen: list[CandleClosed] = []

    def listen(ev: Event) -> None:
        assert isinstance(ev, CandleClosed)
        seen.append(ev)

    bus.subscribe("test", listen, CandleClosed)
    return seen


async def atmos_stream(sb: Sandbox, clock: ManualClock, store: Store, settings: Settings,
                       warmup: int = 5) -> tuple[CandleFeed, list[CandleClosed], AtmosClient]:
    client = AtmosClient.create(settings.atmos, clock, base_url=sb.urls["atmos"])
    bus = EventBus()
    seen = closed_events(bus)
    stream = CandleFeed("atmos:binance:BTCUSDT", AtmosSource(client, "binance", "BTCUSDT"), store, clock, bus,
                        warmup=warmup)
    return stream, seen, client


def find_gap(sb: Sandbox, instrument: str, before: datetime) -> datetime:
    bars = sb.market.bars(instrument, before - timedelta(hours=6), before - timedelta(minutes=10))
    times = [b.time for b in bars]
    for a, b in itertools.pairwise(times):
        if b - a == timedelta(minutes=2):
            return a + timedelta(minutes=1)
    raise AssertionError("no single-minute gap in six hours of simulated market")


async def test_feed_over_a_gap_keeps_the_gap_and_matches_the_market(
        sandbox: Sandbox, clock: ManualClock, store: Store, tmp_path: Path) -> None:
    gap = find_gap(sandbox, "binance:BTCUSDT", clock.now())
    clock.set(gap - timedelta(minutes=3) + timedelta(seconds=2))
    stream, seen, client = await atmos_stream(sandbox, clock, store, settings_with(tmp_path))
    await stream.start()
    for _ in range(6):
        clock.advance(60)
        await stream.poll()
    await client.close()
    times = [e.candle.time for e in seen]
    assert gap not in times
    expected = [b for b in sandbox.market.bars("binance:BTCUSDT", times[0], times[-1]) if not b.partial]
    assert times == [b.time for b in expected]  # every other minute present, each exactly once
    assert [e.candle.close for e in seen] == [b.close for b in expected]  # final values, not partial ones


async def test_repolled_partial_candle_replaced_then_emitted_final(
        sandbox: Sandbox, clock: ManualClock, store: Store, tmp_path: Path) -> None:
    minute = floor_minute(clock.now()) + timedelta(minutes=1)
    clock.set(minute + timedelta(seconds=5))
    stream, seen, client = await atmos_stream(sandbox, clock, store, settings_with(tmp_path))
    await stream.start()
    seen.clear()
    first = stream.book.partial
    assert first is not None and first.time == minute and first.partial
    clock.advance(40)
    assert await stream.poll() == []
    second = stream.book.partial
    assert second is not None and second.time == minute
    assert (second.volume, second.close) != (first.volume, first.close)  # the partial candle moved on
    clock.set(minute + timedelta(seconds=62))
    emitted = await stream.poll()
    await client.close()
    (final,) = sandbox.market.bars("binance:BTCUSDT", minute, minute)
    assert [c.time for c in emitted] == [minute]
    assert (emitted[0].close, emitted[0].volume, emitted[0].partial) == (final.close, final.volume, False)


async def test_restart_backfills_the_gap_exactly_once(
        sandbox: Sandbox, clock: ManualClock, store: Store, tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    clock.advance(2)
    stream, seen, client = await atmos_stream(sandbox, clock, store, settings)
    await stream.start()
    for _ in range(5):
        clock.advance(60)
        await stream.poll()
    await client.close()
    before = [e.candle.time for e in seen]
    last = before[-1]
    clock.advance(30 * 60)  # the bot is down for half an hour
    stream2, seen2, client2 = await atmos_stream(sandbox, clock, store, settings)
    await stream2.start()
    await client2.close()
    backfilled = [e.candle.time for e in seen2]
    assert all(e.backfill for e in seen2)
    expected = [b.time for b in sandbox.market.bars("binance:BTCUSDT", last + timedelta(minutes=1), clock.now())
                if not b.partial]
    assert backfilled == expected and len(expected) >= 25
    assert not set(backfilled) & set(before)


async def test_restart_after_a_longer_outage_backfills_only_max_backfill_and_primes_before_it(
        sandbox: Sandbox, clock: ManualClock, store: Store, tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    clock.advance(2)
    stream, _seen, client = await atmos_stream(sandbox, clock, store, settings, warmup=20)
    await stream.start()
    await client.close()
    clock.advance(3 * 24 * 3600)  # down for three days; the restart may backfill two hours
    client2 = AtmosClient.create(settings.atmos, clock, base_url=sandbox.urls["atmos"])
    bus = EventBus()
    seen2 = closed_events(bus)
    primed: list[int] = []

    class Recorder:  # a cycle that only notes what it was primed with
        def warmup_for(self, stream: str) -> int:
            return 20

        def prime(self, stream: str, candles: object) -> None:
            primed.append(len(candles))  # type: ignore[arg-type]

        async def evaluate(self, closed: CandleClosed) -> list[Event]:
            return []

        def commit(self, results: list[Event]) -> None:
            pass

        def reset(self, stream: str) -> None:
            pass

    stream2 = CandleFeed("atmos:binance:BTCUSDT", AtmosSource(client2, "binance", "BTCUSDT"), store, clock, bus,
                         Recorder(), max_backfill=timedelta(hours=2))
    with capture_logs() as logs:
        await stream2.start()
    await client2.close()
    (capped,) = [e for e in logs if e["event"] == "feed.backfill_capped"]
    cut = floor_minute(clock.now() - timedelta(hours=2))
    assert capped["skipped_to"] == cut.isoformat()
    expected = [b.time for b in sandbox.market.bars("binance:BTCUSDT", cut + timedelta(minutes=1), clock.now())
                if not b.partial]
    assert [e.candle.time for e in seen2] == expected and all(e.backfill for e in seen2)
    assert primed and primed[0] >= 20  # the windows start warm at the cut, not empty
    assert stream2.last_seen() == expected[-1]


async def test_sfox_stream_emits_closed_candles(sandbox: Sandbox, clock: ManualClock, store: Store,
                                               tmp_path: Path) -> None:
    client = SfoxClient.create(settings_with(tmp_path).sfox, clock, base_url=sandbox.urls["sfox"])
    stream = CandleFeed("sfox:btcusd:60", SfoxSource(client, "btcusd"), store, clock, EventBus(), warmup=3)
    await stream.start()
    start = stream.book.fetch_from(clock.now(), 3)
    clock.advance(5 * 60 + 2)
    out = await stream.poll()
    await client.close()
    expected = [b for b in sandbox.market.bars("BTCUSD", start, clock.now()) if not b.partial]
    assert [(c.time, c.close, c.partial) for c in out] == [(b.time, b.close, False) for b in expected]
    assert len(out) >= 3


STRATS = "".join(
    f'[[strategies]]\nname = "s{i}"\nstrategy = "rsi_reversion"\nmarket = "btc-mxn"\n'
    f'feed = {{ source = "atmos", exchange = "{ex}", symbol = "{sym}" }}\norder_amount = "0.001"\n'
    for i, (ex, sym) in enumerate(
        (ex, sym) for ex in ("binance", "kraken", "coinbase") for sym in ("BTCUSDT", "ETHUSDT"))
)


async def test_more_streams_than_budget_drops_some_reports_them_and_never_gets_429(
        clock: ManualClock, tmp_path: Path) -> None:
    settings = settings_with(tmp_path, STRATS.replace("[[strategies]]", "[[strategies]]", 6))
    settings = settings.model_copy(update={"atmos": settings.atmos.model_copy(update={"requests_per_minute": 4})})
    store = Store.open(tmp_path / "state")
    async with Sandbox(clock, settings=settings) as sb:
        bus = EventBus()
        evaluator = Evaluator(settings, clock, bus, Handoffs(store, clock))
        clients = Clients.build(settings, clock, sb.urls)
        with capture_logs() as logs:
            market = Poller(settings, clock, store, bus, clients, evaluator)
            await market.warm_up()
        dropped = [e for e in logs if e["event"] == "poll.dropped"]
        status = market.status()
        assert len(dropped) == 3 and len(status["dropped"]) == 3
        assert {d["stream"] for d in status["dropped"]} == {e["stream"] for e in dropped}
        assert len([p for p in market.plan.polls if p.service == "atmos"]) == 3
        # Drive the plan for 20 minutes of market time: each poll at its planned instant.
        due = {p.key: first_run(clock.now(), p, 60) for p in market.plan.polls if p.service == "atmos"}
        end = clock.now() + timedelta(minutes=20)
        while min(due.values()) < end:
            key = min(due, key=lambda k: due[k])
            clock.set(max(clock.now(), due[key]))
            await market.feeds[key].poll()
            due[key] += timedelta(seconds=60)
        await clients.close()
        assert sb.faults["atmos"].snapshot()["sent_429"] == 0
        assert all(market.feeds[k].polls == 21 for k in due)  # the warm-up and 20 polls
        assert all(s["errors"] == 0 for s in market.status()["streams"].values())
    store.close()


async def test_feed_outage_goes_stale_once_then_fresh_and_loses_nothing(
        sandbox: Sandbox, clock: ManualClock, store: Store, tmp_path: Path) -> None:
    clock.advance(2)
    stream, _seen, client = await atmos_stream(sandbox, clock, store, settings_with(tmp_path))
    await stream.start()
    assert stream.book.last_closed is not None
    last_before = stream.book.last_closed.time
    await sandbox.stop_service("atmos")
    with capture_logs() as logs:
        for _ in range(5):
            clock.advance(60)
            assert await stream.poll() == []
        await sandbox.start_service("atmos")
        clock.advance(60)
        after = await stream.poll()
    await client.close()
    events = [e["event"] for e in logs if e["event"].startswith("feed.")]
    assert events.count("feed.stale") == 1 and events.count("feed.fresh") == 1
    assert events.count("feed.poll_failed") == 5
    expected = [b.time for b in sandbox.market.bars("binance:BTCUSDT", last_before + timedelta(minutes=1),
                                                    clock.now()) if not b.partial]
    assert [c.time for c in after] == expected and len(after) >= 5  # the outage's candles arrive late, in order


async def test_sensor_feed_returns_each_reading_once_including_late_ones(clock: ManualClock, tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    settings = settings.model_copy(update={"atmotube": settings.atmotube.model_copy(update={"enabled": True}),
                                           "strategies": []})
    store = Store.open(tmp_path / "state")
    async with Sandbox(clock, settings=settings) as sb:
        bus = EventBus()
        seen: list[Event] = []
        bus.subscribe("test", seen.append)
        clients = Clients.build(settings, clock, sb.urls)
        market = Poller(settings, clock, store, bus, clients, Evaluator(settings, clock, bus, Handoffs(store, clock)))
        key = "atmotube:AA:BB:CC:DD:EE:FF"
        assert [p.key for p in market.plan.polls] == [key]
        first_poll_at = clock.now()
        await market.warm_up()  # reads every sensor once at start-up
        first = [e.reading for e in seen if isinstance(e, SensorReadingSeen)]
        clock.advance(3 * 3600)
        second = await market.sensors[key].poll()
        await clients.close()
    store.close()
    assert first and second
    assert not {r.time for r in first} & {r.time for r in second}  # never handed on twice
    # Late arrivals: minutes that had already passed at the first poll but were uploaded after it.
    assert any(r.time < first_poll_at for r in second)
    assert market.status()["sensors"][key]["readings"] == len(first) + len(second)
    # Each reading went through the event path once.
    assert [e.reading.time for e in seen if isinstance(e, SensorReadingSeen)] == [r.time for r in first + second]


async def test_a_failed_warm_up_never_re_emits_evaluated_candles_as_live(
        sandbox: Sandbox, clock: ManualClock, store: Store, tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    clock.advance(2)
    stream, seen, client = await atmos_stream(sandbox, clock, store, settings)
    await stream.start()
    for _ in range(3):
        clock.advance(60)
        await stream.poll()
    await client.close()
    cursor = seen[-1].candle.time
    # Restart while Atmos is down: the warm-up fails; polls retry it instead of polling "from scratch".
    clock.advance(90)
    await sandbox.stop_service("atmos")
    stream2, seen2, client2 = await atmos_stream(sandbox, clock, store, settings)
    await stream2.start()
    clock.advance(60)
    assert await stream2.poll() == [] and not stream2.warmed
    await sandbox.start_service("atmos")
    clock.advance(60)
    await stream2.poll()  # the warm-up again, now with the backfill since the cursor
    clock.advance(60)
    await stream2.poll()
    await client2.close()
    assert stream2.warmed and seen2
    assert all(e.candle.time > cursor for e in seen2)  # nothing handed on before comes again
    assert [e.candle.time for e in seen2] == sorted({e.candle.time for e in seen2})
