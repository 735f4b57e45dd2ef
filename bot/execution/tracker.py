"""Following orders after they were sent: fills, cancels, TTL, unknown outcomes, reconciliation.

Everything here reads the truth from the broker and writes it to the journal; nothing guesses. The exchange
forgets closed orders, so an order that left the open list is judged by its fills (`order_fills`): covered →
FILLED; not covered and we asked for a cancel (or someone else cancelled it) → CANCELLED with what filled.
A place whose outcome is unknown is looked up (`find_order`): found → adopted; provably absent after a
grace → closed as never placed; until then nothing more is placed on its market.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.clock import Clock
from bot.errors import BotError, NotFound, OutcomeUnknown
from bot.events import OrderUnresolved
from bot.execution.broker import Broker
from bot.execution.journal import Journal, JournalOrder
from bot.execution.states import OrderState
from bot.logs import get_logger

log = get_logger("bot.execution")

UNKNOWN_GRACE = timedelta(seconds=120)  # clock time an unknown place may take to show up before "not placed"


class Tracker:
    """Brings journal orders to their true state."""

    def __init__(self, clock: Clock, journal: Journal, broker: Broker) -> None:
        self.clock = clock
        self.journal = journal
        self.broker = broker
        self.unresolved: dict[int, str] = {}  # journal id → why it is still UNKNOWN
        self._told: set[int] = set()  # unresolved past the grace, already published

    @staticmethod
    def _since(order: JournalOrder) -> datetime:
        return datetime.fromisoformat(order.created_at)

    async def refresh(self, order: JournalOrder, open_ids: set[int]) -> JournalOrder:
        """Account new fills of a working order, and settle it if it left the open list."""
        if order.state is OrderState.UNKNOWN:
            return await self.resolve_unknown(order)
        if order.exchange_id is None:
            return order
        oid = int(order.exchange_id)
        for f in await self.broker.order_fills(order.market, oid, self._since(order)):
            self.journal.add_fill(order.id, f)
        order = self.journal.get(order.id)
        if order.state.value in ("filled", "cancelled", "rejected") or oid in open_ids:
            return order
        # Gone from the open list: the fills decide.
        if order.filled >= order.amount:
            return self.journal.move(order.id, OrderState.FILLED)
        note = (f"cancelled: {order.note}" if order.state is OrderState.CANCELLING
                else "cancelled on the exchange, not by the bot")
        return self.journal.move(order.id, OrderState.CANCELLED, note=note)

    async def cancel(self, order: JournalOrder, why: str) -> JournalOrder:
        """Ask the exchange to cancel (journaled CANCELLING first); a cancel that races a fill ends in the
        truth read from the fills."""
        if order.state in (OrderState.OPEN, OrderState.PARTIALLY_FILLED):
            order = self.journal.move(order.id, OrderState.CANCELLING, note=why)
        if order.state is not OrderState.CANCELLING or order.exchange_id is None:
            return order
        try:
            await self.broker.cancel(int(order.exchange_id))
        except NotFound:  # not open any more (1003): filled meanwhile, or cancelled already
            log.info("order.cancel_raced", order=order.id, exchange_id=order.exchange_id)
        except (OutcomeUnknown, BotError) as err:
            log.warning("order.cancel_failed", order=order.id, kind=err.kind, error=str(err))
            return order  # still CANCELLING: the next look decides
        open_ids = {o.order_id for o in await self.broker.open_orders(order.market)}
        return await self.refresh(order, open_ids)

    async def resolve_unknown(self, order: JournalOrder) -> JournalOrder:
        """Find a place whose answer was lost: adopt it, or close it as never placed after the grace."""
        known = {int(o.exchange_id) for o in self.journal.for_market(order.market) if o.exchange_id}
        try:
            found = await self.broker.find_order(order.market, order.side, order.price, order.amount,
                                                 self._since(order) - timedelta(seconds=5), known)
        except OutcomeUnknown as err:  # several candidates: never guess
            self.unresolved[order.id] = str(err)
            age = self.clock.now() - self._since(order)
            if age >= UNKNOWN_GRACE and order.id not in self._told:  # past the bound: a person must look
                self._told.add(order.id)
                self.journal.events.publish(OrderUnresolved(
                    at=self.clock.now(), order_id=order.id, instance=order.instance, market=order.market,
                    side=order.side.value, price=order.price, amount=order.amount, age_s=age.total_seconds(),
                    reason=str(err)))
            return order
        if found is not None:
            open_ids = {o.order_id for o in await self.broker.open_orders(order.market)}
            state = OrderState.OPEN
            order = self.journal.move(order.id, state, exchange_id=str(found), note="adopted after an unknown outcome")
            self.unresolved.pop(order.id, None)
            log.info("order.adopted", order=order.id, exchange_id=found)
            return await self.refresh(order, open_ids)
        if self.clock.now() - self._since(order) < UNKNOWN_GRACE:
            self.unresolved[order.id] = "not visible yet"
            return order
        self.unresolved.pop(order.id, None)
        log.warning("order.never_placed", order=order.id, market=order.market)
        return self.journal.move(order.id, OrderState.CANCELLED, note="never placed (not on the exchange)")

    async def reconcile(self) -> dict[str, int]:
        """At start-up, before any new order: every unfinished journal order to its true state."""
        moved = checked = 0
        markets = {o.market for o in self.journal.unfinished()}
        for market in sorted(markets):
            open_ids = {o.order_id for o in await self.broker.open_orders(market)}
            for order in [o for o in self.journal.unfinished() if o.market == market]:
                before = order.state
                if order.state is OrderState.SUBMITTING:  # the process died with the request maybe sent
                    order = self.journal.move(order.id, OrderState.UNKNOWN, note="found submitting at start-up")
                order = await self.refresh(order, open_ids)
                moved += int(order.state is not before)
                checked += 1
        return {"orders_checked": checked, "moved": moved}
