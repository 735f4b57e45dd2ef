"""SIGKILL around the hand-off: a restart never hands an actionable evaluation off twice, and loses none."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from bot.clock import ManualClock
from bot.signals.handoff import Handoffs
from bot.store import Store
from tests.conftest import T0
from tests.e2e.handoff_child import ROOT, TOPIC

START = T0 + timedelta(seconds=2)


def child(work: Path, start_offset_s: float, polls: int, mode: str = "none", kill_at: int = 0) -> int:
    r = subprocess.run([sys.executable, "-m", "tests.e2e.handoff_child", str(work),
                        (START + timedelta(seconds=start_offset_s)).isoformat(), str(polls), mode, str(kill_at)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, -9), r.stderr[-3000:]
    return r.returncode


@pytest.mark.parametrize("mode", ["inside", "after"])
def test_sigkill_around_the_hand_off_then_restart_hands_each_candle_off_exactly_once(
        tmp_path: Path, mode: str) -> None:
    assert child(tmp_path, 0, polls=6, mode=mode, kill_at=3) == -9
    store = Store.open(tmp_path / "state", clock=ManualClock(T0))
    before = [e.payload["candle"] for e in store.read(TOPIC)]
    store.close()
    # "inside": the third hand-off died with its transaction; "after": it committed with the cursor.
    assert len(before) == (2 if mode == "inside" else 3)
    # Restart right where it died: the candles after the cursor are backfilled while still fresh.
    died_at = 3 * 60 if mode == "inside" else 4 * 60
    assert child(tmp_path, died_at + 1, polls=3) == 0
    store = Store.open(tmp_path / "state", clock=ManualClock(T0))
    recorded = [e.payload["candle"] for e in store.read(TOPIC)]
    keys = [(h.instance, h.candle_time) for h in Handoffs(store, ManualClock(T0)).pending()]
    store.close()
    assert len(recorded) == len(set(recorded)), f"a candle was handed off twice: {recorded}"
    assert recorded[:len(before)] == before
    minutes = [(T0 + timedelta(minutes=i)).isoformat() for i in range(len(recorded))]
    assert recorded == minutes  # every minute handed off once, none lost across the crash
    assert sorted(k[1] for k in keys) == recorded  # the hand-off keys agree with what the stand-in saw
