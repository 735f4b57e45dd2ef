"""The strategy API: params, indicators, warm-up, a pure decision, loading by name and validation.

A strategy is an object (a module-level `STRATEGY` in its module) whose class subclasses `Strategy`:

- `name`: what `[[strategies]] strategy = "..."` refers to; it must equal the module's file name.
- `Params`: a `StrategyParams` (pydantic, unknown keys rejected) model validated when the config loads.
- `indicators(params)`: the `bot.indicators` it needs.
- `lookback`: how many rows of indicator values its rule reads (1 for a level, 2 for a crossover).
- `rule(cols, params)`: the decision, vectorised over rows. `cols` maps column names (the indicators'
  plus open/high/low/close/volume) to float arrays; it returns one action code per row (`BUY`, `SELL`,
  `HOLD` below). The same rule serves one candle (`evaluate`) and a whole history (`evaluate_all`), so
  the two can only differ through indicator warm-up, which is what the parity test pins.
- `explain(action, values, params)`: the human reason for a decision.

Everything here is pure: no I/O, no clock, no state outside the arguments. `evaluate` decides on the
last row of the frame (the newest closed candle). The live path hands it `window_size(...)` candles.

Loading: `load_strategy(name, extra_paths)` looks in each `strategy_paths` directory for `<name>.py`
(first match wins, so a user file can replace a built-in on purpose), then in the `strategies` package.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from bot.domain import Action, Candle, Signal
from bot.errors import ConfigError
from bot.indicators import (
    OHLCV,
    PARITY_ATOL,
    PARITY_RTOL,
    Indicator,
    compute_indicators,
    warmup_of,
)

if TYPE_CHECKING:
    from bot.settings import Settings

BUILTIN_PACKAGE = "strategies"
STRATEGY_ATTR = "STRATEGY"
# Action codes returned by `Strategy.rule`, one per row.
BUY, SELL, HOLD = 1, -1, 0
Codes = npt.NDArray[np.int8]
Floats = npt.NDArray[np.float64]
_ACTIONS = {BUY: Action.BUY, SELL: Action.SELL, HOLD: Action.HOLD}
# `np.take` on this maps codes (-1, 0, 1) shifted by +1 to actions without a Python loop.
_ACTION_TABLE = np.array([Action.SELL, Action.HOLD, Action.BUY], dtype=object)


class StrategyParams(BaseModel):
    """Base of every strategy's params: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


P = TypeVar("P", bound=StrategyParams)


class Strategy(ABC, Generic[P]):
    """A named, configurable, pure trading rule over indicator values. See the module docstring."""

    name: ClassVar[str]
    Params: type[P]
    lookback: ClassVar[int] = 1
    description: ClassVar[str] = ""

    @abstractmethod
    def indicators(self, params: P) -> Sequence[Indicator]:
        """The indicators the rule reads."""

    @abstractmethod
    def rule(self, cols: Mapping[str, Floats], params: P) -> Codes:
        """One action code per row (`BUY`/`SELL`/`HOLD`); rows with NaN inputs must be `HOLD`."""

    @abstractmethod
    def explain(self, action: Action, values: Mapping[str, float], params: P) -> str:
        """Why `action` was taken, given the last row's `values`."""

    def parse_params(self, raw: Mapping[str, Any]) -> P:
        """Validate raw config params; raises `pydantic.ValidationError`."""
        return self.Params.model_validate(dict(raw))

    def warmup(self, params: P) -> int:
        """Candles needed before a decision equals the full-history one: the slowest indicator's
        warm-up plus the extra rows the rule looks back over."""
        return warmup_of(self.indicators(params)) + self.lookback - 1

    def columns(self, frame: pd.DataFrame, params: P) -> dict[str, Floats]:
        """OHLCV and indicator columns of `frame` as float arrays, keyed by column name."""
        cols: dict[str, Floats] = {c: frame[c].to_numpy(dtype=np.float64) for c in OHLCV}
        for key, series in compute_indicators(frame, self.indicators(params)).items():
            cols[key] = series.to_numpy(dtype=np.float64)
        return cols

    def evaluate(self, frame: pd.DataFrame, params: P) -> Signal:
        """Decide on the last row of `frame` (the newest closed candle). Pure."""
        time = frame.index[-1].to_pydatetime() if len(frame) else None
        need = self.warmup(params)
        if len(frame) < need:
            return Signal(Action.HOLD, f"warming up: {len(frame)} of {need} candles", {}, time, self.name)
        code, cols = self.decide_last(frame, params)
        values = {"close": float(cols["close"][-1])}
        values.update({k: float(v[-1]) for k, v in cols.items() if k not in OHLCV})
        action = _ACTIONS[code]
        return Signal(action, self.explain(action, values, params), values, time, self.name)

    def decide_last(self, frame: pd.DataFrame, params: P) -> tuple[int, dict[str, Floats]]:
        """The action code on the last row of `frame` and the columns it was decided from, without
        the warm-up guard of `evaluate` (the parity check uses it on deliberately short windows)."""
        cols = self.columns(frame, params)
        tail = {k: v[-self.lookback :] for k, v in cols.items()}
        return int(self.rule(tail, params)[-1]), cols

    def evaluate_all(self, frame: pd.DataFrame, params: P) -> pd.Series:
        """Actions for every row of `frame`, computing indicators once over the whole history.

        Rows before `warmup(params)` are computed on too little history to be trusted by the live path;
        they are returned as computed (a backtest that starts at the first candle uses them).
        """
        codes = self.rule(self.columns(frame, params), params)
        return pd.Series(_ACTION_TABLE[codes.astype(np.intp) + 1], index=frame.index, name=self.name)


def window_size(strategy: Strategy[Any], params: StrategyParams) -> int:
    """How many trailing closed candles the live path hands to `strategy.evaluate`."""
    return strategy.warmup(params)


def candles_to_frame(candles: Sequence[Candle]) -> pd.DataFrame:
    """Closed candles as the float OHLCV frame indicators run on, indexed by candle start (UTC)."""
    data = {
        "open": np.fromiter((float(c.open) for c in candles), np.float64, len(candles)),
        "high": np.fromiter((float(c.high) for c in candles), np.float64, len(candles)),
        "low": np.fromiter((float(c.low) for c in candles), np.float64, len(candles)),
        "close": np.fromiter((float(c.close) for c in candles), np.float64, len(candles)),
        "volume": np.fromiter((float(c.volume) for c in candles), np.float64, len(candles)),
    }
    index = pd.DatetimeIndex([c.time for c in candles], name="time")
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return pd.DataFrame(data, index=index)


@dataclass(frozen=True, slots=True)
class ParityMismatch:
    """One candle where the live (trailing-window) decision differs from the full-history one."""

    position: int
    what: str  # "action" or the name of the column whose value differs
    live: object
    full: object


def check_parity(
    strategy: Strategy[Any],
    params: StrategyParams,
    frame: pd.DataFrame,
    positions: Iterable[int],
    window: int | None = None,
) -> list[ParityMismatch]:
    """Compare, at each row position, `evaluate` on the trailing `window` rows (default: the live
    path's `window_size`) with the full-history computation: same action, and every indicator value
    equal within `PARITY_RTOL`/`PARITY_ATOL`. Returns the mismatches (empty means parity holds)."""
    size = window_size(strategy, params) if window is None else window
    full_cols = strategy.columns(frame, params)
    full_actions = strategy.rule(full_cols, params)
    out: list[ParityMismatch] = []
    for pos in positions:
        if pos < size - 1 or pos >= len(frame):
            raise ValueError(f"position {pos} has no full window of {size} rows in a {len(frame)}-row frame")
        live_code, cols = strategy.decide_last(frame.iloc[pos - size + 1 : pos + 1], params)
        if live_code != int(full_actions[pos]):
            out.append(ParityMismatch(pos, "action", _ACTIONS[live_code], _ACTIONS[int(full_actions[pos])]))
        for key, values in cols.items():
            live, full = float(values[-1]), float(full_cols[key][pos])
            both_nan = np.isnan(live) and np.isnan(full)
            if not both_nan and not abs(live - full) <= PARITY_ATOL + PARITY_RTOL * abs(full):
                out.append(ParityMismatch(pos, key, live, full))
    return out


class CandleWindow:
    """The trailing `size` closed candles of one stream as a float frame, converted once per candle.

    `candles_to_frame` on every closed candle converts the whole window from `Decimal` each time (about
    a millisecond for a few hundred candles); this keeps float rows in a buffer twice the window long
    and only converts the newest candle. Candles must arrive in time order (a gap is just the next row).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"window size must be positive, got {size}")
        self.size = size
        capacity = 2 * size
        self._times = np.empty(capacity, dtype="datetime64[us]")
        self._rows = np.empty((capacity, len(OHLCV)), dtype=np.float64)
        self._count = 0

    def __len__(self) -> int:
        return min(self._count, self.size)

    def append(self, candle: Candle) -> None:
        """Add the newest closed candle; raises `ValueError` if it is not later than the last one."""
        when = np.datetime64(candle.time.astimezone(UTC).replace(tzinfo=None), "us")
        if self._count and when <= self._times[self._count - 1]:
            raise ValueError(f"candle at {candle.time.isoformat()} is not after the previous one")
        if self._count == len(self._times):
            # Full: keep the newest size-1 rows at the front; amortised one copy per `size` appends.
            keep = self.size - 1
            self._times[:keep] = self._times[self._count - keep : self._count]
            self._rows[:keep] = self._rows[self._count - keep : self._count]
            self._count = keep
        self._times[self._count] = when
        self._rows[self._count] = (float(candle.open), float(candle.high), float(candle.low),
                                   float(candle.close), float(candle.volume))
        self._count += 1

    def frame(self) -> pd.DataFrame:
        """The window as a float OHLCV frame on a UTC index (a copy: later appends do not change it)."""
        start = max(0, self._count - self.size)
        index = pd.DatetimeIndex(self._times[start : self._count].copy(), name="time").tz_localize("UTC")
        return pd.DataFrame(self._rows[start : self._count].copy(), index=index, columns=list(OHLCV))


# --------------------------------------------------------------------------------------------- loading


def _builtin_names() -> list[str]:
    package = importlib.import_module(BUILTIN_PACKAGE)
    return [m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")]


def available_strategies(extra_paths: Sequence[Path] = ()) -> list[str]:
    """Every strategy name loadable from `extra_paths` and the built-in package, sorted."""
    names = set(_builtin_names())
    for directory in extra_paths:
        if Path(directory).is_dir():
            names.update(p.stem for p in Path(directory).glob("*.py") if not p.stem.startswith("_"))
    return sorted(names)


def _import_file(path: Path) -> ModuleType:
    module_name = f"tradebot_user_strategies.{path.stem}_{abs(hash(str(path.resolve())))}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import strategy file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # a user's file can raise anything on import: config trouble
        del sys.modules[module_name]
        raise ConfigError(f"strategy file {path} failed to import: {type(exc).__name__}: {exc}") from exc
    return module


def load_strategy(name: str, extra_paths: Sequence[Path] = ()) -> Strategy[Any]:
    """The strategy called `name`: `<dir>/<name>.py` for each of `extra_paths`, else `strategies.<name>`.

    Raises `ConfigError` for an unknown name (listing the available ones), a file that fails to import,
    or a module without a proper `STRATEGY`.
    """
    if not name.isidentifier():
        raise ConfigError(f"strategy name {name!r} is not a Python identifier")
    module: ModuleType | None = None
    origin = ""
    for directory in extra_paths:
        path = Path(directory) / f"{name}.py"
        if path.is_file():
            module, origin = _import_file(path), str(path)
            break
    if module is None:
        origin = f"{BUILTIN_PACKAGE}.{name}"
        try:
            if name in _builtin_names():
                module = importlib.import_module(origin)
        except Exception as exc:  # a missing dependency, a broken install: say so, by the entry's path
            raise ConfigError(f"strategy module {origin} failed to import: {type(exc).__name__}: {exc}") from exc
    if module is None:
        available = ", ".join(available_strategies(extra_paths)) or "none"
        raise ConfigError(f"unknown strategy {name!r}; available: {available}")
    strategy = getattr(module, STRATEGY_ATTR, None)
    if not isinstance(strategy, Strategy):
        raise ConfigError(f"{origin} must define {STRATEGY_ATTR} = <a bot.strategy.Strategy instance>")
    if strategy.name != name:
        raise ConfigError(f"{origin} defines strategy {strategy.name!r}, not {name!r} (must match the file)")
    return strategy


# ------------------------------------------------------------------------------------------ validation


def params_problems(exc: ValidationError, prefix: str) -> list[tuple[str, str]]:
    """A params `ValidationError` as `(dotted_path, message)` pairs under `prefix`.

    Cross-field checks (model validators) have no field location; by convention their message starts
    with `field: `, which is moved into the path.
    """
    out: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        msg = msg.removeprefix("Value error, ")
        if not loc:
            head, sep, rest = msg.partition(": ")
            if sep and head.isidentifier():
                loc, msg = head, rest
        out.append((f"{prefix}.{loc}" if loc else prefix, msg))
    return out


def validate_strategies(settings: Settings) -> list[tuple[str, str]]:
    """Check every `[[strategies]]` entry: its strategy exists and its params fit its `Params` model."""
    problems: list[tuple[str, str]] = []
    for i, entry in enumerate(settings.strategies):
        try:
            strategy = load_strategy(entry.strategy, settings.strategy_paths)
        except ConfigError as exc:
            problems.append((f"strategies.{i}.strategy", exc.message))
            continue
        try:
            params = strategy.parse_params(entry.params)
        except ValidationError as exc:
            problems.extend(params_problems(exc, f"strategies.{i}.params"))
            continue
        except Exception as exc:  # a user's Params validator may raise anything
            problems.append((f"strategies.{i}.params", f"{type(exc).__name__}: {exc}"))
            continue
        try:
            strategy.warmup(params)  # what the live path computes first: its indicators for these params
        except Exception as exc:
            problems.append((f"strategies.{i}.strategy",
                             f"{entry.strategy} fails on these params: {type(exc).__name__}: {exc}"))
    return problems


@dataclass(frozen=True, slots=True)
class ConfiguredStrategy:
    """One enabled `[[strategies]]` entry, loaded and validated: what the live path evaluates."""

    instance: str
    strategy: Strategy[Any]
    params: StrategyParams
    window: int


def load_configured(settings: Settings) -> list[ConfiguredStrategy]:
    """Load every enabled strategy instance; raises `ConfigError` listing every problem by dotted path."""
    problems = validate_strategies(settings)
    if problems:
        raise ConfigError("invalid strategy configuration", problems)
    out: list[ConfiguredStrategy] = []
    for entry in settings.strategies:
        if entry.enabled:
            strategy = load_strategy(entry.strategy, settings.strategy_paths)
            params = strategy.parse_params(entry.params)
            out.append(ConfiguredStrategy(entry.name, strategy, params, window_size(strategy, params)))
    return out
