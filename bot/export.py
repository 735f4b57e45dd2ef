"""`tradebot export-trades`: every fill in the journal, with its fee and the realised PnL it made, as CSV.

Realised PnL is average-cost, per instance and broker (paper and live never mix), in the market's quote
coin, fees included: a buy's fee is part of what the position cost (a fee in the base coin means fewer coins
for the same money), a sell's fee comes off its proceeds (in base: more coins leave the position). A sell
beyond the position opens a short at that average price, which a later buy closes. PnL always counts every
fill from the first; `since` only limits the rows printed.

The journal is opened read-only (SQLite `mode=ro`), so the export runs beside a running daemon and never
changes or migrates the state directory. Money stays `Decimal` and is written as plain decimal strings;
only an average (a division) is rounded, to `QUANTUM`.
"""

from __future__ import annotations

import csv
import os
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any, TextIO

from bot.errors import ConfigError
from bot.store import DB_NAME

QUANTUM = Decimal("1e-12")
COLUMNS = ("fill_id", "at", "broker", "instance", "market", "side", "price", "amount", "notional", "fee",
           "fee_coin", "maker", "order_id", "exchange_id", "position_after", "avg_cost_after", "realized_pnl",
           "cum_realized_pnl", "pnl_coin")
ZERO = Decimal(0)


def money(value: Decimal) -> str:
    """A plain decimal string (`0.00000075`, never `7.5E-7`), without trailing zeros past the point."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclass
class Book:
    """One instance's position on average cost: signed quantity and the signed cost of holding it."""

    qty: Decimal = ZERO
    cost: Decimal = ZERO
    realized: Decimal = ZERO

    def avg(self) -> Decimal:
        return (self.cost / self.qty).quantize(QUANTUM) if self.qty else ZERO

    def trade(self, side: str, price: Decimal, amount: Decimal, fee: Decimal, fee_in_base: bool) -> Decimal:
        """Apply one fill; returns the PnL it realised (quote coin)."""
        with localcontext() as ctx:
            ctx.prec = 60
            if side == "buy":
                dq = amount - (fee if fee_in_base else ZERO)  # coins received
                dc = price * amount + (ZERO if fee_in_base else fee)  # money paid
            else:
                dq = -(amount + (fee if fee_in_base else ZERO))  # coins gone
                dc = -(price * amount - (ZERO if fee_in_base else fee))  # money received (negative cost)
            realized = ZERO
            if self.qty and (dq > 0) != (self.qty > 0):  # reduces (or flips) the position
                closing = min(abs(dq), abs(self.qty))
                avg = self.cost / self.qty
                part = dc * closing / abs(dq)  # the share of this fill's money that closes
                # long closed by a sell: proceeds - basis; short closed by a buy: basis received - cost
                realized = (-part - avg * closing) if self.qty > 0 else (avg * closing - part)
                self.qty += closing if dq > 0 else -closing
                self.cost = avg * self.qty
                dq, dc = (abs(dq) - closing) * (1 if dq > 0 else -1), dc - part
            self.qty += dq
            self.cost += dc
            if not self.qty:
                self.cost = ZERO
            realized = realized.quantize(QUANTUM)
            self.realized += realized
        return realized


def parse_since(text: str | None) -> datetime | None:
    """`--since`: an ISO date or date-time; UTC when it names no zone."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since: not an ISO date or time: {text!r}",
                          [("--since", "expected e.g. 2026-01-31 or 2026-01-31T12:00:00Z")]) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _connect(state_dir: Path) -> sqlite3.Connection:
    path = state_dir / DB_NAME
    if not path.is_file():
        raise ConfigError(f"no journal in {state_dir}: nothing has run with this state_dir",
                          [("state_dir", f"{path} does not exist")])
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
    db.row_factory = sqlite3.Row
    return db


def _rows(db: sqlite3.Connection) -> Iterator[sqlite3.Row]:
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "fills" not in tables:
        return iter(())
    fill_cols = {r[1] for r in db.execute("PRAGMA table_info(fills)")}
    broker = "f.broker" if "broker" in fill_cols else "'paper'"
    return db.execute(
        f"SELECT f.*, {broker} AS broker_, o.exchange_id AS exchange_id FROM fills f "
        "LEFT JOIN orders o ON o.id = f.order_id ORDER BY f.at, f.fill_id")


def trades(state_dir: Path, since: datetime | None = None) -> list[dict[str, str]]:
    """Every fill (at or after `since`) with its PnL columns, oldest first."""
    db = _connect(state_dir)
    try:
        with db:  # one read transaction: a consistent snapshot while the daemon writes
            rows = list(_rows(db))
    finally:
        db.close()
    books: dict[tuple[str, str], Book] = {}
    out: list[dict[str, str]] = []
    for r in rows:
        market: str = r["market"]
        base, _, quote = market.partition("-")
        price, amount, fee = Decimal(r["price"]), Decimal(r["amount"]), Decimal(r["fee"])
        book = books.setdefault((r["broker_"], r["instance"]), Book())
        realized = book.trade(r["side"], price, amount, fee, fee_in_base=r["fee_coin"] == base)
        at = datetime.fromisoformat(r["at"])
        if since is not None and at < since:
            continue
        out.append({
            "fill_id": r["fill_id"], "at": r["at"], "broker": r["broker_"], "instance": r["instance"],
            "market": market, "side": r["side"], "price": money(price), "amount": money(amount),
            "notional": money(price * amount), "fee": money(fee), "fee_coin": r["fee_coin"],
            "maker": "yes" if r["maker"] else "no", "order_id": str(r["order_id"]),
            "exchange_id": r["exchange_id"] or "", "position_after": money(book.qty),
            "avg_cost_after": money(book.avg()), "realized_pnl": money(realized),
            "cum_realized_pnl": money(book.realized), "pnl_coin": quote,
        })
    return out


def write_csv(rows: Sequence[dict[str, Any]], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def export_trades(state_dir: Path, since: str | None, csv_path: str | None) -> int:
    """Write the CSV to `csv_path` (standard output for None or "-"); returns the number of fills."""
    rows = trades(state_dir, parse_since(since))
    if not csv_path or csv_path == "-":
        try:
            write_csv(rows, sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:  # `| head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    else:
        with open(csv_path, "w", newline="") as fh:
            write_csv(rows, fh)
    return len(rows)
