"""The backtester's pieces: CSV detection and checks, the content-keyed cache, both fill models, the figures."""

from __future__ import annotations

import importlib.util
import os
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from bot.backtest import data, engine, metrics
from bot.backtest.data import Candles, load_csv, parse_csv
from bot.errors import ConfigError
from bot.strategy import BUY, HOLD, SELL, load_strategy

ROOT = Path(__file__).resolve().parents[2]
MINUTE = 60_000_000_000


def gen_synth() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_synth_vendored", ROOT / "bench" / "gen_synth.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def candles(opens: list[float], closes: list[float] | None = None, *, volume: float = 100.0) -> Candles:
    o = np.array(opens, dtype=np.float64)
    c = np.array(closes if closes is not None else opens, dtype=np.float64)
    ohlcv = np.vstack([o, np.maximum(o, c) + 1.0, np.minimum(o, c) - 1.0, c, np.full(len(o), volume)])
    return Candles(np.arange(len(o), dtype=np.int64) * MINUTE, ohlcv, "test")


def codes(*values: int) -> Any:
    return np.array(values, dtype=np.int8)


# ------------------------------------------------------------------------------------------------- CSV


def test_both_header_styles_load_to_the_same_candles(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    a.write_text("date,Open,High,Low,Close,Volume\n2023-01-01 00:00:00,1,2,0.5,1.5,10\n"
                 "2023-01-01 00:01:00,1.5,2.5,1,2,11\n")
    b = tmp_path / "b.csv"
    b.write_text("timestamp,open,high,low,close,volume,extra\n2023-01-01T00:00:00Z,1,2,0.5,1.5,10,x\n"
                 "2023-01-01T00:01:00Z,1.5,2.5,1,2,11,y\n")
    c = tmp_path / "c.csv"  # epoch seconds, columns in another order
    c.write_text("volume,close,low,high,open,time\n10,1.5,0.5,2,1,1672531200\n11,2,1,2.5,1.5,1672531260\n")
    got = [parse_csv(p, p.read_bytes()) for p in (a, b, c)]
    for other in got[1:]:
        assert np.array_equal(other.times, got[0].times)
        assert np.array_equal(other.ohlcv, got[0].ohlcv)
    assert got[0].period == 60
    assert str(got[0].frame().index[0]) == "2023-01-01 00:00:00+00:00"


@pytest.mark.parametrize(("body", "where", "message"), [
    ("timestamp,open,high,low,volume\n2023-01-01,1,2,0,5\n", "", "missing column(s): close"),
    ("open,high,low,close,volume\n1,2,0,1,5\n", "", "missing column(s): timestamp/date/time/datetime"),
    ("timestamp,open,high,low,close,volume\n2023-01-01T00:00Z,1,2,0,1,5\n2023-01-01T00:01Z,1,2,0,abc,5\n",
     "row 2 (line 3), column 'close'", "'abc' is not a number"),
    ("timestamp,open,high,low,close,volume\n2023-01-01T00:00Z,1,2,0,1,5\n2023-01-01T00:01Z,1,2,0,1,\n",
     "row 2 (line 3), column 'volume'", "missing value"),
    ("timestamp,open,high,low,close,volume\n2023-01-01T00:00Z,1,2,0,1,5\n2023-01-01T00:00Z,1,2,0,1,5\n",
     "row 2 (line 3), column 'timestamp'", "duplicated timestamp"),
    ("timestamp,open,high,low,close,volume\n2023-01-01T00:05Z,1,2,0,1,5\n2023-01-01T00:06Z,1,2,0,1,5\n"
     "2023-01-01T00:01Z,1,2,0,1,5\n", "row 3 (line 4), column 'timestamp'", "unsorted"),
    ("timestamp,open,high,low,close,volume\n2023-01-01T00:00Z,1,2,0,1,5\nyesterday,1,2,0,1,5\n",
     "row 2 (line 3), column 'timestamp'", "'yesterday' is not a time"),
])
def test_bad_csv_names_the_row_and_column(tmp_path: Path, body: str, where: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        parse_csv(path, path.read_bytes())
    (place, text), = info.value.problems
    assert place.endswith(where) if where else place == str(path)
    assert message in text


def test_bad_csv_exits_2_with_row_and_column_and_no_traceback(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    cfg = tmp_path / "bt.toml"
    cfg.write_text(config_text(tmp_path))
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,open,high,low,close,volume\n2023-01-01T00:00Z,1,2,0,1,5\n2023-01-01T00:01Z,1,x,0,1,5\n")
    assert main(["backtest", "--config", str(cfg), "--data", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "row 2 (line 3), column 'high': 'x' is not a number" in err
    assert "Traceback" not in err


def test_the_cache_is_keyed_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, cache = tmp_path / "c.csv", tmp_path / "cache"
    path.write_text("timestamp,open,high,low,close,volume\n2023-01-01T00:00Z,1,2,0,1,5\n2023-01-01T00:01Z,2,3,1,2,6\n")
    first = load_csv(path, cache)
    assert len(list(cache.glob("v*-*.npy"))) == 1
    parses: list[Path] = []
    real = data.parse_csv
    monkeypatch.setattr(data, "parse_csv", lambda p, raw: parses.append(p) or real(p, raw))
    again = load_csv(path, cache)
    assert parses == [] and np.array_equal(again.ohlcv, first.ohlcv) and np.array_equal(again.times, first.times)
    path.write_text(path.read_text().replace("2,3,1,2,6", "2,3,1,3,6"))  # same size, new content
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))  # even on a coarse clock
    changed = load_csv(path, cache)
    assert parses == [path] and changed.column("close")[-1] == 3.0
    assert len(list(cache.glob("v*-*.npy"))) == 2


# --------------------------------------------------------------------------------------------- engine


def test_next_open_enters_and_exits_at_the_next_open_and_ignores_repeats() -> None:
    c = candles([10, 11, 12, 13, 14, 15, 16], [10, 11, 12, 13, 14, 15, 16])
    sim = engine.next_open(codes(SELL, BUY, BUY, HOLD, SELL, SELL, BUY), c, 1000.0, 0.0)
    assert sim.fills.bar.tolist() == [2, 5]  # the leading SELL, the repeated BUY/SELL, the last-bar BUY: nothing
    assert sim.fills.price.tolist() == [12.0, 15.0]
    assert len(sim.trades) == 1 and sim.trades.exit_bar.tolist() == [5]
    assert sim.trades.pnl[0] == pytest.approx(1000.0 * (15 / 12 - 1))
    summary = metrics.summarize("i", "s", "next_open", sim, c)
    assert summary.total_return_pct == pytest.approx(25.0)
    assert summary.exposure_pct == pytest.approx(100 * 3 / 7)


def test_a_position_open_at_the_end_is_a_trade_marked_at_the_last_close() -> None:
    c = candles([10, 10, 20, 30], [10, 10, 20, 40])
    sim = engine.next_open(codes(HOLD, BUY, HOLD, HOLD), c, 100.0, 0.01)
    assert len(sim.trades) == 1 and sim.trades.exit_bar.tolist() == [-1]
    assert sim.trades.exit_price.tolist() == [40.0]
    equity, _units = metrics.equity_curve(sim, c)
    assert equity[-1] == pytest.approx(100 * 0.99 / 20 * 40)
    assert sim.fills.fee.sum() == pytest.approx(1.0)


def reference_next_open(sig: Any, opens: Any, close: Any, cash: float, fee: float) -> tuple[int, float]:
    """A plain loop over every bar: the rule as the established engines state it."""
    units, trades = 0.0, 0
    for i in range(len(sig) - 1):
        if sig[i] == BUY and units == 0:
            units, cash, trades = cash * (1 - fee) / opens[i + 1], 0.0, trades + 1
        elif sig[i] == SELL and units > 0:
            cash, units = units * opens[i + 1] * (1 - fee), 0.0
    return trades, cash + units * close[-1]


@pytest.mark.parametrize(("name", "params"), [("rsi_reversion", {}), ("sma_cross", {}),
                                              ("macd_trend", {}), ("bollinger_breakout", {})])
def test_next_open_equals_a_bar_by_bar_loop_on_synthetic_minutes(name: str, params: dict[str, Any]) -> None:
    frame = gen_synth().make_series(20_000, 7)
    times = frame.index.tz_convert("UTC").tz_localize(None).to_numpy().astype("datetime64[ns]").astype(np.int64)
    c = Candles(times, frame[["Open", "High", "Low", "Close", "Volume"]].to_numpy().T.copy(), "synth")
    strategy = load_strategy(name, [])
    p = strategy.parse_params(params)
    sig = engine.signal_codes(strategy, p, c)
    assert np.array_equal(sig == BUY, (strategy.evaluate_all(c.frame(), p) == "buy").to_numpy())
    sim = engine.next_open(sig, c, 1000.0, 0.001)
    trades, final = reference_next_open(sig, c.column("open"), c.column("close"), 1000.0, 0.001)
    assert len(sim.trades) == trades > 20
    equity, _ = metrics.equity_curve(sim, c)
    assert equity[-1] == pytest.approx(final, rel=1e-9)
    assert sim.trades.pnl.sum() == pytest.approx(final - 1000.0, rel=1e-6, abs=1e-6)


def limit_model(ttl: int = 3, participation: str = "0.5") -> engine.LimitModel:
    return engine.LimitModel(0.001, Decimal(participation), Decimal("0.0001"), ttl)


def test_limit_orders_rest_at_the_signal_close_and_fill_through_the_paper_fill_function(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    real = engine.resting_fill
    monkeypatch.setattr(engine, "resting_fill", lambda *a: calls.append(a) or real(*a))
    # Closes at 10; the next candles' lows: 10.5 (above the buy price: no fill), then 9 (reached).
    c = candles([10, 11.5, 10, 10, 10, 10], [10, 11.5, 10, 10, 10, 10], volume=100.0)
    sim = engine.limit(codes(BUY, HOLD, HOLD, HOLD, HOLD, HOLD), c, 100.0, limit_model(participation="0.01"))
    assert calls and len(calls) == 3  # the TTL: three later candles observed
    # 100 / (10 * 1.001) = 9.99 units wanted; 1% of 100 volume per candle = 1 unit on each candle reached
    assert sim.fills.bar.tolist() == [2, 3] and sim.fills.amount.tolist() == [1.0, 1.0]
    assert sim.fills.price.tolist() == [10.0, 10.0]
    assert sim.fills.fee.sum() == pytest.approx(2 * 10 * 0.001)
    assert len(sim.trades) == 1 and sim.trades.exit_bar.tolist() == [-1]


def test_limit_sells_what_is_held_and_closes_the_trade() -> None:
    c = candles([10, 10, 10, 12, 12, 12], [10, 10, 10, 12, 12, 12], volume=1e6)
    sim = engine.limit(codes(BUY, HOLD, HOLD, SELL, HOLD, HOLD), c, 100.0, limit_model())
    assert sim.fills.side.tolist() == [1, -1]
    assert sim.fills.amount[0] == sim.fills.amount[1] == pytest.approx(9.99)
    assert sim.trades.exit_bar.tolist() == [4]
    assert sim.trades.pnl[0] == pytest.approx(9.99 * 2 - 9.99 * 10 * 0.001 - 9.99 * 12 * 0.001)


def test_metrics_on_a_known_equity_path() -> None:
    equity = np.array([100.0, 120.0, 90.0, 110.0, 80.0])
    assert metrics.drawdown(equity).max() == pytest.approx(1 - 80 / 120)
    assert np.isnan(metrics.sharpe(np.full(10, 5.0), np.arange(10, dtype=np.int64) * MINUTE, 60))


# ------------------------------------------------------------------------------------------------- CLI


def config_text(tmp_path: Path) -> str:
    return f"""state_dir = "{tmp_path / 'var'}"
[sandbox]
enabled = true
[[strategies]]
name = "rsi"
strategy = "rsi_reversion"
market = "btc-mxn"
feed = {{ source = "atmos", exchange = "binance", symbol = "BTCUSDT" }}
params = {{ period = 14, buy_below = 30, sell_above = 70 }}
order_amount = "0.001"
[[strategies]]
name = "sma"
strategy = "sma_cross"
market = "btc-mxn"
feed = {{ source = "sfox", pair = "btcusd" }}
params = {{ fast = 10, slow = 30 }}
order_amount = "0.001"
"""


def synth_csv(tmp_path: Path, bars: int = 5_000) -> Path:
    frame = gen_synth().make_series(bars, 42)
    frame.index = frame.index.tz_localize(None)
    path = tmp_path / "synth.csv"
    frame.to_csv(path)
    return path


def test_backtest_json_holds_each_instance_with_its_trade_count(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from bot.cli import main

    cfg = tmp_path / "bt.toml"
    cfg.write_text(config_text(tmp_path))
    out = tmp_path / "out.json"
    csv = synth_csv(tmp_path)
    assert main(["backtest", "--config", str(cfg), "--data", str(csv), "--json", str(out), "--no-progress"]) == 0
    doc = json.loads(out.read_text())["instances"]
    assert set(doc) == {"rsi", "sma"}
    for name in ("rsi", "sma"):
        assert doc[name]["trades"] == len(doc[name]["trade_list"]) > 0
        assert {"total_return_pct", "win_rate_pct", "max_drawdown_pct", "sharpe", "exposure_pct", "fees"} <= set(
            doc[name])
    printed = capsys.readouterr().out
    assert "rsi_reversion" in printed and "sma_cross" in printed
    assert main(["backtest", "--config", str(cfg), "--data", str(csv), "--strategy", "sma", "--json", str(out),
                 "--no-progress"]) == 0
    assert set(json.loads(out.read_text())["instances"]) == {"sma"}


def test_an_unknown_instance_name_exits_2_naming_the_configured_ones(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    cfg = tmp_path / "bt.toml"
    cfg.write_text(config_text(tmp_path))
    assert main(["backtest", "--config", str(cfg), "--data", str(tmp_path / "x.csv"), "--strategy", "nope"]) == 2
    assert "--strategy: 'nope' is not an enabled [[strategies]] name; configured: rsi, sma" in capsys.readouterr().err
