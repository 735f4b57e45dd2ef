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


def _scanned_range(market: SimMarket, book: str, since: datetime, end: datetime) -> tuple[Decimal, Decimal] | None:
    """The last prices seen on a 20 ms grid after `since`: every trade of the minute after it (the
    minute's few trades are seconds apart), and no other price."""
    seen: list[Decimal] = []
    at, before = since + timedelta(milliseconds=20), market.price(book, since)
    while at < end:
        p = market.price(book, at)
        if p != before or seen:
            seen.append(p)
        before = p
        at += timedelta(milliseconds=20)
    return (min(seen), max(seen)) if seen else None


def test_range_after_is_the_range_of_the_minutes_trades_after_the_instant(clock: ManualClock) -> None:
    market = _market(clock)
    clock.set(T0)
    book, checked = "btc-mxn", 0
    for m in range(1, 6):
        minute = T0 - timedelta(minutes=m)
        bar = next(b for b in market.bars(book, minute, minute) if b.time == minute)
        # From the minute's start: the closed bar's whole range.
        assert market.range_after(book, minute, minute + timedelta(minutes=1)) == (bar.low, bar.high)
        for second in (15, 30, 45):
            since = minute + timedelta(seconds=second)
            got = market.range_after(book, since, minute + timedelta(minutes=1))
            scanned = _scanned_range(market, book, since, minute + timedelta(minutes=1))
            if scanned is not None and got is not None:
                assert got == scanned, (since, got, scanned)
                checked += 1
            assert got is None or (bar.low <= got[0] <= got[1] <= bar.high)
    assert checked >= 5


def test_a_resting_buy_fills_from_a_trade_after_placement_that_is_not_a_new_low_of_its_minute(
        clock: ManualClock) -> None:
    # The exchange judged an order's first minute from bars: only a new low (below the minute's low at
    # placement) could fill a buy, so a later trade at the order's price above that earlier low did not,
    # although on an exchange it would. Find such a minute in the seeded market and place there.
    from bot.domain import Side
    from bot.sandbox.exchange import Ledger, OrderEngine

    market, book = _market(clock), "btc-mxn"
    clock.set(T0)
    found = None
    for m, second in itertools.product(range(1, 120), (10, 20, 30, 40)):
        minute = T0 - timedelta(minutes=m)
        since, end = minute + timedelta(seconds=second), minute + timedelta(minutes=1)
        before, after = market.range_after(book, minute, since), market.range_after(book, since, end)
        if before is None or after is None:
            continue
        last = market.price(book, since)
        if before[0] < after[0] < last:  # not a new low of the minute; under the last price, so under the ask
            found = (since, end, after[0])
            break
    assert found is not None
    since, end, price = found
    ledger = Ledger()
    ledger.fund("paper", {"mxn": Decimal("1000000")})
    clock.set(since)
    engine = OrderEngine(market, clock, ledger, seed=7, fill_share=Decimal("0.05"))
    order = engine.place("paper", book, Side.BUY, Decimal("0.0001"), price)
    assert order.filled == 0  # it rests: below the book's best ask
    clock.set(end)
    engine.process()
    assert order.filled == Decimal("0.0001")
