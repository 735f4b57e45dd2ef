"""CandleBook: one stream's candles, ordered, de-duplicated, gaps kept, the partial newest apart.

A candle is *closed* when a later candle of the stream was seen, or when it ended a settle margin before
the request that fetched it was sent (clients flag the others `partial`). The book emits each final candle
exactly once, in time order; a re-polled partial candle replaces the earlier
version of the same minute; a candle older than the last one emitted is ignored (counted as late). Gaps
(minutes with no trades) stay gaps. Memory is bounded by `max_candles`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bot.domain import Candle


@dataclass(frozen=True, slots=True)
class Staleness:
    stale: bool
    age_s: float | None  # seconds since the newest closed candle ended; None when there is none
    limit_s: float


class CandleBook:
    """Closed candles of one stream plus the current partial one."""

    def __init__(self, key: str, period_s: int, max_candles: int = 2000) -> None:
        self.key = key
        self.period_s = period_s
        self.max_candles = max_candles
        self._closed: deque[Candle] = deque(maxlen=max_candles)
        self.partial: Candle | None = None
        self._floor: datetime | None = None  # newest candle already emitted before a restart
        self.late = 0  # candles that arrived after a newer one had been emitted

    def __len__(self) -> int:
        return len(self._closed)

    @property
    def last_closed(self) -> Candle | None:
        return self._closed[-1] if self._closed else None

    def closed(self, n: int | None = None) -> list[Candle]:
        """The newest `n` closed candles (all when None), oldest first."""
        items = list(self._closed)
        return items if n is None else items[-n:]

    def seed(self, last_closed: datetime) -> None:
        """Mark candles up to `last_closed` as already emitted (after a restart) without storing any."""
        if self.last_closed is None:
            self._floor = last_closed

    def update(self, candles: Iterable[Candle]) -> list[Candle]:
        """Merge fetched candles; returns the newly final candles, oldest first, each exactly once."""
        last = self.last_closed.time if self.last_closed else self._floor
        final: dict[datetime, Candle] = {}
        newest_partial = self.partial
        batch = list(candles)
        # A later candle in the same answer proves the earlier minutes are over, whatever their flag says.
        newest = max((c.time for c in batch), default=None)
        for c in batch:
            if c.partial and newest is not None and c.time < newest:
                c = replace(c, partial=False)
            if last is not None and c.time <= last:
                if not c.partial and c.time < last:
                    self.late += 1
                continue
            if c.partial:
                if newest_partial is None or c.time >= newest_partial.time:
                    newest_partial = c
            else:
                final[c.time] = c  # a later fetch of the same minute wins
        emitted = [final[t] for t in sorted(final)]
        for c in emitted:
            self._closed.append(c)
        if emitted and newest_partial is not None and newest_partial.time <= emitted[-1].time:
            newest_partial = None  # its final version has arrived
        self.partial = newest_partial
        return emitted

    def fetch_from(self, now: datetime, lookback: int) -> datetime:
        """Where the next poll should start: the first candle not yet final (or `lookback` periods back)."""
        if self.last_closed is not None:
            return self.last_closed.time + timedelta(seconds=self.period_s)
        if self._floor is not None:
            return self._floor + timedelta(seconds=self.period_s)
        return now - timedelta(seconds=self.period_s * lookback)

    def staleness(self, now: datetime, grace_s: float) -> Staleness:
        """Stale when the newest closed candle ended more than two periods plus `grace_s` ago."""
        limit = 2 * self.period_s + grace_s
        last = self.last_closed
        if last is None:
            return Staleness(True, None, limit)
        age = (now - last.end).total_seconds()
        return Staleness(age > limit, age, limit)
