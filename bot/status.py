"""Local HTTP status endpoint: `/health` (open), `/status` (JSON), `/metrics` (Prometheus text).

When `status.token` is set, everything but `/health` requires `Authorization: Bearer <token>`. Nothing
served here contains a secret: components report counters and states, never configuration values.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bot.errors import ConfigError
from bot.logs import get_logger
from bot.settings import StatusSettings

log = get_logger("bot.status")


def _flatten(prefix: str, value: Any, out: list[str]) -> None:
    if isinstance(value, bool):
        out.append(f"{prefix} {int(value)}")
    elif isinstance(value, int | float):
        out.append(f"{prefix} {value}")
    elif isinstance(value, dict):
        for k, v in value.items():
            key = "".join(ch if ch.isalnum() else "_" for ch in str(k))
            _flatten(f"{prefix}_{key}", v, out)


class StatusServer:
    """Serves the daemon's status on `status.listen`."""

    name = "status"

    def __init__(self, settings: StatusSettings, snapshot: Callable[[], dict[str, Any]],
                 healthy: Callable[[], bool]) -> None:
        self.settings = settings
        self._snapshot = snapshot
        self._healthy = healthy
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    def _authorised(self, request: web.Request) -> bool:
        token = self.settings.token.get_secret_value()
        if not token:
            return True
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    async def _health(self, request: web.Request) -> web.Response:
        ok = self._healthy()
        return web.json_response({"status": "ok" if ok else "degraded"}, status=200 if ok else 503)

    async def _status(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.Response(text=json.dumps(self._snapshot(), default=str, indent=1),
                            content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        lines: list[str] = []
        _flatten("tradebot", self._snapshot(), lines)
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/status", self._status)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigError(f"cannot listen on {self.settings.listen}: {exc.strerror}",
                              [("status.listen", f"{self.settings.listen}: {exc.strerror}")]) from None
        port = self.settings.port
        addresses = self._runner.addresses
        if addresses:
            port = int(addresses[0][1])
        self.url = f"http://{self.settings.host}:{port}"
        log.info("status.listening", url=self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
