"""The wallet watcher: balances, deposits and withdrawals, every change an event, logged and recorded once.

Each poll (a job every `wallet.poll_seconds` clock seconds) reads, in this order: the balances (through the
broker, as execution does: the exchange account live, the paper account on paper), then, live only, the
deposits, the withdrawals and (when a total moved or something is still unexplained) the account's fills
since the last poll. Paper never sends a private request: its fills come from the journal.

What it saw is then compared with what the store remembers, in **one transaction**: new and changed
transfers (deposit seen, deposit confirmed, withdrawal status changed, withdrawal failed with its refund),
fills accounted, balances changed with what explains them (`bot.wallet.ledger`), and unexplained changes
flagged (event, alarm on `/status` and `/metrics`). The events are published inside that transaction, so
the recorder's outbox rows (datasets `balances` and `transfers`) commit with the state; the log lines are
written once it committed. A restart therefore neither repeats an event (the store already has it) nor
misses one (the store still has the old state to compare with).

The CoinBTR budget is shared with execution: every wallet request is `LOW` priority (the limiter serves
execution first), and a poll is put off while requests wait for the limiter or the window is mostly used
(`budget_allows`), at most `MAX_DEFERRALS` times in a row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.clients.coinbtr import CoinbtrClient
from bot.clients.coinbtr_wire import BALANCE_RESOLUTION
from bot.clock import Clock
from bot.domain import Balance, Deposit, Fill, Withdrawal
from bot.events import AlarmCleared, AlarmRaised, BalanceChanged, BalancesObserved, BalanceUnexplained, EventBus
from bot.execution.balances import BalanceCache
from bot.execution.broker import Broker
from bot.execution.journal import Journal
from bot.execution.states import OrderState, is_working
from bot.logs import get_logger
from bot.recorder.outbox import ts_text
from bot.settings import Settings
from bot.store import Store
from bot.wallet import ledger
from bot.wallet.ledger import ZERO, Hold
from bot.wallet.sweeper import Sweeper
from bot.wallet.transfers import Emitter, TransferBook, write

log = get_logger("bot.wallet")

WALLET_REQUESTS = 5  # what one live poll may send: balances, deposits, withdrawals, two pages of fills
BUDGET_SHARE = 0.75  # a poll waits while the window is fuller than this share of the limit
MAX_DEFERRALS = 3  # ... but never more polls than this in a row
ALARM_HOLD_S = 24 * 3600.0  # an unexplained change stays an alarm this long (clock seconds)
HELD_STATES = frozenset({OrderState.OPEN, OrderState.PARTIALLY_FILLED, OrderState.CANCELLING})
IN_DOUBT = frozenset({OrderState.SUBMITTING, OrderState.UNKNOWN})


def budget_allows(snapshot: Mapping[str, Any], needed: int = WALLET_REQUESTS, share: float = BUDGET_SHARE) -> bool:
    """Whether a wallet poll may go now: nobody waits for the limiter and `needed` more requests keep the
    rolling window under `share` of its limit."""
    if int(snapshot.get("queued", 0)) > 0 or float(snapshot.get("paused_for_s", 0.0)) > 0:
        return False
    return int(snapshot.get("in_window", 0)) + needed <= int(snapshot.get("limit", 0)) * share


class WalletWatcher:
    """Polls the wallet and turns what changed into events (see the module docstring)."""

    def __init__(self, settings: Settings, clock: Clock, store: Store, events: EventBus, journal: Journal,
                 broker: Broker, client: CoinbtrClient | None = None, sweeper: Sweeper | None = None,
                 balances: BalanceCache | None = None) -> None:
        self.mode = settings.mode
        self.live = settings.mode == "live"
        if self.live and client is None:
            raise ValueError("the live wallet watcher needs the CoinBTR client")
        self.clock = clock
        self.store = store
        self.events = events
        self.journal = journal
        self.broker = broker
        self.balance_cache = balances if balances is not None else BalanceCache(broker, clock)  # shared
        self.client = client
        self.sweeper = sweeper
        self.emit = Emitter(store, clock, events)
        self.transfers = TransferBook(store, self.emit)
        self.polls = 0
        self.deferred = 0
        self.last_poll: datetime | None = None
        self._kv = f"wallet.{self.mode}"

    # -- the job --------------------------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Start-up phase: raise the alarms still held, take one look, resolve sweeps left unresolved by a
        crash (never a new sweep before READY)."""
        for coin, a in self._unexplained().items():
            self.events.publish(AlarmRaised(at=self.clock.now(), name=f"wallet:unexplained:{coin}",
                                            detail=str(a["detail"])))
        await self.poll(sweep=False)
        log.info("wallet.reconciled", mode=self.mode, coins=sorted(self.balances()),
                 sweeps_open=len(self.sweeper.journal.open()) if self.sweeper else 0)

    async def poll(self, sweep: bool = True) -> None:
        """One look at the wallet (the scheduled job)."""
        if self.live and self.client is not None and self.deferred < MAX_DEFERRALS and \
                not budget_allows(self.client.http.limiter.snapshot()):
            self.deferred += 1
            log.info("wallet.poll_deferred", reason="execution is using the CoinBTR budget", times=self.deferred)
            return
        self.deferred = 0
        balances = {b.coin.lower(): b for b in (await self.balance_cache.read()).values()}
        read_at = self.clock.now()
        # The bot's own orders explain the frozen part only if the journal did not move since the read was
        # asked (an order placed, filled or cancelled meanwhile is in one and not the other).
        marker = self.balance_cache.read_marker
        deposits: list[Deposit] = []
        withdrawals: list[Withdrawal] = []
        fills: list[Fill] = []
        if self.live and self.client is not None:
            deposits = await self.client.wallet.deposits()
            withdrawals = await self.client.wallet.withdrawals()
            cursor = self.store.kv_get(f"{self._kv}.fills_since")
            if cursor is not None and self._fills_needed(balances):
                fills = await self.client.wallet.fills_since(cursor)
        with self.store.transaction():
            self._apply(balances, deposits, withdrawals, fills, read_at,
                        settled=marker is None or marker == self.journal.writes)
        self.polls += 1
        self.last_poll = read_at
        if sweep and self.sweeper is not None:
            await self.sweeper.cycle(balances, self.transfers.withdrawal_status)
        elif self.sweeper is not None:  # reconcile: follow only
            await self.sweeper.follow(self.transfers.withdrawal_status)

    def _fills_needed(self, balances: Mapping[str, Balance]) -> bool:
        stored = self._stored()
        if self.store.query("SELECT 1 FROM wallet_fills WHERE mode = ? AND state = 'unknown' LIMIT 1", (self.mode,)):
            return True
        for coin in set(stored) | set(balances):
            b, row = balances.get(coin), stored.get(coin)
            total = b.total if b else ZERO
            if row is None or total != Decimal(row["available"]) + Decimal(row["frozen"]) or Decimal(row["residual"]):
                return True
        return False

    # -- one poll's changes, inside its transaction ------------------------------------------------------------

    def _apply(self, balances: Mapping[str, Balance], deposits: Sequence[Deposit],
               withdrawals: Sequence[Withdrawal], fills: Sequence[Fill], read_at: datetime, *,
               settled: bool = True) -> None:
        stored = self._stored()
        first = not stored
        explained: dict[str, dict[str, Decimal]] = {}
        for d in deposits:
            self.transfers.deposit(d, first, explained)
        for w in withdrawals:
            self.transfers.withdrawal(w, first, explained)
        if first:
            self._baseline_fills(read_at)
        else:
            self._account_fills(fills, explained)
        held = self._holds() if settled else None  # not settled: judge the split at the next poll
        flagged = self._split_flagged()
        observed: dict[str, dict[str, Decimal]] = {}
        changed: list[str] = []
        for coin in sorted(set(balances) | set(stored)):
            b = balances.get(coin) or Balance(coin, ZERO, ZERO, ZERO)
            observed[coin] = {"available": b.available, "frozen": b.frozen, "pending": b.pending}
            row = stored.get(coin)
            if row is None:
                before = Balance(coin, ZERO, ZERO, ZERO) if not first else b
                expected, previous, prev_split = (b.total if first else ZERO), ZERO, ZERO
            else:
                before = Balance(coin, Decimal(row["available"]), Decimal(row["frozen"]), Decimal(row["pending"]))
                expected, previous = Decimal(row["expected"]), Decimal(row["residual"])
                prev_split = Decimal(row["split_off"])
            reasons = explained.get(coin, {})
            verdict = ledger.judge(b.total, expected + sum(reasons.values(), ZERO), previous,
                                   BALANCE_RESOLUTION if self.live else ZERO)
            if (b.available, b.frozen, b.pending) != (before.available, before.frozen, before.pending):
                changed.append(coin)
                self.emit.event(BalanceChanged(
                    at=self.clock.now(), mode=self.mode, coin=coin, available=b.available, frozen=b.frozen,
                    pending=b.pending, delta=b.total - before.total, available_delta=b.available - before.available,
                    frozen_delta=b.frozen - before.frozen, pending_delta=b.pending - before.pending,
                    explained=dict(reasons), unexplained=verdict.residual), "wallet.balance_changed")
            if verdict.flagged:
                self._flag_total(coin, verdict.residual)
            split = prev_split if held is None else b.frozen - held.get(coin, ZERO)
            if held is not None:
                self._judge_split(coin, split, prev_split, flagged)
            self._clear_old(coin)
            write(
                self.store,
                "INSERT INTO wallet_balances (mode, coin, available, frozen, pending, expected, residual, split_off, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(mode, coin) DO UPDATE SET "
                "available = excluded.available, frozen = excluded.frozen, pending = excluded.pending, "
                "expected = excluded.expected, residual = excluded.residual, split_off = excluded.split_off, "
                "updated_at = excluded.updated_at",
                (self.mode, coin, str(b.available), str(b.frozen), str(b.pending), str(verdict.expected),
                 str(ZERO if verdict.flagged else verdict.residual), str(split), ts_text(read_at)))
        if changed or first:
            self.events.publish(BalancesObserved(at=self.clock.now(), mode=self.mode, balances=observed,
                                                 changed=tuple(changed)))

    def _baseline_fills(self, read_at: datetime) -> None:
        """The first look: what traded before it is part of the starting totals, never accounted again."""
        if self.live:
            self.store.kv_set(f"{self._kv}.fills_since", read_at)
            return
        write(
            self.store,
            "INSERT OR IGNORE INTO wallet_fills (mode, fill_id, order_id, market, side, price, amount, fee, fee_coin, "
            "state, at, seen_at) SELECT ?, fill_id, order_id, market, side, price, amount, fee, fee_coin, 'baseline', "
            "at, ? FROM fills WHERE broker = ?", (self.mode, ts_text(read_at), self.journal.broker))

    def _account_fills(self, fills: Sequence[Fill], explained: dict[str, dict[str, Decimal]]) -> None:
        """New fills (live: the exchange's; paper: the journal's) and fills still waiting for their order."""
        now = ts_text(self.clock.now())
        rows: list[tuple[str, str, str, str, Decimal, Decimal, Decimal, str, str]] = []
        if self.live:
            for f in fills:
                rows.append((f"live:{f.id}", str(f.order_id), f.market, f.side.value, f.price, f.amount,
                             f.fee_amount, f.fee_coin, ts_text(f.created_at)))
            if fills:
                newest = max(f.created_at for f in fills)
                self.store.kv_set(f"{self._kv}.fills_since", newest)
        else:
            for r in self.store.query(
                    "SELECT * FROM fills f WHERE broker = ? AND NOT EXISTS (SELECT 1 FROM wallet_fills w WHERE "
                    "w.mode = ? AND w.fill_id = f.fill_id)", (self.journal.broker, self.mode)):
                rows.append((r["fill_id"], str(r["order_id"]), r["market"], r["side"], Decimal(r["price"]),
                             Decimal(r["amount"]), Decimal(r["fee"]), r["fee_coin"], r["at"]))
        for fill_id, order_id, market, side, price, amount, fee, fee_coin, at in rows:
            if self.store.query("SELECT 1 FROM wallet_fills WHERE mode = ? AND fill_id = ?", (self.mode, fill_id)):
                continue
            write(
                self.store,
                "INSERT INTO wallet_fills (mode, fill_id, order_id, market, side, price, amount, fee, fee_coin, state, "
                "at, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'unknown', ?, ?)",
                (self.mode, fill_id, order_id, market, side, str(price), str(amount), str(fee), fee_coin, at, now))
        for r in self.store.query("SELECT * FROM wallet_fills WHERE mode = ? AND state = 'unknown'", (self.mode,)):
            if self.live and self.journal.by_exchange_id(r["order_id"]) is None:
                continue  # not the bot's order (yet): unexplained unless the journal claims it by the next poll
            for coin, reason, amount in ledger.fill_effects(r["market"], r["side"], Decimal(r["price"]),
                                                            Decimal(r["amount"]), Decimal(r["fee"]), r["fee_coin"]):
                ledger.add(explained, coin, reason, amount)
            write(self.store, "UPDATE wallet_fills SET state = 'accounted' WHERE mode = ? AND fill_id = ?",
                             (self.mode, r["fill_id"]))

    def _holds(self) -> dict[str, Decimal] | None:
        """What the bot's working orders hold, per coin; None while an order's outcome is in doubt."""
        orders = [o for o in self.journal.unfinished() if is_working(o.state) or o.state in IN_DOUBT]
        if any(o.state in IN_DOUBT for o in orders):
            return None
        # What the fills seen here say an order filled, when the journal has not followed it yet.
        seen: dict[str, Decimal] = {}
        for r in self.store.query("SELECT order_id, amount FROM wallet_fills WHERE mode = ?", (self.mode,)):
            seen[r["order_id"]] = seen.get(r["order_id"], ZERO) + Decimal(r["amount"])
        held: list[Hold] = []
        for o in orders:
            if o.state not in HELD_STATES:
                continue
            filled = max(o.filled, seen.get((o.exchange_id or "") if self.live else str(o.id), ZERO))
            held.append(Hold(o.market, o.side.value, o.price, max(ZERO, o.amount - filled)))
        return ledger.holds(held)

    def _flag_total(self, coin: str, residual: Decimal) -> None:
        unknown = [r["fill_id"] for r in self.store.query(
            "SELECT fill_id, market FROM wallet_fills WHERE mode = ? AND state = 'unknown'", (self.mode,))
            if coin in r["market"].split("-")]
        detail = (f"{coin} total moved by {residual} that no fill, fee or transfer of the bot explains "
                  f"(for two polls)" + (f"; fills of orders the journal does not know: {', '.join(unknown)}"
                                        if unknown else ""))
        write(self.store, "UPDATE wallet_fills SET state = 'flagged' WHERE mode = ? AND state = 'unknown' AND "
                         "(market LIKE ? OR market LIKE ?)", (self.mode, f"{coin}-%", f"%-{coin}"))
        self.emit.event(BalanceUnexplained(at=self.clock.now(), mode=self.mode, coin=coin, part="total",
                                           amount=residual, detail=detail), "wallet.unexplained", warn=True)
        self.events.publish(AlarmRaised(at=self.clock.now(), name=f"wallet:unexplained:{coin}", detail=detail))
        held = self._unexplained()
        held[coin] = {"amount": str(residual), "at": self.clock.now().isoformat(), "detail": detail}
        self.store.kv_set(f"{self._kv}.unexplained", held)

    def _judge_split(self, coin: str, split: Decimal, previous: Decimal, flagged: set[str]) -> None:
        name = f"wallet:split:{coin}"
        if split and split == previous and coin not in flagged:  # the same gap at two polls in a row
            detail = (f"{coin} frozen is {split} away from what the bot's open orders hold (for two polls): "
                      "an order the bot did not place?")
            self.emit.event(BalanceUnexplained(at=self.clock.now(), mode=self.mode, coin=coin, part="split",
                                               amount=split, detail=detail), "wallet.unexplained", warn=True)
            self.events.publish(AlarmRaised(at=self.clock.now(), name=name, detail=detail))
            self.store.kv_set(f"{self._kv}.split_flagged", sorted(flagged | {coin}))
        elif not split and coin in flagged:
            self.events.publish(AlarmCleared(at=self.clock.now(), name=name))
            self.store.kv_set(f"{self._kv}.split_flagged", sorted(flagged - {coin}))

    def _clear_old(self, coin: str) -> None:
        held = self._unexplained()
        a = held.get(coin)
        if a and (self.clock.now() - datetime.fromisoformat(str(a["at"]))).total_seconds() > ALARM_HOLD_S:
            del held[coin]
            self.store.kv_set(f"{self._kv}.unexplained", held)
            self.events.publish(AlarmCleared(at=self.clock.now(), name=f"wallet:unexplained:{coin}"))

    # -- reading ------------------------------------------------------------------------------------------------

    def _stored(self) -> dict[str, Any]:
        return {r["coin"]: r for r in self.store.query("SELECT * FROM wallet_balances WHERE mode = ?", (self.mode,))}

    def _unexplained(self) -> dict[str, dict[str, Any]]:
        return dict(self.store.kv_get(f"{self._kv}.unexplained", {}))

    def _split_flagged(self) -> set[str]:
        return set(self.store.kv_get(f"{self._kv}.split_flagged", []))

    def balances(self) -> dict[str, Balance]:
        """The balances of the last poll, as stored."""
        return {c: Balance(c, Decimal(r["available"]), Decimal(r["frozen"]), Decimal(r["pending"]))
                for c, r in self._stored().items()}

    def balance_values(self) -> dict[tuple[str, ...], float]:
        """`(coin, field)` → amount, for the balances gauge."""
        out: dict[tuple[str, ...], float] = {}
        for c, b in self.balances().items():
            out.update({(c, "available"): float(b.available), (c, "frozen"): float(b.frozen),
                        (c, "pending"): float(b.pending)})
        return out

    def status(self) -> dict[str, Any]:
        """The `/status` section `wallet`."""
        out: dict[str, Any] = {
            "mode": self.mode, "source": "exchange account" if self.live else "paper account",
            "polls": self.polls, "last_poll": self.last_poll.isoformat() if self.last_poll else None,
            "balances": {c: {"available": f"{b.available:f}", "frozen": f"{b.frozen:f}", "pending": f"{b.pending:f}",
                             "total": f"{b.total:f}"} for c, b in self.balances().items()},
            "unexplained": self._unexplained(),
            "split_off": {c: r["split_off"] for c, r in self._stored().items() if Decimal(r["split_off"])},
            "recent_transfers": self.transfers.recent(self.mode),
        }
        if self.sweeper is not None:
            out["sweeps"] = self.sweeper.status()
            out["swept_today"] = out["sweeps"]["swept_today"]
        else:
            out["sweeps"] = "off"
            out["swept_today"] = {}
        return out
