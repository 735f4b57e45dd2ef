"""Indicators: hand-checkable values, naming, params validation, warm-up parity per indicator."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from bot.indicators import (
    INDICATORS,
    PARITY_ATOL,
    PARITY_RTOL,
    Adx,
    Atr,
    Bollinger,
    Ema,
    Indicator,
    Macd,
    Obv,
    Rsi,
    Sma,
    Stochastic,
    Vwap,
    compute_indicators,
    make_indicator,
    settle_candles,
    warmup_of,
)


def frame_of(close: list[float], high: list[float] | None = None, low: list[float] | None = None,
             volume: list[float] | None = None) -> pd.DataFrame:
    """An OHLCV frame from closes (open = previous close; high/low default to the close)."""
    c = np.asarray(close, dtype=float)
    opens = np.concatenate([c[:1], c[:-1]])
    idx = pd.date_range("2024-01-01", periods=len(c), freq="1min", tz="UTC")
    return pd.DataFrame({
        "open": opens,
        "high": np.asarray(high if high is not None else c, dtype=float),
        "low": np.asarray(low if low is not None else c, dtype=float),
        "close": c,
        "volume": np.asarray(volume if volume is not None else np.ones(len(c)), dtype=float),
    }, index=idx)


def random_walk(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    high = close * np.exp(np.abs(rng.normal(0, 0.001, n)))
    low = close * np.exp(-np.abs(rng.normal(0, 0.001, n)))
    return frame_of(list(close), list(high), list(low), list(rng.lognormal(1.0, 0.5, n)))


@pytest.mark.parametrize(("alpha", "expected"), [
    (1.0, 0),
    (0.5, 40),          # 0.5**40 < 1e-12 <= 0.5**39
    (0.1, 263),
    (1 / 14, 373),
])
def test_settle_candles_is_the_first_n_with_seed_weight_below_eps(alpha: float, expected: int) -> None:
    assert settle_candles(alpha) == expected
    if expected:
        assert (1 - alpha) ** expected < 1e-12 <= (1 - alpha) ** (expected - 1)


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5])
def test_settle_candles_rejects_alpha_outside_unit_interval(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        settle_candles(alpha)


@pytest.mark.parametrize(("indicator", "columns"), [
    (Rsi(), ("rsi_14",)),
    (Sma(window=10), ("sma_10",)),
    (Ema(window=50), ("ema_50",)),
    (Macd(), ("macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9")),
    (Bollinger(window=20, std=2.5),
     ("bb_upper_20_2.5", "bb_middle_20_2.5", "bb_lower_20_2.5", "bb_pctb_20_2.5", "bb_width_20_2.5")),
    (Atr(), ("atr_14",)),
    (Adx(), ("adx_14",)),
    (Stochastic(), ("stoch_k_14_3", "stoch_d_14_3")),
    (Obv(window=5), ("obv_5",)),
    (Vwap(), ("vwap_14",)),
])
def test_column_names_are_stable(indicator: Indicator, columns: tuple[str, ...]) -> None:
    assert indicator.columns() == columns
    assert tuple(indicator.compute(random_walk(200, 1))) == columns


def test_registry_has_every_required_indicator() -> None:
    assert set(INDICATORS) >= {"rsi", "sma", "ema", "macd", "bollinger", "atr", "adx", "stochastic",
                               "obv", "vwap"}
    assert make_indicator("rsi", period=7) == Rsi(period=7)


@pytest.mark.parametrize(("name", "params", "message"), [
    ("rsi", {"period": 1}, "greater than or equal to 2"),
    ("rsi", {"window": 14}, "Extra inputs are not permitted"),
    ("macd", {"fast": 26, "slow": 12}, "fast: must be below slow"),
    ("bollinger", {"std": 0}, "greater than 0"),
    ("sma", {"window": "ten"}, "valid integer"),
])
def test_bad_params_are_rejected(name: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_indicator(name, **params)


def test_unknown_indicator_lists_the_available_ones() -> None:
    with pytest.raises(KeyError, match="available: adx, atr, bollinger"):
        make_indicator("ichimoku")


def test_sma_hand_values() -> None:
    out = Sma(window=3).compute(frame_of([1, 2, 3, 4, 5]))["sma_3"]
    assert out.isna().tolist() == [True, True, False, False, False]
    assert out.iloc[2:].tolist() == [2.0, 3.0, 4.0]


def test_ema_follows_its_recursion_seeded_on_the_first_close() -> None:
    close = [10.0, 11.0, 13.0, 12.0, 15.0, 14.0]
    alpha = 2 / (3 + 1)
    expected = [close[0]]
    for x in close[1:]:
        expected.append(alpha * x + (1 - alpha) * expected[-1])
    out = Ema(window=3).compute(frame_of(close))["ema_3"]
    assert out.iloc[:2].isna().all()  # ta hides the first window-1 values
    assert out.iloc[2:].tolist() == pytest.approx(expected[2:], rel=1e-12)


def test_rsi_is_100_on_gains_only_0_on_losses_only_and_wilder_in_between() -> None:
    assert Rsi(period=3).compute(frame_of([1, 2, 3, 4, 5, 6]))["rsi_3"].iloc[-1] == 100.0
    assert Rsi(period=3).compute(frame_of([6, 5, 4, 3, 2, 1]))["rsi_3"].iloc[-1] == 0.0
    close = [10.0, 11.0, 10.5, 12.0, 11.0, 11.5]
    up, down = 0.0, 0.0  # Wilder averages seeded with the first row's zero change
    for prev, cur in itertools.pairwise(close):
        up = up + (max(cur - prev, 0.0) - up) / 3
        down = down + (max(prev - cur, 0.0) - down) / 3
    expected = 100 - 100 / (1 + up / down)
    assert Rsi(period=3).compute(frame_of(close))["rsi_3"].iloc[-1] == pytest.approx(expected)


def test_macd_histogram_is_line_minus_signal() -> None:
    out = Macd(fast=3, slow=6, signal=4).compute(random_walk(100, 2))
    line, signal, hist = out["macd_3_6_4"], out["macd_signal_3_6_4"], out["macd_hist_3_6_4"]
    assert (hist - (line - signal)).dropna().abs().max() < 1e-12
    assert hist.notna().sum() > 80


def test_bollinger_hand_values() -> None:
    out = Bollinger(window=3, std=1).compute(frame_of([1, 2, 3]))
    sd = math.sqrt(2 / 3)  # population standard deviation of 1, 2, 3
    assert out["bb_middle_3_1"].iloc[-1] == pytest.approx(2.0)
    assert out["bb_upper_3_1"].iloc[-1] == pytest.approx(2 + sd)
    assert out["bb_lower_3_1"].iloc[-1] == pytest.approx(2 - sd)
    assert out["bb_pctb_3_1"].iloc[-1] == pytest.approx((3 - (2 - sd)) / (2 * sd))


def test_atr_starts_at_the_mean_true_range() -> None:
    out = Atr(window=2).compute(frame_of([10, 11, 12], high=[11, 12, 14], low=[9, 10, 11]))["atr_2"]
    # True ranges: 2 (first row: high-low), max(2, |12-10|, |10-10|) = 2, max(3, 3, 1) = 3.
    assert out.iloc[1] == pytest.approx(2.0)
    assert out.iloc[2] == pytest.approx((2.0 * 1 + 3.0) / 2)


def test_stochastic_k_is_where_the_close_sits_in_the_range() -> None:
    out = Stochastic(window=3, smooth=2).compute(
        frame_of([5, 6, 10, 7], high=[6, 8, 10, 9], low=[4, 5, 6, 5]))
    assert out["stoch_k_3_2"].iloc[2] == pytest.approx(100.0)  # close at the 3-candle high
    assert out["stoch_k_3_2"].iloc[3] == pytest.approx(100 * (7 - 5) / (10 - 5))
    assert out["stoch_d_3_2"].iloc[3] == pytest.approx((100.0 + 40.0) / 2)


def test_obv_is_the_net_signed_volume_over_its_window() -> None:
    out = Obv(window=2).compute(frame_of([1, 2, 3, 2, 1], volume=[1, 2, 3, 4, 5]))["obv_2"]
    assert out.iloc[2:].tolist() == [5.0, -1.0, -9.0]  # +2+3, +3-4, -4-5


def test_vwap_weights_the_typical_price_by_volume() -> None:
    out = Vwap(window=2).compute(frame_of([10, 20], high=[11, 22], low=[9, 18], volume=[1, 3]))["vwap_2"]
    assert out.iloc[-1] == pytest.approx((10 * 1 + 20 * 3) / 4)


def test_too_short_frames_yield_nan_instead_of_failing() -> None:
    out = compute_indicators(frame_of([1.0, 2.0]), [Atr(), Adx()])
    assert set(out) == {"atr_14", "adx_14"}
    assert all(s.isna().all() and len(s) == 2 for s in out.values())


def test_warmup_of_takes_the_slowest() -> None:
    assert warmup_of([Sma(window=5), Rsi(), Bollinger()]) == Rsi().warmup()
    assert warmup_of([]) == 1


def _max_gap(ind: Indicator, frame: pd.DataFrame, window: int, positions: range) -> float:
    """Largest |trailing-window value - full-history value| beyond the parity tolerance (0 = parity)."""
    full = ind.compute(frame)
    worst = 0.0
    for pos in positions:
        part = ind.compute(frame.iloc[pos - window + 1 : pos + 1])
        for key, series in part.items():
            live, ref = float(series.iloc[-1]), float(full[key].iloc[pos])
            assert not math.isnan(ref)
            worst = max(worst, abs(live - ref) - (PARITY_ATOL + PARITY_RTOL * abs(ref)))
    return max(worst, 0.0)


@pytest.mark.parametrize("name", sorted(INDICATORS))
def test_each_indicator_on_its_warmup_window_matches_the_full_history(name: str) -> None:
    ind = INDICATORS[name]()
    frame = random_walk(3000, 7)
    assert _max_gap(ind, frame, ind.warmup(), range(2000, 3000, 111)) == 0.0


@pytest.mark.parametrize("indicator", [Rsi(), Ema(), Macd(), Atr(), Adx()], ids=lambda i: i.kind)
def test_drifting_indicators_fail_parity_on_a_bare_period_window(indicator: Indicator) -> None:
    bare = {"rsi": 15, "ema": 20, "macd": 35, "atr": 15, "adx": 29}[indicator.kind]
    assert bare < indicator.warmup()
    assert _max_gap(indicator, random_walk(3000, 7), bare, range(2000, 3000, 111)) > 0.0


def test_bollinger_equals_ta_bollinger_bands_on_a_short_history() -> None:
    from ta.volatility import BollingerBands

    frame = random_walk(300, 11)
    ours = Bollinger(window=20, std=2.0).compute(frame)
    ta_bands = BollingerBands(frame["close"], window=20, window_dev=2.0)
    pairs = [("upper", ta_bands.bollinger_hband()), ("middle", ta_bands.bollinger_mavg()),
             ("lower", ta_bands.bollinger_lband()), ("pctb", ta_bands.bollinger_pband()),
             ("width", ta_bands.bollinger_wband())]
    for part, expected in pairs:
        got = ours[f"bb_{part}_20_2"]
        assert got.isna().tolist() == expected.isna().tolist()
        np.testing.assert_allclose(got.dropna(), expected.dropna(), rtol=1e-9, atol=1e-9, err_msg=part)


def test_bollinger_moments_do_not_depend_on_the_history_before_the_window() -> None:
    frame = random_walk(5000, 12) * 300.0  # BTC-like price level, where running variance loses digits
    full = Bollinger().compute(frame)
    for pos in (1000, 4999):
        part = Bollinger().compute(frame.iloc[pos - 19 : pos + 1])
        assert all(part[k].iloc[-1] == full[k].iloc[pos] for k in full)  # bit-identical
