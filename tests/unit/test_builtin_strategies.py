"""The built-in strategies on crafted frames: each rule fires on the candle it should, and only then."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from bot.domain import Action
from bot.strategy import Strategy, load_strategy, window_size


def frame_of(close: np.ndarray[Any, np.dtype[np.float64]]) -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=len(close), freq="1min", tz="UTC")
    return pd.DataFrame({"open": close, "high": close, "low": close, "close": close,
                         "volume": np.ones(len(close))}, index=idx)


def zigzag(n: int, level: float = 100.0, step: float = 0.5) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Alternating up/down closes around `level`: RSI near 50, no trend."""
    return level + step * (np.arange(n, dtype=np.float64) % 2)


def strategy(name: str) -> tuple[Strategy[Any], Any]:
    s = load_strategy(name, [])
    return s, s.Params()


# ------------------------------------------------------------------------------------------ rsi_reversion


@pytest.mark.parametrize(("tail", "action", "reason"), [
    ([99.0, 97.0, 95.0, 93.0, 91.0], Action.BUY, r"^RSI\(14\) \d+\.\d\d < 30$"),
    ([101.0, 103.0, 105.0, 107.0, 109.0], Action.SELL, r"^RSI\(14\) \d+\.\d\d > 70$"),
    ([100.0, 100.5], Action.HOLD, r"^RSI\(14\) \d+\.\d\d within \[30, 70\]$"),
])
def test_rsi_reversion_on_a_dip_a_spike_and_a_range(tail: list[float], action: Action, reason: str) -> None:
    s, p = strategy("rsi_reversion")
    frame = frame_of(np.concatenate([zigzag(window_size(s, p)), tail]))
    signal = s.evaluate(frame.iloc[-window_size(s, p):], p)
    assert signal.action is action
    assert re.match(reason, signal.reason), signal.reason
    assert set(signal.values) == {"close", "rsi_14"}
    assert signal.values["close"] == tail[-1]


@pytest.mark.parametrize(("params", "rsi", "action"), [
    ({"buy_below": 30, "sell_above": 70}, 29.9, Action.BUY),
    ({"buy_below": 30, "sell_above": 70}, 30.0, Action.HOLD),
    ({"buy_below": 30, "sell_above": 70}, 70.0, Action.HOLD),
    ({"buy_below": 30, "sell_above": 70}, 70.1, Action.SELL),
    ({"buy_below": 45, "sell_above": 55}, 44.0, Action.BUY),
    ({"buy_below": 45, "sell_above": 55}, 50.0, Action.HOLD),
    ({"buy_below": 45, "sell_above": 55}, float("nan"), Action.HOLD),
])
def test_rsi_reversion_rule_thresholds_are_strict(
    params: dict[str, float], rsi: float, action: Action
) -> None:
    s = load_strategy("rsi_reversion", [])
    p = s.parse_params(params)
    codes = s.rule({"close": np.array([1.0]), "rsi_14": np.array([rsi])}, p)
    assert {1: Action.BUY, -1: Action.SELL, 0: Action.HOLD}[int(codes[-1])] is action


@pytest.mark.parametrize(("params", "message"), [
    ({"buy_below": 70, "sell_above": 30}, "buy_below: must be below sell_above"),
    ({"buy_below": 50, "sell_above": 50}, "buy_below: must be below sell_above"),
    ({"sell_above": 100}, "less than 100"),
    ({"period": 1}, "greater than or equal to 2"),
])
def test_rsi_reversion_rejects_inconsistent_params(params: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        load_strategy("rsi_reversion", []).parse_params(params)


# ------------------------------------------------------------------------------------------- macd_trend


@pytest.mark.parametrize(("jump", "action", "words"), [(5.0, Action.BUY, "crossed above"),
                                                       (-5.0, Action.SELL, "crossed below")])
def test_macd_trend_fires_on_the_crossing_candle_only(jump: float, action: Action, words: str) -> None:
    s, p = strategy("macd_trend")
    size = window_size(s, p)
    # Flat closes make MACD, signal and histogram exactly 0; a jump then crosses on that very candle.
    close = np.concatenate([np.full(size, 100.0), [100.0 + jump, 100.0 + 2 * jump]])
    frame = frame_of(close)
    before, on, after = (s.evaluate(frame.iloc[end - size:end], p) for end in (size, size + 1, size + 2))
    assert before.action is Action.HOLD
    assert on.action is action
    assert words in on.reason
    assert after.action is Action.HOLD
    assert set(on.values) == {"close", "macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9"}
    assert np.sign(on.values["macd_hist_12_26_9"]) == np.sign(jump)


def test_macd_trend_matches_an_independent_crossover_computation_on_a_sine() -> None:
    s = load_strategy("macd_trend", [])
    p = s.parse_params({"fast": 5, "slow": 10, "signal": 4})
    close = 100 + 5 * np.sin(np.arange(1500) * 2 * np.pi / 150)
    series = pd.Series(close)
    line = series.ewm(span=5, adjust=False).mean() - series.ewm(span=10, adjust=False).mean()
    hist = (line - line.ewm(span=4, adjust=False).mean()).to_numpy()
    up = (hist[:-1] <= 0) & (hist[1:] > 0)
    down = (hist[:-1] >= 0) & (hist[1:] < 0)
    expected = np.where(up, 1, np.where(down, -1, 0))
    frame = frame_of(close)
    size = window_size(s, p)
    got = [s.decide_last(frame.iloc[i - size + 1:i + 1], p)[0] for i in range(size, 1500)]
    assert got == expected[size - 1:].tolist()
    assert got.count(1) >= 5 and got.count(-1) >= 5


def test_macd_trend_rejects_fast_not_below_slow() -> None:
    with pytest.raises(ValidationError, match=r"fast: must be below slow \(26 >= 26\)"):
        load_strategy("macd_trend", []).parse_params({"fast": 26})


# ----------------------------------------------------------------------------------- bollinger_breakout


def test_bollinger_breakout_buys_the_breakout_and_sells_the_fall_below_the_middle() -> None:
    s, p = strategy("bollinger_breakout")
    size = window_size(s, p)
    # A flat range (all bands at 100), a breakout to 105, holding up there, then a fall back under the
    # middle band.
    close = np.concatenate([np.full(60, 100.0), [105.0, 106.0, 99.0, 98.0]])
    frame = frame_of(close)
    signals = [s.evaluate(frame.iloc[end - size:end], p) for end in range(59, len(close) + 1)]
    actions = [sig.action for sig in signals]
    assert actions == [Action.HOLD, Action.HOLD, Action.BUY, Action.HOLD, Action.SELL, Action.HOLD]
    buy, sell = signals[2], signals[4]
    assert buy.values["close"] == 105.0 > buy.values["bb_upper_20_2"]
    assert "crossed above the upper band" in buy.reason
    assert sell.values["close"] == 99.0 < sell.values["bb_middle_20_2"]
    assert "crossed below the middle band" in sell.reason
    assert set(buy.values) == {"close", "bb_upper_20_2", "bb_middle_20_2", "bb_lower_20_2", "bb_pctb_20_2",
                               "bb_width_20_2"}


def test_bollinger_breakout_does_not_rebuy_while_staying_above_the_band() -> None:
    s = load_strategy("bollinger_breakout", [])
    p = s.parse_params({"window": 5, "std": 1.0})
    cols = {"close": np.array([100.0, 103.0, 104.0]), "bb_upper_5_1": np.array([101.0, 102.0, 103.0]),
            "bb_middle_5_1": np.array([100.0, 100.5, 101.0])}
    assert s.rule(cols, p).tolist() == [0, 1, 0]


@pytest.mark.parametrize(("params", "message"), [
    ({"window": 1}, "greater than or equal to 2"),
    ({"std": 0}, "greater than 0"),
    ({"stdev": 2}, "Extra inputs are not permitted"),
])
def test_bollinger_breakout_rejects_bad_params(params: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        load_strategy("bollinger_breakout", []).parse_params(params)


# --------------------------------------------------------------------------------------------- general


@pytest.mark.parametrize("name", ["rsi_reversion", "macd_trend", "bollinger_breakout"])
def test_evaluate_all_labels_every_row_with_an_action(name: str) -> None:
    s, p = strategy(name)
    frame = frame_of(100 + np.cumsum(np.random.default_rng(3).normal(0, 0.3, 2000)))
    actions = s.evaluate_all(frame, p)
    assert actions.index.equals(frame.index)
    assert set(actions.unique()) == {Action.BUY, Action.SELL, Action.HOLD}
    last = s.evaluate(frame.iloc[-window_size(s, p):], p)
    assert actions.iloc[-1] is last.action
