"""A child process for the hand-off crash test: one stream, an always-buy instance, a durable stand-in for
execution that records each hand-off in the feed's transaction, and an optional SIGKILL of itself.

    python -m tests.e2e.handoff_child WORKDIR START_ISO POLLS KILL_MODE KILL_AT

KILL_MODE: `none`; `inside` (right after the stand-in recorded hand-off number KILL_AT, before the feed's
transaction commits); `after` (at the first tick after hand-off KILL_AT committed).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from bot.clients.atmos import AtmosClient
from bot.clock import ManualClock, parse_iso
from bot.events import Evaluation, Event, EventBus, Tick
from bot.feeds.feed import CandleFeed
from bot.feeds.sources import AtmosSource
from bot.sandbox.runner import Sandbox
from bot.settings import load_settings
from bot.signals.evaluator import Evaluator
from bot.signals.handoff import Handoffs
from bot.store import Store
from tests import user_strategies

ROOT = Path(__file__).resolve().parents[2]
STREAM = "atmos:binance:BTCUSDT"
TOPIC = "test.handoffs"


async def main(work: Path, start: str, polls: int, mode: str, kill_at: int) -> None:
    sdir = user_strategies.write(work / "strategies")
    text = (ROOT / "config" / "paper.toml").read_text().split("[[strategies]]")[0]
    text = text.replace("strategy_paths = []", f'strategy_paths = ["{sdir}"]')
    entries = user_strategies.entries_toml(sdir).split("\n[[strategies]]\nname = \"broken\"")[0]
    (work / "c.toml").write_text(text + entries)
    settings = load_settings(work / "c.toml")
    clock = ManualClock(parse_iso(start))
    store = Store.open(work / "state", clock=clock)
    bus = EventBus()
    handed = 0

    def stand_in(event: Event) -> None:  # what execution will do: record its intent in the same transaction
        nonlocal handed
        if isinstance(event, Evaluation) and event.handoff:
            store.append(TOPIC, {"instance": event.instance, "candle": event.candle.time.isoformat()})
            handed += 1
            if mode == "inside" and handed == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        elif isinstance(event, Tick) and mode == "after" and handed >= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    bus.subscribe("execution-stand-in", stand_in)
    async with Sandbox(clock, settings=settings) as sb:
        client = AtmosClient.create(settings.atmos, clock, base_url=sb.urls["atmos"])
        evaluator = Evaluator(settings, clock, bus, Handoffs(store, clock))
        feed = CandleFeed(STREAM, AtmosSource(client, "binance", "BTCUSDT"), store, clock, bus, evaluator)
        await feed.start()
        for _ in range(polls):
            clock.advance(60)
            await feed.poll()
        await client.close()
    print(clock.now().isoformat())
    store.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])))
