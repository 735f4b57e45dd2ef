"""sd_notify against a datagram socket of the test's own, the daemon as a subprocess: READY after start-up,
periodic WATCHDOG, STATUS lines, STOPPING; no WATCHDOG while the daemon is wedged for real, pings again once
it recovers; an Atmos outage keeps the pings going and turns /health to 503."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests import user_strategies
from tests.e2e.daemon_proc import DaemonProc, paper_config

WATCHDOG_USEC = 1_000_000  # pings every 0.5 s


class NotifySocket:
    """The `$NOTIFY_SOCKET` systemd would listen on: every datagram, in order."""

    def __init__(self) -> None:
        # A short path of its own: a test's tmp_path can pass the 108 bytes an AF_UNIX address may have.
        self.path = Path(tempfile.mkdtemp(prefix="sd-")) / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.messages: list[str] = []

    def receive(self, timeout: float) -> str | None:
        self.sock.settimeout(max(0.001, timeout))
        try:
            msg = self.sock.recv(4096).decode()
        except TimeoutError:
            return None
        self.messages.append(msg)
        return msg

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        """The next datagram containing `text`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.receive(left)
            if msg is not None and text in msg:
                return msg
        raise AssertionError(f"no {text!r} within {timeout}s; got {self.messages[-10:]}")

    def collect(self, seconds: float) -> list[str]:
        """Every datagram arriving in the next `seconds`."""
        out: list[str] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            msg = self.receive(left)
            if msg is not None:
                out.append(msg)
        return out

    def drain(self) -> None:
        while self.receive(0.001) is not None:
            pass

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.path.parent, ignore_errors=True)


def _env(sock: NotifySocket) -> dict[str, str]:
    return {"NOTIFY_SOCKET": str(sock.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}


def _wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout}s")


@pytest.mark.slow
def test_ready_watchdog_status_stopping_and_no_pings_while_wedged(tmp_path: Path) -> None:
    flag, marker = tmp_path / "wedge-now", tmp_path / "wedged"
    entry = user_strategies.write_wedge(tmp_path / "strategies", flag, marker)
    cfg = paper_config(tmp_path, strategies=False, extra=entry)
    cfg.write_text(cfg.read_text().replace("strategy_paths = []", f'strategy_paths = ["{tmp_path / "strategies"}"]'))
    sock = NotifySocket()
    d = DaemonProc(cfg, env=_env(sock))
    try:
        ready = sock.wait_for("READY=1", timeout=90)
        starting = [m for m in sock.messages if m.startswith("STATUS=starting")]
        assert "STATUS=starting: reconcile" in starting and "STATUS=starting: warm up" in starting
        assert "STATUS=ok (paper, default)" in ready
        d.ready()
        # Pinged about twice per WATCHDOG_USEC while live.
        pings = [m for m in sock.collect(2.0) if m == "WATCHDOG=1"]
        assert len(pings) >= 3

        flag.touch()  # the next evaluation blocks the daemon's thread for real
        _wait_until(marker.exists, 30, "the wedge strategy blocking")
        sock.drain()  # whatever was sent before the block
        assert [m for m in sock.collect(3.0) if m == "WATCHDOG=1"] == []
        flag.unlink()
        sock.wait_for("WATCHDOG=1", timeout=10)
        assert not marker.exists()
        # Blocked for minutes of market time, the feed was stale for a moment; the next polls catch up.
        _wait_until(lambda: d.get("/health")[0] == 200, 30, "/health 200 after the wedge")
    finally:
        d.proc.send_signal(15)
        sock.wait_for("STOPPING=1", timeout=30)
        rc = d.finish(60)
        sock.close()
    assert rc == 0


def _post(url: str, body: dict[str, object]) -> object:
    req = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_an_atmos_outage_keeps_the_watchdog_pinged_and_health_503(tmp_path: Path) -> None:
    cfg = paper_config(tmp_path)
    sock = NotifySocket()
    d = DaemonProc(cfg, env=_env(sock))
    try:
        d.ready(timeout=90)
        sock.wait_for("READY=1", timeout=10)
        assert d.get("/health")[0] == 200
        atmos = d.get_json("/status")["sandbox"]["urls"]["atmos"]
        with urllib.request.urlopen(atmos + "/_sandbox/clock", timeout=10) as resp:
            sim = datetime.fromisoformat(json.loads(resp.read())["sim"])
        _post(atmos + "/_sandbox/faults", {"outages": [
            {"start": sim.isoformat(), "end": (sim + timedelta(days=7)).isoformat(), "mode": "503"}]})
        _wait_until(lambda: d.get("/health")[0] == 503, 60, "/health 503 during the Atmos outage")
        code, body = d.get("/health")
        health = json.loads(body)
        assert code == 503 and health["live"] and health["status"] == "unavailable"
        assert any(r.startswith("feed:atmos:") for r in health["reasons"])
        # The daemon is fine, only waiting on the network: the watchdog keeps being pinged.
        sock.drain()
        msgs = sock.collect(3.0)
        assert msgs.count("WATCHDOG=1") >= 4
        assert any(m.startswith("STATUS=unavailable") for m in sock.messages)
        assert d.get_json("/status")["liveness"]["live"] is True
        # Atmos back: fresh candles, /health 200 again.
        _post(atmos + "/_sandbox/reset", {})
        _wait_until(lambda: d.get("/health")[0] == 200, 60, "/health 200 after the outage")
    finally:
        d.proc.send_signal(15)
        sock.wait_for("STOPPING=1", timeout=30)
        rc = d.finish(60)
        sock.close()
    assert rc == 0
