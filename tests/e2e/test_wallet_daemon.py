"""The daemon's wallet as a subprocess, live against the simulated CoinBTR: a deposit across a restart, a
SIGKILL right after a sweep's intent is journaled, and a token that may not withdraw.

Invariants about money are read from the simulated exchange's own state after the daemon died (it keeps
its state under `state_dir/sandbox/`), and what was recorded from the simulated Atlas's file plus what is
still in the outbox.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.daemon_proc import ROOT, DaemonProc, paper_config
from tests.e2e.test_execution_daemon import db_rows, sandbox_from_disk
from tests.e2e.test_recorder_daemon import atlas_rows

FAST = {"TRADEBOT_SANDBOX__SPEED": "240"}
BTC_ADDRESS = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
SWEEP = f'sweeps = [{{coin = "btc", keep = "0.5", address = "{BTC_ADDRESS}", max_per_day = "1"}}]'


def live_config(wd: Path, *, sweep: bool = False, token: str = "sandbox-coinbtr-token") -> Path:
    cfg = paper_config(wd, strategies=False)
    text = cfg.read_text().replace('mode = "paper"', 'mode = "live"')
    text = text.replace('token = "sandbox-coinbtr-token"', f'token = "{token}"')
    if sweep:
        text = text.replace("withdrawals_enabled = false", f"withdrawals_enabled = true\n{SWEEP}")
    cfg.write_text(text)
    return cfg


def post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def recorded(wd: Path, event: str) -> list[dict[str, Any]]:
    """Transfer rows with `event`, in the simulated Atlas and still in the outbox."""
    rows = [v for name, got in atlas_rows(wd).items() if "-transfers-" in name for _ts, v in got]
    rows += [json.loads(r["row_values"]) for r in db_rows(wd, "SELECT row_values FROM outbox WHERE dataset LIKE "
                                                             "'transfers/%'")]
    return [r for r in rows if r.get("event") == event]


@pytest.mark.slow
def test_a_deposit_is_logged_and_recorded_once_as_seen_and_once_as_confirmed_across_a_restart(tmp_path: Path) -> None:
    cfg = live_config(tmp_path)
    d = DaemonProc(cfg, env=FAST)
    d.ready()
    coinbtr = d.get_json("/status")["sandbox"]["urls"]["coinbtr"]
    deposit = post(coinbtr + "/_sandbox/deposits", {"coin": "btc", "amount": "0.25"})
    d.wait_for("wallet.deposit_seen", timeout=30, deposit_id=deposit["id"])
    d.kill()  # SIGKILL: whatever it had not committed is lost, nothing it committed
    d2 = DaemonProc(cfg, env=FAST)
    d2.ready()
    d2.wait_for("wallet.deposit_confirmed", timeout=30, deposit_id=deposit["id"])
    status = d2.get_json("/status")["wallet"]
    assert d2.terminate() == 0
    lines = d.lines + d2.lines
    for event in ("wallet.deposit_seen", "wallet.deposit_confirmed"):
        assert [e["deposit_id"] for e in lines if e.get("event") == event] == [deposit["id"]], event
    for event in ("deposit_seen", "deposit_confirmed"):
        assert [r["id"] for r in recorded(tmp_path, event)] == [deposit["id"]], event
    assert any(t["kind"] == "deposit" and t["status"] == "confirmed" for t in status["recent_transfers"])
    state = sandbox_from_disk(tmp_path)
    assert [(x["id"], x["confirmed"]) for x in state["deposits"]] == [(deposit["id"], True)]


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "kill_on"), [
    ("latency", "intended"),  # killed while the request waits at the exchange: never applied
    ("drop_after", "unknown"),  # applied, its answer lost, killed right after that is journaled
])
def test_sigkill_right_after_a_sweep_is_journaled_then_restart_never_sends_two_withdrawals(
        tmp_path: Path, fault: str, kill_on: str) -> None:
    cfg = live_config(tmp_path, sweep=True)
    # Stop the first poll's sweep from happening before the fault is in place: start with the wallet quiet.
    d = DaemonProc(cfg, env={**FAST, "TRADEBOT_WALLET__POLL_SECONDS": "600"})
    d.ready()
    urls = d.get_json("/status")["sandbox"]["urls"]
    post(urls["coinbtr"] + "/_sandbox/faults", {"latency_s": 30, "script": [
        {"kind": fault, "count": 1000, "path_prefix": "/api/v1/wallet/withdraw"}]})
    d.wait_for("sweep.changed", timeout=30, state=kill_on)
    d.kill()
    d2 = DaemonProc(cfg, env=FAST)
    d2.ready()
    d2.wait_for("sweep.changed", timeout=60, state="confirmed")
    assert d2.terminate() == 0
    state = sandbox_from_disk(tmp_path)
    withdrawals = [w for w in state["withdrawals"] if w["user"] == "paper"]
    assert len(withdrawals) == 1, withdrawals
    assert withdrawals[0]["address"] == BTC_ADDRESS and Decimal(withdrawals[0]["amount"]) == Decimal("0.4999")
    sweeps = db_rows(tmp_path, "SELECT id, state, withdrawal_id FROM wallet_sweeps ORDER BY id")
    assert [r["withdrawal_id"] for r in sweeps if r["withdrawal_id"] is not None] == [withdrawals[0]["id"]]
    if fault == "latency":  # the killed request never reached the exchange: resolved as not sent, then one sweep
        assert [r["state"] for r in sweeps] == ["not_sent", "confirmed"]
    else:  # applied before the kill: the restart found it and never sent another
        assert [r["state"] for r in sweeps] == ["confirmed"]


def test_sweeps_with_a_token_that_may_not_withdraw_refuse_to_start(tmp_path: Path) -> None:
    cfg = live_config(tmp_path, sweep=True, token="sandbox-coinbtr-readonly")
    proc = subprocess.run([sys.executable, "-m", "bot", "run", "--config", str(cfg), "--duration", "20"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env={**FAST})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "lacks the withdraw permission" in proc.stderr and "wallet.withdrawals_enabled" in proc.stderr
    assert "sandbox-coinbtr-readonly" not in proc.stderr + proc.stdout  # the token is a secret
    assert not (tmp_path / "var" / "tradebot.sqlite3").exists() or not db_rows(
        tmp_path, "SELECT * FROM wallet_sweeps")
