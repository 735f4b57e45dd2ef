"""Throughput of the sandbox's read endpoints: requests/second per service and in total.

The Sandbox runs in this process (one event loop, as in the demo) on an accelerated clock with every rate
limit raised out of the way; separate client processes drive it with concurrent keep-alive aiohttp
clients for a fixed time and report what they got back.

    .venv/bin/python bench/sandbox_rps.py [--seconds 10] [--clients 1] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import resource
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bot.clock import AcceleratedClock
from bot.sandbox import credentials as cred
from bot.sandbox.runner import SERVICES, Sandbox

Request = tuple[str, str, dict[str, str], dict[str, str]]  # service, path, params, headers


def _requests(now: datetime) -> list[Request]:
    """The read-endpoint mix: what a busy bot (or several) would poll."""
    atmos = {"x-atmos-key": cred.ATMOS_KEY}
    coinbtr = {"Authorization": f"Token {cred.COINBTR_TOKEN}"}
    atlas = {"X-API-Key": cred.ATLAS_KEY}
    end = int(now.timestamp())
    day = (now - timedelta(days=1)).strftime("%Y-%m-%d")
    mix: list[Request] = []
    for ex, sym in (("binance", "BTCUSDT"), ("kraken", "ETHUSDT"), ("coinbase", "BTCUSDT")):
        mix.append(("atmos", f"/v1/{ex}/{sym}/ohlcv/latest", {}, atmos))
        mix.append(("atmos", f"/v1/{ex}/{sym}/ohlcv", {"limit": "1"}, atmos))
    mix.append(("atmos", "/v1/binance/pairs/", {}, atmos))
    for pair in ("btcusd", "ethusd"):
        mix.append(("sfox", "/candlesticks", {"pair": pair, "startTime": str(end - 600),
                                              "endTime": str(end + 3000)}, {}))
    mix.append(("coinbtr", "/api/v1/market/gettiker", {"book": "btc-mxn"}, {}))
    mix.append(("coinbtr", "/api/v1/market/listbooks", {}, {}))
    mix.append(("coinbtr", "/api/v1/wallet/listbalances", {}, coinbtr))
    mix.append(("atlas", "/health", {}, {}))
    mix.append(("atlas", "/api/datasets/", {}, atlas))
    mix.append(("atmotube", "/api/v1/data", {"api_key": cred.ATMOTUBE_KEY, "mac": cred.ATMOTUBE_DEVICES[0],
                                             "date": day, "limit": "10"}, {}))
    return mix


async def _drive(urls: dict[str, str], now_iso: str, seconds: float, concurrency: int,
                 seed: int, only: str) -> dict[str, Any]:
    mix = [r for r in _requests(datetime.fromisoformat(now_iso)) if only in f"{r[0]} {r[1]}"]
    ok: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    deadline = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession, rng: random.Random) -> None:
        while time.monotonic() < deadline:
            service, path, params, headers = rng.choice(mix)
            try:
                async with session.get(urls[service] + path, params=params, headers=headers) as resp:
                    await resp.read()
                    (ok if resp.status == 200 else bad)[service] += 1
            except aiohttp.ClientError:
                bad[service] += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        await asyncio.gather(*(worker(session, random.Random(seed * 1000 + i)) for i in range(concurrency)))
        elapsed = time.monotonic() - started
    return {"ok": dict(ok), "bad": dict(bad), "elapsed": elapsed}


def _client(urls: dict[str, str], now_iso: str, seconds: float, concurrency: int, seed: int, only: str,
            out: Any) -> None:
    out.put(asyncio.run(_drive(urls, now_iso, seconds, concurrency, seed, only)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent requests per client")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per wall second")
    parser.add_argument("--only", default="", help="only requests whose 'service path' contains this")
    args = parser.parse_args()

    clock = AcceleratedClock(args.speed, start=datetime.now(UTC))
    async with Sandbox(clock) as sb:
        for limiter in (sb.atmos.limiter, sb.sfox.limiter, sb.coinbtr.limiter, sb.atmotube.limiter):
            limiter.limit = 10**9  # measure throughput, not 429s
        # Warm the market caches the way a running demo would have them.
        sb.market.rows("BTCUSD", (clock.now() - timedelta(hours=2)).timestamp(), clock.now().timestamp())
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        procs = [ctx.Process(target=_client, args=(sb.urls, clock.now().isoformat(), args.seconds,
                                                   args.concurrency, i, args.only, queue))
                 for i in range(args.clients)]
        cpu0 = time.process_time()
        for p in procs:
            p.start()
        results = [await asyncio.to_thread(queue.get, True, args.seconds + 60) for _ in procs]
        for p in procs:
            await asyncio.to_thread(p.join)
        server_cpu = time.process_time() - cpu0
        counters = sb.counters()
    client_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)

    elapsed = max(r["elapsed"] for r in results)
    ok: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    for r in results:
        ok.update(r["ok"])
        bad.update(r["bad"])
    print(f"sandbox_rps: {args.clients} client process(es) x {args.concurrency} concurrent, "
          f"{elapsed:.1f} s, clock speed {args.speed:g}x")
    print(f"{'service':<10} {'ok req/s':>10} {'non-200':>8} {'server-counted':>15}")
    for name in SERVICES:
        print(f"{name:<10} {ok[name] / elapsed:>10.0f} {bad[name]:>8} {counters[name]['requests_total']:>15}")
    total = sum(ok.values()) + sum(bad.values())
    print(f"{'total':<10} {sum(ok.values()) / elapsed:>10.0f} {sum(bad.values()):>8}")
    # CPU per request separates our cost from the machine's load (other processes share the 2 cores).
    print(f"server CPU {server_cpu:.2f} s ({server_cpu / total * 1e6:.0f} us/request, "
          f"~{total / server_cpu:.0f} req per server CPU-second); "
          f"clients CPU {client_cpu.ru_utime + client_cpu.ru_stime:.2f} s")


if __name__ == "__main__":
    asyncio.run(main())
