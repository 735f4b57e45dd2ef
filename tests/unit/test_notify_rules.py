"""The pure parts of notifications: what each event says, pacing, the summary's time and text, the backoff,
and which parts of a URL are secrets."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal

import pytest

from bot.domain import Candle
from bot.events import (
    FeedFresh,
    FeedStale,
    FillSeen,
    OrderChanged,
    OrderUnresolved,
    Tick,
    WithdrawalChanged,
)
from bot.notify import kinds as k
from bot.notify.compose import MAX_BODY, MAX_LINES, Note, collapse, describe, message
from bot.notify.pacing import MAX_KEPT, Pacer, intervals
from bot.notify.sender import backoff
from bot.notify.summary import next_summary, summary_text
from bot.settings import url_token_parts
from tests.conftest import T0


def note(kind: str, line: str = "x", at: datetime = T0) -> Note:
    return Note(kind, at, f"title {line}", line)


def test_a_fill_says_who_what_where_at_what_price_and_fee() -> None:
    ev = FillSeen(at=T0, order_id=3, fill_id="f", instance="eth-bb", market="eth-mxn", side="sell",
                  price=Decimal("50441.4500"), amount=Decimal("0.0100"), fee=Decimal("0.38"), fee_coin="mxn",
                  maker=False)
    n = describe(ev)
    assert n is not None and n.kind == k.ORDER_FILLED
    assert n.title == "Fill: SELL 0.01 eth-mxn"
    assert n.line == "eth-bb sold 0.01 eth @ 50,441.45 mxn on eth-mxn, fee 0.38 mxn"


@pytest.mark.parametrize("state,kind", [("rejected", k.ORDER_REJECTED), ("open", None), ("filled", None)])
def test_only_rejected_orders_are_told_from_order_changes(state: str, kind: str | None) -> None:
    ev = OrderChanged(at=T0, order_id=1, instance="i", market="btc-mxn", side="buy", price=Decimal(1),
                      amount=Decimal(1), filled=Decimal(0), state=state, previous="submitting", exchange_id=None,
                      purpose="entry", note="insufficient funds")
    n = describe(ev)
    assert (n.kind if n else None) == kind


def test_untold_events_make_no_note() -> None:
    c = Candle(T0, Decimal(1), Decimal(1), Decimal(1), Decimal(1), Decimal(0))
    assert describe(Tick(at=T0, stream="s", candle=c)) is None
    failed = WithdrawalChanged(at=T0, withdrawal_id=1, coin="btc", amount=Decimal(1), fee=Decimal(0), address="a",
                               status="failed", previous="pending", txid=None)
    assert describe(failed) is None  # WithdrawalFailed tells it, with the refund


def test_an_unresolved_order_says_its_market_is_held() -> None:
    n = describe(OrderUnresolved(at=T0, order_id=9, instance="i", market="btc-mxn", side="buy", price=Decimal(10),
                                 amount=Decimal("0.1"), age_s=180.0, reason="2 candidates"))
    assert n is not None and n.kind == k.ORDER_UNKNOWN
    assert "order #9" in n.line and "3 min" in n.line and "nothing more is placed on btc-mxn" in n.line


def test_feed_stale_and_fresh_share_one_pacing_group() -> None:
    stale = describe(FeedStale(at=T0, stream="s", age_s=200.0, limit_s=150.0))
    fresh = describe(FeedFresh(at=T0, stream="s", age_s=10.0))
    assert stale is not None and fresh is not None
    assert (stale.kind, fresh.kind) == (k.FEED_STALE, k.FEED_FRESH) and stale.group == fresh.group == "feed"


def test_collapse_lists_the_first_lines_and_counts_the_rest() -> None:
    notes = [note(k.ORDER_FILLED, f"fill {i}") for i in range(MAX_LINES + 5)]
    title, body = collapse(notes, extra=3)
    assert title == f"{MAX_LINES + 8} fills"
    lines = body.splitlines()
    assert lines[0] == "12:00 fill 0" and len(lines) == MAX_LINES + 1 and lines[-1] == "... and 8 more"
    assert collapse(notes[:1]) == ("title fill 0", "fill 0")


def test_paper_is_in_every_title_and_body_and_bodies_stay_short() -> None:
    m = message(k.DAEMON, "Stopping", "y" * 5000, paper=True, bot="default")
    assert m.title == "PAPER Stopping" and m.body.startswith("PAPER ") and len(m.body) == MAX_BODY
    live = message(k.DAEMON, "Stopping", "z", paper=False, bot="acct2")
    assert (live.title, live.body) == ("Stopping [acct2]", "z")


def test_a_burst_within_the_gather_window_is_one_batch() -> None:
    p = Pacer({}, {k.ORDER_FILLED: 60.0})
    for i in range(10):
        p.add(note(k.ORDER_FILLED, str(i)), now=i * 5.0)
    assert p.take(59.0) == []
    (batch,) = p.take(60.0)
    assert [n.line for n in batch.notes] == [str(i) for i in range(10)]
    assert p.next_due() is None


def test_a_group_waits_its_min_interval_after_its_last_message() -> None:
    p = Pacer({"feed": 300.0}, {}, default_gather_s=5.0)
    p.add(note(k.FEED_STALE), 0.0)
    assert [b.group for b in p.take(5.0)] == ["feed"]
    for t in (10.0, 20.0, 30.0):  # flapping
        p.add(note(k.FEED_FRESH if t != 20.0 else k.FEED_STALE), t)
    assert p.next_due() == 305.0 and p.take(304.0) == []
    (batch,) = p.take(305.0)
    assert len(batch.notes) == 3
    p.add(note(k.FEED_STALE), 1000.0)  # long after: only the gather window
    assert p.next_due() == 1005.0


def test_groups_are_paced_apart_and_a_stop_takes_everything() -> None:
    p = Pacer({}, {k.DAEMON: 0.0}, default_gather_s=5.0)
    p.add(note(k.DEPOSIT), 0.0)
    p.add(note(k.DAEMON), 1.0)
    assert [b.group for b in p.take(1.0)] == [k.DAEMON]
    assert [b.group for b in p.take(2.0, everything=True)] == [k.DEPOSIT]


def test_a_batch_keeps_a_bounded_number_of_notes_and_counts_the_rest() -> None:
    p = Pacer({}, {})
    for i in range(MAX_KEPT + 7):
        p.add(note(k.ALARM_RAISED, str(i)), 0.0)
    (batch,) = p.take(100.0)
    assert (len(batch.notes), batch.extra) == (MAX_KEPT, 7)


def test_intervals_take_the_configured_value_else_the_default_and_the_longest_of_a_group() -> None:
    got = intervals({"feed_fresh": 900.0, "order_filled": 30.0})
    assert got["feed"] == 900.0 and got[k.ORDER_FILLED] == 30.0
    assert got["alarm"] == k.MIN_INTERVAL_S[k.ALARM_RAISED] and got[k.DEPOSIT] == 0.0


@pytest.mark.parametrize("failures,delay", [(1, 2.0), (2, 4.0), (5, 32.0), (9, 300.0), (50, 300.0)])
def test_backoff_doubles_up_to_a_cap(failures: int, delay: float) -> None:
    assert backoff(failures) == delay


@pytest.mark.parametrize("now,at,due", [
    (datetime(2026, 1, 1, 7, 0, tzinfo=UTC), time(8, 0), datetime(2026, 1, 1, 8, 0, tzinfo=UTC)),
    (datetime(2026, 1, 1, 8, 0, tzinfo=UTC), time(8, 0), datetime(2026, 1, 2, 8, 0, tzinfo=UTC)),
    (datetime(2026, 12, 31, 23, 30, tzinfo=UTC), time(0, 15), datetime(2027, 1, 1, 0, 15, tzinfo=UTC)),
])
def test_the_next_summary_is_the_first_time_of_day_strictly_after_now(now: datetime, at: time,
                                                                       due: datetime) -> None:
    assert next_summary(now, at) == due


def test_the_summary_reads_pnl_balances_and_rows_from_status_and_fills_from_the_journal() -> None:
    status = {
        "pnl": {"markets": {"btc-mxn": {"coin": "mxn", "realized": "10", "total": "-12.50"},
                            "eth-mxn": {"coin": "mxn", "realized": "3", "total": None}}},
        "paper": {"balances": {"btc": {"available": "0.5", "frozen": "0.5"}, "mxn": {"available": "2000000.123456789",
                                                                                     "frozen": "0"}}},
        "recorder": {"sent": {"a": 10, "b": 5}, "backlog_rows": 2},
    }
    fills = [{"market": "btc-mxn", "fee": "1.5", "fee_coin": "mxn"}, {"market": "eth-mxn", "fee": "0.5",
                                                                      "fee_coin": "mxn"}]
    assert summary_text(status, fills, rows=None).splitlines() == [
        "fills (24 h): 2 (btc-mxn 1, eth-mxn 1)",
        "fees: 2 mxn",
        "PnL btc-mxn: -12.50 mxn",
        "PnL eth-mxn: 3.00 realised mxn",
        "balances: 1 btc, 2,000,000.12345679 mxn",
        "rows recorded: 15 (backlog 2)",
    ]


@pytest.mark.parametrize("url,parts", [
    ("tgram://123456789:AAtokenPart/4242424", ["123456789:AAtokenPart", "4242424"]),
    ("ntfys://my-private-topic", ["my-private-topic"]),
    ("ntfys://ntfy.sh/topic-xyz", ["topic-xyz"]),  # the public host is not a secret
    ("mailtos://user:pa55word@gmail.com", ["pa55word"]),
    ("json://127.0.0.1:8080/webhook-abc?:X-Key=k3y-value", ["k3y-value", "webhook-abc"]),
    ("discord://1234567890/tok%2Fen-value", ["1234567890", "tok%2Fen-value", "tok/en-value"]),
])
def test_token_parts_of_an_apprise_url(url: str, parts: list[str]) -> None:
    assert url_token_parts(url) == sorted(parts)
