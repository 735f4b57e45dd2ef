"""The CoinBTR simulator's engine: freezing, fills over minutes, fees, cancels, transfers, invariants.

The engine runs against `ScriptedMarket`, a test double of the `MarketView` interface whose minutes are
written by the test, so each case states exactly which minute trades where.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from bot.clock import ManualClock, floor_minute
from bot.domain import Side
from bot.sandbox.exchange import Ledger, OrderEngine
from bot.sandbox.exchange_rules import (
    BOOKS,
    INSUFFICIENT_FUNDS,
    INVALID_PARAMS,
    NOT_FOUND,
    OUT_OF_LIMITS,
    ExchangeError,
    fee_amount,
    quantize_down,
    valid_address,
)
from bot.sandbox.exchange_wallet import TransferDesk
from bot.sandbox.market import SimMarket
from tests.conftest import T0

D = Decimal
BTC_MXN = BOOKS["btc-mxn"]
ETH_BTC = BOOKS["eth-btc"]


@dataclass(frozen=True)
class FakeBar:
    time: datetime
    low: Decimal
    high: Decimal
    volume: Decimal
    partial: bool

    @property
    def vwap(self) -> Decimal:
        return (self.low + self.high) / 2


class ScriptedMarket:
    """Minutes set by the test: `minutes[book][minute] = (low, high, volume)`; last price is fixed."""

    def __init__(self, clock: ManualClock, last: str = "1500000") -> None:
        self.clock = clock
        self.last = D(last)
        self.minutes: dict[str, dict[datetime, tuple[Decimal, Decimal, Decimal]]] = {}
        self.tape: dict[tuple[str, datetime], list[tuple[datetime, Decimal, Decimal]]] = {}

    def set(self, book: str, minute: datetime, low: str, high: str, volume: str) -> None:
        self.minutes.setdefault(book, {})[minute] = (D(low), D(high), D(volume))
        self.tape.setdefault((book, minute), []).append((self.clock.now(), D(low), D(high)))

    def range_after(self, instrument: str, since: datetime, until: datetime) -> tuple[Decimal, Decimal] | None:
        """A scripted minute knows only its range as it was set: the trades after `since` are the whole
        minute's when it had none before (it starts at `since` or was first set later), else only a low
        below (a high above) the range set by `since` is known to have traded after it."""
        minute = floor_minute(since)
        tape = self.tape.get((instrument, minute), [])
        if not tape:
            return None
        _at, low, high = tape[-1]
        before = [(lo, hi) for at, lo, hi in tape if at <= since] if since > minute else []
        if not before:
            return low, high
        low0, high0 = before[-1]
        if low >= low0 and high <= high0:
            return None
        return (low if low < low0 else D("Infinity")), (high if high > high0 else D(0))

    def bars(self, instrument: str, start: datetime, end: datetime) -> list[FakeBar]:
        now_minute = floor_minute(self.clock.now())
        return [
            FakeBar(t, lo, hi, vol, partial=(t == now_minute))
            for t, (lo, hi, vol) in sorted(self.minutes.get(instrument, {}).items())
            # A minute that starts right now has had no trades yet.
            if start <= t <= end and t <= now_minute and t != self.clock.now()
        ]

    def price(self, instrument: str, at: datetime | None = None) -> Decimal:
        return self.last


def minute(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.fixture
def market(clock: ManualClock) -> ScriptedMarket:
    return ScriptedMarket(clock)


@pytest.fixture
def ledger() -> Ledger:
    led = Ledger()
    led.fund("paper", {"btc": D("1"), "mxn": D("2000000"), "eth": D("10")})
    return led


@pytest.fixture
def engine(market: ScriptedMarket, clock: ManualClock, ledger: Ledger) -> OrderEngine:
    return OrderEngine(market, clock, ledger, seed=7, fill_share=D("0.05"))


# ---- engine: placing, freezing, filling ------------------------------------------------------------


def assert_balances(ledger: Ledger, engine: OrderEngine) -> None:
    """Frozen funds are exactly what the open orders still hold, and nothing is negative."""
    for coin in ("btc", "mxn", "eth"):
        held = sum(
            (o.frozen_left for o in engine.open_orders("paper")
             if (BOOKS[o.book].quote if o.side is Side.BUY else BOOKS[o.book].base) == coin),
            D(0),
        )
        assert ledger.frozen("paper", coin) == held
        assert ledger.available("paper", coin) >= 0


def test_resting_buy_freezes_quote_and_sell_freezes_base(engine: OrderEngine, ledger: Ledger) -> None:
    engine.place("paper", "BTC-MXN", Side.BUY, D("0.01"), D("1400000"))
    engine.place("paper", "btc-mxn", Side.SELL, D("0.2"), D("1600000"))
    assert (ledger.available("paper", "mxn"), ledger.frozen("paper", "mxn")) == (D("1986000"), D("14000"))
    assert (ledger.available("paper", "btc"), ledger.frozen("paper", "btc")) == (D("0.8"), D("0.2"))
    assert_balances(ledger, engine)


@pytest.mark.parametrize(
    ("book", "side", "amount", "price", "code"),
    [
        ("btc-mxn", Side.BUY, "2", "1400000", INSUFFICIENT_FUNDS),  # 2.8M MXN > 2M
        ("btc-mxn", Side.SELL, "1.5", "1600000", INSUFFICIENT_FUNDS),
        ("doge-mxn", Side.BUY, "1", "1", INVALID_PARAMS),
        ("btc-mxn", Side.BUY, "0.001", "1400000.001", OUT_OF_LIMITS),
    ],
)
def test_rejected_placement_changes_nothing(
    engine: OrderEngine, ledger: Ledger, book: str, side: Side, amount: str, price: str, code: int
) -> None:
    with pytest.raises(ExchangeError) as info:
        engine.place("paper", book, side, D(amount), D(price))
    assert info.value.code == code
    assert engine.orders == {}
    assert (ledger.available("paper", "mxn"), ledger.available("paper", "btc")) == (D("2000000"), D("1"))


def test_resting_buy_fills_partially_over_several_minutes(
    engine: OrderEngine, market: ScriptedMarket, ledger: Ledger, clock: ManualClock
) -> None:
    order = engine.place("paper", "btc-mxn", Side.BUY, D("0.25"), D("1490000"))
    # Each minute trades 2 BTC; the order may take 5% of that, 0.1 BTC, when the low goes below its price.
    market.set("btc-mxn", minute(0), "1495000", "1500000", "2")  # above the price: no fill
    market.set("btc-mxn", minute(1), "1489000", "1500000", "2")
    market.set("btc-mxn", minute(2), "1485000", "1495000", "2")
    market.set("btc-mxn", minute(3), "1480000", "1492000", "2")
    filled_after = []
    for n in range(1, 5):
        clock.set(minute(n))
        engine.process()
        filled_after.append(order.filled)
    assert filled_after == [D("0"), D("0.1"), D("0.2"), D("0.25")]
    assert order.status == "filled"
    fills = engine.fills_of("paper")
    assert [f.amount for f in fills] == [D("0.05"), D("0.1"), D("0.1")]  # newest first
    assert all(f.maker and f.price == D("1490000") and f.fee_coin == "btc" for f in fills)
    assert sum((f.fee_amount for f in fills), D(0)) == D("0.0001875")  # 0.075% of 0.25 BTC
    assert ledger.available("paper", "btc") == D("1") + D("0.25") - D("0.0001875")
    assert ledger.available("paper", "mxn") == D("2000000") - D("0.25") * D("1490000")
    assert ledger.frozen("paper", "mxn") == 0


def test_partial_current_minute_fills_more_as_its_volume_grows(
    engine: OrderEngine, market: ScriptedMarket, clock: ManualClock
) -> None:
    order = engine.place("paper", "btc-mxn", Side.SELL, D("0.5"), D("1510000"))
    clock.set(minute(1) + timedelta(seconds=20))
    market.set("btc-mxn", minute(1), "1500000", "1512000", "1")
    engine.process()
    assert order.filled == D("0.05")
    market.set("btc-mxn", minute(1), "1500000", "1512000", "3")  # the minute goes on trading
    clock.set(minute(1) + timedelta(seconds=50))
    engine.process()
    assert order.filled == D("0.15")
    clock.set(minute(2))  # now closed: no double counting of the same volume
    engine.process()
    assert order.filled == D("0.15")
    assert len(engine.fills_of("paper")) == 2


def test_move_before_placement_in_the_same_minute_does_not_fill(
    engine: OrderEngine, market: ScriptedMarket, clock: ManualClock
) -> None:
    clock.set(minute(0) + timedelta(seconds=30))
    market.set("btc-mxn", minute(0), "1480000", "1500000", "5")  # the dip already happened
    order = engine.place("paper", "btc-mxn", Side.BUY, D("0.1"), D("1490000"))
    clock.set(minute(1))
    engine.process()
    assert order.filled == 0
    # The next minute trades through the price: that fills it.
    market.set("btc-mxn", minute(1), "1470000", "1500000", "5")
    clock.set(minute(2))
    engine.process()
    assert order.filled == D("0.1")


def test_new_low_after_placement_in_the_same_minute_fills_from_the_new_volume_only(
    engine: OrderEngine, market: ScriptedMarket, clock: ManualClock
) -> None:
    clock.set(minute(0) + timedelta(seconds=30))
    market.set("btc-mxn", minute(0), "1485000", "1500000", "5")
    order = engine.place("paper", "btc-mxn", Side.BUY, D("1"), D("1490000"))
    clock.set(minute(0) + timedelta(seconds=40))
    market.set("btc-mxn", minute(0), "1480000", "1500000", "7")  # a new low, 2 BTC traded since
    clock.set(minute(1))
    engine.process()
    assert order.filled == D("0.1")  # 5% of the 2 BTC traded after placement


def test_a_minute_that_only_touches_the_price_fills_the_resting_order(
    engine: OrderEngine, market: ScriptedMarket, clock: ManualClock
) -> None:
    # The shared fill model (`fill_model.fill`): reaching the price is enough (low <= buy, high >= sell).
    buy = engine.place("paper", "btc-mxn", Side.BUY, D("1"), D("1490000"))
    sell = engine.place("paper", "btc-mxn", Side.SELL, D("0.5"), D("1510000"))
    market.set("btc-mxn", minute(1), "1490000", "1510000", "2")
    market.set("btc-mxn", minute(2), "1490000.01", "1509999.99", "2")  # a cent short on both sides
    clock.set(minute(3))
    engine.process()
    assert (buy.filled, sell.filled) == (D("0.1"), D("0.1"))


def test_in_the_creation_minute_a_new_low_that_touches_the_price_fills(
    engine: OrderEngine, market: ScriptedMarket, clock: ManualClock
) -> None:
    clock.set(minute(0) + timedelta(seconds=30))
    market.set("btc-mxn", minute(0), "1495000", "1500000", "5")
    order = engine.place("paper", "btc-mxn", Side.BUY, D("1"), D("1490000"))
    clock.set(minute(0) + timedelta(seconds=40))
    market.set("btc-mxn", minute(0), "1490000", "1500000", "9")  # new low exactly at the price, 4 BTC since
    clock.set(minute(1))
    engine.process()
    assert order.filled == D("0.2")


def test_partial_minute_fills_round_down_to_the_step_across_looks(
    market: ScriptedMarket, clock: ManualClock, ledger: Ledger
) -> None:
    # eth-btc steps amounts by 0.0001: each look fills what the minute so far allows, on the step.
    engine = OrderEngine(market, clock, ledger, seed=7, fill_share=D("0.05"))
    order = engine.place("paper", "eth-btc", Side.BUY, D("5"), D("0.05"))
    seen = []
    for second, volume in [(10, "0.0019"), (20, "0.0021"), (30, "0.0041"), (59, "1.001")]:
        market.set("eth-btc", minute(1), "0.049", "0.051", volume)
        clock.set(minute(1) + timedelta(seconds=second))
        engine.process()
        seen.append(order.filled)
    clock.set(minute(2))
    engine.process()
    assert seen == [D("0"), D("0.0001"), D("0.0002"), D("0.0500")]
    assert order.filled == D("0.05")  # the closed minute adds nothing twice


def test_transactions_are_served_a_page_at_a_time(
    engine: OrderEngine, market: ScriptedMarket, clock: ManualClock
) -> None:
    engine.page_size = 3
    order = engine.place("paper", "btc-mxn", Side.BUY, D("1"), D("1490000"))
    for n in range(5):
        market.set("btc-mxn", minute(n), "1480000", "1500000", "1")
        clock.set(minute(n + 1))
        engine.process()
    ids = [f.id for f in sorted(engine.fills, key=lambda f: f.id)]
    assert len(ids) == 5 and all(f.order_id == order.id for f in engine.fills)
    assert [f.id for f in engine.fills_of("paper")] == ids[:1:-1]  # no since: the newest page
    since = engine.fills[0].created_at
    assert [f.id for f in engine.fills_of("paper", since=since)] == ids[2::-1]  # since: the oldest page
    assert [f.id for f in engine.fills_of("paper", paged=False)] == ids[::-1]


def test_a_transactions_page_never_splits_one_instant(
    engine: OrderEngine, market: ScriptedMarket, clock: ManualClock
) -> None:
    engine.page_size = 2
    for price in ("1490000", "1489000", "1488000"):  # three orders fill in the same minute, stamped alike
        engine.place("paper", "btc-mxn", Side.BUY, D("0.3"), D(price))
    market.set("btc-mxn", minute(0), "1480000", "1500000", "1")
    market.set("btc-mxn", minute(1), "1480000", "1500000", "1")
    clock.set(minute(2))
    engine.process()
    first, second = minute(0) + timedelta(seconds=59), minute(1) + timedelta(seconds=59)
    assert [f.created_at for f in engine.fills_of("paper", since=T0)] == [first] * 3
    assert [f.created_at for f in engine.fills_of("paper")] == [second] * 3
    assert len(engine.fills_of("paper", since=second + timedelta(milliseconds=1))) == 0


def test_marketable_buy_takes_the_book_as_taker_and_rests_the_rest(
    engine: OrderEngine, ledger: Ledger
) -> None:
    asks, _ = engine.depth(BTC_MXN)
    limit = asks[1].price
    amount = asks[0].amount + asks[1].amount + D("1")  # more than the two crossed levels hold
    order = engine.place("paper", "btc-mxn", Side.BUY, amount, limit)
    fills = sorted(engine.fills_of("paper"), key=lambda f: f.id)
    assert [(f.price, f.amount, f.maker) for f in fills] == [
        (asks[0].price, asks[0].amount, False),
        (asks[1].price, asks[1].amount, False),
    ]
    assert order.is_open and order.remaining == D("1")
    assert fills[0].fee_amount == fee_amount(asks[0].amount, BTC_MXN.taker_fee, 8)
    # The first level filled below the limit: only the rest's full limit value stays frozen.
    assert ledger.frozen("paper", "mxn") == D("1") * limit
    assert engine.depth(BTC_MXN)[0][0].price > limit  # the taken levels are gone for this minute
    assert_balances(ledger, engine)


def test_cancel_keeps_fills_releases_the_rest_and_refuses_twice(
    engine: OrderEngine, market: ScriptedMarket, ledger: Ledger, clock: ManualClock
) -> None:
    order = engine.place("paper", "btc-mxn", Side.SELL, D("0.3"), D("1510000"))
    market.set("btc-mxn", minute(0), "1500000", "1520000", "2")
    clock.set(minute(1))
    engine.process()
    engine.cancel("paper", order.id)
    assert (order.status, order.filled) == ("cancelled", D("0.1"))
    assert ledger.frozen("paper", "btc") == 0
    assert ledger.available("paper", "btc") == D("0.9")
    with pytest.raises(ExchangeError) as info:
        engine.cancel("paper", order.id)
    assert (info.value.code, info.value.status) == (NOT_FOUND, 404)


def test_cancel_of_a_filled_or_foreign_order_is_1003(
    engine: OrderEngine, market: ScriptedMarket, clock: ManualClock
) -> None:
    order = engine.place("paper", "btc-mxn", Side.BUY, D("0.01"), D("1490000"))
    market.set("btc-mxn", minute(0), "1480000", "1500000", "2")
    clock.set(minute(1))
    engine.process()
    assert order.status == "filled"
    for user, order_id in [("paper", order.id), ("paper", 999999)]:
        with pytest.raises(ExchangeError) as info:
            engine.cancel(user, order_id)
        assert info.value.code == NOT_FOUND
    other = engine.place("paper", "btc-mxn", Side.BUY, D("0.01"), D("1400000"))
    with pytest.raises(ExchangeError):
        engine.cancel("reader", other.id)
    assert other.is_open


def test_open_orders_and_fill_lookup(engine: OrderEngine) -> None:
    a = engine.place("paper", "btc-mxn", Side.BUY, D("0.01"), D("1400000"))
    b = engine.place("paper", "eth-mxn", Side.BUY, D("0.01"), D("40000"))
    assert [o.id for o in engine.open_orders("paper")] == [a.id, b.id]
    assert [o.id for o in engine.open_orders("paper", book="eth-mxn")] == [b.id]
    assert [o.id for o in engine.open_orders("paper", order_id=a.id)] == [a.id]
    assert engine.open_orders("reader") == []
    with pytest.raises(ExchangeError):
        engine.fill("paper", 1)


# ---- transfers ---------------------------------------------------------------------------------------


@pytest.fixture
def desk(clock: ManualClock, ledger: Ledger) -> TransferDesk:
    return TransferDesk(clock, ledger, seed=42, failure_rate=0.0)


BTC_ADDR = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"


def test_withdrawal_moves_through_statuses_over_minutes(
    desk: TransferDesk, ledger: Ledger, clock: ManualClock
) -> None:
    w = desk.withdraw("paper", "btc", BTC_ADDR, D("0.1"))
    assert ledger.available("paper", "btc") == D("0.8999")  # amount plus the 0.0001 fee
    seen = []
    for _ in range(9):
        desk.process()
        seen.append(w.status)
        clock.advance(60)
    assert seen == ["pending", "signed", "signed", "sent", "sent", "sent", "sent", "sent", "confirmed"]
    assert w.txid is not None and len(w.txid) == 64
    assert ledger.available("paper", "btc") == D("0.8999")


def test_failed_withdrawal_is_refunded_after_being_accepted(
    desk: TransferDesk, ledger: Ledger, clock: ManualClock
) -> None:
    desk.fail_next()
    w = desk.withdraw("paper", "btc", BTC_ADDR, D("0.1"))
    ok = desk.withdraw("paper", "btc", BTC_ADDR, D("0.1"))
    clock.advance(120)
    desk.process()
    assert (w.status, ok.status) == ("signed", "signed")
    assert ledger.available("paper", "btc") == D("0.7998")
    clock.advance(60)
    desk.process()
    assert (w.status, ok.status) == ("failed", "sent")
    assert ledger.available("paper", "btc") == D("0.8999")
    assert [x.id for x in desk.withdrawals_of("paper")] == [ok.id, w.id]


def test_seeded_failure_rate_is_deterministic(clock: ManualClock) -> None:
    def run() -> list[bool]:
        led = Ledger()
        led.fund("paper", {"btc": D("10")})
        d = TransferDesk(clock, led, seed=42, failure_rate=0.5)
        return [d.withdraw("paper", "btc", BTC_ADDR, D("0.01")).will_fail for _ in range(20)]

    first = run()
    assert first == run()
    assert any(first) and not all(first)


@pytest.mark.parametrize(
    ("coin", "address", "amount", "code"),
    [
        ("btc", "0xnot", "0.1", 1006),
        ("btc", BTC_ADDR, "5", INSUFFICIENT_FUNDS),
        ("btc", BTC_ADDR, "0.0001", INVALID_PARAMS),  # below the minimum withdrawal
        ("btc", BTC_ADDR, "0.123456789", INVALID_PARAMS),  # more decimals than the coin has
        ("doge", BTC_ADDR, "1", INVALID_PARAMS),
    ],
)
def test_withdrawal_rejections(
    desk: TransferDesk, ledger: Ledger, coin: str, address: str, amount: str, code: int
) -> None:
    with pytest.raises(ExchangeError) as info:
        desk.withdraw("paper", coin, address, D(amount))
    assert info.value.code == code
    assert desk.withdrawals == [] and ledger.available("paper", "btc") == D("1")


def test_deposit_gains_confirmations_then_credits(
    desk: TransferDesk, ledger: Ledger, clock: ManualClock
) -> None:
    d = desk.inject_deposit("paper", "btc", D("0.5"))
    progress = []
    for _ in range(4):
        desk.process()
        progress.append((d.confirmations, d.confirmed, desk.pending("paper", "btc")))
        clock.advance(60)
    assert progress == [
        (0, False, D("0.5")),
        (1, False, D("0.5")),
        (2, False, D("0.5")),
        (3, True, D("0")),
    ]
    assert ledger.available("paper", "btc") == D("1.5")
    assert valid_address("btc", d.address)


# ---- invariants under a seeded random session on the real simulated market ---------------------------


def test_random_session_keeps_balances_consistent_conserved_and_fills_visible_in_order(
    clock: ManualClock,
) -> None:
    market = SimMarket(clock, seed=3, history_days=1)
    start = {"btc": D("1"), "mxn": D("2000000"), "eth": D("10")}
    ledger = Ledger()
    ledger.fund("paper", start)
    engine = OrderEngine(market, clock, ledger, seed=3, fill_share=D("0.2"))
    rng = random.Random(5)
    refused: set[int] = set()
    seen: set[int] = set()
    processed_at = clock.now()
    for _ in range(400):
        op = rng.random()
        book = rng.choice(list(BOOKS.values()))
        if op < 0.4:
            side = rng.choice([Side.BUY, Side.SELL])
            offset = D(rng.randint(-30, 30)) / 10000
            price = quantize_down(market.price(book.book) * (1 + offset), book.price_step)
            amount = book.minimum_amount * rng.randint(1, 200)
            try:
                engine.place("paper", book.book, side, amount, price)
            except ExchangeError as exc:
                refused.add(exc.code)
        elif op < 0.5 and engine.open_orders("paper"):
            engine.cancel("paper", rng.choice(engine.open_orders("paper")).id)
        else:
            clock.advance(rng.choice([5, 20, 60, 90]))
            engine.process()
            new = [f for f in engine.fills if f.id not in seen]
            assert all(f.created_at >= processed_at for f in new if f.maker)
            seen.update(f.id for f in new)
            processed_at = clock.now()
        assert_balances(ledger, engine)
        for coin, amount in start.items():
            moved = D(0)
            for f in engine.fills:
                b = BOOKS[f.book]
                got, gave = (b.base, b.quote) if f.side is Side.BUY else (b.quote, b.base)
                gross_got = f.amount if f.side is Side.BUY else f.amount * f.price
                gross_gave = f.amount * f.price if f.side is Side.BUY else f.amount
                if got == coin:
                    moved += gross_got - f.fee_amount
                if gave == coin:
                    moved -= gross_gave
            assert ledger.available("paper", coin) + ledger.frozen("paper", coin) == amount + moved
    assert {f.maker for f in engine.fills} == {True, False}  # both maker and taker fills happened
    assert any(o.status == "cancelled" and o.filled > 0 for o in engine.orders.values())
    assert any(len([f for f in engine.fills if f.order_id == o.id]) > 1 for o in engine.orders.values())
