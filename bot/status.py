"""Local HTTP status endpoint: `/health` (open), `/status` (JSON), `/metrics` (Prometheus exposition), and
the kill switch: `POST /kill` (optional JSON body `{"reason": "..."}`) and `POST /resume`.

When `status.token` is set, everything but `/health` requires `Authorization: Bearer <token>` (401
otherwise). `/kill` and `/resume` answer 404 when the daemon wired no kill switch. Nothing served here
contains a secret: components report counters and states, never configuration values.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bot.errors import BotError, ConfigError, excerpt
from bot.logs import get_logger
from bot.metrics import CONTENT_TYPE
from bot.settings import StatusSettings

log = get_logger("bot.status")

KillFn = Callable[[str], dict[str, Any]]
ResumeFn = Callable[[], dict[str, Any]]
MAX_BODY = 4096  # a kill request's body is a short reason


class StatusServer:
    """Serves the daemon's health, status and metrics on `status.listen`."""

    def __init__(self, settings: StatusSettings, snapshot: Callable[[], dict[str, Any]],
                 health: Callable[[], tuple[int, dict[str, Any]]], metrics: Callable[[], Callable[[], bytes]], *,
                 kill: KillFn | None = None, resume: ResumeFn | None = None) -> None:
        self.settings = settings
        self._kill_fn = kill
        self._resume_fn = resume
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
        # Compact: only the standard library's C encoder is fast enough for a large status (the indenting
        # encoder is pure Python: 10-35 ms on the loop for the bench daemon's).
        return web.Response(text=json.dumps(self._snapshot(), default=str),
                            content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        render = self._metrics_fn()  # the samples as of now, read on the loop; formatted off it
        return web.Response(body=await asyncio.to_thread(render), headers={"Content-Type": CONTENT_TYPE})

    async def _kill(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        if self._kill_fn is None:
            return web.json_response({"error": "this daemon has no kill switch"}, status=404)
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return web.json_response({"error": f"body over {MAX_BODY} bytes"}, status=413)
        reason = ""
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                return web.json_response({"error": 'body must be JSON: {"reason": "..."}'}, status=400)
            if not isinstance(body, dict) or not isinstance(body.get("reason", ""), str):
                return web.json_response({"error": 'body must be {"reason": "<text>"}'}, status=400)
            reason = body.get("reason", "")
        answer = self._kill_fn(reason)
        log.info("status.kill", reason=reason, on=answer.get("on"), peer=request.remote)
        return web.json_response(answer, dumps=_dumps)

    async def _resume(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        if self._resume_fn is None:
            return web.json_response({"error": "this daemon has no kill switch"}, status=404)
        answer = self._resume_fn()
        log.info("status.resume", on=answer.get("on"), peer=request.remote)
        return web.json_response(answer, dumps=_dumps)

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/health", self._health)
        app.router.add_get("/status", self._status)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/kill", self._kill)
        app.router.add_post("/resume", self._resume)
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


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


# -- the client side: `tradebot kill` / `tradebot resume` ---------------------------------------------------

def daemon_url(settings: StatusSettings) -> str:
    """The base URL a local command reaches the daemon's status endpoint at (`status.listen`)."""
    if settings.port == 0:
        raise ConfigError("status.listen has port 0 (any free port): a command cannot find the daemon",
                          [("status.listen", "set the port the daemon listens on, e.g. 127.0.0.1:8787")])
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.host, settings.host)
    return f"http://[{host}]:{settings.port}" if ":" in host else f"http://{host}:{settings.port}"


def call_daemon(settings: StatusSettings, path: str, body: dict[str, Any] | None = None, *,
                timeout_s: float = 10.0, hint: str = "") -> dict[str, Any]:
    """POST `body` to the running daemon's `path` (with the bearer token when one is set); its JSON answer.

    Only the network: never the state directory (it may belong to the service's own user). A daemon that
    does not answer is a `BotError` (exit 1) ending in `hint`; a refused token is a `ConfigError` (exit 2).
    """
    base = daemon_url(settings)
    headers = {"Content-Type": "application/json"}
    token = settings.token.get_secret_value()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body or {}).encode()
    req = urllib.request.Request(base + path, data=data, headers=headers, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    try:
        with opener.open(req, timeout=timeout_s) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        text = err.read().decode("utf-8", "replace")
        err.close()
        if err.code == 401:
            problem = "the daemon refused the token" if token else "the daemon requires a token (status.token)"
            raise ConfigError(f"the tradebot daemon at {base} refused {path}: unauthorized",
                              [("status.token", problem)]) from None
        try:
            detail = str(json.loads(text).get("error", text))
        except (ValueError, AttributeError):
            detail = text
        raise BotError(f"the tradebot daemon at {base} answered {path} with HTTP {err.code}: "
                       f"{excerpt(detail)}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        why = getattr(reason, "strerror", None) or str(reason)
        raise BotError(f"no tradebot daemon answers at {base} ({why}): is it running, with this "
                       f"status.listen?{' ' + hint if hint else ''}") from None
    except ValueError:
        raise BotError(f"the service at {base} answered {path} with something that is not JSON: "
                       "is it a tradebot daemon?") from None
    if not isinstance(answer, dict):
        raise BotError(f"the service at {base} answered {path} with unexpected JSON: is it a tradebot daemon?")
    return answer


# -- the client side: `tradebot status` ---------------------------------------------------------------------

def get_daemon(base: str, path: str, token: str = "", *, timeout_s: float = 10.0) -> tuple[int, Any]:
    """GET the daemon's `path`: its HTTP status and JSON body (an error status is an answer, not a failure).

    A daemon that does not answer, or answers something that is not JSON, is a `BotError` (exit 1).
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(base + path, headers=headers, method="GET")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    try:
        try:
            with opener.open(req, timeout=timeout_s) as resp:
                return int(resp.status), json.loads(resp.read())
        except urllib.error.HTTPError as err:
            raw = err.read()
            err.close()
            return int(err.code), json.loads(raw) if raw.strip() else {}
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        why = getattr(reason, "strerror", None) or str(reason)
        raise BotError(f"no tradebot daemon answers at {base} ({why}): is it running, with this "
                       "status.listen (or --url)?") from None
    except ValueError:
        raise BotError(f"the service at {base} answered {path} with something that is not JSON: "
                       "is it a tradebot daemon?") from None


def fetch_status(base: str, token: str = "", *, timeout_s: float = 10.0) -> tuple[int, dict[str, Any],
                                                                                  dict[str, Any]]:
    """`/health` (its code and body) and `/status` of the daemon at `base`. A refused token is a
    `ConfigError` (exit 2); anything else unexpected a `BotError` (exit 1)."""
    code, health = get_daemon(base, "/health", timeout_s=timeout_s)
    if code not in (200, 503) or not isinstance(health, dict) or "status" not in health:
        raise BotError(f"the service at {base} answered /health with HTTP {code} and no tradebot health: "
                       "is it a tradebot daemon?")
    scode, status = get_daemon(base, "/status", token, timeout_s=timeout_s)
    if scode == 401:
        problem = "the daemon refused the token" if token else "the daemon requires a token (--token-file)"
        raise ConfigError(f"the tradebot daemon at {base} refused /status: unauthorized",
                          [("status.token", problem)])
    if scode != 200 or not isinstance(status, dict):
        raise BotError(f"the tradebot daemon at {base} answered /status with HTTP {scode}")
    return code, health, status
