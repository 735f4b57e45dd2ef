"""Bollinger band breakout.

Rule (on the newest closed candle): BUY when the close crosses above the upper band (at or below it on
the previous candle, above it now); SELL when the close crosses below the middle band (at or above it
before, below it now); else HOLD. A signal fires once, on the candle of the crossing.

Params: `window` (SMA and deviation length, default 20, 2..5000), `std` (band width in population
standard deviations, default 2.0, in (0, 10]).

Warm-up: the bands are rolling, so `window` candles define them exactly; plus 1 for the crossover
(21 by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field

from bot.domain import Action
from bot.indicators import Bollinger, Indicator
from bot.strategy import BUY, HOLD, SELL, Codes, Floats, Strategy, StrategyParams


class BollingerParams(StrategyParams):
    """Params of `bollinger_breakout`."""

    window: int = Field(20, ge=2, le=5000)
    std: float = Field(2.0, gt=0, le=10)

    @property
    def tag(self) -> str:
        """The suffix of this configuration's band columns."""
        return f"{self.window}_{self.std:g}"


class BollingerBreakout(Strategy[BollingerParams]):
    """Enter on an upper-band breakout, leave when the close falls back under the middle band."""

    name: ClassVar[str] = "bollinger_breakout"
    Params = BollingerParams
    lookback: ClassVar[int] = 2
    description: ClassVar[str] = "buy when close crosses above the upper band, sell below the middle band"

    def indicators(self, params: BollingerParams) -> Sequence[Indicator]:
        return [Bollinger(window=params.window, std=params.std)]

    def rule(self, cols: Mapping[str, Floats], params: BollingerParams) -> Codes:
        close = cols["close"]
        upper, middle = cols[f"bb_upper_{params.tag}"], cols[f"bb_middle_{params.tag}"]
        prev_close, prev_upper, prev_middle = (np.roll(a, 1) for a in (close, upper, middle))
        # np.roll wraps the last row onto the first; the first row has no previous candle.
        prev_close[:1] = np.nan
        up = (prev_close <= prev_upper) & (close > upper)
        down = (prev_close >= prev_middle) & (close < middle)
        return np.where(up, BUY, np.where(down, SELL, HOLD)).astype(np.int8)

    def explain(self, action: Action, values: Mapping[str, float], params: BollingerParams) -> str:
        close = values["close"]
        upper, middle = values[f"bb_upper_{params.tag}"], values[f"bb_middle_{params.tag}"]
        if action is Action.BUY:
            return f"close {close:.2f} crossed above the upper band {upper:.2f}"
        if action is Action.SELL:
            return f"close {close:.2f} crossed below the middle band {middle:.2f}"
        return f"no band crossing: close {close:.2f}, upper {upper:.2f}, middle {middle:.2f}"


STRATEGY = BollingerBreakout()
