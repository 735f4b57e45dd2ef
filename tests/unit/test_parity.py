"""Parity: deciding candle by candle on the live path's trailing window gives exactly the signals of one
computation over the full history, after warm-up, on the shared synthetic benchmark data.

What is compared, per built-in strategy with default params, on `make_series(20000, 42)`:
- every candle after warm-up where the full-history action is not HOLD (every signal), and
- every candle of three contiguous 400-candle stretches (start, middle, end), which include signal
  changes and the HOLD candles around them.
On each, the action must be identical and every indicator value equal within the parity tolerance.
Evaluating all 20,000 windows per strategy would take about a minute; the subset keeps this test fast.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bot.domain import Action
from bot.strategy import check_parity, load_strategy, window_size

GEN_SYNTH = Path("/work/shared/bench/gen_synth.py")
BARS, SEED = 20_000, 42
STRETCH = 400
BUILTINS = ["rsi_reversion", "macd_trend", "bollinger_breakout", "sma_cross"]


def _gen_synth() -> ModuleType:
    if not GEN_SYNTH.is_file():
        pytest.skip(f"shared benchmark generator not found at {GEN_SYNTH}")
    spec = importlib.util.spec_from_file_location("gen_synth", GEN_SYNTH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    frame: pd.DataFrame = _gen_synth().make_series(BARS, SEED)
    return frame.rename(columns=str.lower)


def compared_positions(actions: pd.Series, warmup: int) -> list[int]:
    first = warmup - 1  # the first row with a full window behind it
    signals = np.flatnonzero((actions != Action.HOLD).to_numpy())
    stretches = [range(start, start + STRETCH) for start in (first, BARS // 2, BARS - STRETCH)]
    return sorted({int(i) for i in signals if i >= first} | {i for r in stretches for i in r})


@pytest.mark.parametrize("name", BUILTINS)
def test_live_window_decisions_equal_full_history_decisions(name: str, market: pd.DataFrame) -> None:
    strategy = load_strategy(name, [])
    params: Any = strategy.Params()
    actions = strategy.evaluate_all(market, params)
    positions = compared_positions(actions, window_size(strategy, params))
    compared_signals = sum(actions.iloc[i] is not Action.HOLD for i in positions)
    # The comparison must cover plenty of buys and sells, or it proves nothing.
    assert compared_signals > 500
    assert check_parity(strategy, params, market, positions) == []


@pytest.mark.parametrize(("name", "bare_window"), [
    ("rsi_reversion", 15),   # the RSI period plus the first, change-less row
    ("macd_trend", 35),      # slow + signal: the first row where ta reports a histogram, plus the crossover
])
def test_a_bare_period_window_breaks_parity(name: str, bare_window: int, market: pd.DataFrame) -> None:
    strategy = load_strategy(name, [])
    params: Any = strategy.Params()
    positions = range(window_size(strategy, params), window_size(strategy, params) + 2000)
    mismatches = check_parity(strategy, params, market, positions, window=bare_window)
    assert any(m.what == "action" for m in mismatches)


@pytest.mark.parametrize("name", ["rsi_reversion", "macd_trend"])
def test_half_the_chosen_warmup_drifts_beyond_the_value_tolerance(name: str, market: pd.DataFrame) -> None:
    strategy = load_strategy(name, [])
    params: Any = strategy.Params()
    size = window_size(strategy, params)
    mismatches = check_parity(strategy, params, market, range(size, size + 1000), window=size // 2)
    assert mismatches
    assert all(m.what != "action" for m in mismatches)  # the values drift before the decisions do


def test_check_parity_refuses_positions_without_a_full_window(market: pd.DataFrame) -> None:
    strategy = load_strategy("rsi_reversion", [])
    with pytest.raises(ValueError, match="no full window"):
        check_parity(strategy, strategy.Params(), market, [10])
