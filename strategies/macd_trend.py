"""MACD trend following.

Rule (on the newest closed candle): BUY when the MACD line crosses above its signal line (histogram
`<= 0` on the previous candle and `> 0` now), SELL when it crosses below (`>= 0` before, `< 0` now),
else HOLD. A signal fires once, on the candle of the crossing.

Params: `fast` (default 12), `slow` (default 26), `signal` (default 9), with `fast < slow`.

Warm-up: the EMAs drift with the window start: `slow + settle(2/(slow+1)) + signal +
settle(2/(signal+1))` candles for the indicator (519 for 12/26/9) plus 1 for the crossover (520).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from bot.domain import Action
from bot.indicators import Indicator, Macd
from bot.strategy import BUY, HOLD, SELL, Codes, Floats, Strategy, StrategyParams


class MacdParams(StrategyParams):
    """Params of `macd_trend`."""

    fast: int = Field(12, ge=1, le=1000)
    slow: int = Field(26, ge=2, le=2000)
    signal: int = Field(9, ge=1, le=1000)

    @model_validator(mode="after")
    def _order(self) -> MacdParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast: must be below slow ({self.fast} >= {self.slow})")
        return self

    @property
    def tag(self) -> str:
        """The suffix of this configuration's MACD columns."""
        return f"{self.fast}_{self.slow}_{self.signal}"


def _previous(values: Floats) -> Floats:
    """`values` shifted one row later; the first row has no previous value (NaN)."""
    prev = np.empty_like(values)
    prev[:1] = np.nan
    prev[1:] = values[:-1]
    return prev


class MacdTrend(Strategy[MacdParams]):
    """Follow MACD / signal-line crossovers."""

    name: ClassVar[str] = "macd_trend"
    Params = MacdParams
    lookback: ClassVar[int] = 2
    description: ClassVar[str] = "buy when MACD crosses above its signal line, sell when it crosses below"

    def indicators(self, params: MacdParams) -> Sequence[Indicator]:
        return [Macd(fast=params.fast, slow=params.slow, signal=params.signal)]

    def rule(self, cols: Mapping[str, Floats], params: MacdParams) -> Codes:
        hist = cols[f"macd_hist_{params.tag}"]
        prev = _previous(hist)
        up = (prev <= 0) & (hist > 0)
        down = (prev >= 0) & (hist < 0)
        return np.where(up, BUY, np.where(down, SELL, HOLD)).astype(np.int8)

    def explain(self, action: Action, values: Mapping[str, float], params: MacdParams) -> str:
        line, signal = values[f"macd_{params.tag}"], values[f"macd_signal_{params.tag}"]
        if action is Action.BUY:
            return f"MACD {line:.4f} crossed above signal {signal:.4f}"
        if action is Action.SELL:
            return f"MACD {line:.4f} crossed below signal {signal:.4f}"
        side = "above" if line > signal else "below" if line < signal else "at"
        return f"no crossover: MACD {line:.4f} stays {side} signal {signal:.4f}"


STRATEGY = MacdTrend()
