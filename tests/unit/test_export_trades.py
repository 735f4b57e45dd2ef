"""`tradebot export-trades`: average-cost realised PnL per instance with fees in either coin, exact decimal
strings, `--since` limiting rows (not the PnL), read-only beside a writer holding the journal open."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest

from bot.cli import main
from bot.export import Book, money, trades
from bot.store import DB_NAME, Store

D = Decimal


@pytest.mark.parametrize(("value", "text"), [
    (D("7.5E-7"), "0.00000075"), (D("0E-8"), "0"), (D("1676.2504700000"), "1676.25047"), (D("-16.02"), "-16.02"),
    (D("100"), "100"), (D("-0.000"), "0"),
])
def test_money_is_a_plain_decimal_string(value: Decimal, text: str) -> None:
    assert money(value) == text


def test_average_cost_with_fees_in_base_on_buys_and_quote_on_sells() -> None:
    b = Book()
    assert b.trade("buy", D("100"), D("1"), D("0.01"), fee_in_base=True) == 0  # 0.99 coins for 100
    assert b.trade("buy", D("200"), D("1"), D("0"), fee_in_base=True) == 0  # 1.99 coins for 300
    assert b.qty == D("1.99") and b.cost == D("300")
    # Sell 0.995 (half) at 250, 1 quote fee: proceeds 247.75, basis 150
    assert b.trade("sell", D("250"), D("0.995"), D("1"), fee_in_base=False) == D("97.75")
    assert b.qty == D("0.995") and b.cost == D("150")
    assert b.trade("sell", D("100"), D("0.995"), D("0"), fee_in_base=False) == D("-50.5")
    assert b.qty == 0 and b.cost == 0 and b.realized == D("47.25")


def test_a_sell_beyond_the_position_opens_a_short_that_a_buy_closes() -> None:
    b = Book()
    b.trade("buy", D("10"), D("1"), D("0"), fee_in_base=True)
    assert b.trade("sell", D("12"), D("3"), D("0"), fee_in_base=False) == D("2")  # 1 closed at +2, 2 short at 12
    assert b.qty == D("-2") and b.avg() == D("12")
    assert b.trade("buy", D("11"), D("2"), D("0"), fee_in_base=True) == D("2")  # short closed at 11: +1 each
    assert b.qty == 0 and b.realized == D("4")


def _journal(state_dir: Path) -> Store:
    store = Store.open(state_dir)
    fills = [  # (fill, order, instance, market, side, price, amount, fee, fee_coin, at, broker)
        ("p:1", 1, "a", "btc-mxn", "buy", "1682758.57", "0.00100000", "7.5E-7", "btc", "2026-12-03T04:44:46+00:00",
         "paper"),
        ("p:2", 2, "a", "btc-mxn", "sell", "1690303.86", "0.00099925", "1.27", "mxn", "2026-12-03T05:19:26+00:00",
         "paper"),
        ("p:3", 3, "b", "eth-mxn", "buy", "50512.34", "0.01", "0.0000075", "eth", "2026-12-03T05:57:26+00:00",
         "paper"),
        ("l:1", 4, "a", "btc-mxn", "sell", "1700000", "0.001", "1", "mxn", "2026-12-03T06:00:00+00:00", "live"),
    ]
    with store.transaction() as conn:
        for f in fills:
            conn.execute(
                "INSERT INTO orders (id, instance, market, side, price, amount, purpose, state, exchange_id, "
                "created_at, updated_at, broker) VALUES (?, ?, ?, ?, ?, ?, 'entry', 'filled', ?, ?, ?, ?)",
                (f[1], f[2], f[3], f[4], f[5], f[6], f"x{f[1]}", f[9], f[9], f[10]))
            conn.execute(
                "INSERT INTO fills (fill_id, order_id, instance, market, side, price, amount, fee, fee_coin, maker, "
                "at, broker) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)", f)
    return store


def test_export_of_a_journal_held_open_by_a_writer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = _journal(tmp_path)  # stays open, as the running daemon's connection would
    try:
        before = (tmp_path / DB_NAME).stat().st_mtime_ns
        assert main(["export-trades", "--config", str(_config(tmp_path))]) == 0
        rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
        assert (tmp_path / DB_NAME).stat().st_mtime_ns == before  # read-only
    finally:
        store.close()
    assert [r["fill_id"] for r in rows] == ["p:1", "p:2", "p:3", "l:1"]
    a1, a2, b1, live = rows
    assert (a1["fee"], a1["position_after"], a1["notional"]) == ("0.00000075", "0.00099925", "1682.75857")
    assert (a2["realized_pnl"], a2["cum_realized_pnl"], a2["pnl_coin"]) == ("5.007562105", "5.007562105", "mxn")
    assert b1["realized_pnl"] == "0" and b1["position_after"] == "0.0099925"
    # The live broker's book is its own: a sell with nothing bought opens a short, realising nothing.
    assert (live["broker"], live["realized_pnl"], live["position_after"]) == ("live", "0", "-0.001")
    assert a1["exchange_id"] == "x1"


def test_since_limits_rows_but_pnl_counts_every_earlier_fill(tmp_path: Path) -> None:
    _journal(tmp_path).close()
    from bot.export import parse_since

    rows = trades(tmp_path, parse_since("2026-12-03T05:00:00Z"))
    assert [r["fill_id"] for r in rows] == ["p:2", "p:3", "l:1"]
    assert rows[0]["realized_pnl"] == "5.007562105"
    assert [r["fill_id"] for r in trades(tmp_path, parse_since("2026-12-04"))] == []


def test_csv_to_a_file_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _journal(tmp_path).close()
    out = tmp_path / "t.csv"
    assert main(["export-trades", "--config", str(_config(tmp_path)), "--csv", str(out)]) == 0
    assert "4 fill(s) exported to" in capsys.readouterr().err
    assert out.read_text().splitlines()[0].startswith("fill_id,at,broker,instance,market,side,price,amount")
    assert main(["export-trades", "--config", str(_config(tmp_path)), "--since", "yesterday"]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export-trades", "--config", str(_config(empty))]) == 2
    assert "no journal" in capsys.readouterr().err


def _config(state_dir: Path) -> Path:
    cfg = state_dir / "export.toml"
    cfg.write_text(f'state_dir = "{state_dir}"\n')
    return cfg
