"""The trade simulation: long only, one position per instance, from the strategy's signal codes.

Signals come from `signal_codes`: the strategy's own columns and rule over the whole history at once
(what `Strategy.evaluate_all` does, kept as codes). A BUY while flat opens a position with all the cash,
a SELL while long closes it; other signals change nothing. A decision is taken on a candle's close.

Fill models:
- `next_open`: a market order at the next candle's open, all of it (taker fee). Vectorised: the signals
  are reduced to the alternating BUY/SELL changes, which are the fills; nothing loops over bars.
- `limit`: a limit order at the signal candle's close, resting for the instance's `order_ttl_seconds`,
  filled on each later candle by `bot.execution.fill_model.fill` (the paper broker's and the simulated
  exchange's function) from the candle's range and volume (maker fee). What is unfilled at the TTL is
  cancelled. The loop runs only over signal candles and the candles an order rests on.

A trade is a round trip: from the fill that opens a position to the one that closes it; a position still
open at the end counts as a trade marked at the last close (as backtesting.py, vectorbt and freqtrade
count it).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from bot.backtest.data import Candles
from bot.domain import Side
from bot.execution.fill_model import fill as resting_fill
from bot.execution.fill_model import round_down
from bot.strategy import BUY, SELL, Codes, Strategy, StrategyParams

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
FILL_MODELS = ("next_open", "limit")


def signal_codes(strategy: Strategy[Any], params: StrategyParams, candles: Candles) -> Codes:
    """One action code per candle: the strategy's columns and rule over the whole history, computed once."""
    frame = candles.frame()
    return np.asarray(strategy.rule(strategy.columns(frame, params), params), dtype=np.int8)


@dataclass(frozen=True)
class Fills:
    """Every fill in time order: the candle it happened on, side (+1 buy, -1 sell), price, amount, fee."""

    bar: Ints
    side: npt.NDArray[np.int8]
    price: Floats
    amount: Floats
    fee: Floats


@dataclass(frozen=True)
class Trades:
    """Round trips: entry and exit candle (exit -1 while open), average prices, amount, PnL net of fees."""

    entry_bar: Ints
    exit_bar: Ints
    entry_price: Floats
    exit_price: Floats
    amount: Floats
    pnl: Floats
    fees: Floats

    def __len__(self) -> int:
        return len(self.entry_bar)

    @property
    def returns(self) -> Floats:
        cost = self.entry_price * self.amount
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(cost > 0, self.pnl / cost, 0.0)


@dataclass(frozen=True)
class Simulation:
    """What one instance did over the history."""

    codes: Codes
    fills: Fills
    trades: Trades
    cash: float


def _changes(codes: Codes) -> Ints:
    """Positions of the signals that move a long-only position: BUY, SELL, BUY, ... alternating, first a BUY."""
    at = np.flatnonzero(codes)
    values = codes[at]
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    at, values = at[keep], values[keep]
    if len(values) and values[0] == SELL:
        at = at[1:]
    return at.astype(np.int64)


def next_open(codes: Codes, candles: Candles, cash: float, fee: float) -> Simulation:
    """All-in market orders at the next candle's open (see the module docstring)."""
    n = len(candles)
    at = _changes(codes)
    bars = at[at + 1 < n] + 1  # a signal on the last candle has no next open
    opens, close = candles.column("open"), candles.column("close")
    price = opens[bars]
    buy_bar, sell_bar = bars[0::2], bars[1::2]
    buy_px, sell_px = price[0::2], price[1::2]
    closed = len(sell_bar)
    keep = 1.0 - fee
    # Cash before each entry compounds over the round trips before it.
    growth = keep * keep * sell_px / buy_px[:closed]
    before = cash * np.concatenate(([1.0], np.cumprod(growth)))[: len(buy_bar)]
    amount = before * keep / buy_px
    buy_fee = before * fee
    sell_fee = amount[:closed] * sell_px * fee
    sides = np.tile(np.array([1, -1], dtype=np.int8), len(bars) // 2 + 1)[: len(bars)]
    amounts, fees = np.empty(len(bars)), np.empty(len(bars))
    amounts[0::2], amounts[1::2] = amount, amount[:closed]
    fees[0::2], fees[1::2] = buy_fee, sell_fee
    fills = Fills(bars, sides, price, amounts, fees)
    exit_px = np.concatenate((sell_px, close[-1:] if len(buy_bar) > closed else []))
    exit_bar = np.concatenate((sell_bar, [-1] if len(buy_bar) > closed else [])).astype(np.int64)
    exit_fee = np.concatenate((sell_fee, np.zeros(len(buy_bar) - closed)))
    pnl = amount * exit_px - before * keep - exit_fee - buy_fee
    trades = Trades(buy_bar, exit_bar, buy_px, exit_px, amount, pnl, buy_fee + exit_fee)
    return Simulation(codes, fills, trades, cash)


@dataclass(frozen=True)
class LimitModel:
    """Parameters of the `limit` fill model."""

    fee: float
    participation: Decimal
    amount_step: Decimal
    ttl_bars: int


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


class _Book:
    """Cash, position and the fills and trades they came from, while the `limit` loop runs."""

    def __init__(self, cash: Decimal) -> None:
        self.cash = cash
        self.units = Decimal(0)
        self.fills: list[tuple[int, int, float, float, float]] = []
        self.trades: list[list[float]] = []  # entry_bar, exit_bar, cost, proceeds, bought, sold, fees
        self._open: list[float] | None = None

    def apply(self, bar: int, side: Side, price: Decimal, amount: Decimal, fee_rate: Decimal) -> None:
        value = price * amount
        fee = value * fee_rate
        if side is Side.BUY:
            self.cash -= value + fee
            self.units += amount
            if self._open is None:
                self._open = [bar, -1, 0.0, 0.0, 0.0, 0.0, 0.0]
                self.trades.append(self._open)
            self._open[2] += float(value)
            self._open[4] += float(amount)
        else:
            self.cash += value - fee
            self.units -= amount
            assert self._open is not None
            self._open[3] += float(value)
            self._open[5] += float(amount)
        assert self._open is not None
        self._open[6] += float(fee)
        self.fills.append((bar, 1 if side is Side.BUY else -1, float(price), float(amount), float(fee)))
        if self.units <= 0:
            self._open[1] = bar
            self._open = None


def limit(codes: Codes, candles: Candles, cash: float, model: LimitModel) -> Simulation:
    """Resting limit orders filled by the paper broker's fill function (see the module docstring)."""
    n = len(candles)
    low, high, close = candles.column("low"), candles.column("high"), candles.column("close")
    volume = candles.column("volume")
    fee = _dec(model.fee)
    book = _Book(_dec(cash))
    signals = np.flatnonzero(codes)
    k = 0
    while k < len(signals):
        i = int(signals[k])
        code = int(codes[i])
        price = _dec(close[i])
        if code == BUY and book.units < model.amount_step:
            side, amount = Side.BUY, round_down(book.cash / (price * (1 + fee)), model.amount_step)
        elif code == SELL and book.units >= model.amount_step:
            side, amount = Side.SELL, round_down(book.units, model.amount_step)
        else:
            k += 1
            continue
        remaining = amount
        j, end = i + 1, min(n, i + 1 + model.ttl_bars)
        while j < end and remaining > 0:
            got = resting_fill(side, price, remaining, _dec(low[j]), _dec(high[j]), _dec(volume[j]),
                               model.participation, model.amount_step)
            if got > 0:
                book.apply(j, side, price, got, fee)
                remaining -= got
            j += 1
        # The order's last candle has closed: its own signal may place the next order.
        k = int(np.searchsorted(signals, max(i + 1, j - 1), "left"))
    return Simulation(codes, _fills(book), _trades(book, close), cash)


def _fills(book: _Book) -> Fills:
    rows = book.fills
    return Fills(np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.int8),
                 np.array([r[2] for r in rows], dtype=np.float64), np.array([r[3] for r in rows], dtype=np.float64),
                 np.array([r[4] for r in rows], dtype=np.float64))


def _trades(book: _Book, close: Floats) -> Trades:
    rows = book.trades
    entry = np.array([r[0] for r in rows], dtype=np.int64)
    exit_ = np.array([r[1] for r in rows], dtype=np.int64)
    cost, proceeds = np.array([r[2] for r in rows]), np.array([r[3] for r in rows])
    bought, sold = np.array([r[4] for r in rows]), np.array([r[5] for r in rows])
    fees = np.array([r[6] for r in rows])
    left = bought - sold
    last = float(close[-1]) if len(close) else 0.0
    value_out = proceeds + left * last  # what is still held is marked at the last close
    with np.errstate(divide="ignore", invalid="ignore"):
        entry_px = np.where(bought > 0, cost / bought, 0.0)
        exit_px = np.where(bought > 0, value_out / bought, 0.0)
    return Trades(entry, exit_, entry_px, exit_px, bought, value_out - cost - fees, fees)
