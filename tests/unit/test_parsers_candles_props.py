"""Atmos and sFOX candle parsers under random and malformed payloads, and their pure planning functions.

Parsers may only succeed or raise `MalformedResponse`; range splitting and page planning are pinned by
tables and properties.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.clients import atmos, sfox
from bot.domain import Candle
from bot.errors import MalformedResponse

NOW = datetime(2026, 11, 20, 12, 0, 30, tzinfo=UTC)
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["2026-11-20T11:59:00.000Z", "1.5", "NaN", "-Infinity", "1e999999", "", "0x10",
                     "9999-12-31T23:59:59.999Z", "0001-01-01T00:00:00Z", "2026-02-30T00:00:00Z"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=12), children, max_size=5)),
    max_leaves=25,
)
decimal_text = st.decimals(min_value=Decimal("0"), max_value=Decimal("1e9"), places=8,
                           allow_nan=False, allow_infinity=False).map(str)

ATMOS_FIELDS = [atmos.F_TIME, atmos.F_OPEN, atmos.F_HIGH, atmos.F_LOW, atmos.F_CLOSE, atmos.F_VOLUME,
                atmos.F_TRADES]
SFOX_FIELDS = [sfox.F_TIME, sfox.F_OPEN, sfox.F_HIGH, sfox.F_LOW, sfox.F_CLOSE, sfox.F_VOLUME,
               sfox.F_PERIOD, sfox.F_VWAP, sfox.F_TRADES]


def _atmos_tick(minute: int, price: str = "100.5") -> dict[str, Any]:
    return {"time": (T0 + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%S.000Z"), "open": price,
            "high": price, "low": price, "close": price, "baseVolume": "1.25000000", "trades": 3}


def _sfox_candle(ts: int, period: int = 60) -> dict[str, Any]:
    return {"open_price": "9654", "high_price": "9662.37", "low_price": "9653.66", "close_price": "9655.73",
            "volume": "6.31945755", "start_time": ts, "pair": "btcusd", "candle_period": period,
            "vwap": "9655.70504211", "trades": 53}


def _only_typed(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except MalformedResponse as exc:
        assert exc.service in (atmos.SERVICE, sfox.SERVICE)


# ------------------------------------------------------------------------------------- random payloads

@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_atmos_parsers_raise_only_malformed_on_random_json(data: Any) -> None:
    _only_typed(atmos.parse_page, data, NOW)
    _only_typed(atmos.parse_latest, data, NOW)
    _only_typed(atmos.parse_pairs, data)
    _only_typed(atmos.parse_page, {"results": data}, NOW)
    _only_typed(atmos.parse_page, {"results": [{"ticks": data}]}, NOW)
    _only_typed(atmos.parse_latest, {"result": data}, NOW)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_sfox_parser_raises_only_malformed_on_random_json(data: Any) -> None:
    _only_typed(sfox.parse_candles, data, 60, NOW)
    _only_typed(sfox.parse_candles, [data], 60, NOW)


@settings(max_examples=400)
@given(st.sampled_from(ATMOS_FIELDS), json_scalars | json_values, st.booleans())
def test_atmos_tick_with_one_field_corrupted_or_missing(field: str, value: Any, drop: bool) -> None:
    tick = _atmos_tick(0)
    if drop:
        tick.pop(field)
    else:
        tick[field] = value
    _only_typed(atmos.parse_page, {"results": [{"ticks": [_atmos_tick(1), tick]}]}, NOW)


@settings(max_examples=400)
@given(st.sampled_from(SFOX_FIELDS), json_scalars | json_values, st.booleans())
def test_sfox_candle_with_one_field_corrupted_or_missing(field: str, value: Any, drop: bool) -> None:
    candle = _sfox_candle(1_700_000_040)
    if drop:
        candle.pop(field)
    else:
        candle[field] = value
    _only_typed(sfox.parse_candles, [_sfox_candle(1_700_000_000), candle], 60, NOW)


# ------------------------------------------------------------------------------------- valid payloads

@given(st.lists(st.tuples(st.integers(-3000, 0), decimal_text), min_size=1, max_size=30))
def test_atmos_valid_ticks_parse_exactly(ticks: list[tuple[int, str]]) -> None:
    page = {"results": [{"ticks": [_atmos_tick(m, p) for m, p in ticks]}]}
    count, candles = atmos.parse_page(page, NOW)
    assert count == 1
    assert [c.close for c in candles] == [Decimal(p) for _, p in ticks]
    assert [c.time for c in candles] == [T0 + timedelta(minutes=m) for m, _ in ticks]
    # Only the tick of the running minute (12:00, now 12:00:30) is partial.
    assert [c.partial for c in candles] == [m == 0 for m, _ in ticks]


def test_sfox_valid_candle_parses_exactly_and_the_running_period_is_partial() -> None:
    now_ts = int(NOW.timestamp())
    closed, running = sfox.parse_candles([_sfox_candle(now_ts - 90), _sfox_candle(now_ts - 30)], 60, NOW)
    assert closed.open == Decimal("9654") and closed.vwap == Decimal("9655.70504211")
    assert closed.trades == 53 and closed.period == 60 and not closed.partial
    assert running.partial


# ------------------------------------------------------------------------------------- pure planning

@pytest.mark.parametrize(
    ("start", "end", "period", "expected"),
    [
        (0, 0, 60, [(0, 0)]),
        (0, 499 * 60, 60, [(0, 29940)]),  # exactly 500 candles: one request
        (0, 500 * 60, 60, [(0, 29940), (30000, 30000)]),  # 501 candles: two
        (30, 600, 60, [(30, 600)]),  # unaligned start stays; sFOX may return the candle at 0
        (100, 50, 60, []),
        (0, 7 * 86400, 60, [(i * 30000, min(7 * 86400, i * 30000 + 29940)) for i in range(21)]),
        (0, 86400 * 1000, 86400, [(0, 86400 * 499), (86400 * 500, 86400 * 999), (86400 * 1000,) * 2]),
    ],
)
def test_split_range_table(start: int, end: int, period: int, expected: list[tuple[int, int]]) -> None:
    assert sfox.split_range(start, end, period) == expected


@given(st.integers(0, 10**9), st.integers(0, 10**7), st.sampled_from(sfox.PERIODS), st.integers(1, 600))
def test_split_range_covers_every_candle_once_within_the_limit(start: int, length: int, period: int,
                                                               max_candles: int) -> None:
    end = start + length
    chunks = sfox.split_range(start, end, period, max_candles)

    def aligned(lo: int, hi: int) -> int:  # candle starts (multiples of period) in [lo, hi]
        return max(0, hi // period - -(-lo // period) + 1)

    if not chunks:
        assert aligned(start, end) == 0
        return
    assert aligned(start, chunks[0][0] - 1) == 0 and aligned(chunks[-1][1] + 1, end) == 0  # ends covered
    for lo, hi in chunks:
        assert start <= lo <= hi <= end
        assert (hi - lo) / period + 1 <= max_candles  # the contract's rejection formula
    assert all(a[1] < b[0] for a, b in itertools.pairwise(chunks))  # ordered, disjoint
    assert sum(aligned(lo, hi) for lo, hi in chunks) == aligned(start, end)  # every candle exactly once


@pytest.mark.parametrize(
    ("count", "oldest_min", "previous_min", "expected"),
    [
        (100, 10, None, True),  # full page, not yet at start (start = minute 0)
        (100, 0, None, False),  # reached start exactly
        (100, -5, None, False),  # went past start
        (99, 10, None, False),  # short page: the last one
        (0, None, None, False),  # empty page
        (100, 10, 10, False),  # no progress: the server ignores `page`
        (100, 10, 50, True),
    ],
)
def test_next_page_needed_table(count: int, oldest_min: int | None, previous_min: int | None,
                                expected: bool) -> None:
    def at(m: int | None) -> datetime | None:
        return None if m is None else T0 + timedelta(minutes=m)

    assert atmos.next_page_needed(count, at(oldest_min), T0, at(previous_min)) is expected


def _candle(minute: int, close: str = "1") -> Candle:
    d = Decimal(close)
    return Candle(T0 + timedelta(minutes=minute), d, d, d, d, Decimal(1))


@given(st.lists(st.tuples(st.integers(-20, 40), st.sampled_from(["1", "2", "3"])), max_size=60))
def test_assemble_orders_dedupes_and_filters(items: list[tuple[int, str]]) -> None:
    start, end = T0, T0 + timedelta(minutes=20)
    candles = [_candle(m, c) for m, c in items]
    for module in (atmos, sfox):
        out = module.assemble(candles, start, end)
        times = [c.time for c in out]
        assert times == sorted(set(times))
        assert all(start <= t <= end for t in times)
        assert set(times) == {c.time for c in candles if start <= c.time <= end}
        last = {c.time: c.close for c in candles}
        assert all(c.close == last[c.time] for c in out)  # the later duplicate wins
