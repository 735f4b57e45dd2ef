"""The order state machine: every one of the 9×9 moves is checked against the table."""

from __future__ import annotations

import itertools

import pytest

from bot.errors import StateError
from bot.execution.states import (
    ALLOWED,
    TRANSITIONS,
    IllegalTransition,
    OrderState,
    can_transition,
    exits,
    is_final,
    is_working,
    meaning,
    transition,
)

S = OrderState

# The table, written out again on purpose: a change to bot/execution/states.py must change this too.
EXPECTED: set[tuple[OrderState, OrderState]] = {
    (S.NEW, S.SUBMITTING),
    (S.NEW, S.CANCELLED),
    (S.SUBMITTING, S.OPEN),
    (S.SUBMITTING, S.PARTIALLY_FILLED),
    (S.SUBMITTING, S.FILLED),
    (S.SUBMITTING, S.REJECTED),
    (S.SUBMITTING, S.UNKNOWN),
    (S.SUBMITTING, S.CANCELLED),
    (S.UNKNOWN, S.OPEN),
    (S.UNKNOWN, S.PARTIALLY_FILLED),
    (S.UNKNOWN, S.FILLED),
    (S.UNKNOWN, S.CANCELLED),
    (S.UNKNOWN, S.REJECTED),
    (S.OPEN, S.PARTIALLY_FILLED),
    (S.OPEN, S.FILLED),
    (S.OPEN, S.CANCELLING),
    (S.OPEN, S.CANCELLED),
    (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED),
    (S.PARTIALLY_FILLED, S.FILLED),
    (S.PARTIALLY_FILLED, S.CANCELLING),
    (S.PARTIALLY_FILLED, S.CANCELLED),
    (S.CANCELLING, S.CANCELLED),
    (S.CANCELLING, S.FILLED),
}

ALL_PAIRS = list(itertools.product(OrderState, OrderState))


def _id(pair: tuple[OrderState, OrderState]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


def test_there_are_nine_states() -> None:
    assert len(OrderState) == 9
    assert len(ALL_PAIRS) == 81


def test_table_is_exactly_the_expected_edges() -> None:
    assert set(ALLOWED) == EXPECTED
    assert set(TRANSITIONS) == EXPECTED


@pytest.mark.parametrize("pair", [p for p in ALL_PAIRS if p in EXPECTED], ids=_id)
def test_allowed_move_returns_the_target(pair: tuple[OrderState, OrderState]) -> None:
    current, target = pair
    assert transition(current, target) is target
    assert can_transition(current, target)
    assert meaning(current, target)  # every edge documents what it means


@pytest.mark.parametrize("pair", [p for p in ALL_PAIRS if p not in EXPECTED], ids=_id)
def test_any_other_move_raises_illegal_transition(pair: tuple[OrderState, OrderState]) -> None:
    current, target = pair
    assert not can_transition(current, target)
    with pytest.raises(IllegalTransition) as info:
        transition(current, target, order=42)
    err = info.value
    assert isinstance(err, StateError)
    assert (err.current, err.target, err.order) == (current, target, 42)
    assert f"{current.value} -> {target.value}" in str(err)
    assert "order 42" in str(err)
    with pytest.raises(IllegalTransition):
        meaning(current, target)


@pytest.mark.parametrize(
    ("state", "final", "working"),
    [
        (S.NEW, False, False),
        (S.SUBMITTING, False, True),
        (S.OPEN, False, True),
        (S.PARTIALLY_FILLED, False, True),
        (S.FILLED, True, False),
        (S.CANCELLING, False, True),
        (S.CANCELLED, True, False),
        (S.REJECTED, True, False),
        (S.UNKNOWN, False, True),
    ],
)
def test_final_and_working_states(state: OrderState, final: bool, working: bool) -> None:
    assert is_final(state) is final
    assert is_working(state) is working


@pytest.mark.parametrize("state", [S.FILLED, S.CANCELLED, S.REJECTED])
def test_final_states_have_no_exits(state: OrderState) -> None:
    assert exits(state) == frozenset()
    with pytest.raises(IllegalTransition, match="none: it is final"):
        transition(state, S.OPEN)


@pytest.mark.parametrize("state", [s for s in OrderState if not is_final(s)])
def test_every_non_final_state_can_end(state: OrderState) -> None:
    """From anywhere not final, some path leads to a final state: nothing gets stuck by construction."""
    seen, todo = {state}, [state]
    while todo:
        for nxt in exits(todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen & {S.FILLED, S.CANCELLED}


def test_every_state_is_reachable_from_new() -> None:
    seen, todo = {S.NEW}, [S.NEW]
    while todo:
        for nxt in exits(todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(OrderState)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ([S.NEW, S.SUBMITTING, S.OPEN, S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, S.FILLED], "fills in parts"),
        ([S.NEW, S.SUBMITTING, S.FILLED], "crosses the book at once"),
        ([S.NEW, S.SUBMITTING, S.REJECTED], "insufficient funds"),
        ([S.NEW, S.SUBMITTING, S.UNKNOWN, S.OPEN, S.CANCELLING, S.CANCELLED], "lost answer, landed, TTL"),
        ([S.NEW, S.SUBMITTING, S.UNKNOWN, S.CANCELLED], "lost answer, never landed"),
        ([S.NEW, S.SUBMITTING, S.OPEN, S.CANCELLING, S.FILLED], "cancel raced the fill and lost"),
        ([S.NEW, S.SUBMITTING, S.OPEN, S.PARTIALLY_FILLED, S.CANCELLING, S.CANCELLED], "partly filled, cancelled"),
        ([S.NEW, S.SUBMITTING, S.OPEN, S.CANCELLED], "cancelled by hand on the exchange"),
        ([S.NEW, S.CANCELLED], "stopped between journaling and sending"),
        ([S.NEW, S.SUBMITTING, S.CANCELLED], "connection refused: never sent"),
    ],
)
def test_lifecycles(path: list[OrderState], why: str) -> None:
    state = path[0]
    for target in path[1:]:
        state = transition(state, target)
    assert is_final(state), why


@pytest.mark.parametrize(
    ("current", "target", "why"),
    [
        (S.CANCELLING, S.PARTIALLY_FILLED, "a 'not open' cancel answer ends in the truth, never back to working"),
        (S.CANCELLING, S.UNKNOWN, "a lost cancel answer stays CANCELLING and is resolved by reading"),
        (S.OPEN, S.UNKNOWN, "a cancel is journaled as CANCELLING before it goes"),
        (S.UNKNOWN, S.SUBMITTING, "a lost place request is never resent"),
        (S.REJECTED, S.SUBMITTING, "a refused order is never retried"),
        (S.NEW, S.OPEN, "nothing lands on the book without a journaled SUBMITTING"),
        (S.FILLED, S.CANCELLED, "the truth is final"),
    ],
)
def test_moves_ruled_out_on_purpose(current: OrderState, target: OrderState, why: str) -> None:
    with pytest.raises(IllegalTransition):
        transition(current, target)


def test_states_round_trip_through_their_journal_values() -> None:
    for state in OrderState:
        assert OrderState(state.value) is state
    assert transition(OrderState("open"), OrderState("filled")) is S.FILLED
