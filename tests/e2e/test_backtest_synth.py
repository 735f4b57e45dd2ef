"""The reference figures on gen_synth's 525,600 minutes (seed 42): the trade counts three engines agree on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_backtest import config_text

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_rsi_and_sma_cross_trade_counts_on_the_year_of_synthetic_minutes(tmp_path: Path) -> None:
    csv = tmp_path / "synth.csv"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_synth.py"), str(csv)], check=True, timeout=120,
                   capture_output=True)
    cfg = tmp_path / "bt.toml"
    cfg.write_text(config_text(tmp_path))
    out = tmp_path / "out.json"
    for _ in range(2):  # parsed, then from the cache
        r = subprocess.run([sys.executable, "-m", "bot", "backtest", "--config", str(cfg), "--data", str(csv),
                            "--fill", "next_open", "--json", str(out), "--no-progress"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        doc = json.loads(out.read_text())["instances"]
        assert doc["rsi"]["candles"] == doc["sma"]["candles"] == 525_600
        assert doc["rsi"]["trades"] == 1_863
        assert doc["rsi"]["total_return_pct"] == pytest.approx(36.2, abs=0.05)
        assert doc["sma"]["trades"] == 10_285
        assert doc["sma"]["total_return_pct"] == pytest.approx(-33.6, abs=0.05)
        assert doc["rsi"]["fees"] == doc["sma"]["fees"] == 0
    assert len(list((tmp_path / "var" / "cache" / "backtest").glob("v*-*.npy"))) == 1
