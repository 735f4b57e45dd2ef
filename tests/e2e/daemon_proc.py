"""Run `tradebot run` as a subprocess and follow its JSON log lines as they come."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.sandbox.embedded import CLOCK_FILE

ROOT = Path(__file__).resolve().parents[2]


# Where a test daemon's in-process sandbox world starts (see `pin_simulated_start`).
SIM_START = datetime(2026, 3, 2, 9, 0, 30, tzinfo=UTC)


def paper_config(wd: Path, *, top: str = "", extra: str = "", strategies: bool = True,
                 log_level: str = "info", sim_start: datetime | None = SIM_START) -> Path:
    """A copy of config/paper.toml in `wd` (state under `wd/var`), status on a free port; its sandbox world
    pinned at `sim_start` (None: at the wall clock, as a fresh install starts)."""
    if sim_start is not None:
        pin_simulated_start(wd, sim_start, 1.0)  # a daemon at another speed re-anchors from here
    shutil.copytree(ROOT / "config", wd / "config", dirs_exist_ok=True)
    text = (ROOT / "config" / "paper.toml").read_text()
    if not strategies:
        text = text.split("[[strategies]]")[0]
    text = text.replace('state_dir = "var"', f'state_dir = "{wd / "var"}"')
    text = text.replace('log_level = "info"', f'log_level = "{log_level}"')
    text = text.replace('listen = "127.0.0.1:8787"', 'listen = "127.0.0.1:0"')
    text = top + "\n" + text + extra
    path = wd / "test.toml"
    path.write_text(text)
    return path


def pin_simulated_start(wd: Path, sim: datetime, speed: float) -> None:
    """Anchor the in-process sandbox's world (state under `wd/var`) at simulated `sim` now, at `speed`, as
    `bot.sandbox.embedded.sandbox_now` reads it: the market the daemon then sees, minutes without trades
    included, is the same whatever day the test runs (a fresh world otherwise starts at the wall clock). A
    daemon at another speed re-anchors at the simulated time this anchor gives when it starts."""
    state = wd / "var"
    state.mkdir(parents=True, exist_ok=True)
    anchor = {"sim": sim.isoformat(), "wall": datetime.now(UTC).isoformat(), "speed": speed}
    (state / CLOCK_FILE).write_text(json.dumps(anchor))


class DaemonProc:
    """A daemon subprocess; `wait_for` reads its stdout (JSON lines) up to an event, with a deadline."""

    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bot", "run", "--config", str(config), *args],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self.lines: list[dict[str, Any]] = []
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.url: str | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                try:
                    self._q.put(json.loads(line))
                except ValueError:
                    continue
        self._q.put(None)

    def wait_for(self, event: str, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        """The first log line (not seen before) with `event` and the `match` fields."""
        for seen in self.lines:
            if seen.get("event") == event and all(seen.get(k) == v for k, v in match.items()) and \
                    not seen.get("_taken"):
                seen["_taken"] = True
                return seen
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {event} {match} within {timeout}s; last lines: {self.lines[-5:]}")
            try:
                item = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if item is None:
                raise AssertionError(f"daemon exited before {event}: {self.stderr()[-2000:]}")
            self.lines.append(item)
            if item.get("event") == event and all(item.get(k) == v for k, v in match.items()):
                item["_taken"] = True
                return item

    def skip_pending(self) -> None:
        """Consume every line printed so far: later `wait_for` calls match only newer lines."""
        for seen in self.lines:
            seen["_taken"] = True
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._q.put(None)
                return
            item["_taken"] = True
            self.lines.append(item)

    def ready(self, timeout: float = 60.0) -> str:
        """Wait for READY; returns the status URL."""
        self.url = str(self.wait_for("status.listening", timeout)["url"])
        self.wait_for("daemon.ready", timeout)
        return self.url

    def get(self, path: str) -> tuple[int, bytes]:
        assert self.url is not None
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as err:
            return int(err.code), bytes(err.read())

    def get_json(self, path: str) -> Any:
        code, body = self.get(path)
        assert code == 200, body
        return json.loads(body)

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.finish(timeout)

    def kill(self) -> None:
        """SIGKILL, then collect every line it printed before it died."""
        self.proc.kill()
        self.finish(10)

    def finish(self, timeout: float = 30.0) -> int:
        rc = self.proc.wait(timeout)
        while True:
            item = self._q.get(timeout=10)
            if item is None:
                break
            self.lines.append(item)
        return rc

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.lines if e.get("event") == name]
