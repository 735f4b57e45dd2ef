"""`tradebot backtest`: the configured strategy instances over a candle history, with figures and reports.

Instances come from the configuration (`--strategy NAME` picks some by instance name); each is run with
its own params through the live path's strategy code. Candles come from `--data CSV` (every instance on
the same file) or `--from atlas|atmos|sfox` (each instance on its own feed's history).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from bot.backtest import engine
from bot.backtest.data import Candles, load_csv
from bot.backtest.metrics import Summary, summarize
from bot.backtest.progress import step
from bot.errors import ConfigError
from bot.settings import Settings
from bot.strategy import Codes, ConfiguredStrategy, load_configured

SOURCES = ("atlas", "atmos", "sfox")
# Amounts are rounded down to this step in the `limit` model (CoinBTR's finest amount step).
AMOUNT_STEP = Decimal("0.00000001")
CACHE_DIR = "cache/backtest"


@dataclass(frozen=True)
class Options:
    """What the command line asked for."""

    strategies: Sequence[str] = ()
    data: Path | None = None
    source: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    fill: str = "next_open"
    fee_maker: float = 0.0
    fee_taker: float = 0.0
    cash: float = 10_000.0
    report: Path | None = None
    json_out: Path | None = None
    signals_out: Path | None = None
    cache_dir: Path | None = None
    progress: bool = True


@dataclass(frozen=True)
class Result:
    """One instance's backtest."""

    instance: ConfiguredStrategy
    candles: Candles
    sim: engine.Simulation
    summary: Summary


def select(settings: Settings, names: Sequence[str], source: str | None) -> list[ConfiguredStrategy]:
    """The enabled instances named by `--strategy` (all of them without it; with `--from atmos|sfox` and no
    names, those whose feed is on that source)."""
    configured = load_configured(settings)
    by_name = {c.instance: c for c in configured}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError("unknown strategy instance", [
            ("--strategy", f"{n!r} is not an enabled [[strategies]] name; configured: "
                           f"{', '.join(by_name) or 'none'}") for n in unknown])
    chosen = [by_name[n] for n in dict.fromkeys(names)] if names else configured
    feeds = {c.name: c.feed for c in settings.strategies}
    if source in ("atmos", "sfox"):
        if names:
            wrong = [c.instance for c in chosen if feeds[c.instance].source != source]
            if wrong:
                raise ConfigError(f"--from {source}: instance feeds are on another source", [
                    ("--strategy", f"{n}: its feed is {feeds[n].key}") for n in wrong])
        else:
            chosen = [c for c in chosen if feeds[c.instance].source == source]
    if not chosen:
        raise ConfigError("no strategy instance to backtest", [("strategies", "none enabled for this source")])
    return chosen


def candles_for(settings: Settings, opts: Options, instance: ConfiguredStrategy,
                memo: dict[str, Candles]) -> Candles:
    """The history `instance` is run on: `--data` or its feed's `--from` source (memoised by source)."""
    feed = next(c.feed for c in settings.strategies if c.name == instance.instance)
    key = "csv" if opts.data is not None else f"{opts.source}:{feed.key}"
    if key in memo:
        return memo[key]
    if opts.data is None:
        from bot import logs

        logs.configure(level="warning", secrets=settings.secrets())  # the services' chatter stays off stdout
    if opts.data is not None:
        with step(f"loading {opts.data}", enabled=opts.progress):
            candles = load_csv(opts.data, opts.cache_dir)
    elif opts.source == "atlas":
        from bot.backtest.sources import atlas_candles

        candles = asyncio.run(atlas_candles(settings, feed.key, opts.progress))
    else:
        from bot.backtest.sources import Remote, download

        remote = Remote.of_feed(feed)
        cache = (opts.cache_dir or settings.state_dir / CACHE_DIR) / "downloads"
        begin = opts.start.strftime("%Y%m%dT%H%M") if opts.start else "day"
        out = cache / f"{remote.label.replace(':', '_')}-{begin}.csv"
        asyncio.run(download(settings, remote, opts.start, opts.end, out, opts.progress))
        candles = load_csv(out, None)
    memo[key] = candles
    return candles


@dataclass(frozen=True)
class FillSpec:
    """How signals become fills: the model, starting cash, the taker fee, and the `limit` model's settings."""

    fill: str
    cash: float
    fee_taker: float
    limit: engine.LimitModel | None


def fill_spec(settings: Settings, opts: Options, instance: str, candles: Candles) -> FillSpec:
    """The fill settings of `instance` on `candles` (the `limit` model's TTL is counted in candles)."""
    model = None
    if opts.fill != "next_open":
        cfg = next(c for c in settings.strategies if c.name == instance)
        ttl_bars = max(1, -(-cfg.order_ttl_seconds // candles.period))
        model = engine.LimitModel(opts.fee_maker, Decimal(str(settings.paper.participation)), AMOUNT_STEP, ttl_bars)
    return FillSpec(opts.fill, opts.cash, opts.fee_taker, model)


def simulate(codes: Codes, candles: Candles, spec: FillSpec) -> engine.Simulation:
    """The trade simulation of `codes` under `spec`: a pure function of its arguments."""
    if spec.limit is None:
        return engine.next_open(codes, candles, spec.cash, spec.fee_taker)
    return engine.limit(codes, candles, spec.cash, spec.limit)


def run_one(settings: Settings, opts: Options, instance: ConfiguredStrategy, candles: Candles) -> Result:
    """Signals, simulation and figures of one instance."""
    codes = engine.signal_codes(instance.strategy, instance.params, candles)
    sim = simulate(codes, candles, fill_spec(settings, opts, instance.instance, candles))
    summary = summarize(instance.instance, instance.strategy.name, opts.fill, sim, candles)
    return Result(instance, candles, sim, summary)


def run(settings: Settings, opts: Options, out: TextIO | None = None) -> list[Result]:
    """The whole command: results printed, and written as JSON, HTML and signals CSV when asked."""
    out = out or sys.stdout
    chosen = select(settings, opts.strategies, opts.source)
    memo: dict[str, Candles] = {}
    results: list[Result] = []
    for instance in chosen:
        candles = candles_for(settings, opts, instance, memo).between(opts.start, opts.end)
        if len(candles) == 0:
            raise ConfigError("no candles in the range", [("--start/--end", f"{instance.instance}: no candles")])
        with step(f"backtesting {instance.instance}", enabled=opts.progress):
            results.append(run_one(settings, opts, instance, candles))
    print_table([r.summary for r in results], out)
    if opts.json_out is not None:
        write_json(opts.json_out, results)
    if opts.signals_out is not None:
        write_signals(opts.signals_out, results)
    if opts.report is not None:
        from bot.backtest.report import Section, write_report

        with step(f"writing {opts.report}", enabled=opts.progress):
            write_report(opts.report, [Section(r.summary, r.sim, r.candles) for r in results])
        print(f"report: {opts.report}", file=out)
    return results


_COLUMNS = (("instance", "instance", "{}"), ("strategy", "strategy", "{}"), ("candles", "candles", "{:,}"),
            ("trades", "trades", "{:,}"), ("return", "total_return_pct", "{:+.2f}%"),
            ("win rate", "win_rate_pct", "{:.1f}%"), ("max dd", "max_drawdown_pct", "{:.2f}%"),
            ("sharpe", "sharpe", "{:.2f}"), ("exposure", "exposure_pct", "{:.1f}%"), ("fees", "fees", "{:,.2f}"),
            ("buy&hold", "buy_and_hold_pct", "{:+.2f}%"))


def print_table(summaries: Sequence[Summary], out: TextIO) -> None:
    """One line per instance, aligned."""
    rows = [[h for h, _k, _f in _COLUMNS]]
    for s in summaries:
        d = s.as_dict()
        rows.append([fmt.format(d[k]) if d[k] is not None else "-" for _h, k, fmt in _COLUMNS])
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    for r in rows:
        print("  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
              .rstrip(), file=out)
    if summaries:
        first = summaries[0]
        print(f"{first.start} -> {first.end}, fill {first.fill}", file=out)


def write_json(path: Path, results: Sequence[Result]) -> None:
    """`{"instances": {name: {...figures, "trades": count, "trade_list": [...]}}}` (compact: a year of minutes
    can hold thousands of trades, and only the standard library's C encoder writes them fast)."""
    import numpy as np
    import numpy.typing as npt

    def stamps(times: npt.NDArray[np.int64], bars: npt.NDArray[np.int64]) -> list[str | None]:
        text = np.datetime_as_string(times[np.maximum(bars, 0)].astype("datetime64[ns]"), unit="s")
        return [f"{s}+00:00" if b >= 0 else None for s, b in zip(text.tolist(), bars.tolist(), strict=True)]

    doc: dict[str, object] = {}
    for r in results:
        t, times = r.sim.trades, r.candles.times
        columns = zip(stamps(times, t.entry_bar), stamps(times, t.exit_bar), t.entry_price.tolist(),
                      t.exit_price.tolist(), t.amount.tolist(), t.pnl.tolist(), (100.0 * t.returns).tolist(),
                      t.fees.tolist(), (t.exit_bar < 0).tolist(), strict=True)
        keys = ("entry_time", "exit_time", "entry_price", "exit_price", "amount", "pnl", "return_pct", "fees",
                "open")
        doc[r.summary.instance] = {**r.summary.as_dict(),
                                   "trade_list": [dict(zip(keys, row, strict=True)) for row in columns]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"instances": doc}))


def write_signals(path: Path, results: Sequence[Result]) -> None:
    """Every candle's decision per instance: `instance,candle,action` (buy/sell/hold)."""
    import numpy as np
    import pandas as pd

    names = np.array(["sell", "hold", "buy"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fh.write("instance,candle,action\n")
        for r in results:
            stamps = pd.DatetimeIndex(r.candles.times.astype("datetime64[ns]")).strftime("%Y-%m-%dT%H:%M:%S+00:00")
            actions = names[r.sim.codes.astype(np.intp) + 1]
            fh.writelines(f"{r.summary.instance},{s},{a}\n" for s, a in zip(stamps, actions, strict=True))
