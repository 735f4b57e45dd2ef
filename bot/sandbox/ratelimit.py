"""Rate limiters for the simulators, measured on the injected clock (never on wall time).

Two shapes, matching the contracts: a rolling window (Atmos: 20 per any 60 s; sFOX and CoinBTR: 60 per
60 s) and a fixed window that resets at the start of each clock minute (Atmotube). Both are keyed (per API
key, token or client address). A rejected request is not recorded, so a client that backs off recovers as
soon as the window allows; a client that hammers keeps getting 429 until then.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import datetime

from bot.clock import Clock


class RollingWindowLimiter:
    """At most `limit` requests per key in any rolling `window_s` seconds of clock time."""

    def __init__(self, clock: Clock, limit: int, window_s: float = 60.0) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self._clock = clock
        self.limit = limit
        self.window_s = float(window_s)
        self._hits: dict[str, deque[float]] = {}

    def _prune(self, key: str, now: float) -> deque[float]:
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        edge = now - self.window_s
        while hits and hits[0] <= edge:
            hits.popleft()
        return hits

    def allow(self, key: str) -> bool:
        """Record a request for `key` if the window has room; False means answer 429."""
        now = self._clock.now().timestamp()
        hits = self._prune(key, now)
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        return True

    def retry_after(self, key: str) -> int:
        """Whole clock seconds until `key` may send again (at least 1 when it is limited, else 0)."""
        now = self._clock.now().timestamp()
        hits = self._prune(key, now)
        if len(hits) < self.limit:
            return 0
        return max(1, math.ceil(hits[0] + self.window_s - now))

    def remaining(self, key: str) -> int:
        """Requests `key` may still send in the current window."""
        return self.limit - len(self._prune(key, self._clock.now().timestamp()))

    def reset(self) -> None:
        """Forget every recorded request."""
        self._hits.clear()


class FixedMinuteLimiter:
    """At most `limit` requests per key per clock minute; the count resets when the minute changes."""

    def __init__(self, clock: Clock, limit: int) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self._clock = clock
        self.limit = limit
        self._counts: dict[str, tuple[datetime, int]] = {}

    def _minute(self) -> datetime:
        return self._clock.now().replace(second=0, microsecond=0)

    def allow(self, key: str) -> bool:
        """Record a request for `key` if this minute has room; False means answer 429."""
        minute = self._minute()
        start, count = self._counts.get(key, (minute, 0))
        if start != minute:
            count = 0
        if count >= self.limit:
            return False
        self._counts[key] = (minute, count + 1)
        return True

    def retry_after(self, key: str) -> int:
        """Whole clock seconds until the next minute starts when `key` is limited, else 0."""
        minute = self._minute()
        start, count = self._counts.get(key, (minute, 0))
        if start != minute or count < self.limit:
            return 0
        now = self._clock.now()
        return max(1, math.ceil(60 - (now - minute).total_seconds()))

    def reset(self) -> None:
        """Forget every recorded request."""
        self._counts.clear()
