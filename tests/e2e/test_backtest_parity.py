"""A backtest over the candles the daemon recorded in Atlas decides exactly what the daemon decided live."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bot.settings import load_settings
from bot.strategy import load_configured
from tests.e2e.daemon_proc import paper_config

ROOT = Path(__file__).resolve().parents[2]
# One RSI instance on one Atmos stream, the simulated market at 10 minutes per second: ~600 closed candles
# in the run, of which the first warm-up's worth (187 for RSI(7)) only prime the backtest.
STRATEGY = """
[[strategies]]
name = "btc-rsi"
strategy = "rsi_reversion"
market = "btc-mxn"
feed = { source = "atmos", exchange = "binance", symbol = "BTCUSDT" }
params = { period = 7, buy_below = 40, sell_above = 60 }
order_amount = "0.001"
"""
RUN_SECONDS = 60


@pytest.mark.slow
def test_backtest_signals_on_atlas_candles_equal_the_signals_the_daemon_logged_live(tmp_path: Path) -> None:
    cfg = paper_config(tmp_path, strategies=False, extra=STRATEGY)
    text = cfg.read_text().replace("speed = 60.0", "speed = 600.0")
    cfg.write_text(text.replace("[atmotube]                           # an air-quality sensor recorded beside "
                                "the market data\nenabled = true", "[atmotube]\nenabled = false"))
    run = subprocess.run([sys.executable, "-m", "bot", "run", "--config", str(cfg), "--duration", str(RUN_SECONDS)],
                         cwd=ROOT, capture_output=True, text=True, timeout=RUN_SECONDS + 60, env=dict(os.environ))
    assert run.returncode == 0, run.stderr[-2000:]
    live = {}
    for line in run.stdout.splitlines():
        if line.startswith("{") and '"signal"' in line:
            event = json.loads(line)
            if event.get("event") == "signal" and event["instance"] == "btc-rsi":
                live[event["candle"]] = (event["action"], event.get("note"))
    signals = tmp_path / "signals.csv"
    bt = subprocess.run([sys.executable, "-m", "bot", "backtest", "--config", str(cfg), "--from", "atlas",
                         "--signals", str(signals), "--json", str(tmp_path / "bt.json"), "--no-progress"],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bt.returncode == 0, bt.stderr[-2000:]
    rows = list(csv.DictReader(signals.open()))
    assert len(rows) >= 0.9 * len(live)  # the recorded candles are the evaluated ones
    warmup = load_configured(load_settings(cfg))[0].strategy.warmup(load_configured(load_settings(cfg))[0].params)
    compared = [(r["candle"], r["action"], live[r["candle"]]) for r in rows[warmup - 1:]
                if r["candle"] in live and live[r["candle"]][1] != "warming up"]
    mismatches = [c for c in compared if c[1] != c[2][0]]
    actions = Counter(c[1] for c in compared)
    assert len(compared) >= 200, f"only {len(compared)} signals after warm-up"
    assert actions["buy"] > 0 and actions["sell"] > 0, actions
    assert mismatches == []
