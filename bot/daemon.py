"""The daemon's lifecycle: phases in order, supervision, and one bounded, ordered stop.

Start: lock `state_dir` → build (the composition root in `bot.app`: sandbox link, store, clients,
producers, subscribers) → reconcile → warm up → schedule → READY. Stop (SIGTERM/SIGINT, or `--duration`):
pause the scheduler → let in-flight jobs record their outcome → stop supervised tasks → close components in
reverse order → close the store. The whole stop fits in `stop_timeout_seconds`; whatever had to be cut to
keep that bound is logged by name. Signal handlers only set an `asyncio.Event`.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.clock import Clock, WallClock
from bot.dirlock import state_lock
from bot.events import AlarmCleared, AlarmRaised, CandleClosed, DaemonStarted, DaemonStopping, EventBus, Tick
from bot.health import Alarms, Liveness, unavailable
from bot.logs import get_logger
from bot.metrics import Metrics
from bot.settings import Settings
from bot.skew import SKEW_WARN_S, skewed, skews
from bot.store import Store
from bot.supervise import Jobs, Supervisor
from bot.systemd import Notifier

log = get_logger("bot.daemon")

Hook = Callable[[], Awaitable[None]]
Reporter = Callable[[], Any]

PHASES = ("reconcile", "warm_up")  # the start phases run, in this order, after build
MAINTENANCE_EVERY_S = 3600.0
SKEW_CHECK_S = 30.0  # how often the services' clock skew is compared with the limit (wall seconds)


def maintain_store(state_dir: Path, step_pages: int = 256, max_steps: int = 400) -> None:
    """Hand freed pages back and truncate the WAL, a few hundred pages per write lock."""
    db = Store.open(state_dir)
    try:
        for _ in range(max_steps):
            if not db.maintain(max_pages=step_pages)["pages_freed"]:
                break
    finally:
        db.close()


class Daemon:
    """Owns the lifecycle of one tradebot instance; `bot.app` tells it what to run."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or WallClock()
        self.stop_event = asyncio.Event()
        self.stop_reason = "stopped"
        self.phase = "starting"
        self.events = EventBus()
        self.metrics = Metrics()
        self.alarms = Alarms()
        self.events.subscribe("metrics", self.metrics.on_event)
        self.events.subscribe("alarms", self.alarms.on_event)
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.jobs = Jobs(self.scheduler, on_result=self.metrics.on_job)
        self.events.subscribe("progress", lambda _e: self.jobs.note_progress(), CandleClosed, Tick)
        self.supervisor = Supervisor(self.clock, self.events)
        self.notifier = Notifier()
        self.liveness = Liveness(self.jobs, self.notifier, status_line=self.status_line)
        self.store: Store | None = None
        self._t0 = time.monotonic()
        self._lock = state_lock(settings.state_dir)
        self._phases: dict[str, list[tuple[str, Hook]]] = {p: [] for p in PHASES}
        self._schedulers: list[Callable[[Jobs], None]] = []
        self._closers: list[tuple[str, Hook]] = []
        self._tasks: list[tuple[str, Hook]] = []
        self._reporters: dict[str, Reporter] = {}
        self._maintenance: list[Callable[[], Any]] = []
        self._skew_alarms: set[str] = set()
        self.metrics.add_gauge("live", "1 while the loop answers and jobs run on time", lambda: float(
            self.liveness.live()))
        self.metrics.add_gauge("loop_lag_seconds", "Event loop wake-up lag (wall)", lambda: self.liveness.loop_lag_s)
        self.metrics.add_gauges("alarm_active", "1 per active alarm", "alarm",
                                lambda: dict.fromkeys(self.alarms.active, 1.0))
        self.metrics.add_gauges("subscriber_errors", "Event subscribers that raised (total)", "subscriber",
                                lambda: {k: float(v) for k, v in self.events.subscriber_errors().items()})

    # -- what bot.app declares --------------------------------------------------------------------------

    def use_clock(self, clock: Clock) -> None:
        """Follow another clock (an external sandbox's); only before the store is opened."""
        if self.store is not None:
            raise RuntimeError("the clock cannot change once the store is open")
        self.clock = self.supervisor.clock = clock

    def open_store(self) -> Store:
        """Open the state store on the daemon's clock (the first step of the build)."""
        if self.store is None:
            self.store = Store.open(self.settings.state_dir, clock=self.clock)
        return self.store

    def on_phase(self, phase: str, name: str, hook: Hook) -> None:
        """Run `hook` in start phase `phase` (one of `PHASES`)."""
        self._phases[phase].append((name, hook))

    def on_schedule(self, add: Callable[[Jobs], None]) -> None:
        """Add jobs in the schedule phase."""
        self._schedulers.append(add)

    def on_close(self, name: str, hook: Hook) -> None:
        """Close something at stop; closed in reverse order of registration."""
        self._closers.append((name, hook))

    def on_task(self, name: str, factory: Hook) -> None:
        """Run `factory()` as a supervised long-running task once the daemon is scheduled."""
        self._tasks.append((name, factory))

    def on_maintenance(self, fn: Callable[[], Any]) -> None:
        """Run `fn` in the hourly maintenance job (pruning)."""
        self._maintenance.append(fn)

    def report(self, name: str, reporter: Reporter) -> None:
        """Declare `reporter` as the source of the `name` part of `/status`."""
        self._reporters[name] = reporter

    # -- signals ------------------------------------------------------------------------------------------

    def request_stop(self, reason: str = "requested") -> None:
        if not self.stop_event.is_set():
            log.info("daemon.stop_requested", reason=reason)
            self.stop_reason = reason
            self.stop_event.set()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    # -- lifecycle ----------------------------------------------------------------------------------------

    async def run(self, build: Callable[[Daemon], Awaitable[None]], duration: float | None = None) -> int:
        """Build, start in phases, run until stopped (or `duration` wall seconds); returns the exit code."""
        self._lock.acquire()
        self._install_signals()
        try:
            log.info("daemon.start", bot=self.settings.bot_name, mode=self.settings.mode,
                     state_dir=str(self.settings.state_dir), sandbox=self.settings.sandbox.enabled,
                     strategies=len(self.settings.strategies), pid=os.getpid())
            starting = asyncio.create_task(self._start(build), name="daemon.start")
            stopped = asyncio.create_task(self.stop_event.wait())
            done, _ = await asyncio.wait({starting, stopped}, timeout=duration,
                                         return_when=asyncio.FIRST_COMPLETED)
            if starting in done:
                starting.result()  # a start-up error (bad config found late) propagates to the CLI
                remaining = None if duration is None else max(0.0, duration - self._uptime())
                try:
                    await asyncio.wait_for(self.stop_event.wait(), timeout=remaining)
                except TimeoutError:
                    log.info("daemon.duration_elapsed", seconds=duration)
                    self.stop_reason = "duration elapsed"
            elif not starting.done():
                log.info("daemon.start_interrupted", phase=self.phase)
                starting.cancel()
                await asyncio.wait({starting}, timeout=2.0)  # within the stop bound
            stopped.cancel()
            return 0
        finally:
            await self._shutdown()
            self._remove_signals()
            self._lock.release()

    def _uptime(self) -> float:
        return time.monotonic() - self._t0

    async def _start(self, build: Callable[[Daemon], Awaitable[None]]) -> None:
        self._t0 = time.monotonic()
        self.phase = "build"
        self.notifier.status("starting: build")
        await build(self)
        store = self.open_store()
        log.info("daemon.built", schema=store.schema_version, status=sorted(self._reporters))
        for phase in PHASES:
            self.phase = phase
            self.notifier.status(f"starting: {phase.replace('_', ' ')}")
            for name, hook in self._phases[phase]:
                await hook()
                log.info("daemon.phase_done", phase=phase, step=name)
        self.phase = "schedule"
        for add in self._schedulers:
            add(self.jobs)
        self.jobs.every("maintenance", self._maintain, every_s=MAINTENANCE_EVERY_S, first_in_s=60.0)
        if "http" in self._reporters:
            self.jobs.every("clock_skew", self._check_skew, every_s=SKEW_CHECK_S, first_in_s=SKEW_CHECK_S)
        self.scheduler.start()
        self.supervisor.spawn("liveness", self.liveness.run)
        for name, factory in self._tasks:
            self.supervisor.spawn(name, factory)
        self.phase = "running"
        # What start-up built (modules, settings, clients, strategies, warm-up windows) lives as long as the
        # process: kept out of the collector's full scans, which otherwise walk it all every time and hold the
        # loop for tens of milliseconds on a daemon of this size.
        gc.collect()
        gc.freeze()
        self.notifier.ready(status=self.status_line())
        log.info("daemon.ready", bot=self.settings.bot_name, jobs=sorted(self.jobs.states))
        self.events.publish(DaemonStarted(at=self.clock.now(), bot=self.settings.bot_name, mode=self.settings.mode,
                                          instances=tuple(s.name for s in self.settings.strategies if s.enabled),
                                          sandbox=self.settings.sandbox.enabled))

    async def _check_skew(self) -> None:
        """An alarm per service whose clock is more than `SKEW_WARN_S` from this machine's (see `bot.skew`)."""
        now = self.clock.now()
        bad = skewed(self._reporters["http"]())
        for service, seconds in bad.items():
            if service not in self._skew_alarms:
                self._skew_alarms.add(service)
                self.events.publish(AlarmRaised(at=now, name=f"clock_skew:{service}", detail=(
                    f"{service}'s clock is {seconds:+.1f}s from this machine's (limit {SKEW_WARN_S:g}s)")))
        for service in sorted(self._skew_alarms - set(bad)):
            self._skew_alarms.discard(service)
            self.events.publish(AlarmCleared(at=now, name=f"clock_skew:{service}"))

    async def _maintain(self) -> None:
        for fn in self._maintenance:
            fn()
        if self.store is not None:
            # On a connection of its own, in a thread, in small steps: the daemon's connection (and so the
            # event loop) never waits behind a long vacuum.
            await asyncio.to_thread(maintain_store, self.settings.state_dir)

    async def _shutdown(self) -> None:
        bound = float(self.settings.stop_timeout_seconds)
        deadline = time.monotonic() + bound
        self.phase = "stopping"
        self.notifier.stopping()
        log.info("daemon.stopping", timeout_s=bound)
        self.events.publish(DaemonStopping(at=self.clock.now(), bot=self.settings.bot_name, mode=self.settings.mode,
                                           reason=self.stop_reason))
        cut: list[str] = []
        self.jobs.pause()
        # In-flight jobs (a request sent, its outcome not yet recorded) finish; keep a reserve for closing.
        late = await self.jobs.drain(max(0.0, deadline - time.monotonic() - bound * 0.25))
        for job in late:  # past their share of the bound: cancelled, and named below
            task = self.jobs.in_flight().get(job)
            if task is not None:
                task.cancel()
        cut += [f"job:{j}" for j in late]
        # Tasks get up to a third of the bound (an order request in flight records its outcome), the rest is
        # kept for closing (cancel at stop, the outbox's flush, sessions).
        stuck = await self.supervisor.stop(bound_s=max(0.1, min(bound / 3, deadline - time.monotonic() - bound / 4)))
        cut += [f"task:{t}" for t in stuck]
        for name, hook in reversed(self._closers):
            left = deadline - time.monotonic()
            try:
                await asyncio.wait_for(hook(), timeout=max(0.05, left))
            except TimeoutError:
                cut.append(f"close:{name}")
            except Exception:
                log.exception("daemon.close_failed", component=name)
        self._closers.clear()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if cut:
            log.warning("daemon.stop_cut", cut=cut, timeout_s=bound,
                        note="these did not finish inside stop_timeout_seconds")
        if self.store is not None:
            self.store.close()
            self.store = None
        self.phase = "stopped"
        log.info("daemon.stopped")

    # -- what the status endpoint shows ---------------------------------------------------------------------

    def health(self) -> tuple[int, dict[str, Any]]:
        """`/health`: 200 while running, live and every upstream it needs is reachable and fresh; 503 with the
        reasons otherwise. A down upstream is availability, not liveness: it never stops the watchdog."""
        live = self.liveness.live()
        alarms = sorted(self.alarms.active)
        down = unavailable(alarms)
        reasons: list[str] = []
        if self.phase != "running":
            state = self.phase
            reasons.append(f"phase {self.phase}")
        elif not live:
            state = "stuck"
            reasons.append("not live: " + (", ".join(f"job {j} overdue" for j in self.liveness.jobs.overdue(
                self.liveness.grace_s)) or f"event loop lag {self.liveness.loop_lag_s:.1f}s"))
        elif down:
            state = "unavailable"
        else:
            state = "degraded" if alarms else "ok"
        reasons += [f"{a}: {self.alarms.active[a].get('detail', '')}" for a in down]
        code = 200 if state in ("ok", "degraded") else 503
        return code, {"status": state, "live": live, "available": not down, "alarms": alarms,
                      "reasons": reasons}

    def status_line(self) -> str:
        """The one-line state (systemd's `STATUS=`): phase or health, and the alarms that matter."""
        _code, h = self.health()
        line = f"{h['status']} ({self.settings.mode}, {self.settings.bot_name})"
        alarms: list[str] = h["alarms"]
        if alarms:
            shown = ", ".join(alarms[:3]) + (f" and {len(alarms) - 3} more" if len(alarms) > 3 else "")
            line += f"; alarms: {shown}"
        return line

    def report_of(self, name: str) -> Any:
        """One reporter's part of the status (None if there is none), e.g. the recorder's after the stop."""
        reporter = self._reporters.get(name)
        return reporter() if reporter is not None else None

    def status(self) -> dict[str, Any]:
        """A secret-free snapshot: the daemon's own state plus each declared reporter's part."""
        out: dict[str, Any] = {"bot": self.settings.bot_name, "mode": self.settings.mode,
                               "phase": self.phase, "now": self.clock.now().isoformat(),
                               "liveness": self.liveness.status(), "alarms": self.alarms.status(),
                               "jobs": self.jobs.status(), "tasks": self.supervisor.status(),
                               "subscriber_errors": self.events.subscriber_errors()}
        for name, reporter in self._reporters.items():
            out[name] = reporter()
        if isinstance(out.get("http"), dict):  # service clock minus this machine's, from Date headers
            out["clock_skew_s"] = skews(out["http"])
        return out
