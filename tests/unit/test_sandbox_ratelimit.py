"""The simulators' rate limiters, on a manual clock."""

from __future__ import annotations

from bot.clock import ManualClock
from bot.sandbox.ratelimit import FixedMinuteLimiter, RollingWindowLimiter


def test_rolling_window_frees_slots_as_old_requests_age_out(clock: ManualClock) -> None:
    lim = RollingWindowLimiter(clock, limit=3, window_s=60)
    assert [lim.allow("k") for _ in range(3)] == [True, True, True]
    clock.advance(20)
    assert not lim.allow("k")
    assert lim.retry_after("k") == 40
    assert lim.allow("other")  # per key
    clock.advance(40)
    assert lim.retry_after("k") == 0 and lim.remaining("k") == 3
    assert lim.allow("k")


def test_rejected_requests_do_not_extend_the_window(clock: ManualClock) -> None:
    lim = RollingWindowLimiter(clock, limit=1, window_s=60)
    assert lim.allow("k")
    for _ in range(5):
        clock.advance(10)
        assert not lim.allow("k")
    clock.advance(10)
    assert lim.allow("k")


def test_fixed_minute_resets_at_the_clock_minute_not_sixty_seconds_later(clock: ManualClock) -> None:
    clock.advance(50)  # 12:00:50
    lim = FixedMinuteLimiter(clock, limit=2)
    assert lim.allow("k") and lim.allow("k")
    assert not lim.allow("k")
    assert lim.retry_after("k") == 10
    clock.advance(10)  # 12:01:00, a new minute
    assert lim.retry_after("k") == 0
    assert lim.allow("k") and lim.allow("k") and not lim.allow("k")
    lim.reset()
    assert lim.allow("k")
