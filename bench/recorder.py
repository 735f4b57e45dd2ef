"""Recorder benchmark: outbox append cost per cycle, and draining a big backlog into the simulated Atlas.

    .venv/bin/python bench/recorder.py [--cycles 2000] [--instances 50] [--backlog 1000000] [--batch 10000]

1. Appends: `--cycles` cycles, each one store transaction with one evaluation row per instance (what a
   cycle of 50 instances appends), timed per cycle: the appends alone and with the commit (an fsync).
2. Drain: `--backlog` rows waiting in the outbox (ten candle datasets), drained by the recorder's drain into
   the Atlas simulator of a `tradebot sandbox` running as a separate process, `--batch` rows per
   bulk_insert; prints the wall time and rows/s, and checks every row arrived once (row counts in Atlas).
Targets: appends under 1 ms per cycle of 50 instances; a 1,000,000-row backlog drained in under 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
# Not the script's own directory first: bench/secrets.py would shadow the standard library's `secrets`.
sys.path[:] = [p for p in sys.path if Path(p or '.').resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from bot.clients.atlas import AtlasClient  # noqa: E402
from bot.clock import WallClock  # noqa: E402
from bot.events import EventBus  # noqa: E402
from bot.metrics import Metrics  # noqa: E402
from bot.recorder.datasets import UNORDERED, Datasets  # noqa: E402
from bot.recorder.drain import Drain  # noqa: E402
from bot.recorder.outbox import Outbox  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.store import Store  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def bench_appends(work: Path, cycles: int, instances: int) -> None:
    store = Store.open(work / "appends", clock=WallClock())
    outbox = Outbox(store, WallClock(), UNORDERED)
    appends: list[float] = []
    with_commit: list[float] = []
    values = {"action": "hold", "reason": "RSI(14) 45.10 within [30, 70]", "actionable": 1, "note": "",
              "handoff": 0, "close": Decimal("96012.55"), "rsi_14": 45.1034, "stream": "atmos:binance:BTCUSDT"}
    for c in range(cycles):
        t = T0 + timedelta(minutes=c)
        start = time.perf_counter()
        with store.transaction():
            for i in range(instances):
                outbox.append(f"evaluations/inst-{i}", t, values)
            appended = time.perf_counter()
        done = time.perf_counter()
        appends.append((appended - start) * 1000)
        with_commit.append((done - start) * 1000)
    store.close()
    rows = cycles * instances
    print(f"appends: {cycles} cycles x {instances} rows: median {statistics.median(appends):.3f} ms, "
          f"p99 {sorted(appends)[int(cycles * 0.99) - 1]:.3f} ms per cycle (appends); "
          f"with the commit (fsync) median {statistics.median(with_commit):.3f} ms; "
          f"{rows / (sum(with_commit) / 1000):,.0f} rows/s")


def free_port_base() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + 6 < 65535:
            ok = True
            for p in range(base, base + 6):
                with socket.socket() as s:
                    try:
                        s.bind(("127.0.0.1", p))
                    except OSError:
                        ok = False
            if ok:
                return base


def start_sandbox() -> tuple[subprocess.Popen[str], dict[str, str]]:
    """`tradebot sandbox` as a separate process; its service URLs once it answers."""
    base = free_port_base()
    sandbox = subprocess.Popen([sys.executable, "-m", "bot", "sandbox", "--port-base", str(base), "--speed", "1"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, text=True)
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{base}/_sandbox/info", timeout=1) as r:
                return sandbox, dict(json.loads(r.read())["urls"])
        except OSError:
            time.sleep(0.05)
    sandbox.kill()
    raise SystemExit("the sandbox did not start")


async def bench_drain(work: Path, backlog: int, batch: int, urls: dict[str, str]) -> None:
    cfg = work / "bench.toml"
    text = (ROOT / "config" / "paper.toml").read_text().replace('state_dir = "var"',
                                                                f'state_dir = "{work / "drain"}"')
    cfg.write_text(text.replace("batch_size = 1000 ", f"batch_size = {batch} "))
    settings = load_settings(cfg)
    settings = settings.model_copy(update={"recorder": settings.recorder.model_copy(
        update={"batch_size": batch})})
    clock = WallClock()
    store = Store.open(settings.state_dir, clock=clock)
    outbox = Outbox(store, clock, UNORDERED)
    streams = [f"candles/bench:{i}" for i in range(10)]
    t_fill = time.perf_counter()
    per = backlog // len(streams)
    for key in streams:
        for start in range(0, per, 10_000):
            rows = [(T0 + timedelta(minutes=start + i), {"open": 100.5, "high": 101.25, "low": 99.75,
                                                          "close": 100.0 + i % 7, "volume": 0.125})
                    for i in range(min(10_000, per - start))]
            outbox.append_many(key, rows)
    print(f"drain: {per * len(streams):,} rows queued in {time.perf_counter() - t_fill:.1f} s")
    client = AtlasClient.create(settings.atlas, clock, base_url=urls["atlas"])
    drain = Drain(settings, clock, settings.state_dir, client, Datasets(settings), EventBus(), Metrics())
    start_t = time.perf_counter()
    while await drain.drain_once():
        pass
    took = time.perf_counter() - start_t
    sent = drain.stats["rows"]
    print(f"drain: {sent:,} rows in {took:.1f} s = {sent / took:,.0f} rows/s "
          f"({drain.stats['batches']} batches of up to {batch}) into a separate `tradebot sandbox` process")
    counts = []
    async with aiohttp.ClientSession() as http:
        for key in streams:
            ds = await client.find_dataset(drain.specs.get(key).name)
            assert ds is not None
            async with http.get(f"{urls['atlas']}/_sandbox/state?dataset={ds.id}&rows=0") as resp:
                counts.append(json.loads(await resp.read())["datasets"][0]["row_count"])
    print(f"drain: rows in Atlas {sum(counts):,} (expected {per * len(streams):,}); "
          f"left in the outbox {Outbox.backlog(store)}")
    await client.close()
    await drain.close()
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=2000)
    ap.add_argument("--instances", type=int, default=50)
    ap.add_argument("--backlog", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=10_000)
    args = ap.parse_args()
    from bot import logs

    logs.configure(level="warning", secrets=())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bench_appends(work, args.cycles, args.instances)
        sandbox, urls = start_sandbox()
        try:
            asyncio.run(bench_drain(work, args.backlog, args.batch, urls))
        finally:
            sandbox.terminate()
            sandbox.wait(10)


if __name__ == "__main__":
    main()
