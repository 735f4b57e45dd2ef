"""The recorder against the simulated Atlas: exactly once under faults, outages, deletion, takeover, bad rows.

Every check reads Atlas's own state through the simulator's control route (`/_sandbox/state`), never the
recorder's account of itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.clients.atlas import AtlasClient
from bot.clock import ManualClock
from bot.errors import BotError
from bot.events import AlarmRaised, Event, EventBus
from bot.metrics import Metrics
from bot.recorder.datasets import UNORDERED, Datasets
from bot.recorder.drain import Drain
from bot.recorder.outbox import Outbox
from bot.sandbox.runner import Sandbox
from bot.settings import Settings, load_settings
from bot.store import Store

ROOT = Path(__file__).resolve().parents[2]
CANDLES = "candles/atmos:binance:BTCUSDT"
SENSOR = "sensor/AA:BB:CC:DD:EE:FF"


def settings_for(tmp_path: Path, extra: str = "", bot: str = "default") -> Settings:
    text = (ROOT / "config" / "paper.toml").read_text().replace('bot_name = "default"', f'bot_name = "{bot}"')
    text = text.replace('state_dir = "var"', f'state_dir = "{tmp_path / "var"}"')
    text = text.replace("[atmotube]\nenabled = false", "[atmotube]\nenabled = true")
    cfg = tmp_path / "c.toml"
    cfg.write_text(text + extra)
    return load_settings(cfg)


class Rig:
    """Outbox + drain on one store, against the sandbox's Atlas."""

    def __init__(self, sb: Sandbox, clock: ManualClock, settings: Settings) -> None:
        self.sb = sb
        self.clock = clock
        self.settings = settings
        self.store = Store.open(settings.state_dir, clock=clock)
        self.outbox = Outbox(self.store, clock, UNORDERED)
        self.events: list[Event] = []
        bus = EventBus()
        bus.subscribe("test", self.events.append)
        self.client = AtlasClient.create(settings.atlas, clock, base_url=sb.urls["atlas"])
        self.drain = Drain(settings, clock, settings.state_dir, self.client, Datasets(settings), bus, Metrics())

    def candles(self, n: int, start: int = 0) -> list[str]:
        times = []
        for i in range(start, start + n):
            t = self.clock.now() + timedelta(minutes=i)
            self.outbox.append(CANDLES, t, {"open": Decimal("100.5"), "high": Decimal(101), "low": Decimal(99),
                                            "close": Decimal(i), "volume": Decimal("0.25")})
            times.append(t.isoformat())
        return times

    async def drain_all(self, rounds: int = 200) -> None:
        for _ in range(rounds):
            try:
                if not await self.drain.drain_once():
                    return
            except BotError:
                continue  # Atlas flaked on a read: the next round tries again
        raise AssertionError("the outbox did not drain")

    async def close(self) -> None:
        await self.client.close()
        await self.drain.close()
        self.store.close()


async def atlas_state(sb: Sandbox) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(sb.urls["atlas"] + "/_sandbox/state") as r:
        return dict(json.loads(await r.read()))


async def rows_of(sb: Sandbox, name_part: str) -> list[list[dict[str, Any]]]:
    return [d["rows"] for d in (await atlas_state(sb))["datasets"] if name_part in d["name"]]


def same_times(stored: list[dict[str, Any]], sent: list[str]) -> bool:
    from bot.clock import parse_iso

    return [parse_iso(r["timestamp"]) for r in stored] == [parse_iso(t) for t in sent]


@pytest.fixture
async def sb(clock: ManualClock, tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(clock, settings=settings_for(tmp_path)) as sandbox:
        yield sandbox


async def test_rows_arrive_once_in_order_and_a_second_start_finds_its_dataset(
        sb: Sandbox, clock: ManualClock, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    rig = Rig(sb, clock, settings)
    sent = rig.candles(2500)
    await rig.drain_all()
    await rig.close()
    (stored,) = await rows_of(sb, "-candles-atmos-binance-btcusdt")
    assert same_times(stored, sent)
    assert stored[1]["values"]["open"] == 100.5 and stored[7]["values"]["close"] == 7
    name = "tradebot-default-candles-atmos-binance-btcusdt"
    ds = [d for d in (await atlas_state(sb))["datasets"] if d["name"] == name]
    meta = ds[0]["metadata"]
    assert (meta["source"], meta["kind"], meta["bot"], meta["symbol"], meta["frequency"]) == (
        "atmos", "candles", "default", "BTCUSDT", "60s")
    assert {c["name"]: c["dtype"] for c in ds[0]["columns"]}["close"] == "float"
    # A second start (new drain, new connection) finds the dataset instead of creating another.
    rig2 = Rig(sb, clock, settings)
    more = rig2.candles(10, start=2500)
    await rig2.drain_all()
    await rig2.close()
    (stored,) = await rows_of(sb, "-candles-atmos-binance-btcusdt")
    assert same_times(stored, sent + more)


async def test_two_bots_on_one_atlas_user_never_share_a_dataset(
        sb: Sandbox, clock: ManualClock, tmp_path: Path) -> None:
    for name in ("alpha", "beta"):
        (tmp_path / name).mkdir()
        rig = Rig(sb, clock, settings_for(tmp_path / name, bot=name))
        rig.candles(3)
        await rig.drain_all()
        await rig.close()
    names = sorted(d["name"] for d in (await atlas_state(sb))["datasets"] if "-candles-" in d["name"])
    assert names == ["tradebot-alpha-candles-atmos-binance-btcusdt", "tradebot-beta-candles-atmos-binance-btcusdt"]


async def test_lost_answers_on_bulk_insert_never_duplicate_or_lose_a_row(
        sb: Sandbox, clock: ManualClock, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "")
    rig = Rig(sb, clock, settings)
    sent: list[str] = []
    await rig.drain_all()
    sb.faults["atlas"].configure(p_drop_after=0.3)
    for round_ in range(12):
        sent += rig.candles(150, start=round_ * 150)
        await rig.drain_all()
    sb.faults["atlas"].configure(p_drop_after=0.0)
    await rig.drain_all()
    assert sb.faults["atlas"].snapshot()["faults"].get("drop_after", 0) >= 3
    assert rig.drain.stats["ambiguous_stored"] >= 1  # some lost answers were in fact stored...
    await rig.close()
    (stored,) = await rows_of(sb, "-candles-atmos-binance-btcusdt")
    assert same_times(stored, sent)  # ...and none was sent twice, none is missing


async def test_atlas_outage_keeps_everything_raises_the_backlog_alarm_and_delivers_in_order(
        sb: Sandbox, clock: ManualClock, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "")
    settings = settings.model_copy(update={"recorder": settings.recorder.model_copy(
        update={"max_backlog_rows": 100})})
    rig = Rig(sb, clock, settings)
    sent = rig.candles(50)
    await rig.drain_all()
    await sb.stop_service("atlas")
    for i in range(1, 4):
        sent += rig.candles(60, start=i * 60)
        with pytest.raises(BotError):
            await rig.drain.drain_once()
        await rig.drain.check_backlog(force=True)
    assert rig.drain.status()["backlog_rows"] == 180
    alarms = [e for e in rig.events if isinstance(e, AlarmRaised)]
    assert [a.name for a in alarms] == ["recorder:backlog"]  # raised once, while nothing is lost
    await sb.start_service("atlas")
    await rig.drain_all()
    await rig.drain.check_backlog(force=True)
    assert rig.drain.status()["backlog_rows"] == 0 and "recorder:backlog" not in rig.drain.alarms
    await rig.close()
    (stored,) = await rows_of(sb, "-candles-atmos-binance-btcusdt")
    assert same_times(stored, sent)


async def test_a_deleted_dataset_is_recreated_suffixed_says_what_was_lost_and_gets_the_rest(
        sb: Sandbox, clock: ManualClock, tmp_path: Path) -> None:
    rig = Rig(sb, clock, settings_for(tmp_path))
    first = rig.candles(30)
    await rig.drain_all()
    old_id = rig.drain._ids[CANDLES]
    await rig.client.delete_dataset(old_id)  # someone deletes it
    later = rig.candles(20, start=30)
    await rig.drain_all()
    await rig.close()
    datasets = {d["name"]: d for d in (await atlas_state(sb))["datasets"]}
    new = datasets["tradebot-default-candles-atmos-binance-btcusdt-r2"]
    assert "tradebot-default-candles-atmos-binance-btcusdt" not in datasets
    assert new["metadata"]["replaces"] == f"tradebot-default-candles-atmos-binance-btcusdt (id {old_id})"
    assert same_times(new["rows"], later)
    (alarm,) = [e for e in rig.events if isinstance(e, AlarmRaised) and e.name.endswith(":replaced")]
    assert f"the {len(first)} rows recorded in it are lost" in alarm.detail


async def test_a_dataset_taken_over_holds_its_rows_and_alarms_until_recreate(
        sb: Sandbox, clock: ManualClock, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    rig = Rig(sb, clock, settings)
    rig.candles(5)
    await rig.drain_all()
    ds_id = rig.drain._ids[CANDLES]
    # Another user takes the dataset over (simulator state changed from the outside).
    sb.atlas.store._db.execute("UPDATE datasets SET owner_id = (SELECT id FROM users WHERE username != "
                               "(SELECT u.username FROM users u JOIN datasets d ON d.owner_id = u.id "
                               "WHERE d.id = ?) ORDER BY id LIMIT 1) WHERE id = ?", (ds_id, ds_id))
    held = rig.candles(7, start=5)
    await rig.drain_all()
    await rig.drain.check_backlog(force=True)
    assert rig.drain.status()["backlog"][CANDLES]["rows"] == 7  # held, not dropped
    assert any(isinstance(e, AlarmRaised) and e.name == f"atlas:{CANDLES}:forbidden" for e in rig.events)
    # The user tells the bot to re-create it (what `tradebot atlas recreate` does).
    with rig.store.transaction() as conn:
        conn.execute("UPDATE recorder_datasets SET state = 'recreate' WHERE dataset = ?", (CANDLES,))
    await rig.drain_all()
    await rig.close()
    new = [d for d in (await atlas_state(sb))["datasets"] if d["name"].endswith("-candles-atmos-binance-btcusdt-r2")]
    assert len(new) == 1 and same_times(new[0]["rows"], held)


async def test_a_row_atlas_rejects_is_quarantined_and_the_rows_after_it_arrive(
        sb: Sandbox, clock: ManualClock, tmp_path: Path) -> None:
    rig = Rig(sb, clock, settings_for(tmp_path))
    good = rig.candles(10)
    bad_at = clock.now() + timedelta(minutes=10)
    rig.outbox.append(CANDLES, bad_at, {"open": "not a number", "close": Decimal(1)})
    after = rig.candles(10, start=11)
    await rig.drain_all()
    status = rig.drain.status()
    await rig.close()
    (stored,) = await rows_of(sb, "-candles-atmos-binance-btcusdt")
    assert same_times(stored, good + after)
    assert status["quarantined"] == 1 and status["quarantined_rows"] == {CANDLES: 1}
    store = Store.open(tmp_path / "var", clock=clock)
    (row,) = store.query("SELECT ts, reason FROM outbox_quarantine")
    store.close()
    assert "open must be a float" in row["reason"]


async def test_late_sensor_readings_are_exactly_once_even_when_an_answer_is_lost(
        sb: Sandbox, clock: ManualClock, tmp_path: Path) -> None:
    rig = Rig(sb, clock, settings_for(tmp_path))
    base = clock.now()
    sent = []
    for minute in (10, 11, 12, 3, 4, 13, 1):  # uploads arrive late and out of order
        t = base + timedelta(minutes=minute)
        rig.outbox.append(SENSOR, t, {"pm25": 3.5})
        sent.append(t)
    rig.outbox.append(SENSOR, base + timedelta(minutes=3), {"pm25": 3.5})  # the same reading again: one row
    sb.faults["atlas"].script("drop_after", method="POST", path_prefix="/api/rows/bulk_insert/")
    await rig.drain_all()
    await rig.close()
    (stored,) = await rows_of(sb, "-sensor-aa-bb-cc-dd-ee-ff")
    assert sorted(r["timestamp"] for r in stored) == sorted({t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in sent})


async def test_events_that_share_an_instant_get_distinct_timestamps(clock: ManualClock, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", clock=clock)
    outbox = Outbox(store, clock, UNORDERED)
    got = [outbox.append("orders/btc-mxn", clock.now(), {"n": i}) for i in range(3)]
    assert got == [clock.now(), clock.now() + timedelta(microseconds=1), clock.now() + timedelta(microseconds=2)]
    with pytest.raises(RuntimeError), store.transaction():
        outbox.append("orders/btc-mxn", clock.now(), {"n": 3})
        raise RuntimeError("the state change behind the row failed")
    assert store.query("SELECT COUNT(*) AS n FROM outbox")[0]["n"] == 3  # its row went with it
    store.close()


async def test_a_takeover_while_the_bot_was_stopped_holds_rows_instead_of_calling_them_lost(
        sb: Sandbox, clock: ManualClock, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    rig = Rig(sb, clock, settings)
    rig.candles(5)
    await rig.drain_all()
    ds_id = rig.drain._ids[CANDLES]
    await rig.close()
    sb.atlas.store._db.execute("UPDATE datasets SET owner_id = (SELECT MAX(id) FROM users) WHERE id = ?", (ds_id,))
    rig2 = Rig(sb, clock, settings)  # the next start
    rig2.candles(4, start=5)
    await rig2.drain_all()
    await rig2.drain.check_backlog(force=True)
    assert rig2.drain.status()["backlog"][CANDLES]["rows"] == 4
    names = [e.name for e in rig2.events if isinstance(e, AlarmRaised)]
    assert f"atlas:{CANDLES}:forbidden" in names and f"atlas:{CANDLES}:replaced" not in names
    # A third start still says so (the state is kept, the alarm raised again).
    await rig2.close()
    rig3 = Rig(sb, clock, settings)
    await rig3.drain.drain_once()
    assert any(isinstance(e, AlarmRaised) and e.name == f"atlas:{CANDLES}:forbidden" for e in rig3.events)
    await rig3.close()


async def test_a_dataset_deleted_mid_run_with_new_columns_to_declare_does_not_stall_the_others(
        sb: Sandbox, clock: ManualClock, tmp_path: Path) -> None:
    rig = Rig(sb, clock, settings_for(tmp_path))
    rig.candles(3)
    rig.outbox.append(SENSOR, clock.now(), {"pm25": 1.5})
    await rig.drain_all()
    await rig.client.delete_dataset(rig.drain._ids[CANDLES])
    t = clock.now() + timedelta(minutes=3)
    rig.outbox.append(CANDLES, t, {"close": Decimal(1), "brand_new_column": 2.5})
    rig.outbox.append(SENSOR, clock.now() + timedelta(minutes=1), {"pm25": 2.5})
    await rig.drain_all()
    await rig.close()
    (new,) = await rows_of(sb, "-candles-atmos-binance-btcusdt-r2")
    assert same_times(new, [t.isoformat()])
    (sensor,) = await rows_of(sb, "-sensor-")
    assert len(sensor) == 2


async def test_a_lost_batch_found_absent_is_resent_only_after_the_grace(
        sb: Sandbox, clock: ManualClock, tmp_path: Path) -> None:
    rig = Rig(sb, clock, settings_for(tmp_path))
    sent = rig.candles(3)
    await rig.drain_all()
    more = rig.candles(2, start=3)
    batch = Outbox.batch(rig.drain.db, CANDLES, 10)
    # As if a bulk_insert went out and its answer was lost a moment ago, and Atlas has not applied it (yet).
    rig.drain.db.kv_set(f"recorder.inflight.{CANDLES}", {
        "first": batch[0].seq, "last": batch[-1].seq, "ts": [batch[0].ts.isoformat(), batch[-1].ts.isoformat()],
        "sent_at": time.time()})
    assert not await rig.drain.drain_once()  # not believed absent yet: nothing is resent
    assert len((await rows_of(sb, "-candles-atmos-binance-btcusdt"))[0]) == 3
    rig.drain.unknown_grace_s = 0.0
    await rig.drain_all()
    await rig.close()
    (stored,) = await rows_of(sb, "-candles-atmos-binance-btcusdt")
    assert same_times(stored, sent + more)


async def test_rows_of_a_rolled_back_savepoint_go_with_it_and_nan_is_recorded_as_null(
        clock: ManualClock, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", clock=clock)
    outbox = Outbox(store, clock, UNORDERED)
    done: list[str] = []
    with store.transaction():
        outbox.append("orders/btc-mxn", clock.now(), {"n": 1})
        store.after_commit(lambda: done.append("after"))
        try:
            with store.transaction():
                outbox.append("orders/btc-mxn", clock.now(), {"n": 2})
                raise RuntimeError("the inner change failed; the outer code carries on")
        except RuntimeError:
            pass
        outbox.append("sensor/AA", clock.now(), {"pm25": float("nan"), "ok": 1.5})
        assert done == []  # not before the commit
    assert done == ["after"]
    rows = store.query("SELECT dataset, row_values FROM outbox ORDER BY seq")
    assert [(r["dataset"], r["row_values"]) for r in rows] == [
        ("orders/btc-mxn", '{"n":1}'), ("sensor/AA", '{"pm25":null,"ok":1.5}')]
    with pytest.raises(RuntimeError), store.transaction():
        store.after_commit(lambda: done.append("never"))
        raise RuntimeError("rolled back")
    assert done == ["after"]
    store.close()
