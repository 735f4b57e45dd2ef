"""`bot.priority`: work that can wait waits for a batch of orders on its way, never longer than its bound."""

from __future__ import annotations

import asyncio

from bot.priority import OrdersFirst


async def test_nothing_held_means_no_wait() -> None:
    p = OrdersFirst(max_defer_s=60)
    await asyncio.wait_for(p.defer(), 1)
    assert (p.deferred, p.gave_up) == (0, 0)


async def test_deferred_work_resumes_when_the_last_hold_is_released() -> None:
    p = OrdersFirst(max_defer_s=60)
    first, second = p.hold(), p.hold()
    waiting = asyncio.create_task(p.defer())
    await asyncio.sleep(0)
    first.release()
    first.release()  # idempotent: one hold is released once
    await asyncio.sleep(0)
    assert not waiting.done() and p.held
    second.release()
    await asyncio.wait_for(waiting, 1)
    assert not p.held and (p.deferred, p.gave_up) == (1, 0)


async def test_a_hold_never_released_delays_deferred_work_by_the_bound_only() -> None:
    p = OrdersFirst(max_defer_s=0.01)
    p.hold()
    await asyncio.wait_for(p.defer(), 1)
    assert (p.deferred, p.gave_up) == (1, 1) and p.deferred_s >= 0.01
