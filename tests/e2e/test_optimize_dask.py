"""tradebot optimize on real Dask: serial and LocalCluster agree, a killed worker loses nothing, and a real
`dask scheduler` with two `dask worker` processes on loopback prints the same table as a serial run.

Kept short: a few thousand candles of gen_synth's series and grids of a handful of points.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import pytest

from bot.optimize import cluster
from bot.optimize.runner import Options, prepare, sweep
from bot.settings import Settings, load_settings
from tests.unit.test_backtest import gen_synth

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GRID = ["period=7,14", "buy_below=25,30"]


def _write_csv(path: Path, n: int) -> Path:
    gen_synth().make_series(n=n, seed=42).to_csv(path)
    return path


def _config(tmp: Path, strategy: str = "rsi_reversion", paths: str = "") -> Path:
    cfg = tmp / "c.toml"
    cfg.write_text(f'state_dir = "{tmp}/var"\n{paths}\n[[strategies]]\nname = "rsi"\nstrategy = "{strategy}"\n'
                   'market = "btc-usd"\nfeed = { source = "atmos", exchange = "binance", symbol = "BTCUSDT" }\n'
                   'order_amount = "0.001"\n')
    return cfg


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_csv(tmp_path_factory.mktemp("optimize") / "synth.csv", 6000)


def _settings(tmp: Path) -> Settings:
    return load_settings(_config(tmp))


def _rows(outcome: Any) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    return [(r.index, r.params, r.metrics) for r in outcome.results]


@pytest.mark.slow
def test_a_small_grid_gives_identical_results_serially_and_on_a_local_cluster(tmp_path: Path, csv: Path) -> None:
    settings = _settings(tmp_path)
    base = Options(strategy="rsi", grid=GRID, data=csv, progress=False, cache_dir=None)
    serial = sweep(settings, Options(**{**base.__dict__, "workers": 0}))
    local = sweep(settings, Options(**{**base.__dict__, "workers": 2, "batch_size": 1}))
    assert len(serial.results) == 4
    assert _rows(local) == _rows(serial)
    assert "local cluster, 2 worker(s), 4 task(s)" in local.where


@pytest.mark.slow
def test_a_worker_killed_mid_run_costs_only_its_tasks(tmp_path: Path, csv: Path) -> None:
    from distributed import Client, LocalCluster

    settings = _settings(tmp_path)
    opts = Options(strategy="rsi", grid=["period=5..12:1", "buy_below=25,30"], data=csv, progress=False,
                   workers=0)
    expected = _rows(sweep(settings, opts))
    job, _strategy, _indices, points, _grid, candles = prepare(settings, opts)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
            Client(lc) as client:
        pids: dict[str, int] = client.run(os.getpid)
        killed: list[int] = []

        def done(n: int) -> None:
            if not killed:  # after the first batch: the other batches are queued or running on both workers
                victim = sorted(pids.values())[0]
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        batches = [[p] for p in points]
        got = cluster.run_batches(client, job, batches, candles, done)
    assert killed
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    assert len(got) == len(points) == 16
    serial = {(r[1]["period"], r[1]["buy_below"]): r[2] for r in expected}
    assert [m for batch in got for m in batch] == [serial[(p["period"], p["buy_below"])] for p in points]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for k in range(2):
            work = tmp_path / f"worker{k}"
            work.mkdir()
            procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard",
                                           "--local-directory", str(work)], cwd=work,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(address, timeout=5) as client:
                    client.wait_for_workers(2, timeout=60)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.slow
def test_a_real_scheduler_and_two_workers_print_the_same_table_with_user_strategy_code_shipped(
        tmp_path: Path, csv: Path, dask_cluster: str) -> None:
    # A user strategy: only in strategy_paths on this side, so the workers can only have it if it was shipped.
    user = tmp_path / "mine"
    user.mkdir()
    source = (ROOT / "strategies" / "rsi_reversion.py").read_text()
    (user / "my_rsi.py").write_text(source.replace('"rsi_reversion"', '"my_rsi"'))
    cfg = _config(tmp_path, "my_rsi", f'strategy_paths = ["{user}"]')
    base = [str(BIN / "tradebot"), "optimize", "--config", str(cfg), "--strategy", "rsi", "--data", str(csv),
            "--no-progress", "--maximize", "return", *(a for spec in GRID for a in ("--grid", spec))]
    serial = subprocess.run([*base, "--workers", "0"], capture_output=True, text=True, timeout=60)
    assert serial.returncode == 0, serial.stderr
    remote = subprocess.run([*base, "--scheduler", dask_cluster, "--batch-size", "1"], capture_output=True, text=True,
                            timeout=60)
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == serial.stdout
    assert len(remote.stdout.splitlines()) == 5  # header and four parameter sets
    assert f"{dask_cluster}, 2 worker(s), 4 task(s)" in remote.stderr


@pytest.mark.slow
def test_the_embedded_cluster_reads_the_candles_from_a_file_it_removes_and_keeps_its_environment_to_itself(
        tmp_path: Path, csv: Path) -> None:
    settings = _settings(tmp_path)
    opts = Options(strategy="rsi", grid=GRID, data=csv, progress=False, cache_dir=None, workers=0)
    expected = [r[2] for r in sorted(_rows(sweep(settings, opts)), key=lambda r: r[0])]
    job, _strategy, indices, points, _grid, candles = prepare(settings, opts)
    before = dict(os.environ)
    with cluster.connect(None, 2) as client:
        assert dict(os.environ) == before  # the nannies' pre-spawn variables went to the workers only
        arenas = set(client.run(os.getenv, "MALLOC_ARENA_MAX").values())
        profiling = set(client.run(dask.config.get, "distributed.worker.profile.enabled").values())
        ticks = set(client.run(dask.config.get, "distributed.admin.tick.interval").values())
        memory_checks = set(client.run(dask.config.get, "distributed.worker.memory.monitor-interval").values())
        scheduler_wakes = client.run_on_scheduler(
            lambda dask_scheduler: {k: dask_scheduler.periodic_callbacks[k].callback_time
                                    for k in ("tick", "stealing")})
        assert dask.config.get("distributed.worker.profile.enabled") is True  # this process's config is its own
        assert dask.config.get("distributed.admin.tick.interval") == "20ms"
        seen: list[list[Path]] = []
        got = cluster.run_batches(client, job, [[p] for p in points], candles,
                                  lambda n: seen.append(list(tmp_path.glob(".optimize-*.npy"))), tmp_path)
    assert arenas == {"1"} and profiling == {False}
    assert ticks == {"1s"} and memory_checks == {"1s"} and scheduler_wakes == {"tick": 1000, "stealing": 1000}
    assert any(seen) and not list(tmp_path.glob(".optimize-*"))  # there while the batches ran, gone after
    by_index = dict(zip(indices, [m for batch in got for m in batch], strict=True))
    assert [by_index[i] for i in sorted(by_index)] == expected
