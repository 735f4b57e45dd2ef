"""`Sandbox`: the simulated market and all five simulators, served over loopback HTTP.

    async with Sandbox(clock, settings=settings) as sb:
        sb.urls["atmos"]            # "http://127.0.0.1:PORT"
        sb.faults["coinbtr"].script("drop_after", method="POST")
        await sb.stop_service("atlas")    # connection refused from now on (state kept)
        await sb.start_service("atlas")   # back on the same port

Ports are `port_base + 1 .. + 5` in the order of `SERVICES`, or ephemeral when `port_base` is None; an
index app on `port_base` itself (or its own ephemeral port, `index_url`) answers `GET /_sandbox/info` with
`{"urls": {service: url}, "clock": {"sim", "wall", "speed"}, "seed": int, "persistent": bool}`, so one URL
describes the whole sandbox. Credentials, balances, devices and rate limits come from `settings` when given
(the sandbox's own credentials in `credentials.py` are always accepted too).

With `state_dir`, the CoinBTR exchange (`coinbtr.sqlite3`) and Atlas (`atlas.sqlite3`) are kept there and a
new `Sandbox` on the same directory continues from them: every change is durable before its answer is sent,
so the state survives a SIGKILL at any moment (see `exchange_store`). The directory is locked
(`sandbox.lock`) while a Sandbox uses it. The market needs no state: it is a function of the seed and the
clock, so a restart continues the same world when the clock does (`bot.sandbox.embedded` keeps its anchor).
Faults, counters and rate-limit windows start fresh. `close()` (or leaving `async with`) stops serving and
closes the state; `stop()` only stops serving (`start()` serves again).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog
from aiohttp import web

from bot.clock import Clock
from bot.dirlock import DirLock
from bot.sandbox import atlas, atmos, atmotube, coinbtr, sfox
from bot.sandbox import credentials as cred
from bot.sandbox.exchange_store import ExchangeStore
from bot.sandbox.faults import CONTROL_PREFIX, Faults, clock_json
from bot.sandbox.market import SimMarket
from bot.settings import Settings

log = structlog.get_logger(__name__)

SERVICES = ("atmos", "sfox", "coinbtr", "atlas", "atmotube")
INDEX = "index"  # the app on port_base itself: GET /_sandbox/info
LOCK_FILE = "sandbox.lock"
_SHUTDOWN_S = 2.0


@dataclass
class _Served:
    build: Callable[[], web.Application]
    port: int
    runner: web.AppRunner | None = None


def _secret(value: Any) -> str:
    return str(value.get_secret_value()) if value is not None else ""


class Sandbox:
    """Builds the market and the five simulator apps and serves them; an async context manager."""

    def __init__(self, clock: Clock, *, seed: int | None = None, host: str = "127.0.0.1",
                 port_base: int | None = None, settings: Settings | None = None,
                 atlas_db: str = ":memory:", state_dir: Path | None = None) -> None:
        if seed is None:
            seed = settings.sandbox.seed if settings is not None else 42
        self.clock = clock
        self.seed = seed
        self.host = host
        self.port_base = port_base
        self.state_dir = state_dir
        self._lock: DirLock | None = None
        exchange_store: ExchangeStore | None = None
        if state_dir is not None:
            if atlas_db != ":memory:":
                raise ValueError("give either state_dir or atlas_db, not both")
            self._lock = DirLock(state_dir, LOCK_FILE, "sandbox (tradebot run or sandbox)")
            self._lock.acquire()
            atlas_db = str(state_dir / "atlas.sqlite3")
            exchange_store = ExchangeStore(state_dir / "coinbtr.sqlite3")
        self.market = SimMarket(clock, seed=seed)
        self.faults: dict[str, Faults] = {
            name: Faults(name, seed=seed + i, clock=clock) for i, name in enumerate(SERVICES)
        }

        atmos_keys = {cred.ATMOS_KEY}
        coinbtr_tokens = coinbtr.default_tokens()
        atlas_keys = {cred.ATLAS_KEY: cred.ATLAS_USER, cred.ATLAS_KEY_2: cred.ATLAS_USER_2}
        devices = list(cred.ATMOTUBE_DEVICES)
        atmotube_keys = {cred.ATMOTUBE_KEY: devices}
        balances: dict[str, Decimal] = dict(cred.COINBTR_BALANCES)
        rpm = {"atmos": 20, "sfox": 60, "coinbtr": 60, "atmotube": 60}
        if settings is not None:
            if key := _secret(settings.atmos.api_key):
                atmos_keys.add(key)
            if token := _secret(settings.coinbtr.token):
                coinbtr_tokens.setdefault(token, coinbtr_tokens[cred.COINBTR_TOKEN])
            if key := _secret(settings.atlas.api_key):
                atlas_keys.setdefault(key, cred.ATLAS_USER)
            devices += [d for d in settings.atmotube.devices if d not in devices]
            if key := _secret(settings.atmotube.api_key):
                atmotube_keys.setdefault(key, devices)
            balances = dict(settings.paper.balances)
            rpm = {"atmos": settings.atmos.requests_per_minute, "sfox": settings.sfox.requests_per_minute,
                   "coinbtr": settings.coinbtr.requests_per_minute,
                   "atmotube": settings.atmotube.requests_per_minute}

        self.atmos = atmos.AtmosSim(self.market, clock, atmos_keys, requests_per_minute=rpm["atmos"])
        self.sfox = sfox.SfoxSim(self.market, clock, requests_per_minute=rpm["sfox"])
        self.coinbtr = coinbtr.CoinbtrSim(self.market, clock, coinbtr_tokens, balances,
                                          requests_per_minute=rpm["coinbtr"], seed=seed, store=exchange_store)
        self.atlas = atlas.AtlasSim(clock, atlas_keys, db_path=atlas_db, seed=seed)
        self.atmotube = atmotube.AtmotubeSim(clock, atmotube_keys, seed=seed,
                                             requests_per_minute=rpm["atmotube"])
        f = self.faults
        builders: dict[str, Callable[[], web.Application]] = {
            "atmos": lambda: atmos.create_app(self.atmos, f["atmos"]),
            "sfox": lambda: sfox.create_app(self.sfox, f["sfox"]),
            "coinbtr": lambda: coinbtr.create_app(self.coinbtr, f["coinbtr"]),
            "atlas": lambda: atlas.create_app(self.atlas, f["atlas"]),
            "atmotube": lambda: atmotube.create_app(self.atmotube, f["atmotube"]),
        }
        self._served = {
            name: _Served(builders[name], 0 if port_base is None else port_base + 1 + i)
            for i, name in enumerate(SERVICES)
        }
        self._served[INDEX] = _Served(self._index_app, 0 if port_base is None else port_base)
        self.urls: dict[str, str] = {}
        self.index_url = ""
        self._closed = False

    async def __aenter__(self) -> Sandbox:
        try:
            await self.start()
        except BaseException:
            await self.close()  # `__aexit__` will not run: let go of the state (and its lock) here
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> None:
        """Serve every service and the index (a failure stops the ones already started)."""
        if self._closed:
            raise RuntimeError("this Sandbox is closed")
        try:
            for name in (*SERVICES, INDEX):
                await self.start_service(name)
        except BaseException:
            await self.stop()
            raise
        log.info("sandbox_started", seed=self.seed, index=self.index_url,
                 state_dir=str(self.state_dir) if self.state_dir else None, **self.urls)

    async def stop(self) -> None:
        """Stop every service that is running (state is kept; `start()` serves again)."""
        for name in (INDEX, *reversed(SERVICES)):
            await self.stop_service(name)

    async def close(self) -> None:
        """Stop serving, save and close the state (and unlock `state_dir`). Idempotent."""
        await self.stop()
        if self._closed:
            return
        self._closed = True
        self.coinbtr.close()
        self.atlas.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def info(self) -> dict[str, Any]:
        """What `GET /_sandbox/info` answers."""
        return {"urls": dict(self.urls), "clock": clock_json(self.clock), "seed": self.seed,
                "persistent": self.state_dir is not None}

    def _index_app(self) -> web.Application:
        async def info(_request: web.Request) -> web.Response:
            return web.json_response(self.info())

        async def clock(_request: web.Request) -> web.Response:
            return web.json_response(clock_json(self.clock))

        app = web.Application()
        app.router.add_get(CONTROL_PREFIX + "info", info)
        app.router.add_get(CONTROL_PREFIX + "clock", clock)
        return app

    async def start_service(self, name: str) -> None:
        """Serve `name` (again, on the same port after `stop_service`; its state is kept)."""
        served = self._served[name]
        if served.runner is not None:
            return
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, served.port))
        except OSError:
            sock.close()
            raise
        served.port = sock.getsockname()[1]  # the ephemeral port stays this service's port from now on
        runner = web.AppRunner(served.build(), access_log=None, shutdown_timeout=_SHUTDOWN_S)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        served.runner = runner
        host = f"[{self.host}]" if ":" in self.host else self.host
        if name == INDEX:
            self.index_url = f"http://{host}:{served.port}"
        else:
            self.urls[name] = f"http://{host}:{served.port}"

    async def stop_service(self, name: str) -> None:
        """Stop serving `name`: connections are refused until `start_service(name)`."""
        served = self._served[name]
        if served.runner is not None:
            runner, served.runner = served.runner, None
            await runner.cleanup()

    def running(self, name: str) -> bool:
        """Whether `name` is being served."""
        return self._served[name].runner is not None

    def counters(self) -> dict[str, dict[str, Any]]:
        """Every service's fault/request counters."""
        return {name: f.snapshot() for name, f in self.faults.items()}

    def reset_faults(self) -> None:
        """Clear every service's faults, counters and rate-limit windows."""
        for f in self.faults.values():
            f.reset()
