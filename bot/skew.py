"""Clock skew between this machine and each service, from the `Date` header of their answers.

Candle settling and `since` queries assume the services' clocks agree with ours; a skew above
`SKEW_WARN_S` is logged once per service, raised as an alarm (`clock_skew:<service>`) and shown on `/status`.

Skew is always measured against this machine's *wall* clock (`time.time()`), never against the bot's
clock: in the demo the bot's clock is the sandbox's simulated, sped-up market time, while the sandbox's
servers (aiohttp) stamp `Date` with the real time, so a wall-clock comparison reads about 0 there and the
demo raises no false alarm; against real services it is the skew NTP would fix.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

SKEW_WARN_S = 2.0  # above this (either way) the skew is warned about
MAX_ROUND_TRIP_S = 1.0  # a slower answer says too little about when the server stamped it
SAMPLES = 15  # the estimate is the median of this many newest samples


def skew_sample(date_header: str | None, sent_wall: float, received_wall: float) -> float | None:
    """One estimate of (service clock - our wall clock) in seconds, or None when the answer cannot tell.

    `Date` has whole seconds, so the server's time was in [D, D+1) when it answered, somewhere between our
    `sent_wall` and `received_wall`: the midpoints are compared, off by at most 0.5 s + half the round trip.
    """
    if not date_header or received_wall < sent_wall or received_wall - sent_wall > MAX_ROUND_TRIP_S:
        return None
    try:
        stamped = parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError):
        return None
    if stamped.tzinfo is None:  # RFC 7231 dates are GMT
        return None
    return stamped.timestamp() + 0.5 - (sent_wall + received_wall) / 2


class ClockSkew:
    """The running skew estimate of one service: the median of its newest samples."""

    def __init__(self, samples: int = SAMPLES) -> None:
        self._samples: deque[float] = deque(maxlen=samples)
        self.warned = False

    def observe(self, date_header: str | None, sent_wall: float, received_wall: float) -> float | None:
        """Add one answer; returns the current estimate (None until an answer could tell)."""
        sample = skew_sample(date_header, sent_wall, received_wall)
        if sample is not None:
            self._samples.append(sample)
        return self.seconds()

    def seconds(self) -> float | None:
        """The service's clock minus ours, in seconds (positive: the service is ahead)."""
        return round(statistics.median(self._samples), 3) if self._samples else None

    def newly_skewed(self) -> bool | None:
        """True the first time the estimate passes `SKEW_WARN_S`, False the first time it is back under,
        None otherwise: what to log once."""
        value = self.seconds()
        if value is None:
            return None
        skewed = abs(value) > SKEW_WARN_S
        if skewed == self.warned:
            return None
        self.warned = skewed
        return skewed


def skews(snapshots: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """Per service, the skew in its HTTP snapshot (`clock_skew_s`)."""
    return {name: snap.get("clock_skew_s") for name, snap in sorted(snapshots.items())}


def skewed(snapshots: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """The services whose skew is above `SKEW_WARN_S`."""
    return {name: s for name, s in skews(snapshots).items() if s is not None and abs(s) > SKEW_WARN_S}
