"""Deterministic price paths for the simulated market: numbers only (numpy floats), no Decimals, no clock.

Everything is a pure function of `(seed, asset or instrument, day index)` counted from a fixed epoch, so any
minute can be generated on its own, in any order, and always comes out the same:

- a *daily level* per asset (log price at 00:00 UTC) follows a mean-reverting random walk, which keeps BTC
  around 60-100k USD, ETH around 2-4k and USD/MXN around 17-20 however far the clock runs;
- inside a day, a GARCH(1,1) random walk with occasional jumps is bridged between two daily levels, giving
  1,441 minute-boundary log prices (volatility clusters, days still join up);
- an *instrument* (a venue's view of a pair, or a CoinBTR book) derives its minute-boundary levels from the
  asset paths (times FX, ratio of two assets, plus a tiny venue basis) and adds its own trades: up to
  `POINTS` representative trade prices per minute at seeded times inside the minute (a Brownian bridge
  between the minute's boundary levels), with per-trade sizes and trade counts, and gap minutes with none.

The representative trades are what makes the newest minute partial: the bar as of a fraction `f` of its
minute aggregates the trades at times `<= f`, and at `f = 1` it is exactly the closed bar.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
EPOCH_TS = int(EPOCH.timestamp())
MINUTES_PER_DAY = 1440
POINTS = 8  # representative trades per minute (at most)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class AssetModel:
    """Parameters of one asset's path: mean-reverting daily log level plus intraday GARCH."""

    asset_id: int
    mean_level: float  # log of the long-run price
    level_std: float  # stationary std-dev of the daily log level
    theta: float  # daily mean-reversion rate
    intraday: bool = True  # False: log-linear between daily levels (FX drifts slowly)


ASSETS: dict[str, AssetModel] = {
    "BTC": AssetModel(1, math.log(80_000.0), 0.10, 0.05),
    "ETH": AssetModel(2, math.log(3_000.0), 0.11, 0.05),
    "USDMXN": AssetModel(3, math.log(18.5), 0.025, 0.03, intraday=False),
}

# GARCH(1,1) on 1-minute log returns; unconditional per-minute variance ~ (daily vol / sqrt(1440))^2.
_MINUTE_VAR = (0.03 / math.sqrt(MINUTES_PER_DAY)) ** 2
_G_ALPHA, _G_BETA = 0.07, 0.91
_G_OMEGA = _MINUTE_VAR * (1.0 - _G_ALPHA - _G_BETA)
_JUMP_P, _JUMP_STD = 0.0015, 0.004
_DAY_CHUNK = 512


def _rng(*words: int) -> np.random.Generator:
    return np.random.default_rng([w & 0xFFFFFFFF for w in words])


def stable_id(name: str) -> int:
    """A process-independent integer for a name (Python's `hash` is salted per process)."""
    return zlib.crc32(name.encode())


class DailyLevels:
    """Daily log levels of one asset, extended on demand from the epoch (chunks seeded by index)."""

    def __init__(self, seed: int, model: AssetModel) -> None:
        self._seed = seed
        self._m = model
        first = _rng(seed, model.asset_id, 1, 0).standard_normal()
        self._levels: list[float] = [model.mean_level + model.level_std * 0.5 * float(first)]

    def level(self, day: int) -> float:
        """Log level at 00:00 UTC of `day` (days since the epoch, >= 0)."""
        if day < 0:
            raise ValueError("the simulated market starts at 2020-01-01")
        m = self._m
        shock_std = m.level_std * math.sqrt(2.0 * m.theta)
        while len(self._levels) <= day:
            n = len(self._levels)
            chunk = n // _DAY_CHUNK
            z = _rng(self._seed, m.asset_id, 2, chunk).standard_normal(_DAY_CHUNK)
            x = self._levels[-1]
            for i in range(n % _DAY_CHUNK, _DAY_CHUNK):
                # x at day (chunk*CHUNK + i) comes from the previous day's level plus that day's shock.
                x = x + m.theta * (m.mean_level - x) + shock_std * float(z[i])
                self._levels.append(x)
        return self._levels[day]


def asset_day(seed: int, model: AssetModel, levels: DailyLevels, day: int) -> tuple[FloatArray, FloatArray]:
    """Minute-boundary log levels (1441) and per-minute return std-devs (1440) of one asset for `day`."""
    start, end = levels.level(day), levels.level(day + 1)
    steps = np.arange(MINUTES_PER_DAY + 1, dtype=np.float64) / MINUTES_PER_DAY
    if not model.intraday:
        path = start + steps * (end - start)
        return path, np.full(MINUTES_PER_DAY, math.sqrt(_MINUTE_VAR) * 0.2)
    rng = _rng(seed, model.asset_id, 3, day)
    z = rng.standard_normal(MINUTES_PER_DAY)
    jump_at = rng.random(MINUTES_PER_DAY) < _JUMP_P
    jumps = np.where(jump_at, rng.standard_normal(MINUTES_PER_DAY) * _JUMP_STD, 0.0)
    var = _MINUTE_VAR * float(np.exp(rng.standard_normal() * 0.5))
    sig = np.empty(MINUTES_PER_DAY)
    ret = np.empty(MINUTES_PER_DAY)
    # The GARCH recursion is inherently sequential; 1,440 steps of float maths per asset-day is cheap.
    zl = z.tolist()
    jl = jumps.tolist()
    for i in range(MINUTES_PER_DAY):
        s = math.sqrt(var)
        r = s * zl[i] + jl[i]
        sig[i] = s
        ret[i] = r
        var = _G_OMEGA + _G_ALPHA * r * r + _G_BETA * var
    raw = np.concatenate(([0.0], np.cumsum(ret)))
    # Bridge: tilt the walk so that the day ends exactly on the next day's level.
    path = start + raw - steps * (raw[-1] - (end - start))
    return path, sig


@dataclass(frozen=True)
class InstrumentModel:
    """How one instrument trades: which levels it follows and how busy it is."""

    name: str
    base: str  # "BTC" | "ETH"
    quote: str  # "USD" | "MXN" | "BTC"
    basis: float  # log-price offset from the reference path (venue basis)
    volume: float  # mean base-coin volume per minute
    trades: float  # mean trades per minute
    gap_p: float  # probability that a minute has no trades
    price_dp: int


@dataclass
class DayTrades:
    """One instrument-day of representative trades, sorted by time within each minute."""

    u: FloatArray  # (1440, POINTS) trade times as fractions of the minute, ascending per row
    price: FloatArray  # (1440, POINTS) trade prices, already rounded to the instrument's tick
    valid: BoolArray  # (1440, POINTS) which points are real trades
    qty: FloatArray  # (1440, POINTS) base-coin size per point (0 where invalid)
    count: IntArray  # (1440, POINTS) trades each point stands for (0 where invalid)
    # Closed-minute aggregates (1440,), computed with the same arithmetic as a partial minute.
    exists: BoolArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    vol: FloatArray
    ntrades: IntArray
    vwap: FloatArray


def instrument_day(
    seed: int, inst: InstrumentModel, levels: FloatArray, sigma: FloatArray, day: int
) -> DayTrades:
    """Generate one instrument-day of trades between its minute-boundary log `levels` (1441,)."""
    n_min, k = MINUTES_PER_DAY, POINTS
    rng = _rng(seed, stable_id(inst.name), 4, day)
    gap = rng.random(n_min) < inst.gap_p
    busy = np.clip(sigma / math.sqrt(_MINUTE_VAR), 0.3, 4.0) ** 0.8  # volume follows volatility
    vol = inst.volume * busy * np.exp(rng.standard_normal(n_min) * 0.6 - 0.18)
    ntr = 1 + rng.poisson(np.maximum(inst.trades * vol / inst.volume - 1.0, 0.0))
    ntr = np.where(gap, 0, ntr).astype(np.int64)
    npts = np.minimum(ntr, k)

    u = np.sort(rng.random((n_min, k)), axis=1)
    z = rng.standard_normal((n_min, k + 1))
    edges = np.concatenate((np.zeros((n_min, 1)), u, np.ones((n_min, 1))), axis=1)
    walk = np.cumsum(np.sqrt(np.diff(edges, axis=1)) * z, axis=1)
    bridge = walk[:, :k] - u * walk[:, k : k + 1]
    lo, hi = levels[:-1, None], levels[1:, None]
    logp = lo + u * (hi - lo) + (sigma[:, None] * 0.6) * bridge + inst.basis
    price: FloatArray = np.round(np.exp(logp), inst.price_dp).astype(np.float64)

    rank = np.argsort(np.argsort(rng.random((n_min, k)), axis=1), axis=1)
    valid = rank < npts[:, None]
    weights = rng.exponential(1.0, (n_min, k)) * valid
    wsum = np.where(valid.any(axis=1), weights.sum(axis=1), 1.0)
    qty = np.where(valid, np.maximum(np.round(vol[:, None] * weights / wsum[:, None], 8), 1e-8), 0.0)
    safe_pts = np.maximum(npts, 1)[:, None]
    count = np.where(valid, ntr[:, None] // safe_pts + (rank < (ntr[:, None] % safe_pts)), 0).astype(np.int64)

    exists = npts > 0
    first = np.argmax(valid, axis=1)
    last = k - 1 - np.argmax(valid[:, ::-1], axis=1)
    rows = np.arange(n_min)
    # Gap minutes get zeros (never served) so that arithmetic over whole days stays finite.
    high = np.where(exists, np.where(valid, price, -np.inf).max(axis=1), 0.0)
    low = np.where(exists, np.where(valid, price, np.inf).min(axis=1), 0.0)
    cvol = np.cumsum(qty, axis=1)[:, -1]
    cpq = np.cumsum(price * qty, axis=1)[:, -1]
    vwap = np.clip(cpq / np.where(cvol > 0, cvol, 1.0), low, high)
    return DayTrades(
        u=u, price=price, valid=valid, qty=qty, count=count, exists=exists,
        open=price[rows, first], high=high, low=low, close=price[rows, last],
        vol=cvol, ntrades=count.sum(axis=1), vwap=vwap,
    )


def points_by(d: DayTrades, offset: int, frac: float) -> int:
    """How many of minute `offset`'s representative trade slots fall at or before `frac` of it."""
    return int(np.searchsorted(d.u[offset], frac, side="right"))


def partial_minute(d: DayTrades, offset: int, frac: float, j: int | None = None) -> tuple[float, ...] | None:
    """(open, high, low, close, volume, trades, vwap) of minute `offset` as of `frac` of it, or None.

    Uses the same cumulative sums as `instrument_day`, so at `frac >= 1` it equals the closed bar exactly.
    `j` (from `points_by`) may be passed instead of being recomputed.
    """
    if j is None:
        j = points_by(d, offset, frac)
    valid = d.valid[offset, :j]
    if not valid.any():
        return None
    price = d.price[offset, :j]
    qty = d.qty[offset, :j]
    vp = price[valid]
    vol = float(np.cumsum(qty)[-1])
    pq = float(np.cumsum(price * qty)[-1])
    high, low = float(vp.max()), float(vp.min())
    vwap = min(max(pq / vol, low), high)
    return (float(vp[0]), high, low, float(vp[-1]), vol, int(d.count[offset, :j].sum()), vwap)
