"""The CLI as a user runs it: exit codes, no tracebacks for user errors, clean daemon stop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Never collide with a real daemon (or another test) on the default status port.
ENV = {"TRADEBOT_STATUS__LISTEN": "127.0.0.1:0"}


def tradebot(*args: str, cwd: Path, env: dict[str, str] | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **ENV, **(env or {})})


def workdir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    return tmp_path


def test_check_config_ok_prints_no_secret(tmp_path: Path) -> None:
    wd = workdir(tmp_path)
    r = tradebot("check-config", "--config", "config/paper.toml", cwd=wd,
                 env={"TRADEBOT_COINBTR__TOKEN": "env-secret-abcdef"})
    assert r.returncode == 0, r.stderr
    for secret in ("sandbox-atmos-key", "sandbox-coinbtr-token", "sandbox-atlas-key", "env-secret-abcdef"):
        assert secret not in r.stdout + r.stderr
    assert '"mode": "paper"' in r.stdout


def test_check_config_bad_file_exits_2_naming_every_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('surprise = true\n[risk]\nmax_open_orders = "lots"\n')
    r = tradebot("check-config", "--config", str(bad), cwd=tmp_path)
    assert r.returncode == 2
    assert "surprise: unknown key" in r.stderr
    assert "risk.max_open_orders:" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    r = tradebot("check-config", cwd=tmp_path, env={"TRADEBOT_CONFIG": str(tmp_path / "nope.toml")})
    assert r.returncode == 2 and "nope.toml" in r.stderr and "Traceback" not in r.stderr


def test_run_with_duration_exits_0_and_logs_start_and_stop(tmp_path: Path) -> None:
    wd = workdir(tmp_path)
    r = tradebot("run", "--duration", "2", cwd=wd)
    assert r.returncode == 0, r.stderr
    assert '"event": "daemon.start"' in r.stdout and '"event": "daemon.stopped"' in r.stdout
    assert (wd / "var" / "tradebot.sqlite3").exists()


def test_sigterm_stops_daemon_cleanly_within_5_seconds(tmp_path: Path) -> None:
    wd = workdir(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=wd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **ENV})
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until it says it is ready
        if '"daemon.ready"' in line:
            break
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    rc = proc.wait(timeout=10)
    stopped_in = time.monotonic() - t0
    rest = proc.stdout.read()
    assert rc == 0, rest
    assert stopped_in < 5.0
    assert '"daemon.stopped"' in rest


def test_second_daemon_on_same_state_dir_is_refused(tmp_path: Path) -> None:
    wd = workdir(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=wd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **ENV})
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if '"daemon.ready"' in line:
                break
        r = tradebot("run", "--duration", "1", cwd=wd)
        assert r.returncode == 2 and "in use by another tradebot" in r.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_bad_strategy_params_exit_2_with_dotted_paths(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[[strategies]]\nname = "a"\nstrategy = "rsi_reversion"\nmarket = "btc-mxn"\n'
        'feed = { source = "atmos", symbol = "BTCUSDT" }\nparams = { period = "fourteen", colour = 1 }\n'
        'order_amount = "0.001"\n'
        '[[strategies]]\nname = "b"\nstrategy = "no_such_strategy"\nmarket = "btc-mxn"\n'
        'feed = { source = "sfox", pair = "btcusd" }\norder_amount = "0.001"\n'
    )
    r = tradebot("check-config", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "strategies.0.params.period:" in r.stderr
    assert "strategies.0.params.colour:" in r.stderr
    assert "strategies.1.strategy:" in r.stderr and "rsi_reversion" in r.stderr  # lists what exists
    assert "Traceback" not in r.stderr
