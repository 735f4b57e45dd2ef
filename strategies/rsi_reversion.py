"""RSI mean reversion.

Rule (on the newest closed candle): BUY when RSI(period) < `buy_below`, SELL when RSI > `sell_above`,
else HOLD. The signal repeats on every candle the condition holds; position handling (long only, one
entry per position) belongs to execution and the backtester, not to the strategy.

Params: `period` (RSI length, default 14, 2..500), `buy_below` (default 30), `sell_above` (default 70),
both in (0, 100) with `buy_below < sell_above`.

Warm-up: RSI's Wilder smoothing drifts with the window start, so the window is
`period + 1 + settle_candles(1/period)` candles (388 for period 14); see `bot.indicators`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from bot.domain import Action
from bot.indicators import Indicator, Rsi
from bot.strategy import BUY, HOLD, SELL, Codes, Floats, Strategy, StrategyParams


class RsiParams(StrategyParams):
    """Params of `rsi_reversion`."""

    period: int = Field(14, ge=2, le=500)
    buy_below: float = Field(30.0, gt=0, lt=100)
    sell_above: float = Field(70.0, gt=0, lt=100)

    @model_validator(mode="after")
    def _thresholds(self) -> RsiParams:
        if self.buy_below >= self.sell_above:
            raise ValueError(
                f"buy_below: must be below sell_above ({self.buy_below:g} >= {self.sell_above:g})"
            )
        return self


class RsiReversion(Strategy[RsiParams]):
    """Buy oversold, sell overbought, by RSI thresholds."""

    name: ClassVar[str] = "rsi_reversion"
    Params = RsiParams
    lookback: ClassVar[int] = 1
    description: ClassVar[str] = "buy when RSI < buy_below, sell when RSI > sell_above"

    def indicators(self, params: RsiParams) -> Sequence[Indicator]:
        return [Rsi(period=params.period)]

    def rule(self, cols: Mapping[str, Floats], params: RsiParams) -> Codes:
        rsi = cols[f"rsi_{params.period}"]
        # NaN compares False both ways, so undefined RSI holds.
        return np.where(rsi < params.buy_below, BUY, np.where(rsi > params.sell_above, SELL, HOLD)).astype(
            np.int8
        )

    def explain(self, action: Action, values: Mapping[str, float], params: RsiParams) -> str:
        rsi = values[f"rsi_{params.period}"]
        if action is Action.BUY:
            return f"RSI({params.period}) {rsi:.2f} < {params.buy_below:g}"
        if action is Action.SELL:
            return f"RSI({params.period}) {rsi:.2f} > {params.sell_above:g}"
        return f"RSI({params.period}) {rsi:.2f} within [{params.buy_below:g}, {params.sell_above:g}]"


STRATEGY = RsiReversion()
