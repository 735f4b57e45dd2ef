"""The demo's view: what the tally counts from events, the lines it prints, PnL per market, the summary."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

from bot.domain import Candle
from bot.events import CandleClosed, Evaluation, FillSeen, OrderChanged, Tick
from bot.view import Tally, View

D = Decimal
AT = datetime(2026, 3, 2, 9, 1, 2, tzinfo=UTC)
CANDLE = Candle(datetime(2026, 3, 2, 9, 0, tzinfo=UTC), D(100), D(101), D(99), D(100), D(5))


def evaluation(action: str, backfill: bool = False) -> Evaluation:
    return Evaluation(at=AT, instance="btc-rsi", strategy="rsi_reversion", market="btc-mxn", stream="s",
                      candle=CANDLE, action=action, reason="RSI low", values={}, actionable=True, note="",
                      order_amount=D("0.001"), ttl_seconds=300, backfill=backfill)


def order(state: str, previous: str) -> OrderChanged:
    return OrderChanged(at=AT, order_id=1, instance="btc-rsi", market="btc-mxn", side="buy", price=D(1000),
                        amount=D("0.002"), filled=D(0), state=state, previous=previous, exchange_id="7",
                        purpose="entry")


def fill(side: str, price: str, amount: str, fee: str, fee_coin: str, fid: str) -> FillSeen:
    return FillSeen(at=AT, order_id=1, fill_id=fid, instance="btc-rsi", market="btc-mxn", side=side,
                    price=D(price), amount=D(amount), fee=D(fee), fee_coin=fee_coin, maker=True)


def test_the_tally_counts_each_kind_and_prints_one_line_per_notable_event() -> None:
    t = Tally()
    lines = [t.on_event(ev) for ev in (
        Tick(at=AT, stream="s", candle=CANDLE),
        CandleClosed(at=AT, stream="s", candle=CANDLE, backfill=True),
        CandleClosed(at=AT, stream="s", candle=CANDLE),
        evaluation("hold"), evaluation("buy", backfill=True), evaluation("buy"),
        order("submitting", "new"), order("open", "submitting"),
        fill("buy", "1000", "0.002", "0.000002", "btc", "a"),
        order("filled", "open"),
        fill("sell", "1100", "0.001", "0.11", "mxn", "b"),
    )]
    assert lines[0] is None and lines[1] is None and lines[3] is None and lines[4] is None  # quiet ones
    assert lines[2] == "09:01:02 candle  s 09:00 close 100"
    assert lines[5] == "09:01:02 signal  btc-rsi BUY on btc-mxn: RSI low"
    assert lines[7] == "09:01:02 order   #1 btc-rsi buy 0.002 btc-mxn @ 1,000: open"
    assert lines[8] == "09:01:02 fill    #1 buy 0.002 btc-mxn @ 1,000 (maker, fee 0.000002 btc)"
    assert (t.ticks, t.candles, t.backfilled, t.signals["buy"], t.orders, t.fills) == (1, 1, 1, 1, 1, 2)
    assert t.outcomes == {"filled": 1} and t.fees == {"btc": D("0.000002"), "mxn": D("0.11")}
    # bought 0.002 for 2 mxn (fee 0.000002 btc), sold 0.001 for 1.1 mxn (fee 0.11 mxn): held 0.000998 btc
    pnl = t.pnl({"btc-mxn": D(1050)})["btc-mxn"]
    assert pnl == {"cash": D("-1.01"), "held": D("0.000998"), "mark": D(1050), "pnl": D("-1.01") + D("1.0479")}
    assert t.pnl({})["btc-mxn"]["pnl"] is None  # coins held and no mark: not guessed


def test_lines_mode_prints_events_and_the_summary_names_every_figure() -> None:
    out = io.StringIO()
    view = View("auto", out)  # not a terminal: lines
    assert view.mode == "lines"
    view.on_event(CandleClosed(at=AT, stream="s", candle=CANDLE))
    view.on_event(fill("buy", "1000", "0.002", "0.000002", "btc", "a"))
    status = {"mode": "paper", "execution": {"marks": {"btc-mxn": "1000"}},
              "recorder": {"sent": {"candles/s": 3, "fills/btc-mxn": 1}, "backlog_rows": 0},
              "http": {"atmos": {"rate_limited": 0}, "coinbtr": {"rate_limited": 0}}}
    view.attach(lambda: status)
    view.snapshot()
    text = view.summary(0)
    assert out.getvalue().splitlines() == ["09:01:02 candle  s 09:00 close 100",
                                           "09:01:02 fill    #1 buy 0.002 btc-mxn @ 1,000 (maker, fee 0.000002 btc)"]
    for part in ("exit 0", "closed candles 1", "fills 1", "fees: 0.000002 btc", "btc-mxn    -0.00 mxn",
                 "rows recorded to Atlas: 4 in 2 datasets", "candles/s", "429s per API: atmos 0, coinbtr 0"):
        assert part in text, (part, text)
