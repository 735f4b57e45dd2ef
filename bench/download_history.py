"""Download N days of 1-minute history from each candle source in the sandbox, through our own clients.

Starts the in-process `Sandbox` (real loopback HTTP, the contracts' rate limits: Atmos 20/min rolling,
sFOX 60/min) and downloads `--days` of 1-minute candles for Atmos binance BTCUSDT and sFOX btcusd,
`--repeat` times each (repeats push the request count past the per-minute budget, so the client-side
limiter has to wait). Prints, per source: requests used (the simulator's count), 429s received (the
simulator's count; must be 0), client limiter waits, candles, wall time and clock time spent.

    .venv/bin/python bench/download_history.py [--days 7] [--repeat 1] [--clock manual|accelerated]
        [--speed 600]

With `--clock manual` (default) limiter waits advance a `ManualClock` instantly; with `--clock accelerated`
they are real waits of `wait / speed` wall seconds, so the run shows the cost of the budget in wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import SecretStr

from bot.clients.atmos import AtmosClient
from bot.clients.sfox import SfoxClient
from bot.clock import AcceleratedClock, Clock, ManualClock
from bot.sandbox import credentials as cred
from bot.sandbox.runner import Sandbox
from bot.settings import AtmosSettings, SfoxSettings

START = datetime(2026, 11, 20, 12, 0, 30, tzinfo=UTC)


async def _one_source(name: str, sandbox: Sandbox, clock: Clock, days: int, repeat: int) -> dict[str, Any]:
    end = clock.now()
    start = end - timedelta(days=days)
    faults = sandbox.faults[name]
    faults.reset()
    wall0, clock0 = time.perf_counter(), clock.now()
    client: AtmosClient | SfoxClient
    if name == "atmos":
        client = AtmosClient.create(
            AtmosSettings(base_url=sandbox.urls["atmos"], api_key=SecretStr(cred.ATMOS_KEY)), clock)
    else:
        client = SfoxClient.create(SfoxSettings(base_url=sandbox.urls["sfox"]), clock)
    counts: list[int] = []
    async with client:
        for _ in range(repeat):
            if isinstance(client, AtmosClient):
                candles = await client.history("binance", "BTCUSDT", start, end)
            else:
                candles = await client.candles("btcusd", start, end, period=60)
            counts.append(len(candles))
        snap = client.snapshot()
    sim = faults.snapshot()
    return {
        "source": "atmos binance BTCUSDT" if name == "atmos" else "sfox btcusd 60s",
        "requests": sim["requests_total"],
        "sim_429s": sim["sent_429"],
        "client_429s": snap["rate_limited"],
        "limiter_waits": snap["limiter"]["waits"],
        "candles": counts[0],
        "same_each_time": len(set(counts)) == 1,
        "wall_s": time.perf_counter() - wall0,
        "clock_s": (clock.now() - clock0).total_seconds(),
    }


async def main(days: int, repeat: int, clock_kind: str, speed: float) -> int:
    clock: Clock = ManualClock(START) if clock_kind == "manual" else AcceleratedClock(speed, START)
    async with Sandbox(clock, seed=42) as sandbox:
        rows = [await _one_source(name, sandbox, clock, days, repeat) for name in ("atmos", "sfox")]
    print(f"{days} days of 1-minute candles x{repeat}, clock={clock_kind}"
          + (f" speed={speed:g}" if clock_kind != "manual" else ""))
    print(f"{'source':24} {'requests':>8} {'429s':>5} {'waits':>5} {'candles':>8} {'wall_s':>8} "
          f"{'clock_s':>8}")
    for r in rows:
        print(f"{r['source']:24} {r['requests']:>8} {r['sim_429s']:>5} {r['limiter_waits']:>5} "
              f"{r['candles']:>8} {r['wall_s']:>8.3f} {r['clock_s']:>8.1f}")
    bad = [r["source"] for r in rows if r["sim_429s"] or r["client_429s"] or not r["same_each_time"]]
    if bad:
        print(f"FAIL: 429s or inconsistent downloads from {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--clock", choices=("manual", "accelerated"), default="manual")
    parser.add_argument("--speed", type=float, default=600.0)
    args = parser.parse_args()
    # Keep the table readable: only warnings from the sandbox and the clients.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    sys.exit(asyncio.run(main(args.days, args.repeat, args.clock, args.speed)))
