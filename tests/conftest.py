"""Shared test fixtures."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import settings

from bot.clock import ManualClock

# Property tests are deterministic and never judged by the wall clock: the same examples every run
# (`derandomize`, no example database carried between runs), and no per-example deadline (Hypothesis' default
# 200 ms failed a correct example that took 234 ms on this shared 2-core VM while the hypervisor took CPU).
settings.register_profile("tradebot", derandomize=True, database=None, deadline=None)
settings.load_profile("tradebot")

# A fixed, minute-aligned instant used as "now" by tests that need a deterministic clock.
T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)
