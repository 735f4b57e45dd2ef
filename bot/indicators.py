"""Named technical indicators backed by `ta`, each with typed params and an honest warm-up.

Every indicator is a small frozen pydantic model: its fields are the params (unknown keys rejected,
bounds checked), `columns()` names its outputs, `compute(frame)` returns them from an OHLCV float frame
(columns open, high, low, close, volume; UTC `DatetimeIndex`), and `warmup()` is the number of candles
a trailing window must hold so that the value on its last row equals the value computed over the whole
history, within `PARITY_RTOL`/`PARITY_ATOL`.

Why warm-ups are longer than the indicator period: `ta` computes EMA-type indicators (ema, macd, rsi
with Wilder smoothing, atr, adx) as recursions seeded on the first rows they see. A window that starts
later seeds differently, and the difference decays only geometrically, by `(1 - alpha)` per candle.
`settle_candles(alpha)` is the number of candles after which the seed's weight is below `SETTLE_EPS`
(1e-12); the resulting error is far below the parity tolerance. Rolling indicators (sma, bollinger,
stochastic, vwap, windowed obv) depend only on their last `window` rows and need no extra settling
(bollinger computes its moments per window; see `Bollinger`).

Column names are stable (`rsi_14`, `macd_12_26_9`, `bb_upper_20_2`, ...): they are recorded to a
timeseries store. `INDICATORS` is the table by name; `make_indicator(name, **params)` builds one.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import BaseModel, ConfigDict, Field, model_validator
from ta.momentum import RSIIndicator, StochasticOscillator
from ta.trend import MACD, ADXIndicator, EMAIndicator, SMAIndicator
from ta.volatility import AverageTrueRange
from ta.volume import OnBalanceVolumeIndicator, VolumeWeightedAveragePrice

OHLCV = ("open", "high", "low", "close", "volume")
# Weight below which a recursion's seed no longer matters (values agree to ~1e-12 of the seed error).
SETTLE_EPS = 1e-12
# Tolerance at which a trailing-window value must equal the full-history value (see module docstring).
PARITY_RTOL = 1e-9
PARITY_ATOL = 1e-9


def settle_candles(alpha: float, eps: float = SETTLE_EPS) -> int:
    """Candles after which an exponential recursion with smoothing `alpha` forgets its seed below `eps`."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    if alpha == 1.0:
        return 0
    return math.ceil(math.log(eps) / math.log(1.0 - alpha))


def _fmt(value: float) -> str:
    """A number as it appears in a column name: 2.0 -> '2', 2.5 -> '2.5'."""
    return f"{value:g}"


class Indicator(BaseModel, ABC):
    """Base of every indicator: frozen params, unknown keys rejected, plus columns/compute/warmup."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[str]

    @abstractmethod
    def columns(self) -> tuple[str, ...]:
        """Names of the output columns, in a stable order."""

    @abstractmethod
    def warmup(self) -> int:
        """Candles a trailing window needs for its last value to equal the full-history value."""

    @abstractmethod
    def _compute(self, frame: pd.DataFrame) -> list[pd.Series]:
        """The output series, one per column, aligned with `frame`."""

    def min_rows(self) -> int:
        """Fewest rows `ta` can compute on without failing; shorter frames yield NaN columns."""
        return 1

    def compute(self, frame: pd.DataFrame) -> dict[str, pd.Series]:
        """Output columns of this indicator over `frame` (NaN where not yet defined)."""
        names = self.columns()
        if len(frame) < self.min_rows():
            nan = pd.Series(np.full(len(frame), np.nan), index=frame.index)
            return dict.fromkeys(names, nan)
        return dict(zip(names, self._compute(frame), strict=True))

    def label(self) -> str:
        """Human-readable name with params, e.g. `rsi(period=14)`."""
        args = ", ".join(f"{k}={v}" for k, v in self.model_dump().items())
        return f"{self.kind}({args})"


class Rsi(Indicator):
    """Relative Strength Index with Wilder smoothing (alpha = 1/period)."""

    kind: ClassVar[str] = "rsi"
    period: int = Field(14, ge=2, le=500)

    def columns(self) -> tuple[str, ...]:
        return (f"rsi_{self.period}",)

    def warmup(self) -> int:
        # +1: the first row has no price change and seeds both averages with zero.
        return self.period + 1 + settle_candles(1.0 / self.period)

    def _compute(self, frame: pd.DataFrame) -> list[pd.Series]:
        return [RSIIndicator(frame["close"], window=self.period).rsi()]


class Sma(Indicator):
    """Simple moving average of the close."""

    kind: ClassVar[str] = "sma"
    window: int = Field(20, ge=1, le=5000)

    def columns(self) -> tuple[str, ...]:
        return (f"sma_{self.window}",)

    def warmup(self) -> int:
        return self.window

    def _compute(self, frame: pd.DataFrame) -> list[pd.Series]:
        return [SMAIndicator(frame["close"], window=self.window).sma_indicator()]


class Ema(Indicator):
    """Exponential moving average of the close (alpha = 2/(window+1), seeded on the first close)."""

    kind: ClassVar[str] = "ema"
    window: int = Field(20, ge=1, le=5000)

    def columns(self) -> tuple[str, ...]:
        return (f"ema_{self.window}",)

    def warmup(self) -> int:
        return self.window + settle_candles(2.0 / (self.window + 1))

    def _compute(self, frame: pd.DataFrame) -> list[pd.Series]:
        return [EMAIndicator(frame["close"], window=self.window).ema_indicator()]


class Macd(Indicator):
    """MACD line (EMA fast - EMA slow), its signal line (EMA of the line) and the histogram."""

    kind: ClassVar[str] = "macd"
    fast: int = Field(12, ge=1, le=1000)
    slow: int = Field(26, ge=2, le=2000)
    signal: int = Field(9, ge=1, le=1000)

    @model_validator(mode="after")
    def _order(self) -> Macd:
        if self.fast >= self.slow:
            raise ValueError(f"fast: must be below slow ({self.fast} >= {self.slow})")
        return self

    def columns(self) -> tuple[str, ...]:
        tag = f"{self.fast}_{self.slow}_{self.signal}"
        return (f"macd_{tag}", f"macd_signal_{tag}", f"macd_hist_{tag}")

    def warmup(self) -> int:
        # The line settles at the slow EMA's rate; the signal line is seeded on the (still drifting)
        # first line value and then needs its own settling on top.
        line = self.slow + settle_candles(2.0 / (self.slow + 1))
        return line + self.signal + settle_candles(2.0 / (self.signal + 1))

    def _compute(self, frame: pd.DataFrame) -> list[pd.Series]:
        m = MACD(frame["close"], window_slow=self.slow, window_fast=self.fast, window_sign=self.signal)
        return [m.macd(), m.macd_signal(), m.macd_diff()]


class Bollinger(Indicator):
    """Bollinger bands: SMA middle, +/- `std` population standard deviations, %b and width (in %).

    Same definition as `ta.volatility.BollingerBands`, but the moments are computed window by window:
    pandas' running variance accumulates rounding error over a long history (about 1e-9 on %b after
    20,000 minutes of BTC prices), which would make the full-history value depend on how much history
    came before. Per-window moments depend on the window's rows only, so trailing and full agree exactly.
    """

    kind: ClassVar[str] = "bollinger"
    window: int = Field(20, ge=2, le=5000)
    std: float = Field(2.0, gt=0, le=10)

    def columns(self) -> tuple[str, ...]:
        tag = f"{self.window}_{_fmt(self.std)}"
        return tuple(f"bb_{part}_{tag}" for part in ("upper", "middle", "lower", "pctb", "width"))

    def warmup(self) -> int:
        return self.window

    def _compute(self, frame: pd.DataFrame) -> list[pd.Series]:
        close = frame["close"].to_numpy(dtype=np.float64)
        middle, sd = _window_moments(close, self.window)
        upper, lower = middle + self.std * sd, middle - self.std * sd
        with np.errstate(divide="ignore", invalid="ignore"):  # a flat window has zero width, as in ta
            pctb = (close - lower) / (upper - lower)
            width = (upper - lower) / middle * 100.0
        return [pd.Series(a, index=frame.index) for a in (upper, middle, lower, pctb, width)]


# Rows of a sliding-window matrix processed at once, so a long history never needs a huge temporary.
_MOMENT_CHUNK_CELLS = 1 << 20


def _window_moments(x: npt.NDArray[np.float64], window: int) -> tuple[npt.NDArray[np.float64], ...]:
    """Mean and population standard deviation of each trailing `window` (NaN before the first)."""
    mean, sd = np.full(len(x), np.nan), np.full(len(x), np.nan)
    if len(x) < window:
        return mean, sd
    views = sliding_window_view(x, window)
    step = max(1, _MOMENT_CHUNK_CELLS // window)
    for start in range(0, len(views), step):
        chunk = views[start : start + step]
        rows = slice(window - 1 + start, window - 1 + start + len(chunk))
        mean[rows] = chunk.mean(axis=1)
        sd[rows] = chunk.std(axis=1)
    return mean, sd


class Atr(Indicator):
    """Average True Range with Wilder smoothing, seeded on the mean of the first `window` ranges."""

    kind: ClassVar[str] = "atr"
    window: int = Field(14, ge=1, le=500)

    def columns(self) -> tuple[str, ...]:
        return (f"atr_{self.window}",)

    def warmup(self) -> int:
        return self.window + settle_candles(1.0 / self.window) + 1

    def min_rows(self) -> int:
        return self.window

    def _compute(self, frame: pd.DataFrame) -> list[pd.Series]:
        atr = AverageTrueRange(frame["high"], frame["low"], frame["close"], window=self.window)
        return [atr.average_true_range()]


class Adx(Indicator):
    """Average Directional Index as `ta` defines it (two stacked Wilder smoothings; slow in `ta`)."""

    kind: ClassVar[str] = "adx"
    window: int = Field(14, ge=2, le=500)

    def columns(self) -> tuple[str, ...]:
        return (f"adx_{self.window}",)

    def warmup(self) -> int:
        # Directional movement sums settle first, then the ADX average of DX settles on top of them.
        return 2 * (self.window + settle_candles(1.0 / self.window)) + 2

    def min_rows(self) -> int:
        return 2 * self.window + 1

    def _compute(self, frame: pd.DataFrame) -> list[pd.Series]:
        return [ADXIndicator(frame["high"], frame["low"], frame["close"], window=self.window).adx()]


class Stochastic(Indicator):
    """Stochastic oscillator %K over `window` and its `smooth`-candle simple average %D."""

    kind: ClassVar[str] = "stochastic"
    window: int = Field(14, ge=1, le=5000)
    smooth: int = Field(3, ge=1, le=500)

    def columns(self) -> tuple[str, ...]:
        tag = f"{self.window}_{self.smooth}"
        return (f"stoch_k_{tag}", f"stoch_d_{tag}")

    def warmup(self) -> int:
        # `ta` smooths %D with a simple (not exponential) average, so nothing drifts.
        return self.window + self.smooth - 1

    def _compute(self, frame: pd.DataFrame) -> list[pd.Series]:
        s = StochasticOscillator(frame["high"], frame["low"], frame["close"], window=self.window,
                                 smooth_window=self.smooth)
        return [s.stoch(), s.stoch_signal()]


class Obv(Indicator):
    """On-balance volume over the last `window` candles (OBV now minus OBV `window` candles ago).

    Plain OBV is a running total whose level depends on where the history starts, so no trailing
    window can reproduce it; its change over a fixed window is reproducible and is what rules use.
    """

    kind: ClassVar[str] = "obv"
    window: int = Field(20, ge=1, le=5000)

    def columns(self) -> tuple[str, ...]:
        return (f"obv_{self.window}",)

    def warmup(self) -> int:
        # +1: the first row of any window has no previous close and counts its volume as positive.
        return self.window + 1

    def _compute(self, frame: pd.DataFrame) -> list[pd.Series]:
        obv = OnBalanceVolumeIndicator(frame["close"], frame["volume"]).on_balance_volume()
        return [obv.diff(self.window)]


class Vwap(Indicator):
    """Rolling volume-weighted average of the typical price over `window` candles (as `ta` does)."""

    kind: ClassVar[str] = "vwap"
    window: int = Field(14, ge=1, le=5000)

    def columns(self) -> tuple[str, ...]:
        return (f"vwap_{self.window}",)

    def warmup(self) -> int:
        return self.window

    def _compute(self, frame: pd.DataFrame) -> list[pd.Series]:
        v = VolumeWeightedAveragePrice(frame["high"], frame["low"], frame["close"], frame["volume"],
                                       window=self.window)
        return [v.volume_weighted_average_price()]


INDICATORS: Mapping[str, type[Indicator]] = {
    cls.kind: cls for cls in (Rsi, Sma, Ema, Macd, Bollinger, Atr, Adx, Stochastic, Obv, Vwap)
}


def make_indicator(name: str, **params: Any) -> Indicator:
    """Build the indicator `name` with `params`; unknown names raise `KeyError`, bad params raise
    `pydantic.ValidationError`."""
    try:
        cls = INDICATORS[name]
    except KeyError:
        raise KeyError(f"unknown indicator {name!r}; available: {', '.join(sorted(INDICATORS))}") from None
    return cls(**params)


def compute_indicators(frame: pd.DataFrame, indicators: Iterable[Indicator]) -> dict[str, pd.Series]:
    """All output columns of `indicators` over `frame`, keyed by column name."""
    out: dict[str, pd.Series] = {}
    for ind in indicators:
        out.update(ind.compute(frame))
    return out


def warmup_of(indicators: Iterable[Indicator]) -> int:
    """The longest warm-up among `indicators` (1 if there are none)."""
    return max((ind.warmup() for ind in indicators), default=1)
