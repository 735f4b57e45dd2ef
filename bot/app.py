"""Wires the components for `tradebot run` from the settings (the composition root's recipe)."""

from __future__ import annotations

from typing import Any

from bot.clock import AcceleratedClock, Clock, WallClock
from bot.daemon import Daemon
from bot.market.evaluator import Evaluator
from bot.market.service import MarketData
from bot.settings import Settings
from bot.status import StatusServer


def make_clock(settings: Settings) -> Clock:
    """The demo's market runs `sandbox.speed` times faster than wall time; real services run on wall time."""
    if settings.sandbox.enabled and settings.sandbox.speed != 1.0:
        return AcceleratedClock(settings.sandbox.speed)
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
