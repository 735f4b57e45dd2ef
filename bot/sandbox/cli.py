"""`tradebot sandbox`: the five simulators standalone, for curl, notebooks and your own tools."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import TextIO

from bot.clock import AcceleratedClock
from bot.sandbox import credentials as cred
from bot.sandbox.embedded import SANDBOX_DIR, anchored_clock
from bot.sandbox.runner import SERVICES, Sandbox
from bot.settings import Settings


def describe(sb: Sandbox, settings: Settings, speed: float, out: TextIO) -> None:
    """Print the base URLs and the credentials each simulator accepts."""
    # Only the sandbox's own credentials are printed: the configured ones are accepted too, but they may be
    # real secrets (a live config passed by mistake) and never reach the terminal.
    configured = " (the configured keys are accepted too)" if settings.secrets() else ""
    lines = [
        f"tradebot sandbox: seed {sb.seed}, market speed {speed:g}x (market minutes per wall minute){configured}",
        "",
        f"  atmos     {sb.urls['atmos']}   header x-atmos-key: {cred.ATMOS_KEY}",
        f"  sfox      {sb.urls['sfox']}   (no key needed; any 'Authorization: Bearer ...' accepted)",
        f"  coinbtr   {sb.urls['coinbtr']}   header 'Authorization: Token {cred.COINBTR_TOKEN}' (all permissions)",
        f"            read-only token: {cred.COINBTR_READONLY_TOKEN}",
        f"  atlas     {sb.urls['atlas']}   header X-API-Key: {cred.ATLAS_KEY} (second user: {cred.ATLAS_KEY_2})",
        f"  atmotube  {sb.urls['atmotube']}   ?api_key={cred.ATMOTUBE_KEY}&mac={cred.ATMOTUBE_DEVICES[0]}",
        "",
        f"  index     {sb.index_url}/_sandbox/info   (every URL and the clock, as JSON)",
        "",
        "  fault injection and counters: GET/POST <url>/_sandbox/faults, GET <url>/_sandbox/counters",
        "  clock: GET <url>/_sandbox/clock; state: GET <coinbtr|atlas>/_sandbox/state;",
        "  CoinBTR: POST /_sandbox/deposits, POST /_sandbox/withdrawals/<id>/fail",
        "  e.g. curl -H 'x-atmos-key: sandbox-atmos-key' " + sb.urls["atmos"] + "/v1/binance/BTCUSDT/ohlcv/latest",
        "",
        (f"State kept in {sb.state_dir} (clock anchor beside it); a restart on it carries on."
         if sb.state_dir is not None else "State is in memory only (--state-dir DIR keeps it across restarts)."),
        "Ctrl-C to stop.",
    ]
    print("\n".join(lines), file=out, flush=True)


async def serve(settings: Settings, *, host: str = "127.0.0.1", port_base: int = 18000,
                speed: float | None = None, seed: int | None = None, duration: float | None = None,
                out: TextIO | None = None, state_dir: Path | None = None) -> int:
    """Serve all five simulators until SIGINT/SIGTERM (or `duration` seconds); returns the exit code.

    With `state_dir` the world carries on across restarts: the clock's anchor is `state_dir/sandbox-clock.json`
    and the exchange and Atlas live in `state_dir/sandbox/` (the layout of a daemon's state_dir)."""
    out = out or sys.stdout
    speed = speed if speed is not None else settings.sandbox.speed
    clock = anchored_clock(state_dir, speed) if state_dir is not None else AcceleratedClock(speed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Sandbox(clock, seed=seed if seed is not None else settings.sandbox.seed, host=host,
                           port_base=port_base, settings=settings,
                           state_dir=state_dir / SANDBOX_DIR if state_dir is not None else None) as sb:
            assert list(sb.urls) == list(SERVICES)
            describe(sb, settings, speed, out)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=duration)
    except OSError as exc:
        print(f"tradebot sandbox: cannot listen on {host} ports {port_base}-{port_base + 5}: "
              f"{exc.strerror}", file=sys.stderr)
        return 2
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0
