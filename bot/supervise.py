"""Supervision: scheduled jobs and long-running tasks never take the daemon down, and stop in order.

`Jobs` runs every scheduled job through one wrapper: it logs an unexpected exception with its traceback (an
expected one, a service down or answering garbage, without) and counts it, reports (never stacks) a run that
would overlap the previous one, tracks what is in flight so a stop lets it record its outcome, and keeps the
wall times liveness is judged by. `Supervisor` keeps long-running tasks alive: an exception is logged,
counted, published as `TaskRestarted`, and the task is started again after an exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.clock import Clock
from bot.errors import MalformedResponse, OutcomeUnknown, TemporaryError
from bot.events import EventBus, TaskRestarted
from bot.logs import get_logger

log = get_logger("bot.supervise")

JobFn = Callable[[], Awaitable[Any]]
# What a job meets when a service is down, slow, limiting or answering garbage: logged without a traceback
# (with its kind and secret-free message); anything else is a bug and keeps its traceback.
EXPECTED = (TemporaryError, OutcomeUnknown, MalformedResponse)


@dataclass
class JobState:
    """Wall-time bookkeeping of one scheduled job."""

    name: str
    every_s: float  # wall seconds between runs
    first_due: float  # wall monotonic time of the first run
    runs: int = 0
    failures: int = 0
    overruns: int = 0
    last_started: float | None = None
    last_finished: float | None = None
    last_duration_s: float | None = None
    task: asyncio.Task[Any] | None = field(default=None, repr=False)

    def overdue(self, now: float, grace_s: float, progress: float | None = None) -> bool:
        """The job should have started (or finished) by now and has not: the pipeline is not moving. A long
        run that keeps making progress (a backfill committing candle after candle) is not stuck."""
        if self.task is not None and self.last_started is not None:
            since = max(self.last_started, progress or self.last_started)
            return now - since > self.every_s * 3 + grace_s
        base = self.last_started if self.last_started is not None else self.first_due - self.every_s
        return now - base > self.every_s * 3 + grace_s


class Jobs:
    """The daemon's scheduled jobs, on the one `AsyncIOScheduler`, each run through `_run`."""

    def __init__(self, scheduler: AsyncIOScheduler,
                 on_result: Callable[[str, str, float], None] | None = None) -> None:
        self.scheduler = scheduler
        self.states: dict[str, JobState] = {}
        self._on_result = on_result
        self.accepting = True
        self.last_progress: float | None = None

    def every(self, job_id: str, fn: JobFn, *, every_s: float, start: datetime | None = None,
              first_in_s: float = 0.0) -> None:
        """Run `fn` every `every_s` wall seconds from `start` (wall time; default now)."""
        self.states[job_id] = JobState(job_id, every_s, time.monotonic() + first_in_s)
        self.scheduler.add_job(self._run, "interval", args=[job_id, fn], seconds=every_s, start_date=start,
                               id=job_id, name=job_id, max_instances=2, coalesce=True,
                               misfire_grace_time=max(1, int(every_s)))

    async def _run(self, job_id: str, fn: JobFn) -> None:
        st = self.states[job_id]
        if not self.accepting:
            return
        if st.task is not None and not st.task.done():
            st.overruns += 1
            log.warning("job.overrun", job=job_id, every_s=st.every_s, running_s=round(
                time.monotonic() - (st.last_started or time.monotonic()), 3), overruns=st.overruns)
            if self._on_result is not None:
                self._on_result(job_id, "overrun", 0.0)
            return
        st.task = asyncio.current_task()
        st.last_started = started = time.monotonic()
        log.debug("job.started", job=job_id)
        result = "ok"
        try:
            await fn()
        except asyncio.CancelledError:
            result = "cancelled"
            raise
        except EXPECTED as err:  # the network or a service failing: an incident to count, not a bug to trace
            result = "error"
            st.failures += 1
            log.warning("job.failed", job=job_id, failures=st.failures, kind=err.kind, error=str(err))
        except Exception:
            result = "error"
            st.failures += 1
            log.exception("job.failed", job=job_id, failures=st.failures)
        finally:
            st.runs += 1
            st.last_finished = time.monotonic()
            st.last_duration_s = st.last_finished - started
            st.task = None
            if self._on_result is not None:
                self._on_result(job_id, result, st.last_duration_s)

    def in_flight(self) -> dict[str, asyncio.Task[Any]]:
        return {k: s.task for k, s in self.states.items() if s.task is not None and not s.task.done()}

    def pause(self) -> None:
        """No job starts from now on; running ones carry on."""
        self.accepting = False
        if self.scheduler.running:
            self.scheduler.pause()

    async def drain(self, bound_s: float) -> list[str]:
        """Wait (bounded) for in-flight jobs to record their outcome; returns the names of those cut."""
        pending = self.in_flight()
        if not pending:
            return []
        log.info("daemon.waiting_for_jobs", jobs=sorted(pending), timeout_s=round(bound_s, 2))
        _done, still = await asyncio.wait(pending.values(), timeout=max(0.0, bound_s))
        return sorted(k for k, t in pending.items() if t in still)

    def note_progress(self) -> None:
        """Something committed (a candle, a row): running jobs are making progress."""
        self.last_progress = time.monotonic()

    def overdue(self, grace_s: float = 30.0) -> list[str]:
        now = time.monotonic()
        return sorted(k for k, s in self.states.items() if s.overdue(now, grace_s, self.last_progress))

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        return {k: {"every_s": round(s.every_s, 3), "runs": s.runs, "failures": s.failures,
                    "overruns": s.overruns, "running": s.task is not None,
                    "last_started_s_ago": None if s.last_started is None else round(now - s.last_started, 1),
                    "last_duration_s": None if s.last_duration_s is None else round(s.last_duration_s, 4)}
                for k, s in sorted(self.states.items())}


@dataclass
class _Supervised:
    name: str
    factory: Callable[[], Awaitable[None]]
    restarts: int = 0
    task: asyncio.Task[None] | None = None


class Supervisor:
    """Keeps long-running tasks running: restart with exponential backoff after an unexpected exception."""

    def __init__(self, clock: Clock, events: EventBus, *, base_delay_s: float = 1.0,
                 max_delay_s: float = 60.0) -> None:
        self.clock = clock
        self.events = events
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self._tasks: dict[str, _Supervised] = {}
        self._stopping = asyncio.Event()

    def spawn(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Start `factory()` as a supervised task named `name`."""
        sup = _Supervised(name, factory)
        self._tasks[name] = sup
        sup.task = asyncio.create_task(self._keep(sup), name=f"supervised:{name}")

    async def _keep(self, sup: _Supervised) -> None:
        while not self._stopping.is_set():
            try:
                await sup.factory()
                return  # finished on its own
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                sup.restarts += 1
                delay = min(self.max_delay_s, self.base_delay_s * 2 ** min(sup.restarts - 1, 16))
                log.exception("task.restarting", task=sup.name, restarts=sup.restarts, delay_s=delay)
                self.events.publish(TaskRestarted(at=self.clock.now(), task=sup.name,
                                                  error=f"{type(exc).__name__}: {exc}",
                                                  restarts=sup.restarts, delay_s=delay))
                # Wall time: a backoff is about the machine, not the (maybe accelerated) market.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    async def stop(self, bound_s: float = 2.0) -> list[str]:
        """Cancel every supervised task and wait for them (bounded); returns the names still running."""
        self._stopping.set()
        tasks = {name: s.task for name, s in self._tasks.items() if s.task is not None and not s.task.done()}
        for t in tasks.values():
            t.cancel()
        if tasks:
            await asyncio.wait(tasks.values(), timeout=bound_s)
        return sorted(name for name, t in tasks.items() if not t.done())

    def status(self) -> dict[str, Any]:
        return {k: {"restarts": s.restarts, "running": s.task is not None and not s.task.done()}
                for k, s in self._tasks.items()}
