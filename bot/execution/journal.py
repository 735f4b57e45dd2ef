"""The write-ahead order journal: the bot's own record of every order it meant to place.

CoinBTR has no client order id and forgets closed orders, so the journal is the source of truth:
an intent is committed (state SUBMITTING) before the place request goes out; every state change and every
fill (de-duplicated by fill id) is committed as it is learnt, each with its `orders`/`fills` outbox row and
its event in the same transaction. Orders are kept per broker kind (paper or live): switching a state_dir
from paper to live never mixes their ids, fills or positions. One (instance, candle, purpose) can hold at
most one order, so an evaluation that runs twice after a crash never places twice.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.clock import Clock
from bot.domain import Fill, Side
from bot.events import EventBus, FillSeen, OrderChanged
from bot.execution.states import OrderState, is_final, transition
from bot.logs import get_logger
from bot.recorder import datasets as ds
from bot.recorder.outbox import Outbox, ts_text
from bot.store import Store

log = get_logger("bot.execution.journal")

# States in which a fill that does not complete the order makes it PARTIALLY_FILLED.
PARTIAL_FROM = frozenset({OrderState.SUBMITTING, OrderState.OPEN, OrderState.PARTIALLY_FILLED, OrderState.UNKNOWN})


@dataclass(frozen=True, slots=True)
class JournalOrder:
    """One journaled order."""

    id: int
    instance: str
    market: str
    side: Side
    price: Decimal
    amount: Decimal
    purpose: str  # "entry", "exit", "stop_loss", "take_profit"
    candle_time: str | None
    state: OrderState
    exchange_id: str | None
    filled: Decimal
    fee: Decimal
    note: str
    created_at: str
    updated_at: str

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled


def _order(r: sqlite3.Row) -> JournalOrder:
    return JournalOrder(int(r["id"]), r["instance"], r["market"], Side(r["side"]), Decimal(r["price"]),
                        Decimal(r["amount"]), r["purpose"], r["candle_time"], OrderState(r["state"]),
                        r["exchange_id"], Decimal(r["filled"]), Decimal(r["fee"]), r["note"], r["created_at"],
                        r["updated_at"])


class Journal:
    """Orders and fills in the store; every change also becomes an outbox row and an event."""

    def __init__(self, store: Store, clock: Clock, events: EventBus, outbox: Outbox | None = None, *,
                 broker: str = "paper") -> None:
        self.broker = broker  # paper and live orders of one state_dir never mix (ids, positions)
        self.store = store
        self.clock = clock
        self.events = events
        self.outbox = outbox
        # Kept in memory, loaded from the fills once per key and moved by each committed fill, so the order
        # path never re-reads an instance's whole history: (instance, base) → held; day → today's flows.
        self._held: dict[tuple[str, str], Decimal] = {}
        self._day: tuple[str, dict[str, Decimal], dict[str, Decimal]] | None = None
        self._open: dict[int, JournalOrder] | None = None  # the unfinished orders, by id
        self.version = 0  # moves when a committed fill or a finished order may have moved the balances
        self.writes = 0  # moves with every committed write (an intent, a state change, a fill)

    # -- reading ----------------------------------------------------------------------------------------

    def get(self, order_id: int) -> JournalOrder:
        return _order(self.store.query("SELECT * FROM orders WHERE id = ? AND broker = ?",
                                       (order_id, self.broker))[0])

    def by_exchange_id(self, exchange_id: str) -> JournalOrder | None:
        rows = self.store.query("SELECT * FROM orders WHERE exchange_id = ? AND broker = ?", (exchange_id, self.broker))
        return _order(rows[0]) if rows else None

    def unfinished(self) -> list[JournalOrder]:
        """Orders not in a final state, oldest first (what reconciliation checks): read from the store
        once, then kept by every committed write."""
        if self._open is not None and not self.store.depth:
            return list(self._open.values())
        finals = tuple(s.value for s in OrderState if is_final(s))
        marks = ",".join("?" * len(finals))
        orders = [_order(r) for r in self.store.query(
            f"SELECT * FROM orders WHERE broker = ? AND state NOT IN ({marks}) ORDER BY id", (self.broker, *finals))]
        if not self.store.depth:  # inside a transaction it may hold writes not committed yet
            self._open = {o.id: o for o in orders}
        return orders

    def _kept(self, order: JournalOrder) -> None:
        """After a write committed: keep the order among the unfinished ones, or let it go when final."""
        self.writes += 1
        if is_final(order.state):
            self.version += 1
        if self._open is None:
            return
        if is_final(order.state):
            self._open.pop(order.id, None)
        else:
            self._open[order.id] = order
            if next(reversed(self._open)) != order.id:  # oldest first, as the store reads them
                self._open = dict(sorted(self._open.items()))

    def for_instance(self, instance: str) -> list[JournalOrder]:
        return [_order(r) for r in self.store.query(
            "SELECT * FROM orders WHERE instance = ? AND broker = ? ORDER BY id", (instance, self.broker))]

    def instances(self) -> list[tuple[str, str]]:
        """Every (instance, market) this broker's journal has orders of."""
        return [(r["instance"], r["market"]) for r in self.store.query(
            "SELECT DISTINCT instance, market FROM orders WHERE broker = ? ORDER BY instance", (self.broker,))]

    def working(self, instance: str) -> list[JournalOrder]:
        """The instance's orders not in a final state (an indexed read, whatever the history's length)."""
        return [o for o in self.unfinished() if o.instance == instance]

    def has_unknown(self, market: str) -> bool:
        """Whether an order on `market` has an unknown outcome (nothing more is placed there meanwhile)."""
        return any(o.state is OrderState.UNKNOWN and o.market == market for o in self.unfinished())

    def for_market(self, market: str) -> list[JournalOrder]:
        return [_order(r) for r in self.store.query(
            "SELECT * FROM orders WHERE market = ? AND broker = ? ORDER BY id", (market, self.broker))]

    def fills_since(self, since: datetime) -> list[dict[str, Any]]:
        """Fills at or after `since` (for the day's PnL), as stored."""
        return [dict(r) for r in self.store.query("SELECT * FROM fills WHERE at >= ? AND broker = ? ORDER BY at",
                                                  (ts_text(since), self.broker))]

    def entry_price(self, instance: str) -> Decimal | None:
        """The average price of the instance's buys since its last sell: the current position's entry."""
        rows = self.store.query("SELECT side, price, amount FROM fills WHERE instance = ? AND broker = ? "
                                "ORDER BY at, fill_id", (instance, self.broker))
        cost = qty = Decimal(0)
        for r in rows:
            if r["side"] == Side.SELL.value:
                cost = qty = Decimal(0)
            else:
                cost += Decimal(r["price"]) * Decimal(r["amount"])
                qty += Decimal(r["amount"])
        return cost / qty if qty else None

    def position(self, instance: str, base: str) -> Decimal:
        """What the instance holds in `base`: bought minus sold, net of fees charged in `base` (read from the
        fills once, then kept up to date by every committed fill)."""
        key = (instance, base)
        if key in self._held:
            return self._held[key]
        held = Decimal(0)
        for r in self.store.query("SELECT side, amount, fee, fee_coin FROM fills WHERE instance = ? AND broker = ?",
                                  (instance, self.broker)):
            held += _held_delta(r["side"], Decimal(r["amount"]), Decimal(r["fee"]), r["fee_coin"], base)
        if not self.store.depth:  # inside a transaction the sum may include a fill whose commit moves it again
            self._held[key] = held
        return held

    def day_flows(self, day_start: datetime) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
        """The fills at or after `day_start`, summed: quote cash flow per quote coin (sells in, buys out,
        quote fees out) and base moved per market (bought in, sold out, base fees out). Read once per day,
        then kept up to date by every committed fill."""
        day = ts_text(day_start)
        if self._day is not None and self._day[0] == day:
            return dict(self._day[1]), dict(self._day[2])
        cash: dict[str, Decimal] = {}
        moved: dict[str, Decimal] = {}
        for f in self.fills_since(day_start):
            _add_flow(cash, moved, f["market"], f["side"], Decimal(f["price"]), Decimal(f["amount"]),
                      Decimal(f["fee"]), f["fee_coin"])
        if not self.store.depth:
            self._day = (day, cash, moved)
        return dict(cash), dict(moved)

    def _kept_moved_by(self, order: JournalOrder, fill: Fill) -> None:
        """A fill committed: move what is kept in memory by it."""
        self.version += 1
        for (instance, base) in list(self._held):
            if instance == order.instance:
                self._held[(instance, base)] += _held_delta(fill.side.value, fill.amount, fill.fee_amount,
                                                            fill.fee_coin, base)
        if self._day is not None and ts_text(fill.created_at) >= self._day[0]:
            _add_flow(self._day[1], self._day[2], order.market, fill.side.value, fill.price, fill.amount,
                      fill.fee_amount, fill.fee_coin)

    # -- writing ----------------------------------------------------------------------------------------

    def intend(self, instance: str, market: str, side: Side, price: Decimal, amount: Decimal, purpose: str,
               candle_time: datetime | None) -> JournalOrder | None:
        """Commit the intent (state SUBMITTING) before the request is sent; None if this (instance, candle,
        purpose) already has an order (an evaluation that ran twice)."""
        now = ts_text(self.clock.now())
        with self.store.transaction() as conn:
            try:
                cur = conn.execute(
                    "INSERT INTO orders (broker, instance, market, side, price, amount, purpose, candle_time, state, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (self.broker, instance, market, side.value, str(price), str(amount), purpose,
                     ts_text(candle_time) if candle_time is not None else None,
                     transition(OrderState.NEW, OrderState.SUBMITTING).value, now, now))
            except sqlite3.IntegrityError:
                return None
            order = self.get(int(cur.lastrowid or 0))
            self._changed(order, OrderState.NEW)
            self.store.after_commit(lambda: self._kept(order))
        return order

    def move(self, order_id: int, target: OrderState, *, exchange_id: str | None = None,
             note: str = "") -> JournalOrder:
        """Move an order to `target` (an illegal move raises `IllegalTransition` and writes nothing)."""
        with self.store.transaction() as conn:
            before = self.get(order_id)
            state = target if target == before.state == OrderState.PARTIALLY_FILLED else transition(
                before.state, target)  # another partial fill: same state, new amounts
            conn.execute("UPDATE orders SET state = ?, exchange_id = COALESCE(?, exchange_id), note = ?, "
                         "updated_at = ? WHERE id = ?",
                         (state.value, exchange_id, note or before.note, ts_text(self.clock.now()), order_id))
            after = self.get(order_id)
            self._changed(after, before.state)
            self.store.after_commit(lambda: self._kept(after))
        return after

    def add_fill(self, order_id: int, fill: Fill) -> bool:
        """Account one fill (False if its fill id was seen before); moves the order to PARTIALLY_FILLED or
        FILLED unless it is already final."""
        with self.store.transaction() as conn:
            order = self.get(order_id)
            try:
                conn.execute(
                    "INSERT INTO fills (fill_id, broker, order_id, instance, market, side, price, amount, fee, "
                    "fee_coin, maker, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (f"{self.broker}:{fill.id}", self.broker, order_id, order.instance, order.market,
                     fill.side.value, str(fill.price), str(fill.amount), str(fill.fee_amount), fill.fee_coin,
                     int(fill.maker), ts_text(fill.created_at)))
            except sqlite3.IntegrityError:
                return False
            self.store.after_commit(lambda: self._kept_moved_by(order, fill))
            filled, fee = order.filled + fill.amount, order.fee + fill.fee_amount
            conn.execute("UPDATE orders SET filled = ?, fee = ?, updated_at = ? WHERE id = ?",
                         (str(filled), str(fee), ts_text(self.clock.now()), order_id))
            accounted = self.get(order_id)
            self.store.after_commit(lambda: self._kept(accounted))
            self.events.publish(FillSeen(
                at=self.clock.now(), order_id=order_id, fill_id=str(fill.id), instance=order.instance,
                market=order.market, side=fill.side.value, price=fill.price, amount=fill.amount,
                fee=fill.fee_amount, fee_coin=fill.fee_coin, maker=fill.maker))
            if self.outbox is not None:
                self.outbox.append(ds.key(ds.FILLS, order.market), fill.created_at, {
                    "order": order_id, "exchange_order": order.exchange_id, "fill": str(fill.id),
                    "instance": order.instance, "side": fill.side.value, "price": fill.price,
                    "amount": fill.amount, "fee": fill.fee_amount, "fee_coin": fill.fee_coin,
                    "maker": int(fill.maker)})
            if filled >= order.amount and not is_final(order.state):
                self.move(order_id, OrderState.FILLED)
            elif order.state in PARTIAL_FROM:
                self.move(order_id, OrderState.PARTIALLY_FILLED)
            # CANCELLING: the cancel's answer (or transactions) decides; the fill is accounted already.
        return True

    def _changed(self, order: JournalOrder, previous: OrderState) -> None:
        log.info("order.changed", order=order.id, instance=order.instance, market=order.market,
                 side=order.side.value, state=order.state.value, previous=previous.value,
                 filled=str(order.filled), exchange_id=order.exchange_id, note=order.note or None)
        self.events.publish(OrderChanged(
            at=self.clock.now(), order_id=order.id, instance=order.instance, market=order.market,
            side=order.side.value, price=order.price, amount=order.amount, filled=order.filled,
            state=order.state.value, previous=previous.value, exchange_id=order.exchange_id,
            purpose=order.purpose, note=order.note))
        if self.outbox is not None:
            row: dict[str, Any] = {"order": order.id, "instance": order.instance, "side": order.side.value,
                                   "price": order.price, "amount": order.amount, "filled": order.filled,
                                   "state": order.state.value, "previous": previous.value,
                                   "exchange_order": order.exchange_id, "purpose": order.purpose,
                                   "note": order.note}
            self.outbox.append(ds.key(ds.ORDERS, order.market), self.clock.now(), row)


def _held_delta(side: str, amount: Decimal, fee: Decimal, fee_coin: str, base: str) -> Decimal:
    """How one fill moves what an instance holds in `base`."""
    delta = amount if side == Side.BUY.value else -amount
    return delta - fee if fee_coin == base else delta


def _add_flow(cash: dict[str, Decimal], moved: dict[str, Decimal], market: str, side: str, price: Decimal,
              amount: Decimal, fee: Decimal, fee_coin: str) -> None:
    """Add one fill to the day's quote cash flow and base moved (see `Journal.day_flows`)."""
    base, quote = market.split("-")
    sign = Decimal(1) if side == Side.SELL.value else Decimal(-1)
    cash[quote] = cash.get(quote, Decimal(0)) + sign * price * amount - (fee if fee_coin == quote else 0)
    moved[market] = moved.get(market, Decimal(0)) - sign * amount - (fee if fee_coin == base else 0)
