"""CandleBook: order, de-duplication, partial replacement, gaps, bounds, staleness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bot.domain import Candle
from bot.feeds.candles import CandleBook

T = datetime(2026, 1, 1, tzinfo=UTC)


def c(minute: int, close: str = "100", partial: bool = False) -> Candle:
    p = Decimal(close)
    return Candle(T + timedelta(minutes=minute), p, p, p, p, Decimal(1), 60, partial=partial)


def test_final_candles_emitted_once_in_order() -> None:
    book = CandleBook("k", 60)
    assert [x.time.minute for x in book.update([c(2), c(0), c(1)])] == [0, 1, 2]
    assert book.update([c(1), c(2)]) == []  # re-polled closed candles are not emitted again
    assert [x.time.minute for x in book.update([c(2), c(3)])] == [3]


def test_repolled_partial_replaces_earlier_version_and_final_supersedes_it() -> None:
    book = CandleBook("k", 60)
    book.update([c(0), c(1, "101", partial=True)])
    book.update([c(1, "105", partial=True)])
    assert book.partial is not None and book.partial.close == Decimal("105")
    out = book.update([c(1, "104"), c(2, "106", partial=True)])
    assert [(x.time.minute, x.close) for x in out] == [(1, Decimal("104"))]
    assert book.partial is not None and book.partial.time.minute == 2


def test_gaps_stay_gaps() -> None:
    book = CandleBook("k", 60)
    out = book.update([c(0), c(1), c(4), c(5)])
    assert [x.time.minute for x in out] == [0, 1, 4, 5]
    assert len(book) == 4


def test_late_candle_older_than_emitted_is_ignored_and_counted() -> None:
    book = CandleBook("k", 60)
    book.update([c(0), c(2)])
    assert book.update([c(1)]) == []
    assert book.late == 1


def test_memory_is_bounded() -> None:
    book = CandleBook("k", 60, max_candles=100)
    book.update([c(i) for i in range(1000)])
    assert len(book) == 100 and book.closed()[0].time.minute == (900 % 60)


def test_fetch_from_resumes_after_last_closed_and_after_restart_floor() -> None:
    book = CandleBook("k", 60)
    assert book.fetch_from(T, 10) == T - timedelta(minutes=10)
    book.update([c(0), c(1)])
    assert book.fetch_from(T, 10) == T + timedelta(minutes=2)
    fresh = CandleBook("k", 60)
    fresh.seed(T + timedelta(minutes=5))
    assert fresh.fetch_from(T, 10) == T + timedelta(minutes=6)
    assert [x.time.minute for x in fresh.update([c(4), c(5), c(6)])] == [6]


def test_staleness_after_two_periods_plus_grace() -> None:
    book = CandleBook("k", 60)
    assert book.staleness(T, 30).stale  # nothing yet
    book.update([c(0)])  # ends at T+60s
    assert not book.staleness(T + timedelta(seconds=60 + 150), 30).stale
    st = book.staleness(T + timedelta(seconds=60 + 151), 30)
    assert st.stale and st.limit_s == 150


def test_a_later_candle_in_the_answer_closes_an_earlier_one_flagged_partial() -> None:
    book = CandleBook("k", 60)
    book.update([c(0)])
    # The client flagged minute 1 partial (sent before its end + settle), but the answer also holds minute 2.
    out = book.update([c(1, "101", partial=True), c(2, "102", partial=True)])
    assert [(x.time.minute, x.partial) for x in out] == [(1, False)]
    assert book.partial is not None and book.partial.time.minute == 2


def test_a_provisional_candle_is_never_emitted_so_its_final_version_is_not_dropped() -> None:
    book = CandleBook("k", 60)
    book.update([c(0)])
    assert book.update([c(1, "101", partial=True)]) == []  # alone in its answer: still provisional
    out = book.update([c(1, "103")])
    assert [(x.time.minute, x.close) for x in out] == [(1, Decimal("103"))]
