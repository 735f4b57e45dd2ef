"""`tradebot optimize`: one configured instance over a grid of its params, on Dask (or serially).

Everything is checked before anything runs: the instance, the grid (each combination through the strategy's
own `Params`), the objective and constraints, the candles. Then the parameter sets are grouped by the
indicators they need, cut into batches of about `TARGET_TASK_S` of work each (timed on the first set, here),
and evaluated by `bot.optimize.evaluate` on the cluster (`--workers 0`: in this process). The table is sorted
by the objective, ties in grid order, so the same grid prints the same table wherever it ran.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from bot.backtest import runner as backtest
from bot.backtest.metrics import Summary
from bot.errors import ConfigError
from bot.optimize import grid as g
from bot.optimize.evaluate import Job, evaluate, order_by_indicators
from bot.optimize.objectives import OBJECTIVES
from bot.settings import Settings

# Work per Dask task: far above the scheduler's ~1 ms per task, small enough to balance and to lose little.
TARGET_TASK_S = 0.5
TASKS_PER_WORKER = 2  # at least this many batches per worker when the grid allows, for balance


@dataclass(frozen=True)
class Options:
    """What the command line asked for."""

    strategy: str
    grid: Sequence[str]
    data: Path | None = None
    source: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    fill: str = "next_open"
    fee_maker: float = 0.0
    fee_taker: float = 0.0
    cash: float = 10_000.0
    samples: int | None = None
    seed: int = 0
    maximize: str = "sharpe"
    constraints: Sequence[str] = ()
    top: int = 10
    scheduler: str | None = None
    workers: int | None = None  # 0: serially, in this process
    batch_size: int | None = None
    json_out: Path | None = None
    report: Path | None = None
    heatmap: tuple[str, str] | None = None
    cache_dir: Path | None = None
    progress: bool = True


@dataclass(frozen=True)
class Result:
    """One evaluated parameter set: its grid index, the grid's values, the full params and the metrics."""

    index: int
    point: dict[str, Any]
    params: dict[str, Any]
    metrics: dict[str, Any]
    feasible: bool = True


@dataclass
class Outcome:
    """A finished sweep: results best first (feasible ones, then the rest), and how it ran."""

    results: list[Result]
    axes: tuple[g.Axis, ...]
    objective: str
    where: str
    seconds: float
    constraints: list[g.Constraint] = field(default_factory=list)


@contextmanager
def _bar(total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar with ETA on standard error; yields `advance(n)`."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(SpinnerColumn(), TextColumn("backtests"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("backtests", total=total)
        yield lambda n: bar.advance(task, n)


def prepare(settings: Settings, opts: Options) -> tuple[Job, Any, list[int], list[dict[str, Any]], g.Grid, Any]:
    """Checks and inputs: (job, strategy, grid indices, validated params as dicts, grid, candles)."""
    if opts.maximize not in OBJECTIVES:
        raise ConfigError("bad --maximize", [("--maximize", f"one of {', '.join(OBJECTIVES)}")])
    instance = backtest.select(settings, [opts.strategy], opts.source)[0]
    grid = g.parse_grid(opts.grid)
    indices = grid.indices(opts.samples, opts.seed)
    validated = g.validate_points(instance.strategy, instance.params.model_dump(), grid, indices)
    bt = backtest.Options(strategies=[opts.strategy], data=opts.data, source=opts.source, start=opts.start,
                          end=opts.end, fill=opts.fill, fee_maker=opts.fee_maker, fee_taker=opts.fee_taker,
                          cash=opts.cash, cache_dir=opts.cache_dir, progress=opts.progress)
    candles = backtest.candles_for(settings, bt, instance, {}).between(opts.start, opts.end)
    if len(candles) == 0:
        raise ConfigError("no candles in the range", [("--start/--end", f"{opts.strategy}: no candles")])
    user_code = any((Path(d) / f"{instance.strategy.name}.py").is_file() for d in settings.strategy_paths)
    job = Job(instance.instance, instance.strategy.name, user_code,
              backtest.fill_spec(settings, bt, instance.instance, candles))
    order = order_by_indicators(instance.strategy, validated)
    return (job, instance.strategy, [indices[i] for i in order], [validated[i].model_dump() for i in order],
            grid, candles)


def cut_batches(keys: Sequence[Any], first_s: float, rest_s: float, workers: int) -> list[slice]:
    """Contiguous batches of the indicator-sorted sets: each about `TARGET_TASK_S` of work, or more so that a
    worker gets about `TASKS_PER_WORKER` tasks; a set costs `first_s` where its batch must compute the
    indicators (a batch's first set, a new indicator key), else `rest_s`."""
    cost = [first_s if i == 0 or keys[i] != keys[i - 1] else rest_s for i in range(len(keys))]
    target = max(TARGET_TASK_S, sum(cost) / (TASKS_PER_WORKER * max(workers, 1)))
    out: list[slice] = []
    start, spent = 0, 0.0
    for i in range(len(keys)):
        own = first_s if i == start else cost[i]
        if i > start and spent + own > target * 1.05:
            out.append(slice(start, i))
            start, spent, own = i, 0.0, first_s
        spent += own
    if len(keys):
        out.append(slice(start, len(keys)))
    return out


def sweep(settings: Settings, opts: Options) -> Outcome:
    """Run the sweep; results sorted by the objective."""
    job, strategy, indices, points, grid, candles = prepare(settings, opts)
    metric_fields = list(Summary.__dataclass_fields__)
    constraints = [g.parse_constraint(c, metric_fields) for c in opts.constraints]
    began = time.perf_counter()
    stamps: list[float] = []
    # The first two sets here: a user's bug shows before the cluster starts, and they time the batches.
    first = evaluate(strategy, job, points[:2], candles, lambda n: stamps.append(time.perf_counter()))
    first_s = stamps[0] - began
    rest_s = stamps[1] - stamps[0] if len(stamps) > 1 else first_s
    metrics: list[dict[str, Any]]
    if opts.workers == 0:
        with _bar(len(points), opts.progress) as advance:
            advance(len(first))
            metrics = first + evaluate(strategy, job, points[2:], candles, advance)
        seconds = time.perf_counter() - began
        where = "serial (this process)"
    else:
        from bot.optimize import cluster
        from bot.optimize.evaluate import indicator_key

        with cluster.connect(opts.scheduler, opts.workers) as client:
            workers = cluster.check_workers(client)
            cluster.ship_strategy_code(client, settings.strategy_paths)
            cluster.ready_workers(client, job, points[0], len(candles))
            began = time.perf_counter()  # the sweep's time, without the cluster's start-up
            if opts.batch_size:
                batches = [points[i:i + opts.batch_size] for i in range(0, len(points), opts.batch_size)]
            else:
                keys = [indicator_key(strategy, strategy.parse_params(p)) for p in points]
                batches = [points[s] for s in cut_batches(keys, first_s, rest_s, len(workers))]
            with _bar(len(points), opts.progress) as advance:
                # The embedded LocalCluster's workers are on this machine: they read the candles from a file.
                shared = None if opts.scheduler else Path(tempfile.gettempdir())
                done = cluster.run_batches(client, job, batches, candles, advance, shared)
            seconds = time.perf_counter() - began  # not the cluster's shutdown either
            metrics = [m for batch in done for m in batch]
            where = f"{opts.scheduler or 'local cluster'}, {len(workers)} worker(s), {len(batches)} task(s)"
    results = []
    for index, raw, m in zip(indices, points, metrics, strict=True):
        point = {name: raw[name] for name in grid.names}
        results.append(Result(index, point, raw, m, all(c.holds(m) for c in constraints)))
    key = g.sort_key(opts.maximize)
    results.sort(key=lambda r: (not r.feasible, *key((r.index, r.metrics))))
    return Outcome(results, grid.axes, opts.maximize, where, seconds, constraints)


_METRIC_COLUMNS = (("trades", "trades", "{:,}"), ("return", "total_return_pct", "{:+.2f}%"),
                   ("sharpe", "sharpe", "{:.2f}"), ("max dd", "max_drawdown_pct", "{:.2f}%"),
                   ("win rate", "win_rate_pct", "{:.1f}%"), ("exposure", "exposure_pct", "{:.1f}%"))


def table(outcome: Outcome, top: int) -> list[str]:
    """The best `top` feasible results as aligned lines (rank, the grid's params, the figures)."""
    names = [a.name for a in outcome.axes]
    rows = [["#", *names, *(h for h, _k, _f in _METRIC_COLUMNS)]]
    shown = [r for r in outcome.results if r.feasible][:top]
    for rank, r in enumerate(shown, 1):
        cells = [str(rank), *(f"{r.point[n]:g}" if isinstance(r.point[n], float) else str(r.point[n]) for n in names)]
        cells += [fmt.format(r.metrics[k]) if r.metrics.get(k) is not None else "-" for _h, k, fmt in _METRIC_COLUMNS]
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def write_json(path: Path, outcome: Outcome) -> None:
    """A list with one object per evaluated parameter set, best first: params, metrics, feasible."""
    doc = [{"params": r.params, "metrics": r.metrics, "feasible": r.feasible} for r in outcome.results]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))


def run(settings: Settings, opts: Options, out: TextIO | None = None) -> Outcome:
    """The whole command: the sweep, the table, and --json/--report when asked."""
    out = out or sys.stdout
    if opts.heatmap is not None:
        unknown = [n for n in opts.heatmap if n not in [s.partition("=")[0].strip() for s in opts.grid]]
        if unknown:
            raise ConfigError("bad --heatmap", [("--heatmap", f"{n!r} is not a --grid parameter") for n in unknown])
    outcome = sweep(settings, opts)
    for line in table(outcome, opts.top):
        print(line, file=out)
    feasible = sum(r.feasible for r in outcome.results)
    rate = len(outcome.results) / outcome.seconds if outcome.seconds > 0 else 0.0
    print(f"{len(outcome.results)} parameter set(s) by {outcome.objective}, {feasible} meeting "
          f"{', '.join(map(str, outcome.constraints)) or 'no constraint'}; {outcome.where}; "
          f"{outcome.seconds:.1f} s ({rate:.1f}/s)", file=sys.stderr)
    if opts.json_out is not None:
        write_json(opts.json_out, outcome)
    if opts.report is not None:
        from bot.optimize.report import write_report

        write_report(opts.report, outcome, opts.heatmap, opts.top)
        print(f"report: {opts.report}", file=out)
    return outcome
