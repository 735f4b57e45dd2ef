"""The order state machine: the states a journaled order goes through and the only moves between them.

The happy path is NEW → SUBMITTING → OPEN → PARTIALLY_FILLED → FILLED, with side roads through
CANCELLING, CANCELLED, REJECTED and UNKNOWN. `TRANSITIONS` is the whole table: every allowed `(from, to)`
pair with what the move means. Anything else raises `IllegalTransition`: a move the table does not list is
a bug in the caller (or a corrupt journal), never something to paper over. The rules behind the table:

- The truth wins. A cancel that races a fill ends in what the exchange's transactions say: FILLED, or
  CANCELLED with the filled part kept (a partly filled, then cancelled order). It never ends in a guess.
- CoinBTR has no client order id, so a place request whose answer is lost leaves the order UNKNOWN; it is
  resolved by reading open orders and transactions, never by sending the request again.
- A cancel is journaled (OPEN/PARTIALLY_FILLED → CANCELLING) before its request goes out. A cancel whose
  answer is lost therefore needs no UNKNOWN: CANCELLING already says "may or may not still be on the
  book"; it is resolved by reading the order (still open: cancel again; gone: the transactions decide).
  A cancel that did not take (not sent, or refused for a reason other than "not open") also stays
  CANCELLING and is tried again.
  Fills seen while CANCELLING are recorded on the order's filled amount and the state stays CANCELLING;
  there is no way back to PARTIALLY_FILLED, so a "not open" answer (code 1003) can only end in FILLED or
  CANCELLED.
- FILLED, CANCELLED and REJECTED are final: no exits. CANCELLED also covers "provably never placed".

This module is pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from bot.errors import StateError


class OrderState(enum.StrEnum):
    """Where one journaled order stands. The values are what the journal stores."""

    NEW = "new"  # intent journaled; no request sent yet
    SUBMITTING = "submitting"  # the place request is about to go or has gone; no answer yet
    OPEN = "open"  # on the book, nothing filled
    PARTIALLY_FILLED = "partially_filled"  # on the book, part of it filled
    FILLED = "filled"  # final: all of it filled
    CANCELLING = "cancelling"  # cancel journaled; its request is about to go or has gone
    CANCELLED = "cancelled"  # final: off the book, the filled part (if any) kept; or never placed at all
    REJECTED = "rejected"  # final: the venue refused the order; nothing was placed
    UNKNOWN = "unknown"  # the place request's outcome is unknown; resolve by reading state


S = OrderState

_EDGES: dict[tuple[OrderState, OrderState], str] = {
    # ---- before and during the place request ---------------------------------------------------------
    (S.NEW, S.SUBMITTING): "intent journaled; the place request is about to go",
    (S.NEW, S.CANCELLED): "abandoned before any request was sent (stop or crash between journaling and "
    "sending; reconciliation finds it NEW): provably never placed",
    (S.SUBMITTING, S.OPEN): "placed: the exchange answered with an order id and nothing has filled yet",
    (S.SUBMITTING, S.PARTIALLY_FILLED): "placed and part of it filled at once (it crossed part of the book)",
    (S.SUBMITTING, S.FILLED): "placed and filled at once (it crossed the book)",
    (S.SUBMITTING, S.REJECTED): "the venue refused the order (insufficient funds, outside the book's limits, "
    "malformed): nothing placed, never retried",
    (S.SUBMITTING, S.UNKNOWN): "the answer was lost after sending (timeout, dropped connection, 5xx, "
    "unreadable body): the order may exist",
    (S.SUBMITTING, S.CANCELLED): "the request provably never reached the exchange (connection refused, "
    "connect timeout): nothing placed",
    # ---- resolving a lost place answer ----------------------------------------------------------------
    (S.UNKNOWN, S.OPEN): "resolved: found among the open orders, nothing filled",
    (S.UNKNOWN, S.PARTIALLY_FILLED): "resolved: found among the open orders, part of it filled",
    (S.UNKNOWN, S.FILLED): "resolved: not open, and its fills cover the whole amount",
    (S.UNKNOWN, S.CANCELLED): "resolved: provably never placed, or it landed and was cancelled (any fills "
    "kept) before we saw it",
    (S.UNKNOWN, S.REJECTED): "resolved: never placed because the venue refused it (the refusal is known)",
    # ---- working on the book ---------------------------------------------------------------------------
    (S.OPEN, S.PARTIALLY_FILLED): "a first fill, the rest still open",
    (S.OPEN, S.FILLED): "filled completely (in one or several fills seen at once)",
    (S.OPEN, S.CANCELLING): "we decided to cancel (TTL, stop, signal); the cancel is journaled before it goes",
    (S.OPEN, S.CANCELLED): "gone from the open orders without filling completely: cancelled by someone else "
    "(by hand, another tool, the venue); the transactions say what filled",
    (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED): "another fill, the rest still open",
    (S.PARTIALLY_FILLED, S.FILLED): "the last fill: nothing left open",
    (S.PARTIALLY_FILLED, S.CANCELLING): "we decided to cancel the rest; the filled part is kept",
    (S.PARTIALLY_FILLED, S.CANCELLED): "the rest was cancelled by someone else; the filled part is kept",
    # ---- cancelling --------------------------------------------------------------------------------------
    (S.CANCELLING, S.CANCELLED): "the cancel took (or the order is found not open and its fills do not cover "
    "the amount): off the book, any filled part kept",
    (S.CANCELLING, S.FILLED): "the cancel raced the last fill and lost (answered 'not open', code 1003): the "
    "transactions show it filled completely; the truth wins",
}

TRANSITIONS: Mapping[tuple[OrderState, OrderState], str] = MappingProxyType(_EDGES)
"""Every allowed move, `(from, to)`, with what it means. Anything not listed is illegal."""

ALLOWED: frozenset[tuple[OrderState, OrderState]] = frozenset(_EDGES)
"""The allowed `(from, to)` pairs (the keys of `TRANSITIONS`)."""

FINAL: frozenset[OrderState] = frozenset({S.FILLED, S.CANCELLED, S.REJECTED})
WORKING: frozenset[OrderState] = frozenset({S.SUBMITTING, S.OPEN, S.PARTIALLY_FILLED, S.CANCELLING, S.UNKNOWN})


class IllegalTransition(StateError):
    """A move the transition table does not allow. `current` and `target` say which one."""

    def __init__(self, current: OrderState, target: OrderState, *, order: str | int | None = None) -> None:
        self.current = current
        self.target = target
        self.order = order
        which = f"order {order}: " if order is not None else ""
        allowed = ", ".join(sorted(t.value for t in exits(current))) or "none: it is final"
        super().__init__(f"{which}illegal order transition {current.value} -> {target.value} "
                         f"(allowed from {current.value}: {allowed})")


def exits(state: OrderState) -> frozenset[OrderState]:
    """The states `state` may move to (empty for a final state)."""
    return frozenset(to for (frm, to) in ALLOWED if frm is state)


def can_transition(current: OrderState, target: OrderState) -> bool:
    """Whether the table allows moving from `current` to `target`."""
    return (current, target) in ALLOWED


def transition(current: OrderState, target: OrderState, *, order: str | int | None = None) -> OrderState:
    """Check the move from `current` to `target` and return `target`.

    Raises `IllegalTransition` (a `StateError`) for any move the table does not list; `order` (an id or
    a journal key) only goes into the error message.
    """
    current, target = OrderState(current), OrderState(target)
    if (current, target) not in ALLOWED:
        raise IllegalTransition(current, target, order=order)
    return target


def meaning(current: OrderState, target: OrderState) -> str:
    """What the move means (for logs and events). Raises `IllegalTransition` for a move not in the table."""
    try:
        return TRANSITIONS[(current, target)]
    except KeyError:
        raise IllegalTransition(current, target) from None


def is_final(state: OrderState) -> bool:
    """FILLED, CANCELLED or REJECTED: nothing more will happen to the order."""
    return state in FINAL


def is_working(state: OrderState) -> bool:
    """The order holds funds on the exchange, or may: SUBMITTING, OPEN, PARTIALLY_FILLED, CANCELLING, UNKNOWN.

    NEW is neither working nor final: nothing has been sent yet, so nothing is held.
    """
    return state in WORKING
