"""Profit and loss per strategy instance and per market, for `/status`, `tradebot status` and the demo.

Realised PnL is average cost, fees included, computed by the very `Book` that `tradebot export-trades` uses
(so the two always agree); unrealised PnL marks what an instance holds at its market's order-book mid as
last read (`Broker.marks()`: never a request of its own). Both are in the market's quote coin. The fills
are replayed from the journal only when a committed fill moved it (`Journal.version`), so a status read
costs nothing between fills.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from bot.execution.journal import Journal
from bot.export import QUANTUM, ZERO, Book, money

Marks = Callable[[], Mapping[str, Decimal]]


class PnL:
    """Average-cost books of every instance in the journal, marked at the newest book mids."""

    def __init__(self, journal: Journal, marks: Marks) -> None:
        self.journal = journal
        self.marks = marks
        self._version: int | None = None
        self._books: dict[str, tuple[str, Book, Decimal]] = {}  # instance → (market, book, fees in quote)

    def books(self) -> dict[str, tuple[str, Book, Decimal]]:
        """Every instance's (market, average-cost book, quote fees), replayed when a fill committed."""
        if self._version != self.journal.version or self._version is None:
            version = self.journal.version
            books: dict[str, tuple[str, Book, Decimal]] = {}
            rows = self.journal.store.query(
                "SELECT instance, market, side, price, amount, fee, fee_coin FROM fills WHERE broker = ? "
                "ORDER BY at, fill_id", (self.journal.broker,))  # export-trades' order
            for r in rows:
                market: str = r["market"]
                base, _, quote = market.partition("-")
                _, book, fees = books.get(r["instance"], (market, Book(), ZERO))
                fee = Decimal(r["fee"])
                book.trade(r["side"], Decimal(r["price"]), Decimal(r["amount"]), fee, fee_in_base=r["fee_coin"] == base)
                books[r["instance"]] = (market, book, fees + (fee if r["fee_coin"] == quote else ZERO))
            self._books, self._version = books, version
        return self._books

    def status(self) -> dict[str, Any]:
        """Per instance and per market: position, average cost, realised, unrealised (None without a mark)
        and their total, in the quote coin; `mark` is the mid the position was valued at."""
        marks = self.marks()
        instances: dict[str, Any] = {}
        markets: dict[str, dict[str, Any]] = {}
        for name, (market, book, fees) in sorted(self.books().items()):
            mark = marks.get(market)
            unrealized: Decimal | None = ZERO
            if mark is not None:
                unrealized = (book.qty * mark - book.cost).quantize(QUANTUM)
            elif book.qty:
                unrealized = None  # holding, but no book read yet to value it at
            coin = market.partition("-")[2]
            instances[name] = {
                "market": market, "coin": coin, "position": money(book.qty), "avg_cost": money(book.avg()),
                "realized": money(book.realized), "unrealized": None if unrealized is None else money(unrealized),
                "total": None if unrealized is None else money(book.realized + unrealized),
                "fees": money(fees), "mark": None if mark is None else money(mark)}
            m = markets.setdefault(market, {"coin": coin, "realized": ZERO, "unrealized": ZERO, "marked": True,
                                            "mark": None if mark is None else money(mark)})
            m["realized"] += book.realized
            if unrealized is None:
                m["marked"] = False
            else:
                m["unrealized"] += unrealized
        out_markets = {}
        for market, m in sorted(markets.items()):
            total = m["realized"] + m["unrealized"]
            out_markets[market] = {"coin": m["coin"], "realized": money(m["realized"]),
                                   "unrealized": money(m["unrealized"]) if m["marked"] else None,
                                   "total": money(total) if m["marked"] else None, "mark": m["mark"]}
        return {"instances": instances, "markets": out_markets,
                "method": "average cost, fees included; positions marked at the order-book mid as last read"}
