"""The paper account's pure rules (`paper_model`) and its store (`paper_account`), without any client.

The rules are pinned against the CoinBTR simulator's own (`bot.sandbox.exchange_rules`): a paper order must
end with the balances a sandbox order of the same size at the same prices ends with. The broker itself,
with its market data, is tested against the simulator in tests/integration/test_brokers.py.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from bot.clients.coinbtr import InsufficientFunds
from bot.clock import ManualClock
from bot.domain import Balance, Book, Side
from bot.errors import NotFound
from bot.execution import paper_model as pm
from bot.execution.paper_account import PaperAccount
from bot.sandbox import exchange_rules as rules
from bot.store import Store
from tests.conftest import T0

D = Decimal
DECIMALS = {c.coin: c.decimals for c in rules.COINS.values()}


def book_of(spec: rules.BookSpec) -> Book:
    return Book(spec.book, spec.minimum_amount, spec.maximum_amount, spec.minimum_price, spec.maximum_price,
                spec.minimum_value, spec.maximum_value, spec.amount_step, spec.price_step, spec.maker_fee,
                spec.taker_fee)


BTC_MXN = book_of(rules.BOOKS["btc-mxn"])


# ---- the exchange's rules, exactly ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(rules.BOOKS))
@pytest.mark.parametrize("side", list(Side))
@pytest.mark.parametrize("maker", [True, False])
def test_settle_moves_exactly_what_the_simulated_exchange_moves(name: str, side: Side, maker: bool) -> None:
    spec, book = rules.BOOKS[name], book_of(rules.BOOKS[name])
    rng = random.Random(f"{name}:{side}:{maker}")
    for _ in range(300):
        limit = rules.quantize_down(spec.minimum_price * D(rng.randint(1, 10**6)), spec.price_step)
        steps = spec.price_step * rng.randint(0, 50)
        fill_price = max(limit - steps, spec.price_step) if side is Side.BUY else limit + steps
        amount = spec.amount_step * rng.randint(1, 10**7)
        ours = pm.settle(book, side, limit, fill_price, amount, maker, DECIMALS)
        theirs = rules.settle(spec, side, limit, fill_price, amount, maker)
        assert (ours.paid_coin, ours.paid, ours.released, ours.received_coin, ours.received, ours.fee) == (
            theirs.paid_coin, theirs.paid, theirs.released, theirs.received_coin, theirs.received, theirs.fee)


def test_fees_are_charged_in_the_coin_received_at_the_books_percent() -> None:
    buy = pm.settle(BTC_MXN, Side.BUY, D("100000.00"), D("99000.00"), D("0.5"), False, DECIMALS)
    assert (buy.received_coin, buy.fee) == ("btc", D("0.00075000"))  # 0.15% of 0.5 BTC, in BTC
    assert (buy.paid, buy.released) == (D("49500.0000"), D("500.0000"))  # filled 1,000 below the limit
    sell = pm.settle(BTC_MXN, Side.SELL, D("100000.00"), D("100000.00"), D("0.5"), True, DECIMALS)
    assert (sell.received_coin, sell.received, sell.fee) == ("mxn", D("50000.0000"), D("37.50"))  # 0.075%
    assert pm.fee_amount(D("1"), D("0.075"), 2) == D("0.00")  # 0.00075 rounds half-up to 0.00
    assert pm.fee_amount(D("10"), D("0.05"), 2) == D("0.01")  # 0.005 rounds half-up to 0.01


@pytest.mark.parametrize(("amount", "price"), [
    (D("0"), D("100000")), (D("0.001"), D("-1")), (D("0.000000001"), D("100000")), (D("0.001"), D("100000.001")),
    (D("0.000001"), D("100000")), (D("51"), D("100000")), (D("0.01"), D("999.99")), (D("0.00001"), D("100000")),
    (D("0.001"), D("100000")), (D("50"), D("1000000")), (D("0.0001"), D("100000")),
])
def test_placement_limits_and_codes_match_the_exchange(amount: Decimal, price: Decimal) -> None:
    theirs = rules.check_placement(rules.BOOKS["btc-mxn"], amount, price)
    ours = pm.placement_problem(BTC_MXN, amount, price)
    assert (ours[0] if ours else None) == (theirs.code if theirs else None)
    for side in Side:
        assert pm.frozen_for(BTC_MXN, side, price, amount) == rules.frozen_for(rules.BOOKS["btc-mxn"], side,
                                                                               amount, price)


# ---- what traded between two looks ------------------------------------------------------------------


def look(n: int, minutes: float, volume: str, last: str = "100", bid: str = "99", ask: str = "101",
         low: str = "90", high: str = "110") -> pm.Look:
    return pm.Look(n, T0 + timedelta(minutes=minutes), D(last), D(bid), D(ask), D(low), D(high), D(volume))


def close(a: Decimal, b: Decimal, tol: str = "1e-20") -> bool:
    return abs(a - b) <= D(tol)


def test_a_steady_market_gets_its_traded_volume_and_no_time_gets_nothing() -> None:
    # 1440 in the 24h window, one per minute traded and one per minute leaving: each minute gets 1.
    prev = look(1, 0, "1440")
    for n in range(2, 6):
        cur = look(n, n - 1, "1440")
        volume, rate = pm.volume_estimate(prev, cur)
        assert close(volume, D(1)) and rate is not None and close(rate, D(1) / 60)
        prev = replace(cur, rate=rate)
    assert pm.volume_estimate(prev, prev) == (D(0), prev.rate)  # no time: nothing traded, the rate kept
    # A day or more: everything in the window is new (the old rate has no weight left).
    assert close(pm.traded_volume(look(1, 0, "1440"), look(2, 60 * 48, "500")), D(500))


def test_a_window_that_drops_whole_minutes_leaves_no_look_without_volume() -> None:
    # Looks every 20 s; one unit traded per minute, evenly; the venue's 24h window drops the whole minute of
    # a day ago at each minute's turn. Raw estimates: +2/3 twice in a minute, then -1/3 across the turn.
    # Each look must still get about the third it traded (carrying the -1/3 forward instead gave the next
    # look nothing, and an order the price reached there did not fill), and the run the whole volume.
    level, given = D(1440), list[Decimal]()
    prev = pm.Look(1, T0, D(100), D(99), D(101), D(90), D(110), level)
    for n in range(1, 3 * 60 + 1):
        level += D(1) / 3 - (D(1) if n % 3 == 0 else D(0))
        cur = replace(prev, look=n + 1, at=T0 + timedelta(seconds=20 * n), volume_24h=level, rate=None)
        volume, rate = pm.volume_estimate(prev, cur)
        given.append(volume)
        prev = replace(cur, rate=rate)
    assert all(D("0.2") < v < D("0.5") for v in given)
    assert abs(sum(given, D(0)) - 60) < D("0.5")  # an hour: 60 traded, give or take the smoothing's lag


def test_a_heavy_minute_leaving_the_window_lowers_the_next_looks_without_zeroing_them() -> None:
    # A flat market, then the window drops a day-ago minute four times the average: the 24h volume falls by
    # 3 net (raw -2 for that minute). That span's estimate dips but is not 0, and the next ones recover
    # towards the 1 per minute that trades; the lump is spread, not dropped.
    prev = replace(look(1, 0, "1440"), rate=D(1) / 60)
    volumes = []
    for n, level in enumerate(["1440", "1437", "1437", "1437", "1437", "1437"], start=2):
        cur = look(n, n - 1, level)
        volume, rate = pm.volume_estimate(prev, cur)
        volumes.append(volume)
        prev = replace(cur, rate=rate)
    assert close(volumes[0], D(1)) and D(0) < volumes[1] < D("0.5")
    assert volumes[1] < volumes[2] < volumes[3] < volumes[4] < volumes[5] < D(1)


def test_the_trade_rate_is_read_from_how_often_the_last_price_changes() -> None:
    at = [T0 + timedelta(seconds=20 * i) for i in range(21)]
    assert pm.trade_rate([(t, D(100)) for t in at]) == 0  # nothing changed: no trade seen
    half = pm.trade_rate([(t, D(100 + i // 2)) for i, t in enumerate(at)])  # changes at every second gap
    assert close(half, D(2).ln() / 20)  # half the 20 s gaps saw a trade: P(none in 20 s) = 1/2
    # Unknown (0, so no correction downstream) when it would be a mere floor: too few gaps to judge, or a
    # market whose price changed at every look (it trades more often than it is looked at).
    assert pm.trade_rate([(t, D(100 + i // 2)) for i, t in enumerate(at[:10])]) == 0  # 9 gaps
    assert pm.trade_rate([(t, D(100 + i)) for i, t in enumerate(at)]) == 0


def test_a_market_that_changes_at_every_look_keeps_the_full_widening() -> None:
    prices = [(T0 + timedelta(seconds=20 * i), D(100) + D(i % 2)) for i in range(30)]
    var, rate = pm.sample_variance(prices), pm.trade_rate(prices)
    assert var > 0 and rate == 0
    prev, cur = look(1, 0, "1440"), look(2, 1, "1441")
    wide = pm.traded_for(existed_at_prev=True, created_at=prev.at, prev=prev, cur=cur, variance_per_s=var,
                         trades_per_s=rate)
    reach = (var * D(30) * D(2).ln() / 2).sqrt()
    assert wide.low == D(100) * (1 - reach)


def test_a_look_and_its_rate_survive_the_store(account: PaperAccount) -> None:
    for rate in (D("0.0123"), D("-0.5"), None):
        saved = replace(look(7, 3, "1440"), rate=rate)
        account.save_look("btc-mxn", saved)
        assert account.look("btc-mxn") == saved


def test_a_rate_after_a_long_gap_is_the_windows_not_diluted_by_the_gap() -> None:
    prev = replace(look(1, 0, "1440"), rate=D(1) / 60)
    volume, rate = pm.volume_estimate(prev, look(2, 3 * 24 * 60, "1440"))
    assert close(volume, D(1440))  # only the window's day is known to have traded over the three days...
    assert rate is not None and close(rate, D(1440) / 86_400)  # ...and the rate carried on is that day's


def test_traded_range_counts_a_crossed_book_and_only_what_was_seen_after_placement() -> None:
    prev = look(1, 0, "1440", last="100", bid="99", ask="101", low="90", high="110")
    cur = look(2, 1, "1440", last="100", bid="99.5", ask="100.5", low="85", high="112")
    old = pm.traded_for(existed_at_prev=True, created_at=T0 - timedelta(hours=1), prev=prev, cur=cur,
                        seen=[(D("98"), D("97"))])
    # A new 24h low and high since prev traded in the span; the ask read at 98 crossed a buy there.
    assert (old.low, old.high, old.volume) == (D("85"), D("112"), D(1))
    new = pm.traded_for(existed_at_prev=False, created_at=T0 + timedelta(seconds=45), prev=prev, cur=cur)
    # Placed 15 s before cur: only cur's prices, and a quarter of the span's volume.
    assert (new.low, new.high, new.volume) == (D("100"), D("100"), D("0.25"))


# ---- the account in the store -----------------------------------------------------------------------


@pytest.fixture
def account(clock: ManualClock) -> PaperAccount:
    acc = PaperAccount(Store(":memory:", clock=clock), clock)
    acc.reset({"BTC": D("1"), "mxn": D("2000000")})
    return acc


def totals(acc: PaperAccount) -> dict[str, Decimal]:
    return {coin: b.total for coin, b in acc.balances().items()}


def expected_totals(acc: PaperAccount, start: dict[str, Decimal]) -> dict[str, Decimal]:
    """Starting balances + every fill (bought base, paid quote; sold base, got quote) − every fee."""
    out: dict[str, Decimal] = defaultdict(Decimal, start)
    for f in acc.fills_since_start():
        base, quote = f.market.split("-")
        sign = 1 if f.side is Side.BUY else -1
        out[base] += sign * f.amount
        out[quote] -= sign * f.amount * f.price
        out[f.fee_coin] -= f.fee_amount
    return dict(out)


def test_a_place_freezes_the_funds_and_takes_at_each_levels_price(account: PaperAccount) -> None:
    takes = [(D("99000.00"), D("0.1")), (D("99500.00"), D("0.2"))]
    order = account.place(BTC_MXN, Side.BUY, D("100000.00"), D("0.5"), takes, DECIMALS, after_look=1)
    assert (order.filled, order.remaining, order.state, order.frozen) == (D("0.3"), D("0.2"), "open", D("20000.000"))
    mxn, btc = account.balances()["mxn"], account.balances()["btc"]
    assert mxn.frozen == D("20000") and mxn.available == D("2000000") - D("9900") - D("19900") - D("20000")
    assert btc.available == D("1") + D("0.3") - D("0.00015") - D("0.0003")  # taker 0.15% in BTC per fill
    assert totals(account) == expected_totals(account, {"btc": D("1"), "mxn": D("2000000")})


def test_insufficient_funds_is_1002_and_changes_nothing(account: PaperAccount) -> None:
    before = account.balances()
    with pytest.raises(InsufficientFunds) as err:
        account.place(BTC_MXN, Side.SELL, D("100000.00"), D("1.00000001"), [], DECIMALS, after_look=1)
    assert err.value.code == 1002 and "btc" in err.value.message
    assert account.balances() == before and account.open_orders() == []


def test_cancel_unfreezes_the_rest_and_a_second_cancel_is_not_found(account: PaperAccount) -> None:
    order = account.place(BTC_MXN, Side.SELL, D("100000.00"), D("0.4"), [], DECIMALS, after_look=1)
    account.fill_resting("btc-mxn", look(2, 1, "1"), BTC_MXN, DECIMALS, {order.id: D("0.1")})
    assert account.balances()["btc"].frozen == D("0.3")
    cancelled = account.cancel(order.id)
    assert (cancelled.state, cancelled.filled, cancelled.frozen) == ("cancelled", D("0.1"), D(0))
    assert account.balances()["btc"] == Balance("btc", D("0.9"), D("0"))
    with pytest.raises(NotFound):
        account.cancel(order.id)


def test_balances_equal_start_plus_fills_minus_fees_after_many_random_orders(
        account: PaperAccount, clock: ManualClock) -> None:
    rng = random.Random(7)
    start = {"btc": D("1"), "mxn": D("2000000")}
    for i in range(400):
        side = rng.choice(list(Side))
        price = D(rng.randint(90_000_00, 110_000_00)) / 100
        amount = D(rng.randint(1_000, 2_000_000)) / 10**8
        takes = []
        if rng.random() < 0.4:
            level, left = price, amount
            while left > 0 and rng.random() < 0.8:
                got = min(left, D(rng.randint(1, 500_000)) / 10**8)
                takes.append((level, got))
                left -= got
                level += D("-0.01") * rng.randint(1, 100) if side is Side.BUY else D("0.01") * rng.randint(1, 100)
        try:
            account.place(BTC_MXN, side, price, amount, takes, DECIMALS, after_look=i)
        except InsufficientFunds:
            continue
        clock.advance(1)
        opened = account.open_orders()
        if opened and rng.random() < 0.3:
            account.cancel(rng.choice(opened).id)
        if opened and rng.random() < 0.5:
            amounts = {o.id: D(rng.randint(0, 400_000)) / 10**8 for o in opened}
            account.fill_resting("btc-mxn", look(i + 2, i, "1"), BTC_MXN, DECIMALS, amounts)
        if i % 25 == 0:
            assert totals(account) == expected_totals(account, start), f"after step {i}"
    assert totals(account) == expected_totals(account, start)
    assert len(account.fills_since_start()) > 100
    open_buys = sum((o.remaining * o.price for o in account.open_orders() if o.side is Side.BUY), D(0))
    open_sells = sum((o.remaining for o in account.open_orders() if o.side is Side.SELL), D(0))
    assert (account.balances()["mxn"].frozen, account.balances()["btc"].frozen) == (open_buys, open_sells)
    assert all(b.available >= 0 for b in account.balances().values())


def test_reset_cancels_open_orders_and_never_reuses_an_order_id(account: PaperAccount) -> None:
    first = account.place(BTC_MXN, Side.BUY, D("100000.00"), D("0.1"), [(D("99999.00"), D("0.05"))], DECIMALS, 1)
    assert account.reset({"btc": D("2")}) == {"cancelled_orders": 1, "coins": 1}
    assert account.balances() == {"btc": account.balances()["btc"]} and totals(account) == {"btc": D("2")}
    assert account.open_orders() == [] and account.fills_since_start() == []
    second = account.place(BTC_MXN, Side.SELL, D("100000.00"), D("0.1"), [], DECIMALS, 1)
    assert second.id > first.id
    assert [f.order_id for f in account.order_fills("btc-mxn", first.id, T0)] == [first.id]  # history kept


def test_the_range_between_samples_is_widened_by_the_median_excursion_of_the_moves_seen() -> None:
    prices = [(T0 + timedelta(seconds=20 * i), D(p)) for i, p in enumerate(["100", "101", "100", "101"])]
    var = pm.sample_variance(prices)  # squared relative moves per second: (0.01² + 0.0099² + 0.01²) / 60 s
    assert var == (D("0.01") ** 2 + (D(-1) / 101) ** 2 + D("0.01") ** 2) / 60
    assert pm.sample_variance(prices[:1]) == 0 and pm.sample_variance([prices[0], prices[0]]) == 0
    prev, cur = look(1, 0, "1440"), look(2, 1, "1441")
    plain = pm.traded_for(existed_at_prev=True, created_at=prev.at, prev=prev, cur=cur)
    wide = pm.traded_for(existed_at_prev=True, created_at=prev.at, prev=prev, cur=cur, variance_per_s=var)
    reach = (var * D(60) / 2 * D(2).ln() / 2).sqrt()  # 60 s resting, two samples (prev and cur): 30 s gaps
    assert (plain.low, plain.high) == (D(100), D(100))  # last prices; the book never crossed
    assert wide.low == D(100) * (1 - reach) and wide.high == D(100) * (1 + reach) and wide.volume == plain.volume
    # More samples in the span: shorter gaps, narrower widening.
    denser = pm.traded_for(existed_at_prev=True, created_at=prev.at, prev=prev, cur=cur,
                           seen=[(D(101), D(99))] * 4, variance_per_s=var)  # seen asks/bids: no crossing
    assert plain.low > denser.low > wide.low
    # A book trading a few times a minute: its extremes are its trades, which fall short of the continuous
    # path's; the widening shrinks by 0.5826 * sqrt(variance / trade rate), and with a trade or fewer per
    # gap it is gone.
    many = pm.traded_for(existed_at_prev=True, created_at=prev.at, prev=prev, cur=cur, variance_per_s=var,
                         trades_per_s=D(100))
    assert many.low == D(100) * (1 - (reach - D("0.5826") * (var / 100).sqrt()))
    assert wide.low < many.low < plain.low
    few = pm.traded_for(existed_at_prev=True, created_at=prev.at, prev=prev, cur=cur, variance_per_s=var,
                        trades_per_s=D(1) / 60)  # half a trade per 30 s gap
    assert (few.low, few.high) == (plain.low, plain.high)
