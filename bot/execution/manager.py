"""The order manager: turns hand-offs into limit orders, and keeps every working order honest.

Per strategy instance, long only: `buy` when flat places a buy limit of `order_amount`; `sell` when long
places a sell limit for what the instance holds; a signal that repeats the current intent does nothing; an
opposite signal while the instance's own order is still working cancels it first (its filled part becomes
the position), then acts. Flat means holding less than the book's minimum amount (dust is reported, never
blocks). Each order is priced (`pricing`), risk-checked (`risk`), journaled before it is sent (`journal`),
then sent through the broker (paper or live: the only difference). Nothing is placed on a market while an
order there has an unknown outcome, or while the kill switch is on.

Hand-offs reach the manager only after their transaction committed (`Store.after_commit`), through a queue:
the feed never waits on the exchange. A hand-off committed but not acted on before a crash is picked up from
the store at the next start, while its candle is still fresh.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from bot.clock import Clock
from bot.domain import Book, Side
from bot.errors import BotError, OutcomeUnknown, Rejected, TemporaryError
from bot.events import DailyLossLimitReached, Evaluation, Event, EventBus, KillSwitchChanged
from bot.execution import pricing, risk
from bot.execution.balances import BalanceCache
from bot.execution.broker import Broker
from bot.execution.journal import Journal, JournalOrder
from bot.execution.snapshots import MARK_MAX_AGE_S
from bot.execution.states import OrderState, is_working
from bot.execution.tracker import Tracker
from bot.logs import get_logger
from bot.priority import Hold, OrdersFirst
from bot.settings import Settings, StrategySettings
from bot.signals.handoff import Handoffs
from bot.store import Store

log = get_logger("bot.execution")


@dataclass(frozen=True, slots=True)
class Decision:
    """What `OrderManager._decide` makes of a buy or sell hand-off before looking at the position."""

    side: Side
    skip: str | None = None  # nothing may be placed, and why (said in the log and on /status)
    repeat: bool = False  # the same intent is already working: nothing to do
    cancels: tuple[JournalOrder, ...] = ()  # the opposite orders still working, cancelled before acting

    @property
    def acts(self) -> bool:
        return self.skip is None and not self.repeat


class OrderManager:
    """Acts on hand-offs and follows working orders (see the module docstring)."""

    def __init__(self, settings: Settings, clock: Clock, store: Store, events: EventBus, journal: Journal,
                 broker: Broker, handoffs: Handoffs, balances: BalanceCache | None = None,
                 priority: OrdersFirst | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.store = store
        self.journal = journal
        self.broker = broker
        self.handoffs = handoffs
        self.tracker = Tracker(clock, journal, broker)
        self.events = events
        self._loss_told: set[tuple[str, datetime]] = set()  # (quote coin, UTC day) whose limit was announced
        self.instances: dict[str, StrategySettings] = {s.name: s for s in settings.strategies if s.enabled}
        self.limits = risk.Limits.from_settings(settings.risk)
        self.queue: asyncio.Queue[Evaluation] = asyncio.Queue()
        # While the execution task runs, from a hand-off queued until the batch that takes it has sent its
        # orders, work that can wait (the streams' evaluations) waits (`bot.priority`). Not while it does not:
        # the hand-offs of start-up's catch-up wait for `run`, and holding the catch-up's other candles back
        # for them would only make it slower (and its newest candles stale).
        self.priority = priority if priority is not None else OrdersFirst()
        self._hold: Hold | None = None
        self._running = False
        self._stopping = False  # the execution task was cancelled (the daemon stops)
        self.kill_switch = False
        self.skipped: dict[str, str] = {}  # instance → why its last signal placed nothing
        self.dust: dict[str, str] = {}
        # instance → a holding a sell could not place because it was worth less than the book's minimum
        # value: dust like a holding under the minimum amount, until a fill changes it.
        self._unsellable: dict[str, Decimal] = {}
        self._books: dict[str, Book] = {}
        self.balances = balances if balances is not None else BalanceCache(
            broker, clock, marker=lambda: journal.writes)
        self._balances_version = -1  # the journal's version at the last balance read
        self._kill_task: asyncio.Task[int] | None = None
        self.orphans: dict[str, dict[str, Any]] = {}
        self.strangers: list[dict[str, Any]] = []
        # Told (market, wall seconds) right before each place of a hand-off whose candle's fetch time is known:
        # the closed-candle-to-order latency (`/metrics`).
        self.on_request: Callable[[str, float], None] | None = None
        events.subscribe("execution", self.on_event, Evaluation, KillSwitchChanged)

    # -- inputs -----------------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        if isinstance(event, Evaluation) and event.handoff and event.instance in self.instances:
            # Acted on only once the hand-off is durable (never on a rolled-back one).
            self.store.after_commit(lambda ev=event: self._enqueue(ev))  # type: ignore[misc]
        elif isinstance(event, KillSwitchChanged):
            self.kill_switch = event.on
            if event.on:  # cancel everything now, not at the next follow
                why = f"kill switch: {event.reason}"
                self._kill_task = asyncio.get_running_loop().create_task(self.cancel_all(why))

    def _enqueue(self, ev: Evaluation) -> None:
        self.queue.put_nowait(ev)
        if self._running and self._hold is None:
            self._hold = self.priority.hold()

    def _release(self, *, unless_queued: bool = True) -> None:
        """End the hold once nothing waits in the queue (or now, `unless_queued=False`)."""
        if self._hold is not None and (not unless_queued or self.queue.empty()):
            self._hold.release()
            self._hold = None

    async def reconcile(self) -> None:
        """Start-up phase, before any order: the journal's unfinished orders to their true state."""
        self._books = await self.broker.books()
        summary = await self.tracker.reconcile()
        await self._read_balances()
        # What the order path keeps in memory is read from the journal now, not on the first signals.
        for name, cfg in self.instances.items():
            self.journal.position(name, self._books[cfg.market].base if cfg.market in self._books
                                  else cfg.market.split("-")[0])
        self.journal.day_flows(risk.day_start(self.clock.now()))
        self.orphans = self._orphans()
        log.info("execution.reconciled", broker=self.broker.kind, orphans=sorted(self.orphans) or None, **summary)
        for order in self.journal.unfinished():
            if order.instance not in self.instances and self.settings.execution.orphans == "cancel":
                await self.tracker.cancel(order, "orphan: its instance is no longer configured")
        if self.broker.kind == "live":
            known = {o.exchange_id for o in self.journal.unfinished() if o.exchange_id}
            strangers = [o for o in await self.broker.open_orders() if str(o.order_id) not in known]
            self.strangers = [{"exchange_id": o.order_id, "market": o.market, "side": o.side.value,
                               "price": str(o.price), "amount": str(o.amount)} for o in strangers]
            for o in strangers:
                log.warning("execution.unknown_exchange_order", exchange_id=o.order_id, market=o.market,
                            side=o.side.value, price=str(o.price), amount=str(o.amount),
                            cancel=self.settings.execution.cancel_unknown_orders)
                if self.settings.execution.cancel_unknown_orders:
                    await self.broker.cancel(o.order_id)

    async def run(self) -> None:
        """The supervised task: pending hand-offs from before a restart, then the queue, a batch at a time."""
        self._running = True
        try:
            restart: list[Evaluation] = []
            for h in self.handoffs.pending():
                age = self.clock.now() - datetime.fromisoformat(h.candle_time)
                if age > timedelta(seconds=2 * 60 + self.settings.market.stale_grace_seconds + 60):
                    self.handoffs.take(h.payload["instance"], datetime.fromisoformat(h.candle_time))
                    continue
                restart.append(_from_payload(h.payload, self.clock.now()))
            if restart:
                await self._act_to_the_end(restart)
            while True:
                batch = [await self.queue.get()]
                while not self.queue.empty():  # every hand-off already waiting: one candle's instances together
                    batch.append(self.queue.get_nowait())
                await self._act_to_the_end(batch)
        finally:
            self._running = False
            self._release(unless_queued=False)  # stopped: nothing may wait for this task any more

    async def _act_to_the_end(self, batch: list[Evaluation]) -> None:
        """`act_batch`, which a stop (this task cancelled) does not cut mid-request: a batch whose orders are
        on their way finishes first, so each records its outcome (cancelled mid-request, it would stay
        SUBMITTING while the exchange holds it, past on_stop's cancel), and sends nothing more. The daemon's
        stop bound limits the wait. The hand-offs pending from before a restart go the same way: a stop
        right after start-up once cut their place and left it so."""
        acting = asyncio.ensure_future(self.act_batch(batch))
        try:
            await asyncio.shield(acting)
        except asyncio.CancelledError:
            self._stopping = True  # the batch sends nothing more; what it sent is journaled
            await acting
            raise

    async def act_batch(self, batch: list[Evaluation]) -> None:
        """Act on hand-offs in order, sending each order as soon as it is decided; the bookkeeping that only
        follows a sent order up (journaling it OPEN with its exchange id, its first fills) waits until the
        whole batch was sent, and the hand-offs are taken in one transaction, so the last instance of a
        candle does not wait for the others' bookkeeping. An order sent but not yet journaled OPEN stays
        SUBMITTING meanwhile: it counts as working and reserved for risk, and if the process dies there the
        start-up reconciliation finds it on the exchange, as after any crash between send and answer."""
        sent: list[tuple[JournalOrder, int]] = []
        acted: list[Evaluation] = []
        try:
            await self._cancel_opposites(batch)
            await self._read_books(batch)
            for ev in batch:
                if self._stopping:  # the daemon stops: what was not begun stays pending for the next start
                    break
                if any(a.instance == ev.instance for a in acted):  # a second candle of one instance: settle first
                    await self._settle(sent)
                acted.append(ev)
                try:
                    await self._act_one(ev, sent)
                except BotError as err:  # the exchange said no or is down: this signal is lost, the next counts
                    log.warning("execution.act_failed", instance=ev.instance, kind=err.kind, error=str(err))
        finally:
            self._release()  # the batch's orders are sent: the bookkeeping can wait its turn like the rest
            await self._settle(sent)
            # Not synced: a hand-off that comes back after a power loss is acted on again, and the journal's
            # one order per (instance, candle) makes that a no-op.
            with self.store.transaction(durable=False):
                for ev in acted:
                    self.handoffs.take(ev.instance, ev.candle.time)

    async def _cancel_opposites(self, batch: list[Evaluation]) -> None:
        """The cancels a batch's opposite signals need, all at once before its first order: each is a round
        trip (in paper, a look at the market), and one after another they would hold back every later
        instance's order by one round trip each. Only for instances with one hand-off in the batch, as `_act`
        decides them (`_decide`; its own cancel then finds the order gone, or tries again if this one
        failed)."""
        if self._stopping:
            return
        counts = Counter(ev.instance for ev in batch)
        todo: list[tuple[JournalOrder, Side]] = []
        for ev in batch:
            cfg = self.instances.get(ev.instance)
            if cfg is None or counts[ev.instance] > 1:
                continue
            decision = self._decide(cfg, ev)
            if decision is not None and decision.acts:
                todo += [(o, decision.side) for o in decision.cancels]
        if len(todo) < 2:  # one cancel gains nothing from going first
            return
        done = await asyncio.gather(*(self.tracker.cancel(o, f"opposite signal ({side.value})") for o, side in todo),
                                    return_exceptions=True)
        for (order, _), result in zip(todo, done, strict=True):
            if isinstance(result, BotError):  # `_act` tries again
                log.warning("execution.cancel_failed", order=order.id, kind=result.kind, error=str(result))
            elif isinstance(result, BaseException):
                raise result

    async def _read_books(self, batch: list[Evaluation]) -> None:
        """The order books of the markets a batch will place on, read at once (after its cancels), so that
        pricing its orders one after another finds them read (`Snapshots`) instead of making a round trip per
        market; a failed read is left to the order that needs it. Only markets where an order is due (the
        position and working orders say so, as in `_act`): a signal that repeats the intent costs no request."""
        if self._stopping:
            return
        markets = sorted({cfg.market for ev in batch
                          if (cfg := self.instances.get(ev.instance)) is not None and self._order_due(cfg, ev)})
        if len(markets) > 1:
            await asyncio.gather(*(self.broker.order_book(m) for m in markets), return_exceptions=True)

    def _decide(self, cfg: StrategySettings, ev: Evaluation) -> Decision | None:
        """What `_act` does with a hand-off before its position is looked at, from what is known without a
        request: None for an action that is not a buy or a sell; else the side, and why nothing may be placed
        (`skip`), or that the same intent is already working (`repeat`), or the opposite working orders to
        cancel first. One function for `_act` and the batch's look-ahead (`_cancel_opposites`, `_order_due`),
        so they cannot disagree."""
        if ev.action not in ("buy", "sell"):
            return None
        side = Side(ev.action)
        if self.journal.has_unknown(cfg.market):
            return Decision(side, skip="an order on this market has an unknown outcome")
        if self.kill_switch:
            return Decision(side, skip="the kill switch is on")
        working = [o for o in self.journal.working(cfg.name) if is_working(o.state)]
        if any(o.side is side for o in working):
            return Decision(side, repeat=True)
        return Decision(side, cancels=tuple(o for o in working if o.side is not side))

    def _order_due(self, cfg: StrategySettings, ev: Evaluation) -> bool:
        """Whether `_act` would price an order for this hand-off, from what is known without a request."""
        book = self._books.get(cfg.market)
        decision = self._decide(cfg, ev)
        if book is None or decision is None or not decision.acts:
            return False
        flat = self._flat(cfg, self.journal.position(cfg.name, book.base), book)
        return flat if decision.side is Side.BUY else not flat

    def _flat(self, cfg: StrategySettings, held: Decimal, book: Book) -> bool:
        """Whether the instance holds only dust: less than the book's minimum amount, or exactly the holding
        a sell found worth less than the book's minimum value (it cannot be sold, so it never blocks a buy)."""
        return pricing.is_flat(held, book) or (held > 0 and self._unsellable.get(cfg.name) == held)

    async def _settle(self, sent: list[tuple[JournalOrder, int]]) -> None:
        """Journal sent orders OPEN with their exchange ids, then read their first fills."""
        opened = [self._opened(order, oid) for order, oid in sent]
        sent.clear()
        if self._stopping:  # their fills are read by the next start's reconciliation
            return
        for order in opened:
            try:
                await self.tracker.refresh(order, {int(order.exchange_id or 0)})
            except BotError as err:  # the next follow reads its fills
                log.warning("execution.refresh_failed", order=order.id, kind=err.kind, error=str(err))

    def _opened(self, order: JournalOrder, oid: int) -> JournalOrder:
        order = self.journal.move(order.id, OrderState.OPEN, exchange_id=str(oid))
        log.info("order.placed", order=order.id, instance=order.instance, market=order.market,
                 side=order.side.value, price=str(order.price), amount=str(order.amount), exchange_id=oid,
                 broker=self.broker.kind)
        return order

    async def act(self, ev: Evaluation) -> None:
        """Decide and place for one hand-off (at most one order per instance and candle)."""
        await self.act_batch([ev])

    async def _act_one(self, ev: Evaluation, sent: list[tuple[JournalOrder, int]]) -> None:
        cfg = self.instances.get(ev.instance)
        if cfg is not None and ev.action in ("buy", "sell"):
            await self._act(cfg, ev, Side(ev.action), sent)

    async def _act(self, cfg: StrategySettings, ev: Evaluation, side: Side,
                   sent: list[tuple[JournalOrder, int]]) -> JournalOrder | None:
        book = await self._book(cfg.market)
        held = self.journal.position(cfg.name, book.base)
        if pricing.is_flat(held, book) and held > 0:
            self.dust[cfg.name] = f"{held} {book.base} below the minimum {book.minimum_amount}"
        decision = self._decide(cfg, ev)
        if decision is None or decision.repeat:
            return None  # not an order's signal, or the same intent is already working
        if decision.skip is not None:
            self._skip(cfg, decision.skip)
            return None
        for o in decision.cancels:  # what the batch's cancels left working (`_cancel_opposites`)
            await self.tracker.cancel(o, f"opposite signal ({side.value})")
        held = self.journal.position(cfg.name, book.base)
        if side is Side.BUY and not self._flat(cfg, held, book):
            return None  # already long
        if side is Side.SELL and self._flat(cfg, held, book):
            return None  # nothing to sell
        amount = ev.order_amount if side is Side.BUY else pricing.sell_amount(held, book)
        order_book = await self.broker.order_book(cfg.market)
        priced = pricing.price_order(side, book, order_book, amount, self.settings.execution.price_offset_steps)
        if isinstance(priced, pricing.Skip):
            self._skip(cfg, priced.reason)
            if side is Side.SELL and priced.below_minimum_value:
                self._unsellable[cfg.name] = held
                self.dust[cfg.name] = (f"{held} {book.base} worth less than the book's minimum value "
                                       f"{book.minimum_value} {book.quote}")
            return None
        return await self._place(cfg, book, priced.side, priced.price, priced.amount, "entry" if side is Side.BUY
                                 else "exit", ev.candle.time, sent=sent, fetched_mono=ev.fetched_mono)

    async def _place(self, cfg: StrategySettings, book: Book, side: Side, price: Decimal, amount: Decimal,
                     purpose: str, candle_time: datetime | None, *,
                     sent: list[tuple[JournalOrder, int]] | None = None,
                     fetched_mono: float | None = None) -> JournalOrder | None:
        """Risk-check, journal, send, then journal it OPEN and read its first fills; with `sent`, a batch's
        list, the order is only sent and added there (`act_batch` settles it)."""
        proposal = risk.Proposal.on_book(cfg.name, book, side, price, amount)
        state = await self._risk_state(book)
        verdict = risk.check(proposal, self.limits, state)
        self._announce_loss_limit(proposal.quote, state)
        if isinstance(verdict, risk.Denied):
            self._skip(cfg, f"risk: {verdict.reason}")
            return None
        order = self.journal.intend(cfg.name, cfg.market, side, price, amount, purpose, candle_time)
        if order is None:
            return None  # this candle already placed its order (an evaluation that ran twice)
        if fetched_mono is not None and self.on_request is not None:
            self.on_request(cfg.market, time.monotonic() - fetched_mono)
        try:
            oid = await self.broker.place(cfg.market, side, price, amount)
        except Rejected as err:
            return self.journal.move(order.id, OrderState.REJECTED, note=str(err)[:200])
        except TemporaryError as err:
            return self.journal.move(order.id, OrderState.CANCELLED, note=f"not placed: {err.kind}")
        except OutcomeUnknown as err:
            log.warning("order.outcome_unknown", order=order.id, market=cfg.market, error=str(err))
            return self.journal.move(order.id, OrderState.UNKNOWN, note="the place answer was lost")
        self.skipped.pop(cfg.name, None)
        if sent is not None:
            sent.append((order, oid))
            return order
        return await self.tracker.refresh(self._opened(order, oid), {oid})

    def _announce_loss_limit(self, coin: str, state: risk.RiskState) -> None:
        """`DailyLossLimitReached`, once per quote coin and UTC day, when an order meets the reached limit."""
        limit = self.limits.daily_loss_limit.get(coin)
        pnl = state.pnl_today.get(coin, Decimal(0))
        day = risk.day_start(self.clock.now())
        if limit is None or pnl > -limit or (coin, day) in self._loss_told:
            return
        self._loss_told = {(c, d) for c, d in self._loss_told if d == day} | {(coin, day)}
        log.warning("risk.daily_loss_limit_reached", coin=coin, pnl=str(pnl), limit=str(limit))
        self.events.publish(DailyLossLimitReached(at=self.clock.now(), coin=coin, pnl=pnl, limit=limit))

    def _skip(self, cfg: StrategySettings, reason: str) -> None:
        self.skipped[cfg.name] = reason
        log.info("order.skipped", instance=cfg.name, market=cfg.market, reason=reason)

    # -- following ------------------------------------------------------------------------------------------

    async def follow(self) -> None:
        """A job: observe (paper), account fills, settle what left the book, TTL, stops, kill switch."""
        await self.broker.observe()
        working = [o for o in self.journal.unfinished() if is_working(o.state)]
        if working or self.kill_switch:
            await self._follow_working(working)
        await self._read_balances(if_changed=True)
        await self._watch_stops()  # positions without a working order need watching too

    async def _follow_working(self, working: list[JournalOrder]) -> None:
        by_market: dict[str, set[int]] = {}
        for market in sorted({o.market for o in working}):
            by_market[market] = {o.order_id for o in await self.broker.open_orders(market)}
        now = self.clock.now()
        for order in working:
            order = await self.tracker.refresh(order, by_market.get(order.market, set()))
            if not is_working(order.state):
                continue
            cfg = self.instances.get(order.instance)
            age = (now - datetime.fromisoformat(order.created_at)).total_seconds()
            if self.kill_switch:
                await self.tracker.cancel(order, "kill switch")
            elif cfg is not None and age > cfg.order_ttl_seconds and order.state in (
                    OrderState.OPEN, OrderState.PARTIALLY_FILLED):
                await self.tracker.cancel(order, f"ttl {cfg.order_ttl_seconds}s")

    async def _watch_stops(self) -> None:
        """Exits the exchange cannot hold: stop-loss and take-profit, on the book, with a marketable limit."""
        for cfg in self.instances.values():
            if (cfg.stop_loss_pct is None and cfg.take_profit_pct is None) or self.kill_switch:
                continue
            book = await self._book(cfg.market)
            held = self.journal.position(cfg.name, book.base)
            entry = self.journal.entry_price(cfg.name)
            if self._flat(cfg, held, book) or entry is None:
                continue
            if any(is_working(o.state) for o in self.journal.working(cfg.name)):
                continue
            order_book = await self.broker.order_book(cfg.market)
            bid = pricing.best_bid(order_book)
            if bid is None:
                continue
            change = (bid - entry) / entry * 100
            purpose = ("stop_loss" if cfg.stop_loss_pct is not None and change <= -cfg.stop_loss_pct else
                       "take_profit" if cfg.take_profit_pct is not None and change >= cfg.take_profit_pct else "")
            if not purpose:
                continue
            amount = pricing.sell_amount(held, book)
            price = pricing.marketable_price(Side.SELL, order_book, amount, book)
            if isinstance(price, pricing.Skip):
                self._skip(cfg, f"{purpose}: {price.reason}")
                continue
            log.warning("order.exit_triggered", instance=cfg.name, purpose=purpose, entry=str(entry), bid=str(bid))
            await self._place(cfg, book, Side.SELL, price, amount, purpose, None)

    async def cancel_all(self, why: str) -> int:
        """Cancel every working order (stop with `on_stop = "cancel"`, kill switch); returns how many. A place
        whose outcome is unknown is looked for first: one that landed is adopted and cancelled with the others
        (left unknown, it would stay open on the exchange); one not found yet stays unknown for the next look."""
        n = 0
        for order in self.journal.unfinished():
            if order.state is OrderState.UNKNOWN:
                try:
                    order = await self.tracker.resolve_unknown(order)
                except BotError as err:
                    log.warning("execution.unknown_unresolved", order=order.id, kind=err.kind, error=str(err))
                    continue
            if order.state in (OrderState.OPEN, OrderState.PARTIALLY_FILLED, OrderState.CANCELLING):
                await self.tracker.cancel(order, why)
                n += 1
        return n

    # -- state for risk and status ----------------------------------------------------------------------------

    async def _book(self, market: str) -> Book:
        if market not in self._books:
            self._books = await self.broker.books()
        return self._books[market]

    async def _read_balances(self, *, if_changed: bool = False) -> None:
        """Read the balances into the shared cache; with `if_changed`, only when a fill was accounted or an
        order finished since the last read (what moves them), so a quiet follow costs no request."""
        if if_changed and self.journal.version == self._balances_version:
            return
        version = self.journal.version
        await self.balances.read()
        self._balances_version = version

    async def _risk_state(self, book: Book) -> risk.RiskState:
        working = [o for o in self.journal.unfinished() if is_working(o.state)]
        reserved: dict[str, Decimal] = {}
        for o in working:
            # What the balance read cannot show yet: intents not frozen on the exchange, and orders placed
            # after the read (their hold is not in it; reserved whole, to be safe).
            read_at = self.balances.read_at
            if o.state in (OrderState.SUBMITTING, OrderState.UNKNOWN) or (
                    read_at is None or datetime.fromisoformat(o.created_at) >= read_at):
                ob = await self._book(o.market)
                coin = ob.quote if o.side is Side.BUY else ob.base
                need = o.price * o.amount if o.side is Side.BUY else o.amount
                reserved[coin] = reserved.get(coin, Decimal(0)) + need
        available = {c: b.available for c, b in self.balances.value.items()}
        positions = {name: self.journal.position(name, (await self._book(cfg.market)).base)
                     for name, cfg in self.instances.items()}
        return risk.RiskState(open_orders=len(working), pnl_today=await self._pnl_today(),
                              available=available, reserved=reserved, positions=positions,
                              kill_switch=self.kill_switch)

    async def _pnl_today(self) -> dict[str, Decimal]:
        """Today's realised and unrealised PnL per quote coin: cash flow of today's fills plus today's
        position change marked at the book's mid (a book up to `MARK_MAX_AGE_S` old)."""
        pnl, moved = self.journal.day_flows(risk.day_start(self.clock.now()))
        for market, qty in moved.items():
            if qty:
                ob = await self.broker.order_book(market, max_age_s=MARK_MAX_AGE_S)
                bid, ask = pricing.best_bid(ob), pricing.best_ask(ob)
                if bid is not None and ask is not None:
                    quote = market.split("-")[1]
                    pnl[quote] = pnl.get(quote, Decimal(0)) + qty * (bid + ask) / 2
        return pnl

    def _orphans(self) -> dict[str, dict[str, Any]]:
        """Instances the journal knows that are not configured any more: open orders and what they hold."""
        out: dict[str, dict[str, Any]] = {}
        for instance, market in self.journal.instances():
            if instance in self.instances:
                continue
            held = self.journal.position(instance, market.split("-")[0])
            working = [o.id for o in self.journal.working(instance) if is_working(o.state)]
            if held or working:
                out[instance] = {"market": market, "position": str(held), "working_orders": working}
        return out

    def status(self) -> dict[str, Any]:
        working = [o for o in self.journal.unfinished()]
        return {
            "broker": self.broker.kind, "kill_switch": self.kill_switch,
            "working_orders": [{"order": o.id, "instance": o.instance, "market": o.market, "side": o.side.value,
                                "price": str(o.price), "amount": str(o.amount), "filled": str(o.filled),
                                "state": o.state.value, "exchange_id": o.exchange_id} for o in working],
            "unresolved": {str(k): v for k, v in self.tracker.unresolved.items()},
            "positions": {name: str(self.journal.position(name, cfg.market.split("-")[0]))
                          for name, cfg in self.instances.items()},
            "skipped": dict(self.skipped), "dust": dict(self.dust), "orphans": dict(self.orphans),
            "unknown_exchange_orders": list(self.strangers),
            "balances": {c: {"available": str(b.available), "frozen": str(b.frozen)}
                         for c, b in self.balances.value.items()},
            "marks": {m: str(v) for m, v in sorted(self.broker.marks().items())},
            "orders_first": self.priority.status(),
        }


def _from_payload(p: dict[str, Any], now: datetime) -> Evaluation:
    """A stored hand-off as the evaluation it was (enough of it to act on)."""
    from bot.domain import Candle

    t = p["candle"] if isinstance(p["candle"], datetime) else datetime.fromisoformat(str(p["candle"]))
    close = Decimal(str(p["close"]))
    candle = Candle(t, close, close, close, close, Decimal(0))
    return Evaluation(at=now, instance=p["instance"], strategy=p["strategy"], market=p["market"],
                      stream=p["stream"], candle=candle, action=p["action"], reason=p["reason"], values={},
                      actionable=True, note="", order_amount=Decimal(str(p["order_amount"])),
                      ttl_seconds=int(p["ttl_seconds"]), handoff=True)
