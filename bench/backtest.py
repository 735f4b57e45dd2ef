"""Time the whole `tradebot backtest` process on gen_synth's 525,600 minutes beside backtesting.py.

For each rule (RSI(14) 30/70 and SMA(10)/SMA(30) cross; long only, next open, no fee) it runs, each as a
fresh process and `--runs` times (median reported):

- `tradebot backtest` with a cold cache (a new, empty cache directory: the CSV is parsed),
- `tradebot backtest` with a warm cache (the parsed arrays read back, keyed by the CSV's content),
- backtesting.py on the same rule and the same file (RSI from `ta`, as ours), in a process of its own,

and prints the trade counts and returns each printed (they must agree), the medians and the ratio of
backtesting.py's time to ours. Target: under 0.8 s for the RSI rule with a warm cache.

    .venv/bin/python bench/backtest.py [--runs 5] [--bt-runs 5] [--data CSV] [--screenshot out.png]

`--screenshot PNG` also writes the HTML report of both rules and saves a headless-Chromium screenshot.
The series is generated once with bench/gen_synth.py into `--workdir` (default: a temp directory).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Not the script's own directory first: bench/secrets.py would shadow the standard library's `secrets`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.append(str(HERE))  # for `machine`, after the standard library

from machine import StealMeter  # noqa: E402

PYTHON = sys.executable
CONFIG = """state_dir = "{state}"
[[strategies]]
name = "rsi"
strategy = "rsi_reversion"
market = "btc-usd"
feed = {{ source = "atmos", exchange = "binance", symbol = "BTCUSDT" }}
params = {{ period = 14, buy_below = 30, sell_above = 70 }}
order_amount = "0.001"
[[strategies]]
name = "sma"
strategy = "sma_cross"
market = "btc-usd"
feed = {{ source = "atmos", exchange = "binance", symbol = "BTCUSDT" }}
params = {{ fast = 10, slow = 30 }}
order_amount = "0.001"
"""

# backtesting.py on the same rules: decide on the close, fill at the next open (its default), all in, no fee.
BACKTESTING_PY = """
import sys, time
import pandas as pd
from backtesting import Backtest, Strategy
from ta.momentum import RSIIndicator
from ta.trend import SMAIndicator

rule, path = sys.argv[1], sys.argv[2]
df = pd.read_csv(path, index_col=0, parse_dates=True)

class Rsi(Strategy):
    def init(self):
        self.rsi = self.I(lambda c: RSIIndicator(pd.Series(c), 14).rsi().to_numpy(), self.data.Close)
    def next(self):
        if not self.position and self.rsi[-1] < 30:
            self.buy()
        elif self.position and self.rsi[-1] > 70:
            self.position.close()

class Sma(Strategy):
    def init(self):
        sma = lambda c, n: SMAIndicator(pd.Series(c), n).sma_indicator().to_numpy()
        self.fast, self.slow = self.I(sma, self.data.Close, 10), self.I(sma, self.data.Close, 30)
    def next(self):
        f0, f1, s0, s1 = self.fast[-2], self.fast[-1], self.slow[-2], self.slow[-1]
        if not self.position and f0 <= s0 and f1 > s1:
            self.buy()
        elif self.position and f0 >= s0 and f1 < s1:
            self.position.close()

# Whole units: cash large enough that all-in sizing is all in to ~1e-6.
bt = Backtest(df, Rsi if rule == "rsi" else Sma, cash=1e10, commission=0, finalize_trades=True)
stats = bt.run()
print(int(stats["# Trades"]), float(stats["Return [%]"]))
"""


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return elapsed, r.stdout


def ensure_data(workdir: Path, given: str | None) -> Path:
    if given:
        return Path(given)
    csv = workdir / "synth-525600-42.csv"
    if not csv.exists():
        print(f"generating {csv} ...", file=sys.stderr)
        subprocess.run([PYTHON, str(HERE / "gen_synth.py"), str(csv)], check=True, capture_output=True)
    return csv


def ours(cfg: Path, csv: Path, rule: str, cache: Path, out: Path) -> tuple[float, int, float]:
    cmd = [PYTHON, "-m", "bot", "backtest", "--config", str(cfg), "--data", str(csv), "--strategy", rule,
           "--cache-dir", str(cache), "--json", str(out), "--no-progress"]
    elapsed, _ = timed(cmd)
    doc = json.loads(out.read_text())["instances"][rule]
    return elapsed, int(doc["trades"]), float(doc["total_return_pct"])


def screenshot(cfg: Path, csv: Path, workdir: Path, png: Path) -> None:
    report = workdir / "report.html"
    timed([PYTHON, "-m", "bot", "backtest", "--config", str(cfg), "--data", str(csv), "--report", str(report),
           "--no-progress"])
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install -y chromium)")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={workdir / 'chromium'}", "--window-size=1400,2200",
                    "--virtual-time-budget=15000", f"--screenshot={png.resolve()}", report.as_uri()],
                   check=True, capture_output=True, timeout=180)
    print(f"report {report} ({report.stat().st_size / 1e6:.1f} MB), screenshot {png}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each tradebot case (median)")
    parser.add_argument("--bt-runs", type=int, default=5, help="timed runs of backtesting.py per rule (median)")
    parser.add_argument("--data", help="the CSV (default: generated with gen_synth.py, 525,600 bars, seed 42)")
    parser.add_argument("--workdir", help="where the CSV, config and caches go (default: a temp directory)")
    parser.add_argument("--rules", default="rsi,sma")
    parser.add_argument("--screenshot", metavar="PNG", help="also save a screenshot of the HTML report")
    args = parser.parse_args()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-backtest-"))
    workdir.mkdir(parents=True, exist_ok=True)
    csv = ensure_data(workdir, args.data)
    cfg = workdir / "bench.toml"
    cfg.write_text(CONFIG.format(state=workdir / "var"))
    bt_script = workdir / "backtesting_py_rule.py"
    bt_script.write_text(BACKTESTING_PY)
    print(f"data: {csv} ({csv.stat().st_size / 1e6:.1f} MB); whole processes, median of {args.runs} "
          f"(backtesting.py: {args.bt_runs})")
    print(f"{'rule':5} {'case':22} {'median_s':>9} {'min_s':>7} {'trades':>7} {'return_%':>9}")
    failed = False
    for rule in args.rules.split(","):
        rows: dict[str, tuple[float, float, int, float]] = {}
        cold: list[float] = []
        for i in range(args.runs):
            t, trades, ret = ours(cfg, csv, rule, workdir / f"cold-{rule}-{i}", workdir / "out.json")
            cold.append(t)
        rows["tradebot, cold cache"] = (statistics.median(cold), min(cold), trades, ret)
        warm_dir = workdir / f"warm-{rule}"
        ours(cfg, csv, rule, warm_dir, workdir / "out.json")  # fills the cache
        warm = []
        with StealMeter() as steal:
            for _ in range(args.runs):
                t, trades, ret = ours(cfg, csv, rule, warm_dir, workdir / "out.json")
                warm.append(t)
        rows["tradebot, warm cache"] = (statistics.median(warm), min(warm), trades, ret)
        bt: list[float] = []
        for _ in range(args.bt_runs):
            t, out = timed([PYTHON, str(bt_script), rule, str(csv)])
            bt.append(t)
        bt_trades, bt_ret = out.split()
        rows["backtesting.py 0.6"] = (statistics.median(bt), min(bt), int(bt_trades), float(bt_ret))
        for case, (med, low, n, r) in rows.items():
            print(f"{rule:5} {case:22} {med:9.3f} {low:7.3f} {n:7d} {r:+9.2f}")
        base = rows["backtesting.py 0.6"][0]
        print(f"{rule:5} ratio backtesting.py / tradebot: {base / rows['tradebot, warm cache'][0]:.1f}x warm, "
              f"{base / rows['tradebot, cold cache'][0]:.1f}x cold")
        counts = {n for _m, _l, n, _r in rows.values()}
        if len(counts) != 1:
            print(f"{rule}: trade counts differ: {counts}", file=sys.stderr)
            failed = True
        if rule == "rsi":
            verdict = "met" if rows["tradebot, warm cache"][0] < 0.8 else "NOT met"
            print(f"rsi   target < 0.8 s whole process (warm cache): {verdict} "
                  f"({steal.describe()} during the warm runs)")
    if args.screenshot:
        screenshot(cfg, csv, workdir, Path(args.screenshot))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
