"""The reliability trials, short: the promise (no order or withdrawal twice, no Atlas row lost or doubled, no
crash, secrets nowhere) kept in CI. The long runs are `bench/chaos.py --minutes 1000` and
`bench/crash.py --trials 50` (figures in the README)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import chaos, crash, secrets


@pytest.mark.slow
def test_chaos_for_60_simulated_minutes_keeps_every_invariant(tmp_path: Path) -> None:
    # Faults stay on up to the SIGTERM: rows the stop could not send are checked in the outbox.
    assert chaos.run(tmp_path, minutes=60, seed=7, speed=240, fault_rate=1.0, settle=False) == 0


@pytest.mark.slow
def test_five_sigkills_at_seeded_points_then_restarts_keep_every_invariant(tmp_path: Path) -> None:
    assert crash.run(tmp_path, trials=5, seed=11, speed=240) == 0


@pytest.mark.slow
def test_no_secret_reaches_logs_status_metrics_atlas_the_store_or_error_messages(tmp_path: Path) -> None:
    assert secrets.run(tmp_path, seed=5) == 0
