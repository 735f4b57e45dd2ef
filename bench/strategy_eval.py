"""Strategy evaluation speed, the way the live path does it, plus the RSI reference trade count.

    .venv/bin/python bench/strategy_eval.py [--instances 50] [--candles 1000] [--reference-bars 525600]

1. Latency: `--instances` strategy instances (the three built-ins with param variations), each on its
   own synthetic stream (`gen_synth.make_series`, one seed per instance), each evaluated on
   `--candles` consecutive closed candles, interleaved across instances as the daemon sees them. One
   evaluation = take the trailing `window_size` candles -> indicators -> rule -> `Signal`. Measured
   three ways, each printing median and p99 ms per evaluation:
   - `window`: the live path: the closed `Decimal` candle is appended to the stream's `CandleWindow`
     (one conversion to float), its frame is taken and evaluated;
   - `slice`: the evaluation alone, on a slice of a float frame already in memory;
   - `convert`: the whole window converted from `Decimal` candles with `candles_to_frame` each time.
2. Reference: `rsi_reversion` with default params over the full shared dataset, traded long only,
   all-in, no fee, deciding on a bar's close and filling at the next bar's open; prints the trade count
   and total return next to the figures in /work/shared/bench/README.md (1,863 trades, about +36.2%).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

# Not the script's own directory first: bench/secrets.py would shadow the standard library's `secrets`.
sys.path[:] = [p for p in sys.path if Path(p or '.').resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bot.domain import Action, Candle  # noqa: E402
from bot.strategy import (  # noqa: E402
    CandleWindow,
    Strategy,
    candles_to_frame,
    load_strategy,
    window_size,
)

GEN_SYNTH = Path("/work/shared/bench/gen_synth.py")
REFERENCE_TRADES = 1863
REFERENCE_RETURN = 0.362
# (strategy, params) variations the instances cycle through.
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("rsi_reversion", {}),
    ("rsi_reversion", {"period": 7, "buy_below": 25, "sell_above": 75}),
    ("rsi_reversion", {"period": 21}),
    ("rsi_reversion", {"period": 14, "buy_below": 20, "sell_above": 80}),
    ("rsi_reversion", {"period": 9, "buy_below": 35, "sell_above": 65}),
    ("rsi_reversion", {"period": 28}),
    ("macd_trend", {}),
    ("macd_trend", {"fast": 8, "slow": 21, "signal": 5}),
    ("macd_trend", {"fast": 5, "slow": 35, "signal": 5}),
    ("macd_trend", {"fast": 19, "slow": 39, "signal": 9}),
    ("macd_trend", {"fast": 6, "slow": 13, "signal": 4}),
    ("bollinger_breakout", {}),
    ("bollinger_breakout", {"window": 20, "std": 2.5}),
    ("bollinger_breakout", {"window": 50, "std": 2.0}),
    ("bollinger_breakout", {"window": 10, "std": 1.5}),
    ("bollinger_breakout", {"window": 30, "std": 3.0}),
]


def gen_synth() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_synth", GEN_SYNTH)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {GEN_SYNTH}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Instance:
    strategy: Strategy[Any]
    params: Any
    window: int
    frame: pd.DataFrame
    candles: list[Candle]


def make_instances(count: int, candles: int, gen: ModuleType) -> list[Instance]:
    out: list[Instance] = []
    for i in range(count):
        name, raw = VARIANTS[i % len(VARIANTS)]
        strategy = load_strategy(name, [])
        params = strategy.parse_params(raw)
        size = window_size(strategy, params)
        frame = gen.make_series(size + candles - 1, 1000 + i).rename(columns=str.lower)
        domain = [
            Candle(t.to_pydatetime(), Decimal(repr(o)), Decimal(repr(h)), Decimal(repr(lo)), Decimal(repr(c)),
                   Decimal(repr(v)))
            for t, o, h, lo, c, v in zip(frame.index, frame["open"], frame["high"], frame["low"],
                                         frame["close"], frame["volume"], strict=True)
        ]
        out.append(Instance(strategy, params, size, frame, domain))
    return out


def measure(instances: list[Instance], candles: int, mode: str) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds per evaluation, candle by candle across all instances.

    CPU time (this thread's) is printed beside wall time because the machine is shared: wall-time tails
    include waiting for a core, CPU time does not."""
    timings: list[float] = []
    cpu: list[float] = []
    actions = 0
    windows = []
    for inst in instances:  # warm-up history, loaded before the first measured candle
        windows.append(CandleWindow(inst.window))
        for candle in inst.candles[: inst.window - 1]:
            windows[-1].append(candle)
    for step in range(candles):
        for inst, live in zip(instances, windows, strict=True):
            start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
            if mode == "window":
                live.append(inst.candles[step + inst.window - 1])
                window = live.frame()
            elif mode == "convert":
                window = candles_to_frame(inst.candles[step : step + inst.window])
            else:
                window = inst.frame.iloc[step : step + inst.window]
            signal = inst.strategy.evaluate(window, inst.params)
            cpu.append((time.thread_time_ns() - start_cpu) / 1e6)
            timings.append((time.perf_counter_ns() - start) / 1e6)
            actions += signal.action is not Action.HOLD
    if actions == 0:
        raise SystemExit("no signals at all: the benchmark is not exercising the strategies")
    return timings, cpu


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def report(label: str, timings: tuple[list[float], list[float]]) -> None:
    wall, cpu = timings
    print(f"{label:8s} evaluations={len(wall):6d}  wall median={statistics.median(wall):.3f} ms "
          f"p99={_p99(wall):.3f} ms max={max(wall):.3f} ms | cpu median={statistics.median(cpu):.3f} ms "
          f"p99={_p99(cpu):.3f} ms")


def reference(bars: int, gen: ModuleType) -> None:
    frame = gen.make_series(bars, 42).rename(columns=str.lower)
    strategy = load_strategy("rsi_reversion", [])
    start = time.perf_counter()
    actions = strategy.evaluate_all(frame, strategy.Params()).to_numpy()
    elapsed = time.perf_counter() - start
    opens, closes = frame["open"].to_numpy(), frame["close"].to_numpy()
    equity, entry, trades = 1.0, None, 0
    for i in np.flatnonzero(actions != Action.HOLD):
        if i + 1 >= bars:
            break  # a decision on the last bar has no next open to fill at
        if entry is None and actions[i] is Action.BUY:
            entry = opens[i + 1]
        elif entry is not None and actions[i] is Action.SELL:
            equity *= opens[i + 1] / entry
            entry, trades = None, trades + 1
    open_note = ""
    if entry is not None:
        trades += 1  # the engines close a position still open at the end on the last close
        equity *= closes[-1] / entry
        open_note = " (incl. one closed at the last bar)"
    verdict = "MATCHES" if bars == 525_600 and trades == REFERENCE_TRADES else "differs from"
    print(f"reference rsi_reversion on {bars} bars: signals in {elapsed * 1000:.0f} ms, trades={trades}"
          f"{open_note}, total return={equity - 1:+.1%}; {verdict} README "
          f"({REFERENCE_TRADES} trades, about {REFERENCE_RETURN:+.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--candles", type=int, default=1000)
    parser.add_argument("--reference-bars", type=int, default=525_600, help="0 skips the reference check")
    args = parser.parse_args()
    if not GEN_SYNTH.is_file():
        raise SystemExit(f"{GEN_SYNTH} not found")
    gen = gen_synth()
    instances = make_instances(args.instances, args.candles, gen)
    windows = sorted({i.window for i in instances})
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"{len(instances)} instances x {args.candles} closed candles; "
          f"windows {windows[0]}..{windows[-1]} candles")
    for mode in ("window", "slice", "convert"):
        report(mode, measure(instances, args.candles, mode))
    if args.reference_bars:
        reference(args.reference_bars, gen)


if __name__ == "__main__":
    main()
