"""Supervision: failing jobs logged and counted, overruns reported not stacked, tasks restarted with backoff."""

from __future__ import annotations

import asyncio

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from structlog.testing import capture_logs

from bot.clock import WallClock
from bot.events import Event, EventBus, TaskRestarted
from bot.supervise import Jobs, Supervisor


def jobs_with(results: list[tuple[str, str]]) -> Jobs:
    jobs = Jobs(AsyncIOScheduler(timezone="UTC"), on_result=lambda j, r, _s: results.append((j, r)))
    return jobs


async def test_a_failing_job_is_logged_with_traceback_counted_and_runs_again() -> None:
    results: list[tuple[str, str]] = []
    jobs = jobs_with(results)
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first run fails")

    jobs.every("flaky", flaky, every_s=60)
    with capture_logs() as logs:
        await jobs._run("flaky", flaky)
        await jobs._run("flaky", flaky)
    assert results == [("flaky", "error"), ("flaky", "ok")]
    failed = [e for e in logs if e["event"] == "job.failed"]
    assert len(failed) == 1 and failed[0]["exc_info"]
    assert jobs.status()["flaky"]["failures"] == 1 and jobs.status()["flaky"]["runs"] == 2


async def test_a_job_that_overruns_its_slot_is_reported_never_stacked() -> None:
    results: list[tuple[str, str]] = []
    jobs = jobs_with(results)
    release = asyncio.Event()
    running = 0
    most = 0

    async def slow() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1

    jobs.every("slow", slow, every_s=1)
    first = asyncio.create_task(jobs._run("slow", slow))
    await asyncio.sleep(0)
    with capture_logs() as logs:
        await jobs._run("slow", slow)  # the next slot comes while the first run is still going
    release.set()
    await first
    assert most == 1
    assert [e["event"] for e in logs] == ["job.overrun"]
    assert results == [("slow", "overrun"), ("slow", "ok")]


async def test_drain_waits_for_in_flight_jobs_and_names_what_it_had_to_cut() -> None:
    jobs = jobs_with([])
    quick_done = asyncio.Event()
    never = asyncio.Event()

    async def quick() -> None:
        await asyncio.sleep(0)
        quick_done.set()

    async def stuck() -> None:
        await never.wait()

    jobs.every("quick", quick, every_s=60)
    jobs.every("stuck", stuck, every_s=60)
    tasks = [asyncio.create_task(jobs._run("quick", quick)), asyncio.create_task(jobs._run("stuck", stuck))]
    await asyncio.sleep(0)
    jobs.pause()
    cut = await jobs.drain(0.05)
    assert quick_done.is_set() and cut == ["stuck"]
    await jobs._run("quick", quick)  # paused: nothing new starts
    assert jobs.status()["quick"]["runs"] == 1
    never.set()
    await asyncio.gather(*tasks)


async def test_supervisor_restarts_a_crashing_task_with_backoff_and_says_so() -> None:
    bus = EventBus()
    restarts: list[Event] = []
    bus.subscribe("test", restarts.append, TaskRestarted)
    sup = Supervisor(WallClock(), bus, base_delay_s=0.001, max_delay_s=0.004)
    runs = 0
    done = asyncio.Event()

    async def crashy() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise RuntimeError(f"crash {runs}")
        done.set()

    with capture_logs() as logs:
        sup.spawn("crashy", crashy)
        await asyncio.wait_for(done.wait(), 5)
    await sup.stop()
    assert runs == 4
    assert [e.restarts for e in restarts] == [1, 2, 3]  # type: ignore[attr-defined]
    assert [e.delay_s for e in restarts] == [0.001, 0.002, 0.004]  # type: ignore[attr-defined]
    assert sum(e["event"] == "task.restarting" and bool(e["exc_info"]) for e in logs) == 3
    assert sup.status()["crashy"]["restarts"] == 3


async def test_a_long_run_that_keeps_making_progress_is_not_overdue() -> None:
    jobs = jobs_with([])
    release = asyncio.Event()

    async def backfill() -> None:
        await release.wait()

    jobs.every("poll:x", backfill, every_s=0.01)
    task = asyncio.create_task(jobs._run("poll:x", backfill))
    await asyncio.sleep(0)
    st = jobs.states["poll:x"]
    assert st.last_started is not None
    later = st.last_started + 100.0  # far past three slots
    assert st.overdue(later, grace_s=1.0)  # no progress: stuck
    assert not st.overdue(later, grace_s=1.0, progress=later - 0.5)  # committing candles: alive
    release.set()
    await task


async def test_a_job_failing_on_a_service_outage_is_logged_and_counted_without_a_traceback() -> None:
    # bench/chaos.py: every 503 during a CoinBTR outage was logged as job.failed with a traceback, as if a bug.
    from bot.errors import TemporaryError

    results: list[tuple[str, str]] = []
    jobs = jobs_with(results)

    async def outage() -> None:
        raise TemporaryError("server error on /api/v1/wallet/listbalances", service="coinbtr", status=503)

    jobs.every("wallet", outage, every_s=60)
    with capture_logs() as logs:
        await jobs._run("wallet", outage)
    assert results == [("wallet", "error")]
    [failed] = [e for e in logs if e["event"] == "job.failed"]
    assert failed["log_level"] == "warning" and failed["kind"] == "temporary" and "exc_info" not in failed
    assert "listbalances" in failed["error"] and jobs.status()["wallet"]["failures"] == 1
