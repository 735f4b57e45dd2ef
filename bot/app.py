"""Wires the components for `tradebot run` from the settings (the composition root's recipe)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.clock import AcceleratedClock, Clock, WallClock
from bot.daemon import Daemon
from bot.market.evaluator import Evaluator
from bot.market.service import MarketData
from bot.settings import Settings
from bot.status import StatusServer

CLOCK_FILE = "sandbox-clock.json"


def sandbox_now(state_dir: Path, speed: float, wall_now: datetime) -> datetime:
    """Simulated time of the demo world, continuous across restarts of the daemon.

    The sandbox world keeps running while the daemon is down (so a restart has a gap to backfill, as in
    real life); its anchor (simulated time at a wall instant, and the speed) lives in `state_dir`. A change
    of speed re-anchors at the current simulated time.
    """
    path = state_dir / CLOCK_FILE
    try:
        data = json.loads(path.read_text())
        sim = datetime.fromisoformat(data["sim"]) + (wall_now - datetime.fromisoformat(data["wall"])) * float(
            data["speed"])
        if float(data["speed"]) == speed:
            return sim
    except (OSError, ValueError, KeyError, TypeError):
        sim = wall_now
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"sim": sim.isoformat(), "wall": wall_now.isoformat(), "speed": speed}))
    os.replace(tmp, path)
    return sim


def make_clock(settings: Settings) -> Clock:
    """The demo's market runs `sandbox.speed` times faster than wall time; real services run on wall time."""
    if settings.sandbox.enabled and settings.sandbox.speed != 1.0:
        speed = settings.sandbox.speed
        start = sandbox_now(settings.state_dir, speed, datetime.now(UTC))
        return AcceleratedClock(speed, start=start)
    return WallClock()


class SandboxComponent:
    """The built-in simulators, in-process, on ephemeral loopback ports, sharing the daemon's clock."""

    name = "sandbox"

    def __init__(self, settings: Settings, clock: Clock) -> None:
        from bot.sandbox.runner import Sandbox

        self.sandbox = Sandbox(clock, settings=settings)
        self.urls: dict[str, str] = {}

    async def start(self) -> None:
        await self.sandbox.start()
        self.urls = dict(self.sandbox.urls)

    async def stop(self) -> None:
        await self.sandbox.stop()

    def status(self) -> dict[str, Any]:
        return {"urls": self.urls}


async def run_daemon(settings: Settings, duration: float | None = None) -> int:
    """Build the daemon from settings and run it to completion; returns the exit code."""
    clock = make_clock(settings)
    daemon = Daemon(settings, clock)

    async def setup(d: Daemon) -> None:
        assert d.store is not None
        sandbox = SandboxComponent(settings, clock) if settings.sandbox.enabled else None
        evaluator = Evaluator(settings, clock)
        market = MarketData(settings, clock, d.store, d.scheduler, evaluator,
                            urls=lambda: sandbox.urls if sandbox else {})
        d.add(StatusServer(settings.status, d.status, d.healthy))
        if sandbox is not None:
            d.add(sandbox)
        d.add(market)
        d.strategies_status = evaluator.status

    return await daemon.run(duration=duration, setup=setup)
