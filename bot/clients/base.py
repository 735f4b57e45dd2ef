"""What every client shares: one `HttpService`, its lifecycle and its counters; and when a candle is final."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Self

from bot.http import HttpService

# A candle is final only once it ended at least this long (clock time) before the request that fetched
# it was sent: a venue may still fold trades stamped just before the boundary into the minute that just
# ended. The time the answer arrived says nothing about that: the venue's snapshot is as of the request.
CANDLE_SETTLE = timedelta(seconds=2)


def candle_partial(start: datetime, period_s: int, sent_at: datetime) -> bool:
    """Whether the candle `[start, start + period_s)` may still change, as seen by a request sent at
    `sent_at`: True unless it ended at least `CANDLE_SETTLE` before."""
    return start + timedelta(seconds=period_s) + CANDLE_SETTLE > sent_at


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
