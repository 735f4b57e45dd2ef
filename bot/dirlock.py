"""An exclusive lock on a directory, so two processes never write the same state (journal, simulators)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from bot.errors import ConfigError


class DirLock:
    """`flock` on `<directory>/<name>`, holding the owner's pid; released on `release()` or process exit."""

    def __init__(self, directory: Path, name: str, what: str) -> None:
        self.path = directory / name
        self.what = what  # "tradebot" or "sandbox": says who holds it in the error
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock, or `ConfigError` (exit 2) naming `state_dir` when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            where = self.path.parent
            raise ConfigError(f"state_dir {where} is in use by another tradebot process",
                              [("state_dir", f"{where} is locked by another running {self.what}")]) from None
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


def state_lock(state_dir: Path) -> DirLock:
    """The daemon's lock on its `state_dir`: one daemon (or state-changing command) per journal."""
    return DirLock(state_dir, "tradebot.lock", "tradebot")
