"""The daemon trades: paper over an hour of simulated market, and live against the simulated exchange
through a SIGKILL in the middle of a place. Checked from the other side (the store's paper account, the
simulated exchange's own state), to the last unit."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.clock import parse_iso
from tests.e2e.daemon_proc import DaemonProc, paper_config

FAST = {"TRADEBOT_SANDBOX__SPEED": "240"}


def db_rows(wd: Path, sql: str) -> list[sqlite3.Row]:
    db = sqlite3.connect(f"file:{wd / 'var' / 'tradebot.sqlite3'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return list(db.execute(sql).fetchall())
    finally:
        db.close()


@pytest.mark.slow
def test_the_demo_trades_and_paper_balances_are_the_start_plus_fills_minus_fees(tmp_path: Path) -> None:
    d = DaemonProc(paper_config(tmp_path), env=FAST)
    d.ready()
    first = parse_iso(d.get_json("/status")["now"])
    while parse_iso(d.get_json("/status")["now"]) - first < timedelta(minutes=62):
        d.wait_for("signal", timeout=15)
    status = d.get_json("/status")
    assert d.terminate() == 0
    placed = d.events("order.placed")
    assert placed, "the demo placed no order in an hour"
    fills = db_rows(tmp_path, "SELECT * FROM paper_fills")
    assert fills, "no paper order filled in an hour"
    # Every journal fill is a paper fill and the other way round.
    journal = db_rows(tmp_path, "SELECT fill_id FROM fills")
    assert sorted(r["fill_id"] for r in journal) == sorted(f"paper:{r['id']}" for r in fills)
    expected = {"btc": Decimal("1"), "mxn": Decimal("2000000")}  # [paper] balances of config/paper.toml
    for f in fills:
        base, quote = f["market"].split("-")
        price, amount, fee = Decimal(f["price"]), Decimal(f["amount"]), Decimal(f["fee"])
        sign = Decimal(1) if f["side"] == "buy" else Decimal(-1)
        expected[base] = expected.get(base, Decimal(0)) + sign * amount
        expected[quote] = expected.get(quote, Decimal(0)) - sign * price * amount
        expected[f["fee_coin"]] -= fee
    held = {r["coin"]: Decimal(r["available"]) + Decimal(r["frozen"]) for r in
            db_rows(tmp_path, "SELECT * FROM paper_balances")}
    assert {c: v for c, v in held.items() if v} == {c: v for c, v in expected.items() if v}
    assert status["execution"]["broker"] == "paper"
    # Orders and fills were recorded to Atlas through the outbox.
    assert any(e.get("dataset", "").startswith("orders/") for e in d.events("recorder.dataset_ready"))


@pytest.mark.slow
def test_live_sigkill_while_a_place_is_in_flight_then_restart_leaves_no_duplicate(tmp_path: Path) -> None:
    cfg = paper_config(tmp_path, log_level="debug")
    text = cfg.read_text().replace('mode = "paper"', 'mode = "live"')
    cfg.write_text(text)
    d = DaemonProc(cfg, env=FAST)
    d.ready()
    urls = d.get_json("/status")["sandbox"]["urls"]
    # Every place from now on is applied, then answered only 3 wall seconds later.
    fault = {"latency_s": 3, "script": [{"kind": "latency", "count": 1000, "path_prefix": "/api/v1/trading/place"}]}
    req = urllib.request.Request(urls["coinbtr"] + "/_sandbox/faults", method="POST", data=json.dumps(fault).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()
    d.skip_pending()
    d.wait_for("order.changed", timeout=60, state="submitting")  # journaled; the request is on its way
    d.kill()
    d2 = DaemonProc(cfg, env=FAST)
    d2.ready()
    d2.wait_for("execution.reconciled", timeout=30)
    for _ in range(20):
        d2.wait_for("signal", timeout=15)
    assert d2.terminate() == 0
    state = sandbox_from_disk(tmp_path)
    ours = [o for o in state["orders"] if o.get("user") == "paper"]
    journal = db_rows(tmp_path, "SELECT id, exchange_id, state FROM orders")
    mapped = [r["exchange_id"] for r in journal if r["exchange_id"]]
    assert len(mapped) == len(set(mapped))  # no exchange order claimed twice
    # Every order on the exchange maps to exactly one journal intent: nothing was placed twice.
    assert sorted(str(o["id"]) for o in ours) == sorted(mapped)
    assert not [r for r in journal if r["state"] in ("submitting", "unknown")]


def sandbox_from_disk(wd: Path) -> dict[str, Any]:
    """The simulated exchange's state, from the files it keeps under `state_dir/sandbox/` (it outlives the
    daemon): read through a sandbox started on them, on the demo world's own clock."""
    import asyncio

    import aiohttp

    from bot.sandbox.embedded import make_clock
    from bot.sandbox.runner import Sandbox
    from bot.settings import load_settings

    async def read() -> dict[str, Any]:
        settings = load_settings(wd / "test.toml")
        clock = make_clock(settings, wd / "var")
        async with Sandbox(clock, settings=settings, state_dir=wd / "var" / "sandbox") as sb, \
                aiohttp.ClientSession() as http, http.get(sb.urls["coinbtr"] + "/_sandbox/state") as r:
            return dict(await r.json())

    return asyncio.run(read())
