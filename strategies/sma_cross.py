"""Simple moving average crossover.

Rule (on the newest closed candle): BUY when SMA(`fast`) crosses above SMA(`slow`) (at or below it on the
previous candle, above it now), SELL when it crosses below (at or above it before, below it now), else
HOLD. A signal fires once, on the candle of the crossing.

Params: `fast` (default 10, 1..5000), `slow` (default 30, 2..5000), with `fast < slow`.

Warm-up: both averages are rolling, so `slow` candles define them exactly; plus 1 for the crossover
(31 by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from bot.domain import Action
from bot.indicators import Indicator, Sma
from bot.strategy import BUY, HOLD, SELL, Codes, Floats, Strategy, StrategyParams


class SmaCrossParams(StrategyParams):
    """Params of `sma_cross`."""

    fast: int = Field(10, ge=1, le=5000)
    slow: int = Field(30, ge=2, le=5000)

    @model_validator(mode="after")
    def _order(self) -> SmaCrossParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast: must be below slow ({self.fast} >= {self.slow})")
        return self


def _previous(values: Floats) -> Floats:
    """`values` shifted one row later; the first row has no previous value (NaN)."""
    prev = np.empty_like(values)
    prev[:1] = np.nan
    prev[1:] = values[:-1]
    return prev


class SmaCross(Strategy[SmaCrossParams]):
    """Follow crossings of a fast and a slow simple moving average."""

    name: ClassVar[str] = "sma_cross"
    Params = SmaCrossParams
    lookback: ClassVar[int] = 2
    description: ClassVar[str] = "buy when SMA(fast) crosses above SMA(slow), sell when it crosses below"

    def indicators(self, params: SmaCrossParams) -> Sequence[Indicator]:
        return [Sma(window=params.fast), Sma(window=params.slow)]

    def rule(self, cols: Mapping[str, Floats], params: SmaCrossParams) -> Codes:
        fast, slow = cols[f"sma_{params.fast}"], cols[f"sma_{params.slow}"]
        diff = fast - slow
        prev = _previous(diff)
        # NaN compares False, so rows before both averages exist hold.
        up = (prev <= 0) & (diff > 0)
        down = (prev >= 0) & (diff < 0)
        return np.where(up, BUY, np.where(down, SELL, HOLD)).astype(np.int8)

    def explain(self, action: Action, values: Mapping[str, float], params: SmaCrossParams) -> str:
        fast, slow = values[f"sma_{params.fast}"], values[f"sma_{params.slow}"]
        if action is Action.BUY:
            return f"SMA({params.fast}) {fast:.2f} crossed above SMA({params.slow}) {slow:.2f}"
        if action is Action.SELL:
            return f"SMA({params.fast}) {fast:.2f} crossed below SMA({params.slow}) {slow:.2f}"
        side = "above" if fast > slow else "below" if fast < slow else "at"
        return f"no crossover: SMA({params.fast}) {fast:.2f} stays {side} SMA({params.slow}) {slow:.2f}"


STRATEGY = SmaCross()
