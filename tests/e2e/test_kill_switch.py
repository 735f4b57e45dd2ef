"""The kill switch end to end: `tradebot kill`/`resume` against a running daemon, the kill file, and live mode
refused at start-up with a token that cannot trade."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bot.sandbox.credentials import COINBTR_READONLY_TOKEN, COINBTR_TOKEN
from tests.e2e.daemon_proc import ROOT, DaemonProc, paper_config

TOKEN = "e2e-status-token"
SEEN_WITHIN_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(wd: Path, *, top: str = "", token: str = TOKEN, strategies: bool = True) -> tuple[Path, Path]:
    """The default paper config with the status endpoint on a known free port (the CLI reads it from the
    config), a status token, and the kill file in `wd` (never the shared var/KILL)."""
    cfg = paper_config(wd, top=top, strategies=strategies)
    kill_file = wd / "KILL"
    text = cfg.read_text()
    for old, new in (('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{free_port()}"'),
                     ('token = ""                           # when set', f'token = "{token}"  # when set'),
                     ('kill_switch_file = "KILL"', f'kill_switch_file = "{kill_file}"')):
        assert old in text, old
        text = text.replace(old, new)
    cfg.write_text(text)
    return cfg, kill_file


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def status(url: str) -> dict[str, Any]:
    req = urllib.request.Request(url + "/status", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        out: dict[str, Any] = json.loads(r.read())
    return out


def until(url: str, on: bool, within: float = SEEN_WITHIN_S) -> tuple[dict[str, Any], float]:
    """The daemon's kill switch part once it shows `on`, and how long that took (fails after `within`)."""
    t0 = time.monotonic()
    while True:
        ks: dict[str, Any] = status(url)["kill_switch"]
        took = time.monotonic() - t0
        if ks["on"] is on:
            return ks, took
        assert took < within, f"kill switch not {'on' if on else 'off'} within {within}s: {ks}"
        time.sleep(0.1)


def test_kill_and_resume_commands_and_the_kill_file(tmp_path: Path) -> None:
    cfg, kill_file = config(tmp_path)
    d = DaemonProc(cfg)
    try:
        url = d.ready()
        assert status(url)["kill_switch"]["on"] is False

        done = cli("kill", "--reason", "test", "--config", str(cfg))
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["on"] is True and answer["reason"] == "test"
        assert "kill switch on: test" in done.stderr
        ks, _ = until(url, True)
        assert (ks["reason"], ks["source"]) == ("test", "command")
        assert status(url)["execution"]["kill_switch"] is True  # the order manager got the event
        assert d.wait_for("kill_switch.on", source="command")["reason"] == "test"

        done = cli("resume", "--config", str(cfg))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["on"] is False and "trading resumes" in done.stderr
        until(url, False)
        d.wait_for("kill_switch.off", source="command")
        assert status(url)["execution"]["kill_switch"] is False

        kill_file.touch()
        ks, took = until(url, True)
        assert ks["source"] == "file" and str(kill_file) in ks["reason"] and took < SEEN_WITHIN_S
        d.wait_for("kill_switch.on", source="file")
        done = cli("resume", "--config", str(cfg))  # the file still exists: stays on, says why, exits 1
        assert done.returncode == 1
        assert json.loads(done.stdout)["on"] is True and f"kill file {kill_file} exists" in done.stderr
        kill_file.unlink()
        until(url, False)
        d.wait_for("kill_switch.off", source="file")

        wrong = cli("kill", "--config", str(cfg), env={"TRADEBOT_STATUS__TOKEN": "wrong"})
        assert wrong.returncode == 2 and "status.token" in wrong.stderr
        assert status(url)["kill_switch"]["on"] is False
        assert len(d.events("kill_switch.on")) == 2 and len(d.events("kill_switch.off")) == 2
    finally:
        rc = d.terminate()
    assert rc == 0
    gone = cli("kill", "--reason", "late", "--config", str(cfg))
    assert gone.returncode == 1
    assert "no tradebot daemon answers at http://127.0.0.1:" in gone.stderr and str(kill_file) in gone.stderr
    assert "Traceback" not in gone.stderr


def test_live_mode_with_the_read_only_token_exits_2_and_says_why(tmp_path: Path) -> None:
    cfg, _ = config(tmp_path, top='mode = "live"', strategies=False)
    text = cfg.read_text().replace('mode = "paper"', "")
    cfg.write_text(text.replace(f'token = "{COINBTR_TOKEN}"', f'token = "{COINBTR_READONLY_TOKEN}"'))
    done = cli("run", "--config", str(cfg), "--duration", "30")
    assert done.returncode == 2, done.stderr
    assert "coinbtr.token: the token lacks the trade permission" in done.stderr
    assert "Traceback" not in done.stderr and COINBTR_READONLY_TOKEN not in done.stderr + done.stdout
    assert '"daemon.ready"' not in done.stdout


def test_live_mode_against_the_sandbox_says_it_is_simulated(tmp_path: Path) -> None:
    cfg, _ = config(tmp_path, top='mode = "live"', strategies=False)
    cfg.write_text(cfg.read_text().replace('mode = "paper"', ""))
    d = DaemonProc(cfg)
    try:
        checked = d.wait_for("live.token_checked", 60)
        assert checked["trade"] is True and checked["simulated"] is True
        assert "SIMULATED" in d.wait_for("live.simulated", 60)["note"]
        d.ready()
    finally:
        assert d.terminate() == 0


def test_a_kill_survives_a_restart_and_is_announced_before_ready(tmp_path: Path) -> None:
    cfg, _ = config(tmp_path, strategies=False)
    d = DaemonProc(cfg)
    try:
        d.ready()
        assert cli("kill", "--reason", "overnight", "--config", str(cfg)).returncode == 0
    finally:
        assert d.terminate() == 0
    d = DaemonProc(cfg)
    try:
        url = d.ready()
        names = [e.get("event") for e in d.lines]
        assert names.index("kill_switch.on") < names.index("daemon.ready")  # told before orders are touched
        ks = status(url)["kill_switch"]
        assert (ks["on"], ks["reason"], ks["source"]) == (True, "overnight", "command")
        assert status(url)["execution"]["kill_switch"] is True
        assert cli("resume", "--config", str(cfg)).returncode == 0
        until(url, False)
    finally:
        assert d.terminate() == 0
