"""The daemon end to end, as a subprocess against the in-process simulators, for more than an hour of
simulated market: it trades live on the simulated CoinBTR (orders placed and filled, as the exchange and the
journal both say), records every kind of dataset to the simulated Atlas, never meets a 429, survives a
supervised task raising, and stops on SIGTERM with exit 0 inside `stop_timeout_seconds`."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.clock import parse_iso
from bot.recorder.datasets import KINDS
from tests import user_strategies
from tests.e2e.daemon_proc import DaemonProc, paper_config
from tests.e2e.test_execution_daemon import db_rows
from tests.e2e.test_metrics_daemon import by, scrape
from tests.e2e.test_recorder_daemon import atlas_rows

SPEED = 240  # simulated minutes per wall minute: an hour of market in about 15 wall seconds
STOP_BOUND_S = 20  # config/paper.toml's stop_timeout_seconds


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def run_until(d: DaemonProc, minutes: float) -> None:
    """Follow the daemon until its (simulated) clock is `minutes` past now."""
    first = parse_iso(d.get_json("/status")["now"])
    while parse_iso(d.get_json("/status")["now"]) - first < timedelta(minutes=minutes):
        d.wait_for("signal", timeout=15)


@pytest.mark.slow
def test_an_hour_live_on_the_simulators_trades_records_everything_without_429_and_stops_cleanly(
        tmp_path: Path) -> None:
    flag = tmp_path / "crash-now"
    sdir = tmp_path / "strategies"
    cfg = paper_config(tmp_path, extra=user_strategies.write_crash_recorder(sdir, flag))
    text = cfg.read_text().replace('mode = "paper"', 'mode = "live"')
    assert f"stop_timeout_seconds = {STOP_BOUND_S}" in text
    cfg.write_text(text.replace("strategy_paths = []", f'strategy_paths = ["{sdir}"]'))
    d = DaemonProc(cfg, env={"TRADEBOT_SANDBOX__SPEED": str(SPEED)})
    try:
        d.ready()
        urls = d.get_json("/status")["sandbox"]["urls"]
        deposit = post(urls["coinbtr"] + "/_sandbox/deposits", {"coin": "btc", "amount": "0.25"})
        run_until(d, 30)
        # Half way: a supervised task raises; it is restarted and the daemon carries on.
        flag.touch()
        d.wait_for("task.restarting", timeout=30, task="recorder")
        run_until(d, 32)
        d.wait_for("wallet.deposit_confirmed", timeout=30, deposit_id=deposit["id"])
        status = d.get_json("/status")
        metrics, _ = scrape(d)
        exchange = get(urls["coinbtr"] + "/_sandbox/state")
        code, _body = d.get("/health")
    finally:
        sent = time.monotonic()
        rc = d.terminate(timeout=STOP_BOUND_S + 10)
        stop_s = time.monotonic() - sent
    assert rc == 0
    assert stop_s < STOP_BOUND_S, f"the stop took {stop_s:.1f}s"
    assert d.events("daemon.stopped") and not d.events("daemon.stop_cut")

    # The daemon stayed up after the task raised: healthy, the task running again, candles still closing.
    assert code == 200
    assert status["tasks"]["recorder"] == {"restarts": 1, "running": True}
    restarted = [i for i, e in enumerate(d.lines) if e.get("event") == "task.restarting"]
    assert len(restarted) == 1
    assert len([e for e in d.lines[restarted[0]:] if e.get("event") == "signal"]) >= 30

    # Zero 429s from any API, on /status and on /metrics.
    assert {name: h["rate_limited"] for name, h in status["http"].items()} == dict.fromkeys(status["http"], 0)
    assert set(by(metrics, "tradebot_http_rate_limited_total", "service")) == set(status["http"])
    assert not any(by(metrics, "tradebot_http_rate_limited_total", "service").values())

    # Orders placed and filled: the exchange and the journal agree.
    journal = db_rows(tmp_path, "SELECT id, exchange_id, state FROM orders")
    fills = db_rows(tmp_path, "SELECT order_id FROM fills")
    assert len(d.events("order.placed")) >= 2
    assert any(r["state"] == "filled" for r in journal) and fills
    ours = {str(o["id"]): o for o in exchange["orders"] if o["user"] == "paper"}
    mapped = {r["exchange_id"]: r for r in journal if r["exchange_id"]}
    # The exchange was read while the daemon still ran (its simulators stop with it); the journal after the
    # stop. An order placed in between has a newer exchange id than any the snapshot holds.
    newest = max(map(int, ours), default=0)
    later = {k for k in mapped if int(k) > newest}
    assert set(mapped) - later == set(ours)
    for exchange_id, row in mapped.items():
        if exchange_id in later:
            continue
        if ours[exchange_id]["status"] == "filled":
            assert row["state"] == "filled"
        if row["state"] == "filled":  # filled by the stop; at the snapshot it may still have been open
            assert ours[exchange_id]["status"] in ("filled", "open")
            assert ours[exchange_id]["fills"] or ours[exchange_id]["status"] == "open"
    assert {r["order_id"] for r in fills} <= {r["id"] for r in journal}

    # Rows in every kind of dataset in the simulated Atlas.
    rows = atlas_rows(tmp_path)
    stored = {kind: sum(len(got) for name, got in rows.items() if f"-{kind}-" in name) for kind in KINDS}
    assert all(stored.values()), stored
    assert status["pnl"]["markets"] and all(p["realized"] is not None for p in status["pnl"]["instances"].values())
