"""Local HTTP status endpoint: `/health` (open), `/status` (JSON), `/metrics` (Prometheus exposition).

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
from bot.metrics import CONTENT_TYPE
from bot.settings import StatusSettings

log = get_logger("bot.status")


class StatusServer:
    """Serves the daemon's health, status and metrics on `status.listen`."""

    def __init__(self, settings: StatusSettings, snapshot: Callable[[], dict[str, Any]],
                 health: Callable[[], tuple[int, dict[str, Any]]], metrics: Callable[[], bytes]) -> None:
        self.settings = settings
        self._snapshot = snapshot
        self._health_fn = health
        self._metrics_fn = metrics
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    def _authorised(self, request: web.Request) -> bool:
        token = self.settings.token.get_secret_value()
        if not token:
            return True
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    async def _health(self, request: web.Request) -> web.Response:
        code, body = self._health_fn()
        return web.json_response(body, status=code)

    async def _status(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.Response(text=json.dumps(self._snapshot(), default=str, indent=1),
                            content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.Response(body=self._metrics_fn(), headers={"Content-Type": CONTENT_TYPE})

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
