"""Equity and the figures a backtest is judged by, computed with numpy over the whole history at once.

Equity on each candle is cash plus the position marked at the candle's close; fills change cash and
position on the candle they happen on. Sharpe is annualised (365 days, crypto trades every day) from
daily returns of the equity when the history spans at least three days, else from per-candle returns.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bot.backtest.data import Candles
from bot.backtest.engine import Simulation

Floats = npt.NDArray[np.float64]
DAY_NS = 86_400 * 1_000_000_000
YEAR_DAYS = 365


def equity_curve(sim: Simulation, candles: Candles) -> tuple[Floats, Floats]:
    """(equity, position amount) on each candle."""
    n = len(candles)
    f = sim.fills
    units_delta, cash_delta = np.zeros(n), np.zeros(n)
    signed = f.side.astype(np.float64) * f.amount
    np.add.at(units_delta, f.bar, signed)
    np.add.at(cash_delta, f.bar, -signed * f.price - f.fee)
    units = np.cumsum(units_delta)
    units[np.abs(units) < 1e-12] = 0.0
    cash = sim.cash + np.cumsum(cash_delta)
    return cash + units * candles.column("close"), units


def drawdown(equity: Floats) -> Floats:
    """The fall from the running peak, as a fraction (0 at a new high)."""
    peak = np.maximum.accumulate(equity)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(peak > 0, 1.0 - equity / peak, 0.0)


def sharpe(equity: Floats, times: npt.NDArray[np.int64], period_s: int) -> float:
    """Annualised Sharpe ratio (risk-free 0); NaN when returns do not vary."""
    if len(equity) < 2:
        return math.nan
    if times[-1] - times[0] >= 3 * DAY_NS:
        day = times // DAY_NS
        last_of_day = np.flatnonzero(np.diff(day)) if len(day) > 1 else np.array([], dtype=np.int64)
        points = np.concatenate((equity[:1], equity[last_of_day], equity[-1:]))
        per_year = float(YEAR_DAYS)
    else:
        points = equity
        per_year = YEAR_DAYS * 86_400 / max(period_s, 1)
    rets = np.diff(points) / points[:-1]
    sd = float(np.std(rets, ddof=1)) if len(rets) > 1 else 0.0
    if not sd > 0:
        return math.nan
    return float(np.mean(rets)) / sd * math.sqrt(per_year)


@dataclass(frozen=True)
class Summary:
    """One instance's results (what `--json` holds per instance, with `trades` the trade count)."""

    instance: str
    strategy: str
    fill: str
    start: str
    end: str
    candles: int
    trades: int
    total_return_pct: float
    buy_and_hold_pct: float
    win_rate_pct: float
    max_drawdown_pct: float
    sharpe: float | None
    exposure_pct: float
    fees: float
    start_equity: float
    end_equity: float
    buys: int
    sells: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(instance: str, strategy: str, fill: str, sim: Simulation, candles: Candles) -> Summary:
    """The figures of one simulation."""
    import pandas as pd

    equity, units = equity_curve(sim, candles)
    close = candles.column("close")
    n = len(candles)
    trades = sim.trades
    s = sharpe(equity, candles.times, candles.period)

    def stamp(ns: int) -> str:
        return pd.Timestamp(int(ns), tz="UTC").isoformat()

    return Summary(
        instance=instance, strategy=strategy, fill=fill,
        start=stamp(candles.times[0]) if n else "", end=stamp(candles.times[-1]) if n else "",
        candles=n, trades=len(trades),
        total_return_pct=round(100.0 * (float(equity[-1]) / sim.cash - 1.0), 4) if n else 0.0,
        buy_and_hold_pct=round(100.0 * (float(close[-1]) / float(close[0]) - 1.0), 4) if n else 0.0,
        win_rate_pct=round(100.0 * float(np.mean(trades.pnl > 0)), 4) if len(trades) else 0.0,
        max_drawdown_pct=round(100.0 * float(drawdown(equity).max()), 4) if n else 0.0,
        sharpe=None if math.isnan(s) else round(s, 4),
        exposure_pct=round(100.0 * float(np.mean(units > 0)), 4) if n else 0.0,
        fees=round(float(sim.fills.fee.sum()), 8),
        start_equity=sim.cash, end_equity=round(float(equity[-1]), 8) if n else sim.cash,
        buys=int(np.count_nonzero(sim.codes == 1)), sells=int(np.count_nonzero(sim.codes == -1)),
    )
