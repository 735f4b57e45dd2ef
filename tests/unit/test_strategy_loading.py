"""Strategy loading by name, params validation with dotted paths, and the frame/window helpers."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bot.domain import Action, Candle
from bot.errors import ConfigError
from bot.settings import Settings, load_settings
from bot.strategy import (
    CandleWindow,
    Strategy,
    available_strategies,
    candles_to_frame,
    load_configured,
    load_strategy,
    validate_strategies,
    window_size,
)

BUILTINS = ["bollinger_breakout", "macd_trend", "rsi_reversion", "sma_cross"]

USER_STRATEGY = '''
"""A user strategy: buy when the close is above its SMA, sell below."""
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field

from bot.domain import Action
from bot.indicators import Indicator, Sma
from bot.strategy import BUY, SELL, Codes, Floats, Strategy, StrategyParams


class P(StrategyParams):
    window: int = Field(5, ge=2)


class AboveSma(Strategy[P]):
    name: ClassVar[str] = "{name}"
    Params = P

    def indicators(self, params: P) -> Sequence[Indicator]:
        return [Sma(window=params.window)]

    def rule(self, cols: Mapping[str, Floats], params: P) -> Codes:
        sma = cols[f"sma_{{params.window}}"]
        return np.where(cols["close"] > sma, BUY, SELL).astype(np.int8)

    def explain(self, action: Action, values: Mapping[str, float], params: P) -> str:
        return f"{{action}} vs sma"


STRATEGY = AboveSma()
'''


def write_user_strategy(directory: Path, name: str, body: str | None = None) -> Path:
    path = directory / f"{name}.py"
    path.write_text(body if body is not None else USER_STRATEGY.format(name=name))
    return path


def entry(strategy: str, params: dict[str, Any] | None = None, name: str = "s") -> dict[str, Any]:
    return {
        "name": name,
        "strategy": strategy,
        "market": "btc-mxn",
        "feed": {"source": "atmos", "symbol": "BTCUSDT"},
        "params": params or {},
        "order_amount": "0.001",
    }


def settings_with(entries: list[dict[str, Any]], paths: list[Path] | None = None) -> Settings:
    return Settings.model_validate({"strategies": entries, "strategy_paths": paths or []})


@pytest.mark.parametrize("name", BUILTINS)
def test_builtins_load_by_name(name: str) -> None:
    strategy = load_strategy(name, [])
    assert isinstance(strategy, Strategy)
    assert strategy.name == name
    assert window_size(strategy, strategy.Params()) == strategy.warmup(strategy.Params())


def test_available_strategies_lists_builtins_and_user_files(tmp_path: Path) -> None:
    write_user_strategy(tmp_path, "my_strat")
    (tmp_path / "_helpers.py").write_text("")
    assert available_strategies([]) == BUILTINS
    assert available_strategies([tmp_path]) == sorted([*BUILTINS, "my_strat"])


def test_unknown_strategy_names_the_available_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown strategy 'nope'; available: bollinger_breakout, "
                                          r"macd_trend, rsi_reversion, sma_cross"):
        load_strategy("nope", [])


def test_user_strategy_loads_from_a_strategy_path_and_evaluates(tmp_path: Path) -> None:
    write_user_strategy(tmp_path, "my_strat")
    strategy = load_strategy("my_strat", [tmp_path / "missing", tmp_path])
    params = strategy.parse_params({"window": 3})
    idx = pd.date_range("2024-01-01", periods=4, freq="1min", tz="UTC")
    frame = pd.DataFrame({c: [1.0, 1.0, 1.0, 2.0] for c in ("open", "high", "low", "close", "volume")},
                         index=idx)
    signal = strategy.evaluate(frame, params)
    assert signal.action is Action.BUY
    assert signal.values == {"close": 2.0, "sma_3": pytest.approx(4 / 3)}
    assert signal.strategy == "my_strat"
    assert signal.time == idx[-1].to_pydatetime()


def test_a_user_file_replaces_a_builtin_of_the_same_name(tmp_path: Path) -> None:
    write_user_strategy(tmp_path, "rsi_reversion")
    strategy = load_strategy("rsi_reversion", [tmp_path])
    assert type(strategy).__name__ == "AboveSma"
    assert type(load_strategy("rsi_reversion", [])).__name__ == "RsiReversion"


@pytest.mark.parametrize(("body", "message"), [
    ("X = 1\n", "must define STRATEGY"),
    ("STRATEGY = object()\n", "must define STRATEGY"),
    ("raise RuntimeError('boom')\n", "failed to import: RuntimeError: boom"),
    ("def broken(:\n", "failed to import: SyntaxError"),
    (USER_STRATEGY.format(name="other_name"), "defines strategy 'other_name', not 'bad'"),
])
def test_broken_user_files_are_config_errors(tmp_path: Path, body: str, message: str) -> None:
    write_user_strategy(tmp_path, "bad", textwrap.dedent(body))
    with pytest.raises(ConfigError, match=message):
        load_strategy("bad", [tmp_path])


@pytest.mark.parametrize(("entries", "expected"), [
    ([entry("rsi_reversion", {"period": 14, "buy_below": 30, "sell_above": 70})], []),
    ([entry("rsi_reversion", {"period": 1})],
     [("strategies.0.params.period", "Input should be greater than or equal to 2")]),
    ([entry("rsi_reversion", {"perid": 14})], [("strategies.0.params.perid", "unknown key")]),
    ([entry("rsi_reversion", {"buy_below": 80})],
     [("strategies.0.params.buy_below", "must be below sell_above (80 >= 70)")]),
    ([entry("macd_trend", {"fast": 30}, "a"), entry("nope", {}, "b")],
     [("strategies.0.params.fast", "must be below slow (30 >= 26)"),
      ("strategies.1.strategy",
       "unknown strategy 'nope'; available: bollinger_breakout, macd_trend, rsi_reversion, sma_cross")]),
    ([entry("bollinger_breakout", {"window": "x", "std": -1})],
     [("strategies.0.params.window", "Input should be a valid integer, unable to parse string as an integer"),
      ("strategies.0.params.std", "Input should be greater than 0")]),
])
def test_validate_strategies_reports_dotted_paths(
    entries: list[dict[str, Any]], expected: list[tuple[str, str]]
) -> None:
    assert validate_strategies(settings_with(entries)) == expected


def test_validate_strategies_finds_user_strategies_on_strategy_paths(tmp_path: Path) -> None:
    write_user_strategy(tmp_path, "my_strat")
    ok = settings_with([entry("my_strat", {"window": 4})], [tmp_path])
    assert validate_strategies(ok) == []
    bad = settings_with([entry("my_strat", {"window": 1})], [tmp_path])
    assert validate_strategies(bad) == [("strategies.0.params.window",
                                         "Input should be greater than or equal to 2")]


def test_default_paper_config_strategies_are_valid() -> None:
    settings = load_settings(Path(__file__).parents[2] / "config" / "paper.toml")
    assert [s.strategy for s in settings.strategies] == ["rsi_reversion", "macd_trend", "bollinger_breakout",
                                                        "rsi_reversion"]
    assert validate_strategies(settings) == []


def test_load_configured_gives_enabled_instances_with_their_windows() -> None:
    disabled = {**entry("macd_trend", name="off"), "enabled": False}
    loaded = load_configured(settings_with([entry("rsi_reversion", {"period": 7}, "on"), disabled]))
    assert [(c.instance, c.strategy.name, c.window) for c in loaded] == [
        ("on", "rsi_reversion", loaded[0].strategy.warmup(loaded[0].params))]
    assert loaded[0].params == loaded[0].strategy.parse_params({"period": 7})


def test_load_configured_raises_with_every_problem() -> None:
    bad = settings_with([entry("rsi_reversion", {"period": 1}, "a"), entry("nope", {}, "b")])
    with pytest.raises(ConfigError) as info:
        load_configured(bad)
    assert [path for path, _ in info.value.problems] == ["strategies.0.params.period", "strategies.1.strategy"]


def test_candles_to_frame_gives_float_columns_on_a_utc_index() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    candles = [
        Candle(t0 + timedelta(minutes=i), Decimal("1.5") + i, Decimal(3), Decimal(1), Decimal("2.25"),
               Decimal("0.1"))
        for i in range(3)
    ]
    frame = candles_to_frame(candles)
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert all(frame.dtypes == "float64")
    assert frame["open"].tolist() == [1.5, 2.5, 3.5]
    assert frame["close"].tolist() == [2.25, 2.25, 2.25]
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.tz) == "UTC"
    assert frame.index[1].to_pydatetime() == t0 + timedelta(minutes=1)


def test_candles_to_frame_of_nothing_is_an_empty_frame() -> None:
    frame = candles_to_frame([])
    assert frame.empty
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]


def test_evaluate_holds_while_warming_up() -> None:
    strategy = load_strategy("rsi_reversion", [])
    params = strategy.Params()
    idx = pd.date_range("2024-01-01", periods=10, freq="1min", tz="UTC")
    ohlcv = ("open", "high", "low", "close", "volume")
    frame = pd.DataFrame({c: [float(i) for i in range(10)] for c in ohlcv}, index=idx)
    signal = strategy.evaluate(frame, params)
    assert signal.action is Action.HOLD
    assert signal.reason == f"warming up: 10 of {window_size(strategy, params)} candles"
    assert signal.values == {}


def minute_candles(count: int) -> list[Candle]:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    return [Candle(t0 + timedelta(minutes=i), Decimal(i), Decimal(i) + 2, Decimal(i) - 1, Decimal(i) + 1,
                   Decimal("0.5") * i) for i in range(count)]


@pytest.mark.parametrize("appended", [1, 3, 4, 5, 8, 9, 23])
def test_candle_window_frame_equals_converting_the_last_candles(appended: int) -> None:
    candles = minute_candles(appended)
    window = CandleWindow(4)
    for candle in candles:
        window.append(candle)
    assert len(window) == min(appended, 4)
    pd.testing.assert_frame_equal(window.frame(), candles_to_frame(candles[-4:]))


def test_candle_window_frames_are_not_changed_by_later_appends() -> None:
    candles = minute_candles(12)
    window = CandleWindow(3)
    for candle in candles[:3]:
        window.append(candle)
    first = window.frame()
    for candle in candles[3:]:
        window.append(candle)
    pd.testing.assert_frame_equal(first, candles_to_frame(candles[:3]))


def test_candle_window_refuses_a_candle_that_is_not_newer() -> None:
    candles = minute_candles(2)
    window = CandleWindow(3)
    window.append(candles[1])
    with pytest.raises(ValueError, match="not after the previous one"):
        window.append(candles[0])
    with pytest.raises(ValueError, match="not after the previous one"):
        window.append(candles[1])
