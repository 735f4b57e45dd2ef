"""Poll planning: budgets never exceeded, polls just after the close and spread, degrade by priority."""

from __future__ import annotations

import pytest

from bot.feeds.planning import SERVICE_STAGGER_S, StreamSpec, plan_polls


def atmos(i: int, strategy: bool = True, period: int = 60) -> StreamSpec:
    return StreamSpec(f"atmos:{i}", "atmos", period, feeds_strategy=strategy)


@pytest.mark.parametrize(
    ("n_streams", "budget", "full", "stretched", "dropped"),
    [
        (1, 20, 1, 0, 0),
        (15, 20, 15, 0, 0),  # 15 of the usable 15 (75 % of 20)
        (16, 20, 15, 0, 1),  # nothing left for the 16th, not even a stretched poll
        (3, 4, 3, 0, 0),
        (5, 4, 3, 0, 2),
        (2, 1, 1, 0, 1),  # a budget of 1/min still polls one stream
    ],
)
def test_budget_never_exceeded(n_streams: int, budget: int, full: int, stretched: int, dropped: int) -> None:
    plan = plan_polls([atmos(i) for i in range(n_streams)], {"atmos": budget})
    assert plan.usage("atmos") <= max(1, int(budget * 0.75)) + 1e-9
    assert len([p for p in plan.polls if p.stretch == 1]) == full
    assert len(plan.degraded) == stretched
    assert len(plan.dropped) == dropped


def test_strategy_streams_served_first_then_others_stretched() -> None:
    streams = [atmos(0, strategy=False), atmos(1), atmos(2), atmos(3, strategy=False)]
    # 3 usable requests/min: the two strategy streams get every candle, the others share what is left.
    plan = plan_polls(streams, {"atmos": 4})
    by_key = {p.key: p for p in plan.polls}
    assert by_key["atmos:1"].stretch == 1 and by_key["atmos:2"].stretch == 1
    assert by_key["atmos:0"].stretch == 1
    assert [d.key for d in plan.dropped] == ["atmos:3"]


def test_longer_periods_cost_less_and_stretch_instead_of_dropping() -> None:
    streams = [atmos(0), atmos(1), StreamSpec("sfox:h", "sfox", 3600, feeds_strategy=False)]
    plan = plan_polls(streams, {"atmos": 2, "sfox": 1})
    assert {p.key for p in plan.polls} == {"atmos:0", "sfox:h"}
    assert plan.dropped[0].key == "atmos:1" and "atmos budget" in plan.dropped[0].reason


def test_two_minute_streams_cost_half_and_strategies_keep_full_rate() -> None:
    # usable 3/min: six strategy streams with 2-minute candles cost 0.5/min each = 3/min, nothing left.
    streams = [atmos(i, period=120) for i in range(6)] + [atmos(9, strategy=False)]
    plan = plan_polls(streams, {"atmos": 4})
    assert plan.usage("atmos") <= 3 + 1e-9
    assert all(p.stretch == 1 for p in plan.polls if p.key != "atmos:9")
    assert not plan.dropped or plan.dropped[0].key == "atmos:9"


def test_small_budgets_drop_the_non_strategy_stream() -> None:
    streams = [atmos(0), atmos(1), atmos(2, strategy=False)]
    plan = plan_polls(streams, {"atmos": 3}, headroom=0.9)  # usable 2: third stream cannot fit at all
    assert [d.key for d in plan.dropped] == ["atmos:2"]
    plan = plan_polls([atmos(0), atmos(1, strategy=False)], {"atmos": 2}, headroom=0.75)  # usable 1
    (only,) = plan.polls
    assert only.key == "atmos:0" and only.stretch == 1
    assert plan.dropped[0].key == "atmos:1"
    plan = plan_polls([StreamSpec("a", "atmos", 60), StreamSpec("b", "atmos", 60, feeds_strategy=False)],
                      {"atmos": 3}, headroom=0.5)  # usable 1.0 -> floor 1
    assert len(plan.polls) == 1


def test_fractional_leftover_is_used_by_stretching() -> None:
    # usable 3: two streams at 1/min, then 1/min left: a 30 s stream (2/min) needs stretch 2.
    streams = [atmos(0), atmos(1), StreamSpec("fast", "atmos", 30, feeds_strategy=False)]
    plan = plan_polls(streams, {"atmos": 4})
    fast = next(p for p in plan.polls if p.key == "fast")
    assert fast.stretch == 2 and fast.interval_s == 60.0
    assert plan.usage("atmos") == pytest.approx(3.0)


def test_polls_just_after_close_and_spread_over_the_period() -> None:
    plan = plan_polls([atmos(i) for i in range(4)], {"atmos": 20}, close_delay_s=2.0)
    offsets = [p.offset_s for p in plan.polls]
    assert offsets[0] == 2.0
    assert offsets == sorted(offsets) and len(set(offsets)) == 4
    assert max(offsets) < 60


def test_budgets_are_independent_per_service() -> None:
    streams = [atmos(i) for i in range(10)] + [StreamSpec(f"s{i}", "sfox", 60) for i in range(10)]
    plan = plan_polls(streams, {"atmos": 20, "sfox": 60})
    assert not plan.dropped
    assert plan.usage("atmos") == 10 and plan.usage("sfox") == 10


def test_streams_of_different_services_are_never_polled_at_the_same_instant() -> None:
    # Each further service starts later, so the first streams of atmos and sfox (both just after the close)
    # do not land their cycles on the one event loop at once.
    streams = [atmos(0), atmos(1), StreamSpec("s0", "sfox", 60), StreamSpec("s1", "sfox", 60),
               StreamSpec("c0", "coinbtr", 60)]
    plan = plan_polls(streams, {"atmos": 20, "sfox": 60, "coinbtr": 60}, close_delay_s=2.0)
    offsets = {p.key: p.offset_s for p in plan.polls}
    assert offsets["atmos:0"] == 2.0
    assert offsets["s0"] == 2.0 + SERVICE_STAGGER_S and offsets["c0"] == 2.0 + 2 * SERVICE_STAGGER_S
    assert len(set(offsets.values())) == len(offsets)


def test_bad_input_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        plan_polls([atmos(1), atmos(1)], {"atmos": 20})
    with pytest.raises(ValueError, match="budget"):
        plan_polls([atmos(1)], {})
