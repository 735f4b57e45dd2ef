"""One batch of parameter sets through the backtest engine: what a Dask task (or the serial path) runs.

A pure function of its arguments: the strategy (by name), the fill settings, the parameter sets (plain
dicts, validated again by the strategy's `Params` on the worker, so no user class is ever pickled) and the
candles. The engine is the backtest's own (`bot.backtest.runner.simulate`, `bot.backtest.metrics.summarize`);
the only thing added is that a batch computes each distinct set of indicators once: parameter sets that
differ only in the rule's thresholds share the indicator columns (batches are cut from the grid sorted by
indicator, see `order_by_indicators`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.backtest.data import Candles, pack, unpack
from bot.backtest.metrics import summarize
from bot.backtest.runner import FillSpec, simulate
from bot.strategy import Floats, Strategy, StrategyParams, load_strategy

# Summary fields that are the same for every parameter set of a run: not repeated in each result.
RUN_FIELDS = ("instance", "strategy", "fill", "start", "end")
_LOADED: dict[tuple[str, str], Strategy[Any]] = {}
# glibc mallopt parameters. Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also freezes
# the mmap threshold at 128 KiB: every column of a year of minutes (4 MiB) is then mmapped, page-faulted in
# and unmapped again, and a backtest takes 2-3x longer than in a plain process. A worker sets both back.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_HEAP_ARRAYS_UP_TO = 64 << 20
_tuned: list[bool] = []


@dataclass(frozen=True)
class SharedCandles:
    """Candles that the workers of a cluster on this machine read from a file (`numpy.save`d by the client)
    instead of receiving them over the scheduler's connections: writing 25 MB once and reading it from the
    page cache in each worker costs a fraction of pickling and sending it to every worker."""

    path: str
    source: str

    def load(self) -> Candles:
        """The candles, read once per worker process (the batches of a run share them)."""
        if _SHARED_KEY and _SHARED_KEY[0] == self.path:
            return _SHARED_VALUE[0]
        candles = unpack(np.load(self.path), self.source)
        if candles is None:
            raise ValueError(f"{self.path} does not hold packed candles")
        _SHARED_KEY[:], _SHARED_VALUE[:] = [self.path], [candles]  # the last run's only
        return candles

    @staticmethod
    def write(path: Path, candles: Candles) -> SharedCandles:
        with path.open("wb") as fh:
            np.save(fh, pack(candles))
        return SharedCandles(str(path), candles.source)


_SHARED_KEY: list[str] = []
_SHARED_VALUE: list[Candles] = []


@dataclass(frozen=True)
class Job:
    """What every batch of a run shares: the strategy by name, where its code is, and the fill settings."""

    instance: str
    strategy: str
    user_code: bool  # from `strategy_paths` (shipped to the workers), not the built-in package
    spec: FillSpec


def indicator_key(strategy: Strategy[Any], params: StrategyParams) -> tuple[str, ...]:
    """Identifies the indicator columns `params` needs (equal keys, equal columns)."""
    return tuple(f"{type(i).__qualname__}:{i.model_dump_json()}" for i in strategy.indicators(params))


def order_by_indicators(strategy: Strategy[Any], params: Sequence[StrategyParams]) -> list[int]:
    """Positions of `params` grouped by indicator key (stable), so contiguous batches share indicators."""
    keys = [indicator_key(strategy, p) for p in params]
    return sorted(range(len(params)), key=lambda i: keys[i])


def worker_strategy(job: Job, worker: Any = None) -> Strategy[Any]:
    """The job's strategy inside a Dask worker (`worker`, else the one running this task): user code from the
    files `upload_file` put in the worker's directory, else the built-in package. Loaded once per worker
    process."""
    directory = ""
    if job.user_code:
        if worker is None:
            from distributed import get_worker

            worker = get_worker()
        directory = worker.local_directory
    key = (job.strategy, directory)
    if key not in _LOADED:
        _LOADED[key] = load_strategy(job.strategy, [Path(directory)] if directory else [])
    return _LOADED[key]


def evaluate(strategy: Strategy[Any], job: Job, points: Sequence[Mapping[str, Any]], candles: Candles,
             done: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """The metrics of each parameter set in `points`, in order; `done(1)` after each."""
    frame = candles.frame()
    shares_columns = type(strategy).columns is Strategy.columns  # else the strategy computes its own way
    memo_key: tuple[str, ...] | None = None
    memo: dict[str, Floats] = {}
    out: list[dict[str, Any]] = []
    for raw in points:
        params = strategy.parse_params(raw)
        key = indicator_key(strategy, params)
        if not shares_columns or key != memo_key:
            memo, memo_key = strategy.columns(frame, params), key
        codes = np.asarray(strategy.rule(memo, params), dtype=np.int8)
        sim = simulate(codes, candles, job.spec)
        summary = summarize(job.instance, strategy.name, job.spec.fill, sim, candles).as_dict()
        out.append({k: v for k, v in summary.items() if k not in RUN_FIELDS})
        if done is not None:
            done(1)
    return out


def tune_allocator() -> bool:
    """Keep large arrays on the heap in this process (glibc only; elsewhere nothing to do). Once per process."""
    if not _tuned:
        _tuned.append(False)
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            _tuned[0] = bool(libc.mallopt(_M_MMAP_THRESHOLD, _HEAP_ARRAYS_UP_TO)) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, 4 * _HEAP_ARRAYS_UP_TO))
        except (OSError, AttributeError):
            pass
    return _tuned[0]


def evaluate_batch(job: Job, points: Sequence[Mapping[str, Any]],
                   candles: Candles | SharedCandles) -> list[dict[str, Any]]:
    """The Dask task: `evaluate` with the strategy loaded on the worker."""
    tune_allocator()
    if isinstance(candles, SharedCandles):
        candles = candles.load()
    return evaluate(worker_strategy(job), job, points, candles)


def ready_worker(job: Job, point: Mapping[str, Any] | None = None, size: int = 4_320,
                 dask_worker: Any = None) -> bool:
    """Ready a worker for the job before the sweep starts (what `client.run` runs on every worker): the
    allocator tuned and the job's strategy loaded, with the backtest engine and its libraries; then `point`
    run once over `size` synthetic minutes, so that the code paths pandas and ta set up on first use are set
    up, and the heap has grown to what arrays of the sweep's length need (a fresh process's first big arrays
    are pages the kernel must hand over and zero, ~0.1 s on a year of minutes), before the sweep's clock
    starts, as they are in the process that ran the sweep's first sets (a sweep's data is not used: that stays
    in the sweep)."""
    tune_allocator()
    strategy = worker_strategy(job, dask_worker)  # `client.run` passes the worker as `dask_worker`
    if point is not None:
        # A strategy that fails on made-up candles may still work on real ones: the sweep will say.
        with contextlib.suppress(Exception):
            evaluate(strategy, job, [point], warm_up_candles(size))
    return True


def warm_up_candles(n: int = 4_320) -> Candles:
    """`n` made-up minutes (three days by default): a slow wave with a faster one on it (deterministic)."""
    i = np.arange(n, dtype=np.float64)
    close = 100.0 + 5.0 * np.sin(i / 240.0) + 1.0 * np.sin(i / 17.0)
    open_ = np.concatenate([[close[0]], close[:-1]])
    high, low = np.maximum(open_, close) + 0.05, np.minimum(open_, close) - 0.05
    times = (1_700_000_000 + 60 * np.arange(n, dtype=np.int64)) * 1_000_000_000
    return Candles(times, np.vstack([open_, high, low, close, np.full(n, 10.0)]), "warm-up")


def worker_version() -> str:
    """The tradebot version a worker runs (what `client.run` asks every worker)."""
    from bot import __version__

    return __version__

