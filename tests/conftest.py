"""Shared test fixtures."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.clock import ManualClock

# A fixed, minute-aligned instant used as "now" by tests that need a deterministic clock.
T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)
