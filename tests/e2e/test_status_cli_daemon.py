"""`tradebot status` and `tradebot export-trades` against a running daemon (a subprocess), and export after it
stopped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.daemon_proc import ROOT, DaemonProc, paper_config

TOKEN = "e2e-status-token"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.slow
def test_status_and_export_against_a_running_daemon_and_after(tmp_path: Path) -> None:
    cfg = paper_config(tmp_path)
    token = tmp_path / "token"
    token.write_text(TOKEN)
    d = DaemonProc(cfg, env={"TRADEBOT_STATUS__TOKEN": TOKEN})
    try:
        url = d.ready(timeout=90)
        d.wait_for("signal", timeout=30)  # a strategy has evaluated a live candle
        proc = _cli("status", "--url", url, "--token-file", str(token))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"tradebot default at {url}: ok (/health 200)")
        for part in ("Strategies", "btc-rsi", "Streams", "Balances", "APIs", "clock skew s", "Alarms: (none)"):
            assert part in proc.stdout
        assert TOKEN not in proc.stdout
        assert _cli("status", "--url", url).returncode == 2  # no token
        running = _cli("export-trades", "--config", str(cfg))
        assert running.returncode == 0, running.stderr
        assert running.stdout.startswith("fill_id,at,broker,instance,market,side,price,amount,notional,fee,")
    finally:
        rc = d.terminate()
    assert rc == 0
    after = _cli("export-trades", "--config", str(cfg), "--csv", str(tmp_path / "t.csv"))
    assert after.returncode == 0, after.stderr
    assert (tmp_path / "t.csv").read_text().splitlines()[0].startswith("fill_id,")
    down = _cli("status", "--url", url)
    assert down.returncode == 1 and down.stderr.startswith("tradebot: no tradebot daemon answers at")
