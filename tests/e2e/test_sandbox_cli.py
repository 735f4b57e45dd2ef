"""`tradebot sandbox` as a user runs it: five services on consecutive ports, credentials printed, clean stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port_base() -> int:
    """A base whose next five ports are free right now (best effort; the test retries nothing)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + 6 > 65535:
            continue
        ok = True
        for p in range(base + 1, base + 6):
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


def test_sandbox_serves_five_services_and_prints_credentials() -> None:
    base = free_port_base()
    proc = subprocess.Popen([sys.executable, "-m", "bot", "sandbox", "--config", "config/paper.toml",
                             "--port-base", str(base), "--seed", "7"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ})
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C to stop" in line:
                break
        out = "".join(lines)
        for i, name in enumerate(("atmos", "sfox", "coinbtr", "atlas", "atmotube"), start=1):
            assert f"{name}" in out and f"http://127.0.0.1:{base + i}" in out
        assert "sandbox-atmos-key" in out and "sandbox-coinbtr-token" in out and "sandbox-atlas-key" in out
        req = urllib.request.Request(f"http://127.0.0.1:{base + 1}/v1/binance/BTCUSDT/ohlcv/latest",
                                     headers={"x-atmos-key": "sandbox-atmos-key"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            tick = json.loads(resp.read())["result"]
        assert {"time", "open", "high", "low", "close", "baseVolume", "trades"} <= set(tick)
        with urllib.request.urlopen(f"http://127.0.0.1:{base + 4}/health", timeout=10) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=10)
    assert rc == 0


def test_sandbox_never_prints_configured_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[coinbtr]\ntoken = "real-looking-token-123456"\n[atlas]\napi_key = "real-atlas-key-987654"\n')
    base = free_port_base()
    proc = subprocess.Popen([sys.executable, "-m", "bot", "sandbox", "--config", str(cfg),
                             "--port-base", str(base)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C to stop" in line:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=10)[0]
    out = "".join(lines) + rest
    assert proc.returncode == 0, out
    assert "real-looking-token-123456" not in out and "real-atlas-key-987654" not in out
    assert "sandbox-coinbtr-token" in out and "configured keys are accepted too" in out
