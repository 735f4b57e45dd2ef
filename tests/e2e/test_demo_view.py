"""The demo as a new user runs it (`tradebot run --view`, what `python3 dev.py demo` runs), not on a terminal:
one line per event, the log in the state directory, and a summary at stop, exit 0."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_demo_trades_prints_lines_and_a_summary_and_exits_0(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    env = {**os.environ, "TRADEBOT_STATUS__LISTEN": "127.0.0.1:0", "TRADEBOT_SANDBOX__SPEED": "240"}
    r = subprocess.run([sys.executable, "-m", "bot", "run", "--config", "config/paper.toml", "--duration", "25",
                        "--view", "auto"], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr + r.stdout[-3000:]
    out = r.stdout
    assert not any(line.startswith("{") for line in out.splitlines()), "the JSON log belongs in the log file"
    assert (tmp_path / "var" / "tradebot.log").read_text().count('"event": "daemon.stopped"') == 1
    assert re.search(r"^\d\d:\d\d:\d\d candle  ", out, re.M) and re.search(r"^\d\d:\d\d:\d\d fill    #", out, re.M)
    summary = out[out.index("tradebot summary"):]
    orders = int(re.search(r"orders (\d+)", summary).group(1))  # type: ignore[union-attr]
    fills = int(re.search(r"fills (\d+)", summary).group(1))  # type: ignore[union-attr]
    assert orders >= 1 and fills >= 1, summary
    traded = set(re.findall(r"^\d\d:\d\d:\d\d order   #\d+ (\S+) ", out, re.M))
    assert len(traded) >= 2, traded  # several instances trade within the first simulated hour or so
    assert "429s per API: atmos 0, sfox 0, coinbtr 0, atlas 0, atmotube 0" in summary
    for kind in ("candles/", "evaluations/", "ticks/", "orders/", "fills/", "sensor/", "balances/"):
        assert f"    {kind}" in summary, (kind, summary)
