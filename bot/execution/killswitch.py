"""The kill switch: while it is on, the bot places no order and cancels the ones it has open.

It is on when either cause holds:

- **the file**: `risk.kill_switch_file` exists (in `state_dir` if relative: `touch var/KILL`; remove it
  to resume). Watched by `watch()`, a loop the daemon runs as a supervised task, which looks at the file every
  `CHECK_EVERY_S` wall seconds (whatever the market clock's speed), so the daemon sees it within 5 s. A
  file that cannot be checked (permission denied, an I/O error) counts as present: the switch fails safe.
- **a command**: `engage(reason)` (`POST /kill`, `tradebot kill`). Kept in the store's kv, so a restarted
  daemon is still stopped until `release()` (`POST /resume`, `tradebot resume`).

`release()` clears the command only: while the file exists the switch stays on, and its answer says so.

The switch cancels nothing itself. On every on/off transition it publishes one `KillSwitchChanged` on the
event bus (and logs one line); the order manager subscribes, cancels every open order and places nothing
while it is on (`on`, and `bot.execution.risk`'s `kill_switch` check). A switch that is already on when
the daemon starts is announced by the first `check_once()`: `announce()`, a start phase hook registered
before execution reconciles, so no order job runs before subscribers know (`watch()` also starts with one).

Usage (composition root)::

    ks = KillSwitch(settings.kill_switch_path, store, d.clock, d.events)
    d.on_phase("reconcile", "kill_switch", ks.announce)  # before execution's own reconcile step
    d.on_task("kill_switch", ks.watch)
    d.report("kill_switch", ks.status)
    StatusServer(..., kill=ks.engage, resume=ks.release)
"""

from __future__ import annotations

import asyncio
import errno
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.clock import Clock
from bot.events import EventBus, KillSwitchChanged
from bot.logs import get_logger
from bot.store import Store

log = get_logger("bot.execution.killswitch")

KV_KEY = "kill_switch.command"  # {"reason": str, "at": datetime} while engaged by command
CHECK_EVERY_S = 1.0  # wall seconds between looks at the file (the daemon must see it within 5 s)
MAX_REASON = 200
FILE, COMMAND = "file", "command"
_ABSENT = (errno.ENOENT, errno.ENOTDIR)


class KillSwitch:
    """On while `path` exists or an engage command holds; publishes `KillSwitchChanged` on each change."""

    def __init__(self, path: Path, store: Store, clock: Clock, events: EventBus, *,
                 every_s: float = CHECK_EVERY_S) -> None:
        self.path = path
        self.every_s = every_s
        self._store = store
        self._clock = clock
        self._events = events
        command = store.kv_get(KV_KEY)
        self._command: dict[str, Any] | None = command if isinstance(command, dict) else None
        self._file_present, self._file_note = self._look()
        self._on = self._file_present or self._command is not None
        self._told = False  # what subscribers were last told; nothing before the first check means off
        self._since: datetime | None = clock.now() if self._on else None
        self._reason, self._source = self._cause()
        self.checks = 0
        self.changes = 0
        self._last_check: datetime | None = None

    # -- state --------------------------------------------------------------------------------------------

    @property
    def on(self) -> bool:
        """Whether trading is stopped (as of the last check, engage or release)."""
        return self._on

    def _look(self) -> tuple[bool, str]:
        """Whether the file is there; a file that cannot be checked counts as there (with why)."""
        try:
            os.stat(self.path)
        except OSError as exc:
            if exc.errno in _ABSENT:
                return False, ""
            return True, f"cannot check kill file {self.path}: {exc.strerror or exc}"
        return True, ""

    def _cause(self) -> tuple[str, str]:
        """The reason and source of the current state (a command's reason first when both hold)."""
        if self._command is not None:
            return str(self._command.get("reason", "")), COMMAND
        if self._file_present:
            return self._file_note or f"kill file {self.path} exists", FILE
        return "", ""

    def _settle(self, source: str, off_reason: str) -> bool:
        """Recompute on/off; on a change from what subscribers were told, publish and log once."""
        self._on = self._file_present or self._command is not None
        if self._on:
            self._reason, self._source = self._cause()
        if self._on == self._told:
            return False
        now = self._clock.now()
        self._told = self._on
        self.changes += 1
        if self._on:
            self._since = self._since or now
            event = KillSwitchChanged(at=now, on=True, reason=self._reason, source=self._source)
            log.warning("kill_switch.on", reason=self._reason, source=self._source, file=str(self.path))
        else:
            self._since = None
            self._reason, self._source = off_reason, source
            event = KillSwitchChanged(at=now, on=False, reason=off_reason, source=source)
            log.warning("kill_switch.off", reason=off_reason, source=source, file=str(self.path))
        self._events.publish(event)
        return True

    # -- the file -----------------------------------------------------------------------------------------

    def check_once(self) -> bool:
        """Look at the file once and publish a change (the first call also announces a switch already on);
        returns `on`."""
        was = self._file_present
        self._file_present, self._file_note = self._look()
        self.checks += 1
        self._last_check = self._clock.now()
        if was and not self._file_present and self._command is not None:
            log.info("kill_switch.file_removed", file=str(self.path),
                     note="still on: engaged by command; `tradebot resume` clears it")
        self._settle(FILE, f"kill file {self.path} removed")
        return self._on

    async def announce(self) -> None:
        """A start phase hook (before reconcile): tell subscribers now if the switch is already on."""
        self.check_once()

    async def watch(self) -> None:
        """Check the file every `every_s` wall seconds, forever (run as a supervised task)."""
        while True:
            self.check_once()
            await asyncio.sleep(self.every_s)

    # -- commands -----------------------------------------------------------------------------------------

    def engage(self, reason: str = "") -> dict[str, Any]:
        """Stop trading until `release()`, across restarts; returns the new state with a message."""
        reason = " ".join(str(reason).split())[:MAX_REASON] or "engaged by command"
        was_on, before = self._on, self._reason
        at = self._command.get("at") if self._command else None
        self._command = {"reason": reason, "at": at if isinstance(at, datetime) else self._clock.now()}
        self._store.kv_set(KV_KEY, self._command)
        if not self._settle(COMMAND, ""):
            log.info("kill_switch.command", action="engage", reason=reason, already_on=was_on)
        message = f"kill switch already on ({before}); engaged by command: {reason}" if was_on else \
            f"kill switch on: {reason}"
        return {**self.status(), "changed": not was_on, "message": message}

    def release(self) -> dict[str, Any]:
        """Clear the command; the switch goes off unless the kill file exists (the answer says so)."""
        was_on, had_command = self._on, self._command is not None
        if had_command:
            self._command = None
            self._store.kv_delete(KV_KEY)
        self._file_present, self._file_note = self._look()
        published = self._settle(COMMAND, "resumed by command")
        if self._on:
            why = self._file_note or f"kill file {self.path} exists"
            message = f"kill switch stays on: {why}; remove it to resume"
        elif was_on:
            message = "kill switch off: trading resumes"
        else:
            message = "kill switch was already off"
        if not published:
            log.info("kill_switch.command", action="release", had_command=had_command, on=self._on,
                     note=message)
        return {**self.status(), "changed": was_on and not self._on, "message": message}

    # -- /status --------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """A secret-free snapshot for `/status` (`kill_switch`)."""
        cmd = self._command
        return {
            "on": self._on,
            "reason": self._reason if self._on else "",
            "source": self._source if self._on else "",
            "since": self._since.isoformat() if self._since and self._on else None,
            "file": str(self.path),
            "file_present": self._file_present,
            "command": None if cmd is None else {"reason": cmd.get("reason", ""), "at": _iso(cmd.get("at"))},
            "checks": self.checks,
            "last_check": _iso(self._last_check),
            "changes": self.changes,
        }


def _iso(value: object) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None
