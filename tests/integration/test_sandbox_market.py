"""The simulated market: determinism, gaps, the partial newest minute, price levels and formats."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.clock import ManualClock
from bot.sandbox.market import COINBTR_BOOKS, VENUE_SYMBOLS, Bar, SimMarket, UnknownInstrument

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _market(clock: ManualClock, seed: int = 42) -> SimMarket:
    return SimMarket(clock, seed=seed)


def test_same_seed_same_bars_whatever_the_query_order(clock: ManualClock) -> None:
    a, b = _market(clock), _market(clock)
    day = timedelta(days=1)
    # a asks newest-first in small windows, b asks one big window: every minute must agree.
    a_bars: list[Bar] = []
    for i in range(3):
        window_end = T0 - i * day / 4 - timedelta(seconds=1)
        a_bars = a.bars("binance:BTCUSDT", T0 - (i + 1) * day / 4, window_end) + a_bars
    b.bars("ETHUSD", T0 - 3 * day, T0)  # warm unrelated caches in another order
    b_bars = b.bars("binance:BTCUSDT", T0 - 3 * day / 4, T0 - timedelta(seconds=1))
    assert a_bars == b_bars
    assert len(a_bars) > 1000


def test_different_seed_gives_a_different_market(clock: ManualClock) -> None:
    a, b = _market(clock, 1), _market(clock, 2)
    assert a.bars("BTCUSD", T0 - timedelta(hours=1), T0) != b.bars("BTCUSD", T0 - timedelta(hours=1), T0)


def test_history_covers_at_least_seven_days_and_bars_are_ascending(clock: ManualClock) -> None:
    m = _market(clock)
    assert m.history_start() <= T0 - timedelta(days=7)
    bars = m.bars("BTCUSD", m.history_start() - timedelta(days=5), T0)
    assert bars[0].time >= m.history_start()
    assert bars[0].time < m.history_start() + timedelta(minutes=10)
    times = [b.time for b in bars]
    assert times == sorted(set(times))


def test_gap_minutes_are_absent_not_forward_filled(clock: ManualClock) -> None:
    m = _market(clock)
    start = T0 - timedelta(days=2)
    bars = m.bars("kraken:ETHUSD", start, T0 - timedelta(minutes=1))
    minutes = 2 * 1440
    missing = minutes - len(bars)
    assert 0.005 * minutes < missing < 0.08 * minutes
    present = {b.time for b in bars}
    every_minute = (start + timedelta(minutes=i) for i in range(minutes))
    gap = next(t for t in every_minute if t not in present)
    assert m.bars("kraken:ETHUSD", gap, gap) == []
    assert all(b.trades >= 1 and b.volume > 0 for b in bars)


def test_bars_are_internally_consistent_and_quantised(clock: ManualClock) -> None:
    m = _market(clock)
    for name in ("BTCUSD", "coinbase:ETHUSDT", "btc-mxn", "eth-btc"):
        dp = 8 if name.endswith("btc") else 2
        for b in m.bars(name, T0 - timedelta(hours=6), T0):
            assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
            assert b.low <= b.vwap <= b.high
            assert b.close.as_tuple().exponent == -dp
            assert b.volume.as_tuple().exponent == -8


def test_price_levels_are_plausible(clock: ManualClock) -> None:
    m = _market(clock)
    btc, eth = m.price("BTCUSD"), m.price("ETHUSD")
    assert Decimal(50_000) < btc < Decimal(130_000)
    assert Decimal(1_500) < eth < Decimal(5_000)
    assert Decimal(16) < m.price("btc-mxn") / btc < Decimal(21)
    assert abs(m.price("eth-btc") - eth / btc) / (eth / btc) < Decimal("0.01")
    for venue, symbols in VENUE_SYMBOLS.items():
        for symbol in symbols:
            ref = eth / btc if symbol == "ETHBTC" else (eth if symbol.startswith("ETH") else btc)
            assert abs(m.price(f"{venue}:{symbol}") - ref) / ref < Decimal("0.01")
    for book in COINBTR_BOOKS:
        assert m.price(book) > 0


def test_newest_minute_is_partial_and_grows_until_it_closes(clock: ManualClock) -> None:
    m = _market(clock)
    name = "binance:BTCUSDT"
    # Find a minute with several trades, then watch it from inside.
    minute = next(b.time for b in m.bars(name, T0 - timedelta(hours=1), T0 - timedelta(minutes=1))
                  if b.trades >= 8)
    closed = m.bars(name, minute, minute)[0]
    assert not closed.partial
    clock.set(minute)  # at the very start no trade has happened yet
    window = (minute - timedelta(minutes=5), minute + timedelta(hours=1))
    assert all(not b.partial for b in m.bars(name, *window))
    seen: list[Bar] = []
    for second in range(5, 60, 5):
        clock.set(minute + timedelta(seconds=second))
        bars = m.bars(name, *window)
        assert bars[-1].time <= minute  # never a future bar
        if bars[-1].time == minute:
            assert bars[-1].partial
            seen.append(bars[-1])
    assert len({(b.close, b.volume, b.trades) for b in seen}) >= 2  # re-polling showed new values
    for earlier, later in itertools.pairwise(seen):
        assert later.volume >= earlier.volume and later.trades >= earlier.trades
        assert later.high >= earlier.high and later.low <= earlier.low
    clock.set(minute + timedelta(seconds=59.999))
    last_partial = m.bars(name, minute, minute)[0]
    assert last_partial.partial
    assert (last_partial.open, last_partial.high, last_partial.low, last_partial.close, last_partial.volume,
            last_partial.trades, last_partial.vwap) == (closed.open, closed.high, closed.low, closed.close,
                                                        closed.volume, closed.trades, closed.vwap)
    clock.set(minute + timedelta(minutes=1))
    assert m.bars(name, minute, minute) == [closed]


def test_price_at_a_past_instant_is_that_minutes_last_trade(clock: ManualClock) -> None:
    m = _market(clock)
    bars = m.bars("BTCUSD", T0 - timedelta(hours=2), T0 - timedelta(hours=1))
    b = bars[10]
    assert m.price("BTCUSD", b.time + timedelta(seconds=59.9999)) == b.close
    # At the very start of the next minute no trade of that minute has happened yet.
    assert m.price("BTCUSD", b.time + timedelta(minutes=1)) == b.close
    assert m.price("BTCUSD", T0 + timedelta(days=1)) == m.price("BTCUSD")  # the future is taken as now


def test_unknown_instruments_are_rejected(clock: ManualClock) -> None:
    m = _market(clock)
    for name in ("DOGEUSD", "binance:DOGEUSDT", "bitstamp:BTCUSD", "xrp-mxn", "binance:BTCUSD"):
        assert not m.has(name)
        with pytest.raises(UnknownInstrument):
            m.bars(name, T0 - timedelta(minutes=5), T0)


@pytest.mark.parametrize("name", ["btc-mxn", "eth-btc", "binance:BTCUSDT"])
def test_window_stats_equal_the_bars_summed(clock: ManualClock, name: str) -> None:
    m = _market(clock)
    clock.advance(45)  # include a partial minute
    start = clock.now() - timedelta(days=1)
    bars = m.bars(name, start, clock.now())
    stats = m.stats(name, start, clock.now())
    assert stats is not None and bars[-1].partial
    assert stats.bars == len(bars)
    assert stats.volume == sum((b.volume for b in bars), Decimal(0))
    assert stats.trades == sum(b.trades for b in bars)
    assert (stats.open, stats.close) == (bars[0].open, bars[-1].close)
    assert (stats.high, stats.low) == (max(b.high for b in bars), min(b.low for b in bars))
    vwap = sum((b.vwap * b.volume for b in bars), Decimal(0)) / stats.volume
    assert abs(stats.vwap - vwap) <= Decimal("2e-8")  # quantised to 8 places
    assert m.stats(name, clock.now() + timedelta(minutes=5), clock.now() + timedelta(minutes=9)) is None
