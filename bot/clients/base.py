"""What every client shares: one `HttpService`, its lifecycle and its counters."""

from __future__ import annotations

from typing import Any, Self

from bot.http import HttpService


class ServiceClient:
    """Base of the per-service clients: owns the shared `HttpService` (session, limiter, counters)."""

    def __init__(self, http: HttpService) -> None:
        self.http = http

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.http.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def snapshot(self) -> dict[str, Any]:
        """HTTP counters for the status endpoint."""
        return self.http.snapshot()
