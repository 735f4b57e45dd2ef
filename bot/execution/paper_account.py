"""The paper account in the store (migration 6): balances, orders, fills and the last look at each market.

Every change is one store transaction: a fill moves the balances, updates its order and inserts the fill
row together, so a crash can never leave balances that disagree with the fills. Money is `Decimal`, kept
as decimal text. Order and fill ids come from `AUTOINCREMENT` counters and are never reused, not even
after `reset` (the journal may still name an old paper order). The invariant, per coin:

    balance (available + frozen) == starting balance + what every fill since the start received − its fee
                                                      − what every fill since the start paid

The starting balances and the first fill id that counts are kept under the kv key `paper.account`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.clients.coinbtr import InsufficientFunds
from bot.clock import Clock, iso_fixed
from bot.domain import Balance, Book, ExchangeOrder, Fill, Side
from bot.errors import NotFound
from bot.execution.paper_model import INSUFFICIENT_FUNDS, NOT_FOUND, ZERO, Look, frozen_for, settle
from bot.store import Store

ACCOUNT_KEY = "paper.account"
SERVICE = "paper"
OPEN, FILLED, CANCELLED = "open", "filled", "cancelled"


_iso = iso_fixed  # stored times: fixed width, comparable as text


@dataclass(frozen=True, slots=True)
class PaperOrder:
    """One paper order as the store keeps it."""

    id: int
    market: str
    side: Side
    price: Decimal
    amount: Decimal
    filled: Decimal
    frozen: Decimal  # still frozen for the rest of it
    fee_percent: Decimal
    state: str
    after_look: int  # the market's look number when it was placed
    created_at: datetime

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled

    def exchange_order(self) -> ExchangeOrder:
        return ExchangeOrder(order_id=self.id, market=self.market, side=self.side, price=self.price,
                             initial_amount=self.amount, amount=self.remaining, filled=self.filled,
                             fee_percent=self.fee_percent, created_at=self.created_at,
                             is_open=self.state == OPEN)


def _order(r: sqlite3.Row) -> PaperOrder:
    return PaperOrder(int(r["id"]), r["market"], Side(r["side"]), Decimal(r["price"]), Decimal(r["amount"]),
                      Decimal(r["filled"]), Decimal(r["frozen"]), Decimal(r["fee_percent"]), r["state"],
                      int(r["after_look"]), datetime.fromisoformat(r["created_at"]))


def _fill(r: sqlite3.Row) -> Fill:
    return Fill(id=int(r["id"]), order_id=int(r["order_id"]), market=r["market"], side=Side(r["side"]),
                price=Decimal(r["price"]), amount=Decimal(r["amount"]), fee_amount=Decimal(r["fee"]),
                fee_coin=r["fee_coin"], maker=bool(r["maker"]), created_at=datetime.fromisoformat(r["created_at"]))


def _look(r: sqlite3.Row) -> Look:
    return Look(int(r["look"]), datetime.fromisoformat(r["at"]), Decimal(r["last"]), Decimal(r["bid"]),
                Decimal(r["ask"]), Decimal(r["low_24h"]), Decimal(r["high_24h"]), Decimal(r["volume_24h"]),
                Decimal(r["rate"]) if r["rate"] else None)


class PaperAccount:
    """Reads and writes the paper account's tables; every write is one transaction."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    # ---- the account as a whole ---------------------------------------------------------------

    def started(self) -> dict[str, Any] | None:
        """`{"balances": {coin: Decimal}, "after_fill": int, "at": datetime}` once the account exists."""
        value = self.store.kv_get(ACCOUNT_KEY)
        return value if isinstance(value, dict) else None

    def reset(self, balances: Mapping[str, Decimal]) -> dict[str, int]:
        """Start over: open orders cancelled (their funds with them), balances set to `balances`, the
        look history forgotten. Old orders and fills stay readable; ids are never reused."""
        now = _iso(self.clock.now())
        start = {coin.lower(): Decimal(amount) for coin, amount in balances.items()}
        with self.store.transaction() as c:
            cancelled = c.execute("UPDATE paper_orders SET state = ?, frozen = '0', closed_at = ? WHERE state = ?",
                                  (CANCELLED, now, OPEN)).rowcount
            c.execute("DELETE FROM paper_balances")
            c.execute("DELETE FROM paper_looks")
            for coin, amount in sorted(start.items()):
                c.execute("INSERT INTO paper_balances (coin, available, frozen, updated_at) VALUES (?, ?, '0', ?)",
                          (coin, str(amount), now))
            after = c.execute("SELECT COALESCE(MAX(id), 0) FROM paper_fills").fetchone()[0]
            self.store.kv_set(ACCOUNT_KEY, {"balances": start, "after_fill": int(after), "at": self.clock.now()})
        return {"cancelled_orders": int(cancelled), "coins": len(start)}

    def balances(self) -> dict[str, Balance]:
        """Available and frozen per coin."""
        rows = self.store.query("SELECT coin, available, frozen FROM paper_balances ORDER BY coin")
        return {r["coin"]: Balance(r["coin"], Decimal(r["available"]), Decimal(r["frozen"])) for r in rows}

    def fills_since_start(self) -> list[Fill]:
        """Every fill since the account (last) started, oldest first."""
        after = int((self.started() or {}).get("after_fill", 0))
        rows = self.store.query("SELECT * FROM paper_fills WHERE id > ? ORDER BY id", (after,))
        return [_fill(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Open orders, and orders and fills ever."""
        row = self.store.query("SELECT (SELECT COUNT(*) FROM paper_orders WHERE state = 'open') AS open_orders, "
                               "(SELECT COUNT(*) FROM paper_orders) AS orders, "
                               "(SELECT COUNT(*) FROM paper_fills) AS fills")[0]
        return {"open_orders": int(row["open_orders"]), "orders": int(row["orders"]), "fills": int(row["fills"])}

    # ---- orders and fills ---------------------------------------------------------------------

    def open_orders(self, market: str | None = None) -> list[PaperOrder]:
        """Open paper orders, oldest first."""
        sql, params = "SELECT * FROM paper_orders WHERE state = ?", [OPEN]
        if market is not None:
            sql, params = sql + " AND market = ?", [*params, market.lower()]
        return [_order(r) for r in self.store.query(sql + " ORDER BY id", params)]

    def order(self, order_id: int) -> PaperOrder | None:
        """One paper order by id, or None."""
        rows = self.store.query("SELECT * FROM paper_orders WHERE id = ?", (order_id,))
        return _order(rows[0]) if rows else None

    def find(self, market: str, side: Side, price: Decimal, amount: Decimal, placed_after: datetime,
             exclude_ids: Collection[int] = ()) -> list[int]:
        """Ids of the orders of `market` with this side, price and amount created at or after `placed_after`,
        except `exclude_ids`, oldest first."""
        rows = self.store.query("SELECT * FROM paper_orders WHERE market = ? AND side = ? AND created_at >= ? "
                                "ORDER BY id", (market, side.value, _iso(placed_after)))
        out: list[int] = []
        for r in rows:
            o = _order(r)
            if (o.side is side and o.price == price and o.amount == amount and o.created_at >= placed_after
                    and o.id not in exclude_ids):
                out.append(o.id)
        return out

    def has_open_orders(self, market: str) -> bool:
        """Whether the market has an open paper order."""
        return bool(self.store.query("SELECT 1 FROM paper_orders WHERE state = ? AND market = ? LIMIT 1",
                                     (OPEN, market.lower())))

    def order_fills(self, market: str, order_id: int, since: datetime) -> list[Fill]:
        """One order's fills at or after `since`, oldest first."""
        rows = self.store.query("SELECT * FROM paper_fills WHERE order_id = ? AND market = ? AND created_at >= ? "
                                "ORDER BY created_at, id", (order_id, market.lower(), _iso(since)))
        return [_fill(r) for r in rows]

    def place(self, book: Book, side: Side, price: Decimal, amount: Decimal, takes: Sequence[tuple[Decimal, Decimal]],
              decimals: Mapping[str, int], after_look: int) -> PaperOrder:
        """Freeze the funds, record the order and its taker fills (`takes`: `(price, amount)` from
        `fill_model.take`), in one transaction; `InsufficientFunds` (1002) changes nothing."""
        coin, need = frozen_for(book, side, price, amount)
        now = self.clock.now()
        with self.store.transaction() as c:
            available, frozen = self._balance(c, coin)
            if available < need:
                raise InsufficientFunds(f"insufficient {coin} funds: {need} needed, {available} available",
                                        service=SERVICE, code=INSUFFICIENT_FUNDS)
            self._set_balance(c, coin, available - need, frozen + need)
            cur = c.execute(
                "INSERT INTO paper_orders (market, side, price, amount, filled, frozen, fee_percent, state, "
                "after_look, created_at) VALUES (?, ?, ?, ?, '0', ?, ?, ?, ?, ?)",
                (book.name.lower(), side.value, str(price), str(amount), str(need), str(book.maker_fee), OPEN,
                 after_look, _iso(now)))
            order = self._order(c, int(cur.lastrowid or 0))
            for level_price, got in takes:
                order = self._execute(c, order, book, level_price, got, False, decimals, now)
        return order

    def cancel(self, order_id: int) -> PaperOrder:
        """Cancel an open order, unfreezing what its rest held; `NotFound` (1003) when it is not open."""
        with self.store.transaction() as c:
            row = c.execute("SELECT * FROM paper_orders WHERE id = ?", (order_id,)).fetchone()
            if row is None or row["state"] != OPEN:
                raise NotFound(f"paper order {order_id} is not open", service=SERVICE, code=NOT_FOUND)
            order = _order(row)
            base, quote = order.market.split("-")
            coin = quote if order.side is Side.BUY else base
            available, frozen = self._balance(c, coin)
            self._set_balance(c, coin, available + order.frozen, frozen - order.frozen)
            c.execute("UPDATE paper_orders SET state = ?, frozen = '0', closed_at = ? WHERE id = ?",
                      (CANCELLED, _iso(self.clock.now()), order_id))
            return self._order(c, order_id)

    def fill_resting(self, market: str, look: Look, book: Book, decimals: Mapping[str, int],
                     amounts: Mapping[int, Decimal]) -> list[Fill]:
        """Fill open orders as makers at their own prices (`amounts` by order id; orders no longer open
        are skipped, amounts capped at what is left) and make `look` the market's last look, in one
        transaction. Returns the new fills."""
        now = self.clock.now()
        with self.store.transaction() as c:
            first = c.execute("SELECT COALESCE(MAX(id), 0) FROM paper_fills").fetchone()[0]
            for order_id, amount in sorted(amounts.items()):
                row = c.execute("SELECT * FROM paper_orders WHERE id = ? AND state = ?", (order_id, OPEN)).fetchone()
                if row is None or amount <= 0:
                    continue
                order = _order(row)
                self._execute(c, order, book, order.price, min(amount, order.remaining), True, decimals, now)
            self._save_look(c, market, look)
            rows = c.execute("SELECT * FROM paper_fills WHERE id > ? ORDER BY id", (first,)).fetchall()
        return [_fill(r) for r in rows]

    # ---- looks --------------------------------------------------------------------------------

    def look(self, market: str) -> Look | None:
        """The market's last look, if any."""
        rows = self.store.query("SELECT * FROM paper_looks WHERE market = ?", (market.lower(),))
        return _look(rows[0]) if rows else None

    def save_look(self, market: str, look: Look) -> None:
        """Make `look` the market's last look."""
        with self.store.transaction() as c:
            self._save_look(c, market, look)

    # ---- inside a transaction -----------------------------------------------------------------

    @staticmethod
    def _save_look(c: sqlite3.Connection, market: str, look: Look) -> None:
        c.execute("INSERT OR REPLACE INTO paper_looks (market, look, at, last, bid, ask, low_24h, high_24h, "
                  "volume_24h, rate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (market.lower(), look.look, _iso(look.at), str(look.last), str(look.bid), str(look.ask),
                   str(look.low_24h), str(look.high_24h), str(look.volume_24h),
                   None if look.rate is None else str(look.rate)))

    @staticmethod
    def _order(c: sqlite3.Connection, order_id: int) -> PaperOrder:
        return _order(c.execute("SELECT * FROM paper_orders WHERE id = ?", (order_id,)).fetchone())

    @staticmethod
    def _balance(c: sqlite3.Connection, coin: str) -> tuple[Decimal, Decimal]:
        row = c.execute("SELECT available, frozen FROM paper_balances WHERE coin = ?", (coin,)).fetchone()
        return (Decimal(row["available"]), Decimal(row["frozen"])) if row else (ZERO, ZERO)

    def _set_balance(self, c: sqlite3.Connection, coin: str, available: Decimal, frozen: Decimal) -> None:
        c.execute("INSERT INTO paper_balances (coin, available, frozen, updated_at) VALUES (?, ?, ?, ?) "
                  "ON CONFLICT(coin) DO UPDATE SET available = excluded.available, frozen = excluded.frozen, "
                  "updated_at = excluded.updated_at", (coin, str(available), str(frozen), _iso(self.clock.now())))

    def _execute(self, c: sqlite3.Connection, order: PaperOrder, book: Book, price: Decimal, amount: Decimal,
                 maker: bool, decimals: Mapping[str, int], at: datetime) -> PaperOrder:
        """One fill: balances, the order and the fill row (the caller's transaction)."""
        s = settle(book, order.side, order.price, price, amount, maker, decimals)
        available, frozen = self._balance(c, s.paid_coin)
        self._set_balance(c, s.paid_coin, available + s.released, frozen - s.paid - s.released)
        available, frozen = self._balance(c, s.received_coin)
        self._set_balance(c, s.received_coin, available + s.received - s.fee, frozen)
        filled, left = order.filled + amount, order.frozen - s.paid - s.released
        state, closed = OPEN, None
        if filled >= order.amount:
            state, closed = FILLED, _iso(at)
            if left:  # exact arithmetic leaves nothing; never strand funds if a rounding rule changes
                available, frozen = self._balance(c, s.paid_coin)
                self._set_balance(c, s.paid_coin, available + left, frozen - left)
                left = ZERO
        c.execute("UPDATE paper_orders SET filled = ?, frozen = ?, state = ?, closed_at = ? WHERE id = ?",
                  (str(filled), str(left), state, closed, order.id))
        c.execute("INSERT INTO paper_fills (order_id, market, side, price, amount, fee, fee_coin, maker, created_at) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (order.id, order.market, order.side.value, str(price), str(amount), str(s.fee), s.received_coin,
                   int(maker), _iso(at)))
        return self._order(c, order.id)
