"""The composition root: one `Daemon` owns start-up, the main loop and an ordered, bounded shutdown.

Signal handlers only set an `asyncio.Event`. Shutdown order: stop scheduling new work, stop components in
reverse start order (each bounded by a timeout), close the store. Components are small objects with
`async start()` and `async stop()`; later issues add feeds, execution, the wallet watcher and the recorder.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.clock import Clock, WallClock
from bot.errors import ConfigError
from bot.logs import get_logger
from bot.settings import Settings
from bot.store import Store
from bot.systemd import Notifier

log = get_logger("bot.daemon")

STOP_TIMEOUT_S = 4.0  # the whole shutdown must fit in 5 s (systemd TimeoutStopSec is larger)
HEARTBEAT_S = 5.0


class Component(Protocol):
    """Something the daemon starts and stops."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class StateLock:
    """An exclusive lock on `state_dir` so two daemons never share a journal."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "tradebot.lock"
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise ConfigError(
                f"state_dir {self.path.parent} is in use by another tradebot process",
                [("state_dir", f"{self.path.parent} is locked by another running tradebot")],
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


class Daemon:
    """Owns the lifecycle of one tradebot instance."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or WallClock()
        self.stop_event = asyncio.Event()
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.notifier = Notifier()
        self.components: list[Component] = []
        self.store: Store | None = None
        self._lock = StateLock(settings.state_dir)
        self._started: list[Component] = []
        self.ticks = 0
        self.strategies_status: Callable[[], Any] | None = None

    def add(self, component: Component) -> None:
        self.components.append(component)

    def request_stop(self, reason: str = "requested") -> None:
        if not self.stop_event.is_set():
            log.info("daemon.stop_requested", reason=reason)
            self.stop_event.set()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    async def _heartbeat(self) -> None:
        self.ticks += 1
        if self.store is not None:
            self.store.kv_set("daemon.heartbeat", {"at": self.clock.now().isoformat(), "ticks": self.ticks})

    async def run(self, duration: float | None = None,
                  setup: Callable[[Daemon], Awaitable[None]] | None = None) -> int:
        """Run until SIGINT/SIGTERM or `duration` wall seconds; returns the process exit code."""
        self._lock.acquire()
        self._install_signals()
        try:
            self.store = Store.open(self.settings.state_dir)
            log.info("daemon.start", mode=self.settings.mode, state_dir=str(self.settings.state_dir),
                     sandbox=self.settings.sandbox.enabled, strategies=len(self.settings.strategies),
                     schema=self.store.schema_version, pid=os.getpid())
            if setup is not None:
                await setup(self)
            for comp in self.components:
                await comp.start()
                self._started.append(comp)
            self.scheduler.add_job(self._heartbeat, "interval", seconds=HEARTBEAT_S, id="heartbeat",
                                   max_instances=1, coalesce=True)
            self.scheduler.start()
            self.notifier.ready(status=f"running ({self.settings.mode})")
            log.info("daemon.ready", components=[c.name for c in self._started])
            try:
                await asyncio.wait_for(self.stop_event.wait(), timeout=duration)
            except TimeoutError:
                log.info("daemon.duration_elapsed", seconds=duration)
            return 0
        finally:
            await self._shutdown()
            self._remove_signals()
            self._lock.release()

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        log.info("daemon.stopping")
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        budget = STOP_TIMEOUT_S / max(1, len(self._started))
        for comp in reversed(self._started):
            try:
                await asyncio.wait_for(comp.stop(), timeout=max(0.5, budget))
            except TimeoutError:
                log.warning("daemon.component_stop_timeout", component=comp.name)
            except Exception:
                log.exception("daemon.component_stop_failed", component=comp.name)
        self._started.clear()
        if self.store is not None:
            self.store.close()
            self.store = None
        log.info("daemon.stopped", ticks=self.ticks)

    def healthy(self) -> bool:
        """Up and not stopping (the watchdog issue refines this to 'the tick pipeline is progressing')."""
        return bool(self._started) and not self.stop_event.is_set()

    def status(self) -> dict[str, Any]:
        """A secret-free snapshot for the status endpoint: each component reports its own part."""
        out: dict[str, Any] = {"mode": self.settings.mode, "now": self.clock.now().isoformat(),
                               "components": [c.name for c in self._started]}
        for comp in self._started:
            report = getattr(comp, "status", None)
            if callable(report) and comp.name != "status":
                out[comp.name] = report()
        if self.strategies_status is not None:
            out["strategies"] = self.strategies_status()
        return out
