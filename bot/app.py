"""Wires the components for `tradebot run` from the settings."""

from __future__ import annotations

from bot.clock import AcceleratedClock, Clock, WallClock
from bot.daemon import Daemon
from bot.settings import Settings


def make_clock(settings: Settings) -> Clock:
    """The demo's market runs `sandbox.speed` times faster than wall time; real services run on wall time."""
    if settings.sandbox.enabled and settings.sandbox.speed != 1.0:
        return AcceleratedClock(settings.sandbox.speed)
    return WallClock()


async def run_daemon(settings: Settings, duration: float | None = None) -> int:
    """Build the daemon from settings and run it to completion; returns the exit code."""
    daemon = Daemon(settings, make_clock(settings))
    return await daemon.run(duration=duration)
