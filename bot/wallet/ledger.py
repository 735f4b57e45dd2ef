"""What explains a balance: pure accounting of fills, fees, transfers and holds, and the lag rule.

The watcher keeps, per coin, the *expected* total (available + frozen): the total it saw at its first poll
plus the effect of everything it has accounted since (each fill of an order the journal knows, each fee,
each transfer's change of effect). The *residual* `total - expected` is what nothing explains:

- a residual at one poll may be lag (a fill landed between two reads of one poll, or its order's place
  answer is still on its way so the journal cannot claim it yet): it must be explained by the next poll;
- a residual at two polls in a row is flagged as unexplained, and the expected total is set to the seen
  total so the next change is judged on its own (`judge`).

The available/frozen split is judged the same way: `frozen` must equal what the bot's working orders hold
(a buy holds `remaining * limit` of the quote coin, a sell `remaining` of the base coin; a buy filled below
its limit gets the difference back, so its hold stays `remaining * limit`).

Effects (`fill_effects`, `transfer_effect`) are signed amounts on a coin's total:
a buy of `a` at `p` on `base-quote` is `+a base`, `-p*a quote` and `-fee` of the fee coin (the coin
received); a sell the other way round. A deposit counts once confirmed (before, it is `pending`, outside the
total); a withdrawal counts `-(amount + fee)` from the moment it is listed, and nothing once failed (refunded).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)

FILL, FEE, DEPOSIT, WITHDRAWAL, REFUND = "fill", "fee", "deposit", "withdrawal", "refund"
FAILED = "failed"


def fill_effects(market: str, side: str, price: Decimal, amount: Decimal, fee: Decimal,
                 fee_coin: str) -> list[tuple[str, str, Decimal]]:
    """`(coin, reason, signed amount)` of one fill on the coins' totals."""
    base, quote = market.lower().split("-")
    sign = Decimal(1) if side.lower() == "buy" else Decimal(-1)
    out = [(base, FILL, sign * amount), (quote, FILL, -sign * price * amount)]
    if fee:
        out.append((fee_coin.lower(), FEE, -fee))
    return out


def transfer_effect(kind: str, status: str, confirmed: bool, amount: Decimal, fee: Decimal) -> Decimal:
    """A transfer's effect on its coin's total as it stands now (see the module docstring)."""
    if kind == DEPOSIT:
        return amount if confirmed else ZERO
    return ZERO if status == FAILED else -(amount + fee)


def transfer_reason(kind: str, change: Decimal) -> str:
    """What a change of a transfer's effect is called: a deposit, a withdrawal, or a withdrawal's refund."""
    if kind == DEPOSIT:
        return DEPOSIT
    return REFUND if change > 0 else WITHDRAWAL


@dataclass(frozen=True, slots=True)
class Hold:
    """A working order of the bot as the split check sees it."""

    market: str
    side: str
    price: Decimal
    remaining: Decimal


def holds(orders: Iterable[Hold]) -> dict[str, Decimal]:
    """What the orders keep frozen, per coin."""
    out: dict[str, Decimal] = {}
    for o in orders:
        base, quote = o.market.lower().split("-")
        coin, amount = (quote, o.remaining * o.price) if o.side.lower() == "buy" else (base, o.remaining)
        out[coin] = out.get(coin, ZERO) + amount
    return out


def add(into: dict[str, dict[str, Decimal]], coin: str, reason: str, amount: Decimal) -> None:
    """Add `amount` to `into[coin][reason]`."""
    if amount:
        per = into.setdefault(coin, {})
        per[reason] = per.get(reason, ZERO) + amount


@dataclass(frozen=True, slots=True)
class Verdict:
    """One coin's judgement at one poll: the residual, whether it is flagged, and the expected total to keep."""

    residual: Decimal
    flagged: bool
    expected: Decimal


def judge(total: Decimal, expected: Decimal, previous_residual: Decimal, resolution: Decimal = ZERO) -> Verdict:
    """The lag rule: a residual is flagged when the previous poll left one too; a flagged residual resets
    the expected total to what was seen (so the alarm is about this change, and the next is judged anew).
    A residual smaller than `resolution` (how finely the exchange shows a balance) is no residual."""
    residual = total - expected
    if abs(residual) < resolution:
        residual = ZERO
    if residual and previous_residual:
        return Verdict(residual, True, total)
    return Verdict(residual, False, expected)


def split_off(frozen: Mapping[str, Decimal], held: Mapping[str, Decimal], coins: Iterable[str]) -> dict[str, Decimal]:
    """Per coin, frozen on the exchange minus what the bot's working orders hold (0 when they agree)."""
    return {c: frozen.get(c, ZERO) - held.get(c, ZERO) for c in coins}
