"""Pre-trade risk checks: may this priced order go out, given the limits and the account's state right now?

Pure: no I/O, no clock (the caller computes the state, including today's PnL from `day_start(now)`).
`check` runs the checks in a fixed order and returns the first denial:

1. kill switch: on means no order at all, of either side;
2. max open orders: the bot's working orders (`states.is_working`), over every market;
3. max order value: `price * amount` per quote coin (a quote coin without a configured cap is denied);
4. daily loss limit: today's realised + unrealised PnL in the quote coin at or below `-limit` blocks
   buys; a sell that only reduces the instance's own position is still allowed (it takes risk off), and
   the `Allowed` says so. A quote coin without a configured limit blocks buys the same way;
5. balance: a buy needs `price * amount * (1 + fee%)` of the quote coin, a sell `amount` of the base
   coin, out of what is available minus what the bot's pending orders already hold.

Coins are lower-case everywhere (`mxn`, `btc`), as in CoinBTR's market names.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from bot.domain import Book, Intent, Side
from bot.settings import RiskSettings

ZERO = Decimal(0)
HUNDRED = Decimal(100)


def _fmt(value: Decimal) -> str:
    return f"{value.normalize():f}" if value else "0"


@dataclass(frozen=True, slots=True)
class Proposal:
    """An order a strategy instance wants to place, priced and rounded to its book, before the risk check.

    `fee_percent` is the fee headroom a buy must have on top of its value, in percent (`0.15` = 0.15%).
    """

    instance: str
    market: str
    side: Side
    price: Decimal
    amount: Decimal
    quote: str
    base: str
    fee_percent: Decimal = ZERO

    def __post_init__(self) -> None:
        if self.price <= 0 or self.amount <= 0:
            raise ValueError(f"{self.instance}: price and amount must be positive, got {self.amount} at {self.price}")
        if self.market.lower() != f"{self.base}-{self.quote}".lower():
            raise ValueError(f"{self.instance}: market {self.market!r} is not {self.base}-{self.quote}")
        if self.fee_percent < 0:
            raise ValueError(f"{self.instance}: fee_percent must be >= 0, got {self.fee_percent}")

    @classmethod
    def on_book(cls, instance: str, book: Book, side: Side, price: Decimal, amount: Decimal) -> Proposal:
        """A proposal on `book`: its coins from the book's name, the taker fee as headroom (the worst case)."""
        return cls(instance, book.name, side, price, amount, book.quote, book.base, book.taker_fee)

    @classmethod
    def from_intent(cls, intent: Intent, book: Book) -> Proposal:
        """The proposal for a priced `Intent` on `book` (the intent's strategy is the instance)."""
        if intent.market.lower() != book.name.lower():
            raise ValueError(f"{intent.strategy}: intent is for {intent.market!r}, book is {book.name!r}")
        return cls.on_book(intent.strategy, book, intent.side, intent.price, intent.amount)

    @property
    def value(self) -> Decimal:
        """`price * amount`, in the quote coin."""
        return self.price * self.amount

    @property
    def needs(self) -> tuple[str, Decimal]:
        """The coin and amount the order must have free: value plus fee headroom (buy), or amount (sell)."""
        if self.side is Side.BUY:
            return self.quote, self.value * (1 + self.fee_percent / HUNDRED)
        return self.base, self.amount


@dataclass(frozen=True, slots=True)
class Limits:
    """The configured limits (`[risk]`). Keys are quote coins; a coin missing from a map has no allowance."""

    max_order_value: Mapping[str, Decimal]
    max_open_orders: int
    daily_loss_limit: Mapping[str, Decimal]

    @classmethod
    def from_settings(cls, risk: RiskSettings) -> Limits:
        """The limits of a `[risk]` section, coin names lower-cased."""
        return cls(
            max_order_value={coin.lower(): cap for coin, cap in risk.max_order_value.items()},
            max_open_orders=risk.max_open_orders,
            daily_loss_limit={coin.lower(): cap for coin, cap in risk.daily_loss_limit.items()},
        )


@dataclass(frozen=True, slots=True)
class RiskState:
    """The account as the risk check sees it at one instant, computed by the caller.

    - `open_orders`: the bot's working orders (`states.is_working`), over every market;
    - `pnl_today`: per quote coin, realised PnL since `day_start(now)` plus unrealised PnL of the positions
      marked at the mid price (a coin not listed: 0);
    - `available`: per coin, the exchange's available balance (open orders' funds are already frozen);
    - `reserved`: per coin, what the bot's orders hold that `available` does not reflect yet (submitting,
      unknown, or placed after the balance was read);
    - `positions`: per strategy instance, the base coin it holds (what it may sell under the loss limit);
    - `kill_switch`: the kill switch file exists (or the operator stopped trading).
    """

    open_orders: int = 0
    pnl_today: Mapping[str, Decimal] = field(default_factory=dict)
    available: Mapping[str, Decimal] = field(default_factory=dict)
    reserved: Mapping[str, Decimal] = field(default_factory=dict)
    positions: Mapping[str, Decimal] = field(default_factory=dict)
    kill_switch: bool = False

    def free(self, coin: str) -> Decimal:
        """What is left of `coin` for a new order: available minus reserved."""
        return self.available.get(coin, ZERO) - self.reserved.get(coin, ZERO)


class Check(enum.StrEnum):
    """Which check denied an order (a stable name for logs and counters)."""

    KILL_SWITCH = "kill_switch"
    MAX_OPEN_ORDERS = "max_open_orders"
    MAX_ORDER_VALUE = "max_order_value"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    BALANCE = "balance"


@dataclass(frozen=True, slots=True)
class Allowed:
    """The order may go out. `note` says why when that is not obvious (a sell under the loss limit)."""

    note: str = ""


@dataclass(frozen=True, slots=True)
class Denied:
    """The order may not go out: `check` names the check, `reason` says why in words."""

    check: Check
    reason: str


def check(intent: Proposal, limits: Limits, state: RiskState) -> Allowed | Denied:
    """Run the checks in order (see the module docstring) and return the first denial, else `Allowed`."""
    p = intent
    if state.kill_switch:
        return Denied(Check.KILL_SWITCH, "the kill switch is on: no orders until it is cleared")
    if state.open_orders >= limits.max_open_orders:
        return Denied(Check.MAX_OPEN_ORDERS, f"{state.open_orders} orders open, the maximum is "
                                             f"{limits.max_open_orders} (risk.max_open_orders)")
    cap = limits.max_order_value.get(p.quote)
    if cap is None:
        return Denied(Check.MAX_ORDER_VALUE, f"no risk.max_order_value for {p.quote}: orders quoted in {p.quote} "
                                             "are not allowed until one is set")
    if p.value > cap:
        return Denied(Check.MAX_ORDER_VALUE, f"value {_fmt(p.value)} {p.quote} ({_fmt(p.amount)} {p.base} at "
                                             f"{_fmt(p.price)}) above risk.max_order_value.{p.quote} {_fmt(cap)}")
    note = ""
    blocked = _loss_block(p, limits, state)
    if blocked:
        if p.side is Side.BUY:
            return Denied(Check.DAILY_LOSS_LIMIT, f"{blocked}: buys quoted in {p.quote} are blocked")
        held = state.positions.get(p.instance, ZERO)
        if p.amount > held:
            return Denied(Check.DAILY_LOSS_LIMIT, f"{blocked}: only sells that reduce a position are allowed, and "
                                                  f"{_fmt(p.amount)} {p.base} is more than {p.instance}'s position "
                                                  f"of {_fmt(held)} {p.base}")
        note = f"{blocked}, but this sell reduces {p.instance}'s position ({_fmt(held)} {p.base} held)"
    coin, need = p.needs
    free = state.free(coin)
    if need > free:
        if p.side is Side.BUY:
            what = (f"{_fmt(p.value)} for {_fmt(p.amount)} {p.base} at {_fmt(p.price)} plus "
                    f"{_fmt(p.fee_percent)}% fee headroom")
        else:
            what = f"the {_fmt(p.amount)} {p.base} to sell"
        held_back = state.reserved.get(coin, ZERO)
        pending = (f" ({_fmt(state.available.get(coin, ZERO))} available, {_fmt(held_back)} held by pending "
                   "orders)") if held_back else ""
        return Denied(Check.BALANCE, f"insufficient {coin}: needs {_fmt(need)} ({what}), {_fmt(free)} free{pending}")
    return Allowed(note)


def _loss_block(p: Proposal, limits: Limits, state: RiskState) -> str:
    """Why the daily loss rule blocks new risk in `p.quote` ("" when it does not)."""
    limit = limits.daily_loss_limit.get(p.quote)
    if limit is None:
        return f"no risk.daily_loss_limit for {p.quote} (set one to allow buys)"
    pnl = state.pnl_today.get(p.quote, ZERO)
    if pnl <= -limit:
        return (f"daily loss limit reached: today's PnL {_fmt(pnl)} {p.quote} is at or below "
                f"-{_fmt(limit)} (risk.daily_loss_limit.{p.quote}) until 00:00 UTC")
    return ""


def day_start(now: datetime) -> datetime:
    """The start of `now`'s day in UTC (00:00:00): the daily loss window runs from there. `now` must be aware."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("day_start needs an aware datetime (UTC), got a naive one")
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
