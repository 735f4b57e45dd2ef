"""The Dask side of a sweep: the cluster, the checks on its workers, the data and the code shipped to them.

- No `--scheduler`: an embedded `LocalCluster` of worker processes (one thread each: the engine is numpy
  and pandas under the GIL), as many as the machine has cores unless `--workers` says otherwise.
- `--scheduler tcp://host:8786`: an existing cluster (`dask scheduler` / `dask worker` started by the user).
- Every worker must run this tradebot version (`client.run`); a mismatch names the worker.
- The `.py` files of every `strategy_paths` directory are uploaded (`client.upload_file`, which Dask also
  replays on workers that join later); the candles are scattered once to every worker (`broadcast=True`).
- A batch is one task. A worker lost mid-run costs only the batches it held: the scheduler runs them again
  elsewhere, and the scattered candles are still on the other workers.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bot import __version__
from bot.backtest.data import Candles
from bot.errors import BotError, ConfigError
from bot.optimize.evaluate import Job, SharedCandles, evaluate_batch, ready_worker, worker_version

CONNECT_TIMEOUT_S = 20
# The embedded cluster's worker processes start with one glibc malloc arena. A task runs on a worker thread,
# and a thread's own arena lives in 64 MiB heaps that the allocator settings of `tune_allocator` do not keep
# warm: a new worker's first batch took 40,000 page faults (75,000 before those settings) where a plain
# process takes 7,000, and every later batch 2,600 where a plain process takes a few dozen. A worker runs one
# task at a time, so the arena has no one to contend with. Ignored by other C libraries.
WORKER_ENVIRON = {"MALLOC_ARENA_MAX": "1"}
# The embedded cluster's workers run without Dask's statistical profiler: every 10 ms it stops the task thread
# to walk its stack, which cost 0.05-0.09 s of CPU in each 0.9 s batch (6-9%; measured as the worker process's
# CPU time beyond its task thread's during the batch: 0.08 s with it, 0.03 s without). Nobody looks at these
# workers' profiles: the cluster lives for one sweep, without a dashboard. A remote cluster's workers are the
# user's to configure.
# Nor do its processes wake as often as a long-lived cluster's: every 20 ms for the event-loop watchdog's tick,
# 100 ms for the nannies' memory checks and the scheduler's work stealing, 500 ms for the system monitor. On two
# cores every wake-up of the scheduler and nannies (in this process) takes CPU from a worker, and a worker's own
# wakes take the GIL from its task thread. At the intervals below the 100-set bench grid's cluster sweep took
# 1.86 s (median of 12) where the defaults took 2.06 s, alternating in one run (bench/optimize.py prints the
# speed-up). The watchdog still reports a loop blocked for 3 s, a worker near its memory limit is still caught
# within a second, and a batch is still stolen from a busy worker (a batch runs for about `TARGET_TASK_S`).
WORKER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.scheduler.work-stealing-interval": "1s",
}
TASK_PREFIX = "tradebot-optimize"


def machine_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def connect(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A `distributed.Client` on the cluster at `scheduler`, or on a new `LocalCluster` (closed on exit)."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)  # type: ignore[no-untyped-call]
        except OSError as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}",
                              [("--scheduler", f"{type(exc).__name__}: {exc}")]) from None
        try:
            yield client
        finally:
            client.close()  # type: ignore[no-untyped-call]
        return
    import dask

    n = workers or machine_cores()
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", default={}), **WORKER_ENVIRON}
    saved = dict(os.environ)  # the nannies set `pre-spawn-environ` in this process's own environment
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ, **WORKER_CONFIG}):
            cluster = LocalCluster(n_workers=n, threads_per_worker=1,  # type: ignore[no-untyped-call]
                                   processes=True, dashboard_address=None, silence_logs=logging.ERROR)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    with cluster, Client(cluster) as client:  # type: ignore[no-untyped-call]
        yield client


def check_workers(client: Any) -> list[str]:
    """The workers' addresses, once each has answered with this tradebot version; else a `ConfigError` naming
    every worker that runs another version or cannot import tradebot at all."""
    answers: Mapping[str, object] = client.run(worker_version, on_error="return")
    if not answers:
        raise ConfigError("the Dask cluster has no workers", [("--scheduler", "start some with `dask worker ADDRESS`")])
    problems = []
    for address, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            problems.append((f"worker {address}", f"cannot run tradebot: {type(answer).__name__}: {answer}"))
        elif answer != __version__:
            problems.append((f"worker {address}", f"runs tradebot {answer}; this is tradebot {__version__}"))
    if problems:
        raise ConfigError("Dask workers do not run this tradebot version", problems)
    return sorted(answers)


def ready_workers(client: Any, job: Job, point: Mapping[str, Any] | None = None, size: int = 4_320) -> None:
    """Load the job's strategy (and with it the engine and its libraries) on every worker now, and run `point`
    on `size` made-up candles (the sweep's length), so the first batch on each does not pay for the imports,
    first uses and the growth of its heap to the sweep's working set; a worker that cannot load the strategy
    fails here."""
    client.run(ready_worker, job, point, size)


def ship_strategy_code(client: Any, strategy_paths: Sequence[Path]) -> list[Path]:
    """Upload every `.py` file of the `strategy_paths` directories to the workers (and to later ones)."""
    shipped: list[Path] = []
    for directory in strategy_paths:
        if not Path(directory).is_dir():
            continue
        for path in sorted(Path(directory).glob("*.py")):
            client.upload_file(str(path), load=False)  # loaded by path on use, never under a bare module name
            shipped.append(path)
    return shipped


def spread(batches: Sequence[Sequence[object]], workers: Sequence[str]) -> list[list[str] | None]:
    """A first worker for each batch, the largest batches first, each to the worker with the fewest parameter
    sets so far. Left to itself the scheduler puts every batch of a run on one worker: when they are
    submitted it knows no task's duration, and work stealing moves some only after a first batch has finished
    (a second worker idle for a whole batch, a third of the sweep). The choice is loose
    (`allow_other_workers`): a lost or busy worker's batches still run elsewhere."""
    if not workers:
        return [None] * len(batches)
    load = dict.fromkeys(workers, 0)
    home: list[list[str] | None] = [None] * len(batches)
    for i in sorted(range(len(batches)), key=lambda i: -len(batches[i])):
        worker = min(workers, key=lambda w: load[w])
        load[worker] += len(batches[i])
        home[i] = [worker]
    return home


def run_batches(client: Any, job: Job, batches: Sequence[Sequence[Mapping[str, Any]]], candles: Candles,
                done: Callable[[int], None], shared_dir: Path | None = None) -> list[list[dict[str, Any]]]:
    """Every batch evaluated on the cluster; `done(n)` after each batch of `n` parameter sets.

    `shared_dir`: the workers run on this machine (the embedded `LocalCluster`) and read the candles from a
    file written there for the run (removed after it); otherwise they are scattered to every worker."""
    run_id = uuid.uuid4().hex[:12]
    shared = shared_dir / f".optimize-{run_id}.npy" if shared_dir is not None else None
    try:
        if shared is not None:
            shared.parent.mkdir(parents=True, exist_ok=True)
            return _run_batches(client, job, batches, SharedCandles.write(shared, candles), done, run_id)
        return _run_batches(client, job, batches, candles, done, run_id)
    finally:
        if shared is not None:
            shared.unlink(missing_ok=True)


def _run_batches(client: Any, job: Job, batches: Sequence[Sequence[Mapping[str, Any]]],
                 candles: Candles | SharedCandles, done: Callable[[int], None],
                 run_id: str) -> list[list[dict[str, Any]]]:
    from distributed import as_completed

    data = client.scatter(candles, broadcast=True, hash=False)
    home = spread(batches, sorted(client.scheduler_info()["workers"]))
    futures = [client.submit(evaluate_batch, job, list(batch), data, key=f"{TASK_PREFIX}-{run_id}-{i}",
                             workers=home[i], allow_other_workers=True)
               for i, batch in enumerate(batches)]
    position = {f.key: i for i, f in enumerate(futures)}
    results: list[list[dict[str, Any]] | None] = [None] * len(batches)
    try:
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            i = position[future.key]
            try:
                results[i] = future.result()
            except Exception as exc:  # the worker's traceback is the user's to read; say which batch
                raise BotError(f"a batch failed on the cluster ({len(batches[i])} parameter sets, first "
                               f"{dict(batches[i][0])}): {type(exc).__name__}: {exc}") from exc
            done(len(batches[i]))
    finally:
        client.cancel(futures)
        client.cancel([data])
    return [r for r in results if r is not None]
