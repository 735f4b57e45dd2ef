"""Poll planning: which stream is polled how often, so no API's request budget is ever exceeded.

Pure: a function of the configured streams and the budgets, tested with tables. The daemon turns the plan
into scheduler jobs.

Rules:
- Each service may use `headroom` of its `requests_per_minute` for routine polls; the rest is kept for
  warm-up, backfill after a hole, and retries.
- A stream is ideally polled once per candle period, `close_delay_s` after a candle is due to close; streams
  of one service are staggered so their requests spread over the period instead of bursting together, and
  each further service (in configuration order) starts `SERVICE_STAGGER_S` later, so two services' streams
  are never polled at the same instant: each poll's cycle (evaluation, hand-offs, orders) runs without
  waiting behind another's on the event loop.
- When a service has more streams than budget, streams that feed a strategy are served first; the others
  are stretched to poll every k periods (each poll then fetches the k candles it missed, so nothing is lost,
  only latency), and when even `max_stretch` periods do not fit, dropped. The plan says what it degraded
  and what it dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

DEFAULT_HEADROOM = 0.75
DEFAULT_CLOSE_DELAY_S = 2.0
DEFAULT_MAX_STRETCH = 10
SERVICE_STAGGER_S = 0.5  # each further service starts its polls this much later: cycles of two services never
                         # land on the same instant and queue behind each other on the one event loop


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A stream to poll: `key` is unique, `service` names the budget it draws on."""

    key: str
    service: str
    period_s: int
    feeds_strategy: bool = True
    requests_per_poll: int = 1


@dataclass(frozen=True, slots=True)
class PlannedPoll:
    key: str
    service: str
    interval_s: float  # seconds between polls (a multiple of the period)
    offset_s: float  # seconds after each period boundary at which to poll
    stretch: int  # interval / period; 1 = every candle

    @property
    def requests_per_minute(self) -> float:
        return 60.0 / self.interval_s


@dataclass(frozen=True, slots=True)
class Dropped:
    key: str
    service: str
    reason: str


@dataclass(frozen=True, slots=True)
class PollPlan:
    polls: tuple[PlannedPoll, ...]
    dropped: tuple[Dropped, ...] = ()
    budgets: Mapping[str, float] = field(default_factory=dict)

    def usage(self, service: str) -> float:
        """Routine requests per minute planned for `service` (worst case: every poll costs its max)."""
        return sum(p.requests_per_minute for p in self.polls if p.service == service)

    @property
    def degraded(self) -> tuple[PlannedPoll, ...]:
        return tuple(p for p in self.polls if p.stretch > 1)


def plan_polls(
    streams: Sequence[StreamSpec],
    budgets: Mapping[str, int],
    *,
    headroom: float = DEFAULT_HEADROOM,
    close_delay_s: float = DEFAULT_CLOSE_DELAY_S,
    max_stretch: int = DEFAULT_MAX_STRETCH,
) -> PollPlan:
    """Plan the polls of `streams` within `budgets` (requests per minute per service)."""
    if not 0 < headroom <= 1:
        raise ValueError("headroom must be in (0, 1]")
    keys = [s.key for s in streams]
    if len(set(keys)) != len(keys):
        raise ValueError("stream keys must be unique")
    polls: list[PlannedPoll] = []
    dropped: list[Dropped] = []
    usable: dict[str, float] = {}
    by_service: dict[str, list[StreamSpec]] = {}
    for s in streams:
        by_service.setdefault(s.service, []).append(s)
    for order, (service, group) in enumerate(by_service.items()):
        if service not in budgets:
            raise ValueError(f"no request budget for service {service!r}")
        # Floor to whole requests so a fractional budget never rounds up into a 429.
        remaining = float(max(1, math.floor(budgets[service] * headroom)))
        usable[service] = remaining
        # Strategy streams first, then the rest; config order within each class (stable sort).
        ordered = sorted(group, key=lambda s: not s.feeds_strategy)
        chosen: list[tuple[StreamSpec, int]] = []
        for s in ordered:
            placed = False
            for k in range(1, max_stretch + 1):
                cost = s.requests_per_poll * 60.0 / (s.period_s * k)
                if cost <= remaining + 1e-9:
                    remaining -= cost
                    chosen.append((s, k))
                    placed = True
                    break
            if not placed:
                dropped.append(Dropped(s.key, service, f"over the {service} budget of {budgets[service]}/min "
                                                        f"even at one poll every {max_stretch} periods"))
        # Stagger: spread the service's polls over the smallest period, starting just after the close.
        n = len(chosen)
        for i, (s, k) in enumerate(chosen):
            span = max(0.0, s.period_s - close_delay_s) * 0.5
            offset = close_delay_s + order * SERVICE_STAGGER_S + (span * i / n if n > 1 else 0.0)
            polls.append(PlannedPoll(s.key, service, float(s.period_s * k), round(offset, 3), k))
    return PollPlan(tuple(polls), tuple(dropped), usable)
