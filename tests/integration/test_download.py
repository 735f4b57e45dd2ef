"""`tradebot download` against the simulators: history to CSV through our clients' budgets, resumable."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from bot.backtest.data import load_csv

ROOT = Path(__file__).resolve().parents[2]


def config(tmp_path: Path) -> Path:
    path = tmp_path / "dl.toml"
    path.write_text(f"""state_dir = "{tmp_path / 'var'}"
[sandbox]
enabled = true
[atmos]
api_key = "sandbox-atmos-key"
""")
    return path


def download(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", "download", "--config", str(cfg), *args, "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_download_writes_checked_csv_and_resumes_after_its_last_row(tmp_path: Path) -> None:
    cfg, out = config(tmp_path), tmp_path / "btc.csv"
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start, middle = now - timedelta(hours=6), now - timedelta(hours=3)
    first = download(cfg, "--source", "atmos", "--symbol", "BTCUSDT", "--start", start.isoformat(),
                     "--end", middle.isoformat(), "--out", str(out))
    assert first.returncode == 0, first.stderr
    rows_first = out.read_text().splitlines()
    assert rows_first[0] == "timestamp,open,high,low,close,volume" and len(rows_first) > 100
    second = download(cfg, "--source", "atmos", "--symbol", "BTCUSDT", "--start", start.isoformat(),
                      "--end", now.isoformat(), "--out", str(out))
    assert second.returncode == 0, second.stderr
    rows = out.read_text().splitlines()
    assert rows[: len(rows_first)] == rows_first and len(rows) > len(rows_first)  # appended, nothing rewritten
    candles = load_csv(out, None)  # sorted, no duplicates, every value a number (or it raises)
    assert candles.times[0] >= np.int64(start.timestamp() * 1e9) and candles.times[-1] < np.int64(now.timestamp() * 1e9)
    assert "downloaded to" in second.stderr
    again = download(cfg, "--source", "atmos", "--symbol", "BTCUSDT", "--start", start.isoformat(),
                     "--end", now.isoformat(), "--out", str(out))
    assert again.returncode == 0 and out.read_text().splitlines() == rows  # complete: nothing more to fetch


@pytest.mark.slow
def test_download_from_sfox_and_a_missing_pair_is_a_usage_error(tmp_path: Path) -> None:
    cfg, out = config(tmp_path), tmp_path / "eth.csv"
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    ok = download(cfg, "--source", "sfox", "--pair", "ethusd", "--start", (now - timedelta(hours=2)).isoformat(),
                  "--end", now.isoformat(), "--out", str(out))
    assert ok.returncode == 0, ok.stderr
    assert len(load_csv(out, None)) > 60
    bad = download(cfg, "--source", "sfox", "--out", str(out))
    assert bad.returncode == 2 and "--pair" in bad.stderr and "Traceback" not in bad.stderr
