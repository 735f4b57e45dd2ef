"""The sandbox as the daemon sees it: in-process simulators, or an external `tradebot sandbox`, and its clock.

    link = await open_sandbox(settings, settings.state_dir)
    daemon.use_clock(link.clock)                   # one clock for the bot and the simulators
    clients = Clients.build(settings, daemon.clock, link.urls)
    ...
    await link.close()                             # last: the simulators outlive everything using them

In-process (`[sandbox] enabled`, no `url`): the simulated world's clock is anchored in
`state_dir/sandbox-clock.json` (simulated time at a wall instant, and the speed) so it keeps running while
the daemon is down and carries on after a restart; the simulators' state (CoinBTR exchange, Atlas) lives in
`state_dir/sandbox/` and survives a SIGKILL of the daemon (see `bot.sandbox.runner`). They are started at
once, on ephemeral loopback ports, so their URLs are known before any client is built.

External (`[sandbox] url = "http://127.0.0.1:18000"`, the `--port-base` of a `tradebot sandbox`): its
`GET /_sandbox/info` gives the services' URLs and its clock (`{"sim", "wall", "speed"}`, read at one instant),
and the daemon's clock is an `AcceleratedClock` at the same simulated time for the same wall instant and at
the same speed, so the two stay in step for as long as the hosts' wall clocks agree. The sandbox's own
speed and seed win over this config's.

`tradebot sandbox --state-dir DIR` uses the same layout (`DIR/sandbox-clock.json`, `DIR/sandbox/`), so it can
be pointed at a daemon's state_dir to carry on the world an in-process demo left.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import structlog

from bot.clock import AcceleratedClock, Clock, WallClock, parse_iso
from bot.errors import ConfigError
from bot.settings import Settings

log = structlog.get_logger(__name__)

CLOCK_FILE = "sandbox-clock.json"
SANDBOX_DIR = "sandbox"  # the simulators' state, under the daemon's (or `tradebot sandbox`'s) state dir
INFO_PATH = "/_sandbox/info"
INFO_TIMEOUT_S = 5.0
_UNSPECIFIED_HOSTS = frozenset({"0.0.0.0", "::", ""})


def sandbox_now(state_dir: Path, speed: float, wall_now: datetime) -> datetime:
    """Simulated time of the sandbox world, continuous across restarts.

    The sandbox world keeps running while the daemon is down (so a restart has a gap to backfill, as in
    real life); its anchor (simulated time at a wall instant, and the speed) lives in `state_dir`. A change
    of speed re-anchors at the current simulated time.
    """
    path = state_dir / CLOCK_FILE
    try:
        data = json.loads(path.read_text())
        sim = datetime.fromisoformat(data["sim"]) + (wall_now - datetime.fromisoformat(data["wall"])) * float(
            data["speed"])
        if float(data["speed"]) == speed:
            return sim
    except (OSError, ValueError, KeyError, TypeError):
        sim = wall_now
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        fh.write(json.dumps({"sim": sim.isoformat(), "wall": wall_now.isoformat(), "speed": speed}))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return sim


def anchored_clock(state_dir: Path, speed: float) -> AcceleratedClock:
    """An accelerated clock continuing the world anchored in `state_dir` (see `sandbox_now`)."""
    return AcceleratedClock(speed, start=sandbox_now(state_dir, speed, datetime.now(UTC)))


def make_clock(settings: Settings, state_dir: Path | None = None) -> Clock:
    """In-process sandbox: its world's clock, anchored in `state_dir` (default `settings.state_dir`) at
    `sandbox.speed` (also at speed 1, so simulated time never jumps back to wall time after a change of
    speed). Real services: wall time."""
    if settings.sandbox.enabled:
        return anchored_clock(state_dir or settings.state_dir, settings.sandbox.speed)
    return WallClock()


def clock_from_info(clock: dict[str, Any], wall_now: datetime | None = None) -> AcceleratedClock:
    """A clock in step with a published `{"sim", "wall", "speed"}`: the same simulated time at the same wall
    instant, at the same speed."""
    speed = float(clock["speed"])
    wall_now = wall_now or datetime.now(UTC)
    start = parse_iso(str(clock["sim"])) + (wall_now - parse_iso(str(clock["wall"]))) * speed
    return AcceleratedClock(speed, start=start)


@dataclass
class SandboxLink:
    """An open sandbox: the clock to run on, the services' base URLs, and how to let go of it. Close it
    last (after everything that talks to the simulators stopped): in-process simulators stop with it."""

    clock: Clock
    urls: dict[str, str]
    state_dir: Path
    external: str = ""  # the external sandbox's base URL; "" when in-process (or no sandbox)
    sandbox: Any = None  # the in-process `bot.sandbox.runner.Sandbox`, if any
    _closed: bool = field(default=False, repr=False)

    def status(self) -> dict[str, Any]:
        """`{"mode": "in-process"|"external"|"off", "urls", "speed"}` (+ `"url"` when external)."""
        mode = "external" if self.external else ("in-process" if self.sandbox is not None else "off")
        out: dict[str, Any] = {"mode": mode, "urls": dict(self.urls), "speed": self.clock.speed}
        if self.external:
            out["url"] = self.external
        return out

    async def close(self) -> None:
        """Stop and close in-process simulators (their state stays in `state_dir/sandbox/`). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.sandbox is not None:
            await self.sandbox.close()


async def open_sandbox(settings: Settings, state_dir: Path) -> SandboxLink:
    """The sandbox the settings ask for, ready to use (see the module docstring).

    Without `[sandbox] enabled`: a link with wall time and no URLs. With `sandbox.url`: the external sandbox,
    or `ConfigError` naming `sandbox.url` when it does not answer `/_sandbox/info`. Otherwise the in-process
    simulators, started."""
    if not settings.sandbox.enabled:
        return SandboxLink(WallClock(), {}, state_dir)
    if settings.sandbox.url:
        return await _open_external(settings.sandbox.url, state_dir)
    from bot.sandbox.runner import Sandbox  # the simulators are only imported when they are used

    clock = make_clock(settings, state_dir)
    sandbox = Sandbox(clock, settings=settings, state_dir=state_dir / SANDBOX_DIR)
    try:
        await sandbox.start()
    except BaseException:
        await sandbox.close()
        raise
    return SandboxLink(clock, dict(sandbox.urls), state_dir, sandbox=sandbox)


async def fetch_info(url: str, timeout_s: float = INFO_TIMEOUT_S) -> dict[str, Any]:
    """`GET {url}/_sandbox/info`, or `ConfigError` naming `sandbox.url` (unreachable, not a sandbox)."""
    def problem(reason: str) -> ConfigError:
        hint = "sandbox.url must be the --port-base of a running `tradebot sandbox`, e.g. http://127.0.0.1:18000"
        return ConfigError(f"cannot use the external sandbox at {url}",
                           [("sandbox.url", f"{url}: {reason}; {hint}")])

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http, \
                http.get(url + INFO_PATH) as resp:
            if resp.status != 200:
                raise problem(f"{INFO_PATH} answered HTTP {resp.status} (is it a tradebot sandbox?)")
            info = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise problem(f"unreachable ({type(exc).__name__}: {exc})" if str(exc) else
                      f"unreachable ({type(exc).__name__})") from None
    except ValueError:
        raise problem(f"{INFO_PATH} did not answer JSON") from None
    try:
        urls = {str(k): str(v) for k, v in info["urls"].items()}
        clock_from_info(info["clock"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise problem(f"{INFO_PATH} answered an unexpected body") from None
    return {**info, "urls": urls}


def _reachable(service_url: str, base_url: str) -> str:
    """A service URL the sandbox built from its listen address, with an unspecified host (0.0.0.0, ::)
    replaced by the host the daemon reached the sandbox at."""
    parts = urlsplit(service_url)
    if (parts.hostname or "") not in _UNSPECIFIED_HOSTS:
        return service_url
    base = urlsplit(base_url)
    host = base.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, f"{host}:{parts.port}", parts.path, parts.query, parts.fragment))


async def _open_external(url: str, state_dir: Path) -> SandboxLink:
    info = await fetch_info(url)
    clock = clock_from_info(info["clock"])
    urls = {name: _reachable(u, url) for name, u in info["urls"].items()}
    log.info("sandbox.external", url=url, speed=clock.speed, now=clock.now().isoformat(), **urls)
    return SandboxLink(clock, urls, state_dir, external=url)
