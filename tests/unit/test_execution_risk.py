"""Pre-trade risk checks: their order, every denial's reason, sells under the loss limit, the daily window."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain import Book, Intent, Side
from bot.execution.risk import Allowed, Check, Denied, Limits, Proposal, RiskState, check, day_start
from bot.settings import RiskSettings

D = Decimal
BUY, SELL = Side.BUY, Side.SELL
BOOK = Book("btc-mxn", D("0.00001"), D("50"), D("1000"), D("100000000"), D("10"), D("20000000"),
            D("0.00000001"), D("0.01"), D("0.075"), D("0.15"))

LIMITS = Limits(max_order_value={"mxn": D("50000")}, max_open_orders=4, daily_loss_limit={"mxn": D("20000")})
RICH = RiskState(open_orders=1, pnl_today={"mxn": D("-100")}, available={"mxn": D("1000000"), "btc": D("2")},
                 positions={"btc-rsi": D("0.5")})


def prop(side: Side = BUY, amount: str = "0.01", price: str = "1500000", fee: str = "0.15",
         instance: str = "btc-rsi") -> Proposal:
    return Proposal(instance, "btc-mxn", side, D(price), D(amount), "mxn", "btc", D(fee))


def state(**changes: object) -> RiskState:
    return dataclasses.replace(RICH, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("proposal", "st_", "expected"),
    [
        # ---- allowed ----
        (prop(), RICH, Allowed()),
        (prop(SELL), RICH, Allowed()),
        (prop(amount="0.03333333"), RICH, Allowed()),  # value 49,999.995: just under the cap
        # ---- 1. kill switch: everything, sells too ----
        (prop(), state(kill_switch=True),
         Denied(Check.KILL_SWITCH, "the kill switch is on: no orders until it is cleared")),
        (prop(SELL), state(kill_switch=True),
         Denied(Check.KILL_SWITCH, "the kill switch is on: no orders until it is cleared")),
        # ---- 2. max open orders ----
        (prop(), state(open_orders=3), Allowed()),
        (prop(), state(open_orders=4),
         Denied(Check.MAX_OPEN_ORDERS, "4 orders open, the maximum is 4 (risk.max_open_orders)")),
        (prop(SELL), state(open_orders=9),
         Denied(Check.MAX_OPEN_ORDERS, "9 orders open, the maximum is 4 (risk.max_open_orders)")),
        # ---- 3. max order value ----
        (prop(amount="0.03333334"), RICH,
         Denied(Check.MAX_ORDER_VALUE, "value 50000.01 mxn (0.03333334 btc at 1500000) above "
                                       "risk.max_order_value.mxn 50000")),
        (prop(SELL, amount="1"), RICH,
         Denied(Check.MAX_ORDER_VALUE, "value 1500000 mxn (1 btc at 1500000) above risk.max_order_value.mxn 50000")),
        (Proposal("eth", "eth-btc", BUY, D("0.05"), D("1"), "btc", "eth"), RICH,
         Denied(Check.MAX_ORDER_VALUE, "no risk.max_order_value for btc: orders quoted in btc are not allowed "
                                       "until one is set")),
        # ---- 4. daily loss limit: buys blocked ----
        (prop(), state(pnl_today={"mxn": D("-19999.99")}), Allowed()),
        (prop(), state(pnl_today={"mxn": D("-20000")}),
         Denied(Check.DAILY_LOSS_LIMIT, "daily loss limit reached: today's PnL -20000 mxn is at or below -20000 "
                                        "(risk.daily_loss_limit.mxn) until 00:00 UTC: buys quoted in mxn are "
                                        "blocked")),
        (prop(SELL, amount="0.6"), state(pnl_today={"mxn": D("-25000")}, available={"btc": D("2")}),
         Denied(Check.MAX_ORDER_VALUE, "value 900000 mxn (0.6 btc at 1500000) above risk.max_order_value.mxn 50000")),
        (prop(SELL, amount="0.02"), state(pnl_today={"mxn": D("-25000")}, positions={"btc-rsi": D("0.01")}),
         Denied(Check.DAILY_LOSS_LIMIT, "daily loss limit reached: today's PnL -25000 mxn is at or below -20000 "
                                        "(risk.daily_loss_limit.mxn) until 00:00 UTC: only sells that reduce a "
                                        "position are allowed, and 0.02 btc is more than btc-rsi's position of "
                                        "0.01 btc")),
        (prop(SELL, amount="0.01", instance="other"), state(pnl_today={"mxn": D("-25000")}),
         Denied(Check.DAILY_LOSS_LIMIT, "daily loss limit reached: today's PnL -25000 mxn is at or below -20000 "
                                        "(risk.daily_loss_limit.mxn) until 00:00 UTC: only sells that reduce a "
                                        "position are allowed, and 0.01 btc is more than other's position of 0 btc")),
        # ---- 5. balance ----
        (prop(), state(available={"mxn": D("15022.50")}), Allowed()),  # 15000 + 0.15%: exactly enough
        (prop(), state(available={"mxn": D("15022.49")}),
         Denied(Check.BALANCE, "insufficient mxn: needs 15022.5 (15000 for 0.01 btc at 1500000 plus 0.15% fee "
                               "headroom), 15022.49 free")),
        (prop(fee="0"), state(available={"mxn": D("15000")}), Allowed()),
        (prop(), state(available={"mxn": D("20000")}, reserved={"mxn": D("10000")}),
         Denied(Check.BALANCE, "insufficient mxn: needs 15022.5 (15000 for 0.01 btc at 1500000 plus 0.15% fee "
                               "headroom), 10000 free (20000 available, 10000 held by pending orders)")),
        (prop(SELL, amount="0.02"), state(available={"btc": D("0.01")}),
         Denied(Check.BALANCE, "insufficient btc: needs 0.02 (the 0.02 btc to sell), 0.01 free")),
        (prop(SELL), state(available={}),
         Denied(Check.BALANCE, "insufficient btc: needs 0.01 (the 0.01 btc to sell), 0 free")),
    ],
)
def test_check(proposal: Proposal, st_: RiskState, expected: Allowed | Denied) -> None:
    assert check(proposal, LIMITS, st_) == expected


def test_a_sell_that_reduces_a_position_is_allowed_past_the_daily_loss_limit_and_says_so() -> None:
    result = check(prop(SELL, amount="0.02"), LIMITS, state(pnl_today={"mxn": D("-25000")}))
    assert result == Allowed("daily loss limit reached: today's PnL -25000 mxn is at or below -20000 "
                             "(risk.daily_loss_limit.mxn) until 00:00 UTC, but this sell reduces btc-rsi's "
                             "position (0.5 btc held)")
    # ... and the whole position may go, but not more.
    assert isinstance(check(prop(SELL, amount="0.5", price="100000"), LIMITS, state(pnl_today={"mxn": D("-25000")})),
                      Allowed)
    assert isinstance(check(prop(SELL, amount="0.50000001", price="100000"), LIMITS,
                            state(pnl_today={"mxn": D("-25000")})), Denied)
    # ... and it still needs the coins.
    denied = check(prop(SELL, amount="0.02"), LIMITS, state(pnl_today={"mxn": D("-25000")}, available={}))
    assert isinstance(denied, Denied) and denied.check is Check.BALANCE


def test_a_quote_coin_without_a_loss_limit_blocks_buys_but_not_reducing_sells() -> None:
    limits = dataclasses.replace(LIMITS, daily_loss_limit={})
    assert check(prop(), limits, RICH) == Denied(
        Check.DAILY_LOSS_LIMIT,
        "no risk.daily_loss_limit for mxn (set one to allow buys): buys quoted in mxn are blocked")
    assert check(prop(SELL), limits, RICH) == Allowed(
        "no risk.daily_loss_limit for mxn (set one to allow buys), but this sell reduces btc-rsi's position "
        "(0.5 btc held)")


def test_zero_max_open_orders_allows_nothing() -> None:
    assert check(prop(), dataclasses.replace(LIMITS, max_open_orders=0), state(open_orders=0)) == Denied(
        Check.MAX_OPEN_ORDERS, "0 orders open, the maximum is 0 (risk.max_open_orders)")


# The checks run in the documented order: each row breaks every check from its own on, and the first wins.
BROKEN: dict[Check, dict[str, object]] = {
    Check.KILL_SWITCH: {"kill_switch": True},
    Check.MAX_OPEN_ORDERS: {"open_orders": 99},
    Check.DAILY_LOSS_LIMIT: {"pnl_today": {"mxn": D("-1000000")}},
    Check.BALANCE: {"available": {}},
}


@pytest.mark.parametrize("first", list(Check))
def test_checks_run_in_order(first: Check) -> None:
    order = list(Check)
    changes: dict[str, object] = {}
    for c in order[order.index(first):]:
        changes.update(BROKEN.get(c, {}))
    big = first in order[: order.index(Check.MAX_ORDER_VALUE) + 1]
    result = check(prop(amount="1" if big else "0.01"), LIMITS, state(**changes))
    assert isinstance(result, Denied) and result.check is first


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([BUY, SELL]),
    st.decimals(D("0.00000001"), D("1"), places=8),
    st.decimals(D("1000"), D("3000000"), places=2),
    st.integers(0, 6),
    st.decimals(D("-50000"), D("50000"), places=2),
    st.decimals(D("0"), D("100000"), places=2),
    st.decimals(D("0"), D("2"), places=8),
    st.decimals(D("0"), D("1"), places=8),
    st.booleans(),
)
def test_allowed_orders_respect_every_limit(
    side: Side, amount: Decimal, price: Decimal, open_orders: int, pnl: Decimal, mxn: Decimal, btc: Decimal,
    position: Decimal, kill: bool,
) -> None:
    proposal = prop(side, str(amount), str(price))
    st_ = RiskState(open_orders, {"mxn": pnl}, {"mxn": mxn, "btc": btc}, {}, {"btc-rsi": position}, kill)
    result = check(proposal, LIMITS, st_)
    if isinstance(result, Denied):
        assert result.reason
        return
    assert not kill and open_orders < LIMITS.max_open_orders
    assert proposal.value <= LIMITS.max_order_value["mxn"]
    if side is BUY:
        assert pnl > -LIMITS.daily_loss_limit["mxn"]
        assert proposal.value * (1 + D("0.0015")) <= mxn
    else:
        assert pnl > -LIMITS.daily_loss_limit["mxn"] or proposal.amount <= position
        assert proposal.amount <= btc
        assert bool(result.note) is (pnl <= -LIMITS.daily_loss_limit["mxn"])


def test_limits_from_settings_lower_cases_coins() -> None:
    risk = RiskSettings(max_order_value={"MXN": D("10")}, max_open_orders=2, daily_loss_limit={"Mxn": D("5")})
    assert Limits.from_settings(risk) == Limits({"mxn": D("10")}, 2, {"mxn": D("5")})
    assert Limits.from_settings(RiskSettings()) == Limits({"mxn": D("50000")}, 4, {"mxn": D("20000")})


def test_proposal_from_a_book_and_an_intent() -> None:
    p = Proposal.on_book("btc-rsi", BOOK, BUY, D("1500000"), D("0.01"))
    assert (p.quote, p.base, p.fee_percent) == ("mxn", "btc", D("0.15"))  # the taker fee: the worst case
    assert p.needs == ("mxn", D("15022.5"))
    assert Proposal.on_book("x", BOOK, SELL, D("1500000"), D("0.01")).needs == ("btc", D("0.01"))
    intent = Intent("btc-rsi", "btc-mxn", BUY, D("0.01"), D("1500000"), 300)
    assert Proposal.from_intent(intent, BOOK) == p
    with pytest.raises(ValueError, match="intent is for 'eth-mxn'"):
        Proposal.from_intent(dataclasses.replace(intent, market="eth-mxn"), BOOK)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"price": D(0)}, "must be positive"),
        ({"amount": D("-1")}, "must be positive"),
        ({"market": "eth-mxn"}, "is not btc-mxn"),
        ({"fee_percent": D("-0.1")}, "fee_percent"),
    ],
)
def test_proposal_rejects_caller_bugs(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(prop(), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("now", "start"),
    [
        (datetime(2026, 11, 20, 12, 34, 56, 789, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)),
        (datetime(2026, 11, 20, 0, 0, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)),  # midnight is its own day
        (datetime(2026, 11, 20, 23, 59, 59, 999999, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)),
        # 20:00 in Mexico City (UTC-6) is already 02:00 the next day in UTC.
        (datetime(2026, 11, 20, 20, 0, tzinfo=timezone(timedelta(hours=-6))), datetime(2026, 11, 21, tzinfo=UTC)),
        (datetime(2026, 11, 21, 1, 0, tzinfo=timezone(timedelta(hours=5))), datetime(2026, 11, 20, tzinfo=UTC)),
        (datetime(2028, 2, 29, 8, 0, tzinfo=UTC), datetime(2028, 2, 29, tzinfo=UTC)),
    ],
)
def test_day_start_is_utc_midnight(now: datetime, start: datetime) -> None:
    result = day_start(now)
    assert result == start and result.tzinfo is UTC


def test_day_start_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        day_start(datetime(2026, 11, 20, 12, 0))


@given(st.datetimes(timezones=st.just(UTC)))
def test_day_start_bounds_now_within_one_day(now: datetime) -> None:
    start = day_start(now)
    assert start <= now < start + timedelta(days=1)
    assert (start.hour, start.minute, start.second, start.microsecond) == (0, 0, 0, 0)
