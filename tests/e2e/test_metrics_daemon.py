"""`/metrics` of the daemon as a subprocess, live against the simulators: every figure the issue names is
exposed, and moves with real activity (polls, closed candles, orders, fills, fees, rows recorded, an API
answering 429 and 500, a supervised task raising)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests import user_strategies
from tests.e2e.daemon_proc import DaemonProc, paper_config

FAST = {"TRADEBOT_SANDBOX__SPEED": "240"}
SERVICES = {"atmos", "sfox", "coinbtr", "atlas", "atmotube"}

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(d: DaemonProc) -> tuple[Samples, dict[str, str]]:
    """Sample name → labels → value, and family name → type, from one `/metrics` answer."""
    code, body = d.get("/metrics")
    assert code == 200
    samples: Samples = {}
    types: dict[str, str] = {}
    for fam in text_string_to_metric_families(body.decode()):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples, types


def by(samples: Samples, name: str, label: str) -> dict[str, float]:
    """`name`'s values summed per value of `label`."""
    out: dict[str, float] = {}
    for labels, v in samples.get(name, {}).items():
        key = dict(labels)[label]
        out[key] = out.get(key, 0.0) + v
    return out


def total(samples: Samples, name: str) -> float:
    return sum(samples.get(name, {}).values())


def post(url: str, body: dict[str, Any]) -> None:
    req = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


def until(d: DaemonProc, check: Any, timeout: float = 60.0) -> Samples:
    """Scrape until `check(samples)` holds (a subprocess: polled, with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        samples, _ = scrape(d)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, f"not within {timeout}s: " + json.dumps(
            {k: total(samples, k) for k in sorted(samples) if k.endswith("_total") or "backlog" in k})
        time.sleep(0.2)


def test_every_metric_is_exposed_and_moves_with_real_activity(tmp_path: Path) -> None:
    flag = tmp_path / "crash-now"
    sdir = tmp_path / "strategies"
    cfg = paper_config(tmp_path, extra=user_strategies.write_crash_recorder(sdir, flag))
    text = cfg.read_text().replace('mode = "paper"', 'mode = "live"')
    cfg.write_text(text.replace("strategy_paths = []", f'strategy_paths = ["{sdir}"]'))
    d = DaemonProc(cfg, env=FAST)
    try:
        d.ready()
        first, types = scrape(d)
        for name, kind in {"tradebot_http_requests": "counter", "tradebot_http_rate_limited": "counter",
                           "tradebot_http_failures": "counter", "tradebot_tick_latency_seconds": "histogram",
                           "tradebot_candle_to_order_seconds": "histogram", "tradebot_order_changes": "counter",
                           "tradebot_orders_working": "gauge", "tradebot_fills": "counter",
                           "tradebot_fees": "counter", "tradebot_recorder_backlog_rows": "gauge",
                           "tradebot_recorder_backlog_oldest_seconds": "gauge",
                           "tradebot_recorder_rows_sent": "counter", "tradebot_task_restarts": "counter",
                           "tradebot_candles_closed": "counter"}.items():
            assert types.get(name) == kind, name
        for name in ("tradebot_http_requests_total", "tradebot_http_rate_limited_total",
                     "tradebot_http_failures_total"):  # each service from its first request on
            assert {"atmos", "sfox", "coinbtr"} <= set(by(first, name, "service")) <= SERVICES, name
        assert set(by(first, "tradebot_orders_working", "state")) >= {"submitting", "open", "partially_filled",
                                                                      "unknown"}
        status = d.get_json("/status")
        urls, streams = status["sandbox"]["urls"], set(status["market"]["streams"])
        # sFOX answers one 429, then 500s until one call has used all its attempts.
        post(urls["sfox"] + "/_sandbox/faults", {"script": [{"kind": "429", "count": 1},
                                                            {"kind": "500", "count": 4}]})
        # Rows wait in the outbox between two batches (a flush interval of 5 wall seconds).
        backlog = until(d, lambda s: total(s, "tradebot_recorder_backlog_rows") > 0
                        and total(s, "tradebot_recorder_backlog_oldest_seconds") > 0)
        flag.touch()  # the recorder task raises once at the next candle of the crasher's stream
        d.wait_for("task.restarting", timeout=60, task="recorder")
        sent = total(scrape(d)[0], "tradebot_recorder_rows_sent_total")
        d.wait_for("order.changed", timeout=90, state="filled")
        last = until(d, lambda s: total(s, "tradebot_candle_to_order_seconds_count") > 0
                     and total(s, "tradebot_fills_total") > 0
                     and total(s, "tradebot_recorder_rows_sent_total") > sent  # the restarted recorder sends
                     # the orders' and fills' rows reach Atlas in their own batches: wait for both
                     and all(any(k.startswith(f"{kind}/") for k in by(s, "tradebot_recorder_rows_sent_total",
                                                                        "dataset")) for kind in ("fills", "orders"))
                     and by(s, "tradebot_http_failures_total", "service")["sfox"] > 0)
        assert d.get_json("/status")["tasks"]["recorder"] == {"restarts": 1, "running": True}
    finally:
        rc = d.terminate()
    assert rc == 0

    def grew(name: str, label: str) -> set[str]:
        before, after = by(first, name, label), by(last, name, label)
        return {k for k, v in after.items() if v > before.get(k, 0.0)}

    assert grew("tradebot_http_requests_total", "service") == SERVICES
    assert set(by(last, "tradebot_http_rate_limited_total", "service")) == SERVICES
    assert by(last, "tradebot_http_rate_limited_total", "service")["sfox"] >= 1
    assert by(last, "tradebot_http_rate_limited_total", "service")["atmos"] == 0
    assert by(last, "tradebot_http_failures_total", "service")["sfox"] >= 1
    assert len(streams) >= 3
    assert grew("tradebot_candles_closed_total", "stream") == streams
    assert grew("tradebot_tick_latency_seconds_count", "stream") == streams
    assert grew("tradebot_candle_to_order_seconds_count", "market")
    for stream in streams:  # cumulative buckets, the last one (+Inf) holding every observation
        buckets = sorted((float(dict(k)["le"]), v) for k, v in last["tradebot_tick_latency_seconds_bucket"].items()
                         if dict(k)["stream"] == stream)
        seen = [v for _le, v in buckets]
        assert seen == sorted(seen) and seen[-1] == by(last, "tradebot_tick_latency_seconds_count", "stream")[stream]
    assert {"submitting", "open", "filled"} <= grew("tradebot_order_changes_total", "state")
    assert grew("tradebot_fills_total", "market")
    assert grew("tradebot_fees_total", "coin")
    assert by(backlog, "tradebot_recorder_backlog_rows", "dataset")
    kinds = {k.split("/")[0] for k in grew("tradebot_recorder_rows_sent_total", "dataset")}
    assert kinds >= {"candles", "ticks", "evaluations", "orders", "fills", "balances", "sensor"}
    assert by(last, "tradebot_task_restarts_total", "task") == {"recorder": 1}
