"""`tradebot run` with the default configuration: one evaluation per closed candle, across restarts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {"TRADEBOT_STATUS__LISTEN": "127.0.0.1:0"}


def run(wd: Path, seconds: float) -> list[dict[str, object]]:
    r = subprocess.run([sys.executable, "-m", "bot", "run", "--duration", str(seconds)], cwd=wd,
                       capture_output=True, text=True, timeout=120, env={**os.environ, **ENV})
    assert r.returncode == 0, r.stderr + r.stdout[-2000:]
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def signals(events: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in events if e["event"] == "signal"]


def test_default_config_logs_signal_and_indicator_values_for_each_closed_candle(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    events = run(tmp_path, 6)
    sigs = signals(events)
    instances = {"btc-rsi", "btc-macd-sfox", "eth-bollinger", "eth-rsi-sfox"}
    assert {s["instance"] for s in sigs} == instances
    per = Counter((s["instance"], s["candle"]) for s in sigs)
    assert max(per.values()) == 1  # exactly one evaluation per closed candle and instance
    decided = [s for s in sigs if s["actionable"]]
    assert decided, "no strategy got past warm-up"
    for s in decided:
        assert s["action"] in {"buy", "sell", "hold"} and s["reason"]
        assert isinstance(s["values"], dict) and "close" in s["values"] and len(s["values"]) >= 2
    assert not [e for e in events if e["event"] == "poll.dropped"]


@pytest.mark.slow
def test_restart_continues_where_it_stopped_without_evaluating_a_candle_twice(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    first = signals(run(tmp_path, 4))
    second_events = run(tmp_path, 4)
    second = signals(second_events)
    key = lambda s: (s["instance"], s["candle"])  # noqa: E731
    assert not {key(s) for s in first} & {key(s) for s in second}
    # The minutes that passed while the daemon was down were backfilled, so each instance's stream is
    # continuous: the second run starts right after the first run's last candle (allowing market gaps).
    backfilled = [s for s in second if s.get("backfill")]
    assert backfilled, "restart did not backfill"
    warm = [e for e in second_events if e["event"] == "feed.warmed_up"]
    assert all(e["since"] for e in warm)
