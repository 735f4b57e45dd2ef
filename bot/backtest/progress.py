"""Progress bars (rich, on standard error) for the steps of a backtest or download that take over a second.

A step shows nothing at first; if it is still running after `DELAY_S`, a bar appears (a spinner when the
step has no known total) and follows its progress to the end. Quick steps never print anything.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DELAY_S = 1.0


class Step:
    """One step's progress: `advance(n)` as work is done; the bar (if shown) follows."""

    def __init__(self, description: str, total: float | None, enabled: bool) -> None:
        self.description = description
        self.total = total
        self.done = 0.0
        self._lock = threading.Lock()
        self._progress: Any = None
        self._task: Any = None
        self._timer = threading.Timer(DELAY_S, self._show) if enabled else None
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()

    def _show(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

        with self._lock:
            if self._timer is None:
                return
            progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                TaskProgressColumn(), TimeElapsedColumn(), console=Console(stderr=True))
            self._task = progress.add_task(self.description, total=self.total, completed=int(self.done))
            progress.start()
            self._progress = progress

    def advance(self, amount: float = 1.0) -> None:
        with self._lock:
            self.done += amount
            if self._progress is not None:
                self._progress.update(self._task, completed=self.done)

    def set_total(self, total: float) -> None:
        with self._lock:
            self.total = total
            if self._progress is not None:
                self._progress.update(self._task, total=total)

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._progress is not None:
                end = self.total if self.total is not None else max(self.done, 1.0)
                self._progress.update(self._task, total=end, completed=end)
                self._progress.stop()
                self._progress = None


@contextmanager
def step(description: str, total: float | None = None, enabled: bool = True) -> Iterator[Step]:
    """A step whose bar appears only if it takes over `DELAY_S`."""
    s = Step(description, total, enabled)
    try:
        yield s
    finally:
        s.close()
