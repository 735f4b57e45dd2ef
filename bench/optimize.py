"""Throughput of `tradebot optimize`: backtests per second for a 100-point RSI grid on 525,600 minutes.

    .venv/bin/python bench/optimize.py [--data CSV] [--workers 2]

The grid is RSI reversion's period 10,14,18,22 x buy_below 20..40:5 x sell_above 60..80:5 (100 sets, next
open, no fee) on gen_synth's seed-42 year of minutes (generated into a temp directory unless `--data`).
It runs the sweep as the command does (`bot.optimize.runner.sweep`): serially in this process, then on a
LocalCluster of `--workers` processes. Printed: sets per second for each (the cluster's figure counts from
the cluster being up: scatter, tasks and results; its start-up is printed beside it), the speed-up, and
the load average before and after (the machine is shared). Targets: >= 1.7x on 2 cores and >= 20 RSI
backtests per second per core. Both runs must give the same results (checked).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Not the script's own directory first: bench/secrets.py would shadow the standard library's `secrets`
# (which Dask imports).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

GRID = ["period=10,14,18,22", "buy_below=20..40:5", "sell_above=60..80:5"]
CONFIG = """state_dir = "{state}"
[[strategies]]
name = "rsi"
strategy = "rsi_reversion"
market = "btc-usd"
feed = {{ source = "atmos", exchange = "binance", symbol = "BTCUSDT" }}
order_amount = "0.001"
"""


def main() -> None:
    from bot.optimize.runner import Options, sweep
    from bot.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="candles CSV (default: gen_synth's 525,600 minutes)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-optimize-") as tmp:
        work = Path(tmp)
        csv = args.data
        if csv is None:
            csv = work / "synth.csv"
            subprocess.run([sys.executable, str(HERE / "gen_synth.py"), str(csv)], check=True, capture_output=True)
        cfg = work / "bench.toml"
        cfg.write_text(CONFIG.format(state=work / "var"))
        settings = load_settings(cfg)
        base = dict(strategy="rsi", grid=GRID, data=csv, cache_dir=work / "cache", progress=False)
        sweep(settings, Options(**base, workers=0, samples=1))  # warm the parsed-CSV cache, imports
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
        serial = sweep(settings, Options(**base, workers=0))
        n = len(serial.results)
        s_rate = n / serial.seconds
        print(f"grid: {n} RSI parameter sets on {serial.results[0].metrics['candles']:,} candles")
        print(f"serial:           {serial.seconds:6.2f} s  {s_rate:6.1f} backtests/s")
        began = time.perf_counter()
        local = sweep(settings, Options(**base, workers=args.workers))
        wall = time.perf_counter() - began
        l_rate = n / local.seconds
        print(f"local cluster x{args.workers}: {local.seconds:6.2f} s  {l_rate:6.1f} backtests/s  "
              f"({local.where}; cluster start-up and shutdown {wall - local.seconds:.1f} s more)")
        print(f"speed-up:         {l_rate / s_rate:.2f}x (target >= 1.7x)")
        print(f"per core:         {s_rate:.1f} serial, {l_rate / args.workers:.1f} on the cluster "
              f"(target >= 20 backtests/s)")
        same = [(r.index, r.metrics) for r in serial.results] == [(r.index, r.metrics) for r in local.results]
        print(f"same results serial and cluster: {same}")
        print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        best = serial.results[0]
        print(f"best by sharpe: {best.point} sharpe {best.metrics['sharpe']} "
              f"return {best.metrics['total_return_pct']}%")


if __name__ == "__main__":
    main()
