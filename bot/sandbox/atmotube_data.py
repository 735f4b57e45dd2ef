"""Deterministic synthetic Atmotube PRO readings, with gaps, missing fields and late uploads.

Everything is a pure function of `(seed, mac, day)` or `(seed, mac, hour)`, so any range can be generated
on demand, the same every time, without storing history. Each reading also gets the minute at which the
phone uploads it: uploads happen at seeded sync times (zero to three per hour), and a reading becomes
visible at the first sync after its minute has ended. So the newest readings always lag, sometimes by
hours, and a day already fetched gains items later.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from bot.clock import iso_z

MEASUREMENTS = ("voc", "aqs", "pm1", "pm25", "pm10", "t", "h", "p")
# Longest upload delay considered: a reading waits at most this many hours for a sync.
_MAX_SYNC_WAIT_H = 48
_DAY_MIN = 1440
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Reading:
    """One minute of data: its epoch minute, the epoch minute it becomes visible, and the wire item."""

    minute: int
    visible_minute: int
    item: dict[str, Any]


def epoch_minute(t: datetime) -> int:
    """Whole minutes since the epoch (floor)."""
    return int((t.astimezone(UTC) - _EPOCH).total_seconds() // 60)


def day_start_minute(day: date) -> int:
    """Epoch minute of 00:00 UTC on `day`."""
    return (day - date(1970, 1, 1)).days * _DAY_MIN


@lru_cache(maxsize=4096)
def sync_minutes(seed: int, mac: str, hour: int) -> tuple[int, ...]:
    """Epoch minutes, within epoch hour `hour`, at which the phone uploads (0 to 3 of them)."""
    rng = random.Random(f"{seed}|{mac}|sync|{hour}")
    count = rng.choices((0, 1, 2, 3), weights=(4, 3, 2, 1))[0]
    return tuple(sorted(hour * 60 + m for m in rng.sample(range(60), count)))


def _syncs_between(seed: int, mac: str, first_minute: int, last_minute: int) -> list[int]:
    out: list[int] = []
    for hour in range(first_minute // 60, last_minute // 60 + 1):
        out.extend(sync_minutes(seed, mac, hour))
    return out


def _pm_values(rng: random.Random) -> tuple[int, int, int]:
    pm1 = max(0, round(4 + rng.gauss(0, 1.5)))
    pm25 = pm1 + abs(round(rng.gauss(2, 1)))
    return pm1, pm25, pm25 + abs(round(rng.gauss(3, 1.5)))


def _reading_item(
    rng: random.Random, minute: int, pm_state: str, gps: tuple[float, float] | None
) -> dict[str, Any]:
    minute_of_day = minute % _DAY_MIN
    phase = math.sin(2 * math.pi * (minute_of_day - 540) / _DAY_MIN)  # warmest mid-afternoon
    voc = round(max(0.0, 0.2 + 0.12 * phase + rng.gauss(0, 0.03)), 3)
    pm1, pm25, pm10 = _pm_values(rng)
    values: dict[str, Any] = {
        "voc": voc,
        "aqs": max(0, min(100, 100 - 2 * pm25 - round(voc * 20))),
        "pm1": pm1,
        "pm25": pm25,
        "pm10": pm10,
        "t": round(21 + 3 * phase + rng.gauss(0, 0.2), 1),
        "h": max(0, min(100, round(45 - 10 * phase + rng.gauss(0, 1)))),
        "p": round(1013 + rng.gauss(0, 0.3), 1),
    }
    if pm_state == "missing":  # PM sensor switched off: fields absent
        for k in ("pm1", "pm25", "pm10"):
            del values[k]
    elif pm_state == "null":  # PM sensor warming up: fields present but null
        for k in ("pm1", "pm25", "pm10"):
            values[k] = None
    for k in ("voc", "t", "h", "p"):  # an occasional dropped measurement
        r = rng.random()
        if r < 0.01:
            values[k] = None
        elif r < 0.02:
            del values[k]
    item: dict[str, Any] = {"time": iso_z(_EPOCH + timedelta(minutes=minute)), **values}
    if gps is not None:
        item["coords"] = {"lat": round(gps[0] + rng.gauss(0, 0.0002), 5),
                          "lon": round(gps[1] + rng.gauss(0, 0.0002), 5)}
    return item


@lru_cache(maxsize=32)  # ~1.5 MB per day; a client re-reads a trailing window, not all history
def day_readings(seed: int, mac: str, day: date) -> tuple[Reading, ...]:
    """Every reading the device recorded on `day` (UTC), visible or not, in time order."""
    rng = random.Random(f"{seed}|{mac}|day|{day.isoformat()}")
    first = day_start_minute(day)
    syncs = _syncs_between(seed, mac, first, first + _DAY_MIN + _MAX_SYNC_WAIT_H * 60)
    out: list[Reading] = []
    pm_state, gps, device_on = "on", None, True
    for minute in range(first, first + _DAY_MIN):
        if minute % 60 == 0:  # the device's state changes by the hour
            device_on = rng.random() >= 0.03
            pm_state = rng.choices(("on", "missing", "null"), weights=(8, 1, 1))[0]
            has_gps = rng.random() < 0.3  # GPS comes from the phone and is often off
            gps = (51.5 + rng.uniform(-0.05, 0.05), -0.12 + rng.uniform(-0.05, 0.05)) if has_gps else None
        item = _reading_item(rng, minute, pm_state, gps)
        if not device_on:
            continue
        i = bisect.bisect_left(syncs, minute + 1)
        visible = syncs[i] if i < len(syncs) else minute + 1 + _MAX_SYNC_WAIT_H * 60
        out.append(Reading(minute, visible, item))
    return tuple(out)


def visible_items(seed: int, mac: str, first: date, last: date, now: datetime) -> list[dict[str, Any]]:
    """Items uploaded by `now` for the days `first..last` inclusive, in ascending time."""
    now_minute = epoch_minute(now)
    items: list[dict[str, Any]] = []
    day = first
    while day <= last:
        if day_start_minute(day) <= now_minute:
            items.extend(r.item for r in day_readings(seed, mac, day) if r.visible_minute <= now_minute)
        day += timedelta(days=1)
    return items
