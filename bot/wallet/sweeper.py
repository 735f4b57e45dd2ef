"""The sweeper: runs the configured sweeps after each wallet poll (live mode, `withdrawals_enabled` only).

Each cycle first follows the sweeps that are not final (resolves unknown outcomes from `listwithdraws`,
never resending; moves sent ones to confirmed or failed as their withdrawal's status says), then, per
configured coin with nothing in flight, plans (`sweeps.plan`) and sends one withdrawal, write-ahead.

The destination is never a parameter: a sweep is built from its `[[wallet.sweeps]]` entry, and the send
refuses any address that is not one of the configured ones, so a sweep anywhere else cannot happen.
A withdrawal that failed after acceptance is reported (event, warning, `/status`) and its coin is left
alone for the rest of the cycle: it is retried on the next eligible one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from bot.clients.coinbtr import CoinbtrClient, Currency
from bot.clock import Clock
from bot.domain import Balance, Side
from bot.errors import BotError, OutcomeUnknown, Rejected, TemporaryError
from bot.events import EventBus
from bot.execution.journal import Journal
from bot.execution.states import is_working
from bot.logs import get_logger
from bot.settings import Settings, SweepSettings
from bot.store import Store
from bot.wallet.sweeps import (
    UNRESOLVED,
    UNRESOLVED_CHECKS,
    UNRESOLVED_GRACE_S,
    Plan,
    Sweep,
    SweepJournal,
    SweepState,
    plan,
)

log = get_logger("bot.wallet.sweeper")

CURRENCIES_MAX_AGE_S = 3600.0  # clock seconds the exchange's withdrawal fees and minimums are kept for

# Positions the strategy instances hold, per coin: (held, of which frozen by their working sells).
Holdings = Callable[[str], tuple[Decimal, Decimal]]
# The watcher's last seen status of a withdrawal by id (None when it has not seen it).
StatusOf = Callable[[int], str | None]


def holdings(journal: Journal) -> Holdings:
    """What the strategy instances (configured or orphaned) hold in a coin, from the journal: positions
    in markets whose base coin it is, and the part their working sell orders keep frozen."""
    def held(coin: str) -> tuple[Decimal, Decimal]:
        total = sum((journal.position(i, coin) for i, m in journal.instances() if m.split("-")[0] == coin),
                    Decimal(0))
        frozen = sum((o.remaining for o in journal.unfinished() if o.side is Side.SELL and is_working(o.state)
                      and o.market.split("-")[0] == coin), Decimal(0))
        return max(total, Decimal(0)), frozen
    return held


class Sweeper:
    """Runs `[[wallet.sweeps]]` (see the module docstring)."""

    def __init__(self, settings: Settings, clock: Clock, store: Store, events: EventBus, client: CoinbtrClient,
                 holdings: Holdings) -> None:
        if settings.mode != "live" or not settings.wallet.withdrawals_enabled:
            raise ValueError("sweeps run only in live mode with wallet.withdrawals_enabled = true")
        self.clock = clock
        self.client = client
        self.holdings = holdings
        self.config: dict[str, SweepSettings] = {s.coin: s for s in settings.wallet.sweeps}
        self.allowed = frozenset((s.coin, s.address) for s in settings.wallet.sweeps)
        self.journal = SweepJournal(store, clock, events)
        self.waiting: dict[str, str] = {}  # coin → why nothing was swept at the last cycle
        self._currencies: dict[str, Currency] = {}
        self._currencies_at: float | None = None

    async def follow(self, status_of: StatusOf) -> set[str]:
        """Follow every sweep not final yet; returns the coins whose withdrawal failed just now."""
        failed_now: set[str] = set()
        for sweep in self.journal.open():
            after = await self._follow(sweep, status_of)
            if after.state is SweepState.FAILED:
                failed_now.add(after.coin)
        return failed_now

    async def cycle(self, balances: Mapping[str, Balance], status_of: StatusOf) -> None:
        """Follow what is in flight, then sweep what the policy allows."""
        failed_now = await self.follow(status_of)
        for coin, cfg in self.config.items():
            if coin in failed_now:
                self.waiting[coin] = "its last withdrawal failed this cycle: retried on the next one"
                continue
            busy = self.journal.open(coin)
            if busy:
                self.waiting[coin] = f"sweep {busy[0].id} is {busy[0].state.value}: one in flight per coin"
                continue
            await self._sweep(cfg, balances.get(coin))

    # -- following ----------------------------------------------------------------------------------------

    async def _follow(self, sweep: Sweep, status_of: StatusOf) -> Sweep:
        if sweep.state in UNRESOLVED:
            return await self._resolve(sweep)
        if sweep.state is SweepState.SENT and sweep.withdrawal_id is not None:
            status = status_of(sweep.withdrawal_id)
            if status == "confirmed":
                return self.journal.move(sweep.id, SweepState.CONFIRMED)
            if status == "failed":
                log.warning("sweep.withdrawal_failed", sweep=sweep.id, coin=sweep.coin,
                            withdrawal_id=sweep.withdrawal_id, refund=str(sweep.amount + sweep.fee))
                return self.journal.move(sweep.id, SweepState.FAILED,
                                         note="the withdrawal failed after it was accepted; refunded")
        return sweep

    async def _resolve(self, sweep: Sweep) -> Sweep:
        """An intent whose answer never arrived: find its withdrawal, never send again."""
        try:
            found = await self.client.wallet.find_withdrawal(
                sweep.coin, sweep.address, sweep.amount, sweep.intended_at,
                exclude_ids=self.journal.claimed_ids())
        except OutcomeUnknown as err:  # several candidates: stays unresolved, blocking its coin
            note = f"unresolved: {err}"
            log.warning("sweep.ambiguous", sweep=sweep.id, coin=sweep.coin, note=note)
            if sweep.state is SweepState.INTENDED:
                return self.journal.move(sweep.id, SweepState.UNKNOWN, note=note)
            return self.journal.checked(sweep.id, note)
        except BotError as err:
            log.warning("sweep.resolve_failed", sweep=sweep.id, kind=err.kind, error=str(err))
            return sweep
        if found is not None:
            return self.journal.move(sweep.id, SweepState.SENT, withdrawal_id=found.id,
                                     note=f"found in listwithdraws ({found.status.value})")
        checked = self.journal.checked(sweep.id, "not in listwithdraws yet")
        age = (self.clock.now() - sweep.intended_at).total_seconds()
        if checked.checks >= UNRESOLVED_CHECKS and age >= UNRESOLVED_GRACE_S:
            return self.journal.move(sweep.id, SweepState.NOT_SENT,
                                     note=f"not in listwithdraws after {checked.checks} looks over {age:.0f}s")
        if sweep.state is SweepState.INTENDED:
            return self.journal.move(sweep.id, SweepState.UNKNOWN, note="the request's outcome was not recorded")
        return checked

    # -- sweeping -----------------------------------------------------------------------------------------

    async def _currency(self, coin: str) -> Currency | None:
        now = self.clock.monotonic()
        if self._currencies_at is None or now - self._currencies_at > CURRENCIES_MAX_AGE_S or coin not in \
                self._currencies:
            self._currencies = {c.coin: c for c in await self.client.market.currencies()}
            self._currencies_at = now
        return self._currencies.get(coin)

    async def _sweep(self, cfg: SweepSettings, balance: Balance | None) -> None:
        currency = await self._currency(cfg.coin)
        if currency is None:
            self.waiting[cfg.coin] = "the exchange does not list this coin"
            return
        held, held_frozen = self.holdings(cfg.coin)
        day = self.clock.now().date().isoformat()
        decision = plan(available=balance.available if balance else Decimal(0), keep=cfg.keep, held=held,
                        held_frozen=held_frozen, fee=currency.withdrawal_fee, minimum=currency.minimum_withdrawal,
                        decimals=currency.decimals, max_per_day=cfg.max_per_day,
                        swept_today=self.journal.swept_on(cfg.coin, day))
        if not isinstance(decision, Plan):
            self.waiting[cfg.coin] = decision.reason
            return
        self.waiting.pop(cfg.coin, None)
        await self._send(cfg, decision)

    async def _send(self, cfg: SweepSettings, p: Plan) -> Sweep:
        if (cfg.coin, cfg.address) not in self.allowed:  # by construction it is; refuse loudly if ever not
            raise ValueError(f"sweep of {cfg.coin} to an address that is not configured")
        sweep = self.journal.intend(cfg.coin, cfg.address, p.amount, p.fee)
        try:
            receipt = await self.client.wallet.withdraw(cfg.coin, cfg.address, p.amount)
        except Rejected as err:
            return self.journal.move(sweep.id, SweepState.REJECTED, note=f"refused: {err}"[:200])
        except TemporaryError as err:
            return self.journal.move(sweep.id, SweepState.NOT_SENT, note=f"not sent: {err.kind}")
        except BotError as err:  # OutcomeUnknown and anything unexpected: maybe applied
            log.warning("sweep.outcome_unknown", sweep=sweep.id, coin=cfg.coin, kind=err.kind, error=str(err))
            return self.journal.move(sweep.id, SweepState.UNKNOWN, note="the withdraw answer was lost")
        return self.journal.move(sweep.id, SweepState.SENT, withdrawal_id=receipt.id,
                                 note=f"accepted ({receipt.status.value})")

    # -- status ---------------------------------------------------------------------------------------------

    def swept_today(self) -> dict[str, Decimal]:
        day = self.clock.now().date().isoformat()
        return {coin: self.journal.swept_on(coin, day) for coin in self.config}

    def status(self) -> dict[str, Any]:
        return {
            "config": {c: {"keep": str(s.keep), "address": s.address, "max_per_day": str(s.max_per_day)}
                       for c, s in self.config.items()},
            "swept_today": {c: str(v) for c, v in self.swept_today().items()},
            "in_flight": [s.public() for s in self.journal.open()],
            "waiting": dict(self.waiting),
            "recent": [s.public() for s in self.journal.recent(5)],
        }
