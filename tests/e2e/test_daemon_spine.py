"""The daemon as a subprocess: isolation on /status, real /metrics, /health, bounded stop with jobs in flight."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests import user_strategies
from tests.e2e.daemon_proc import DaemonProc, paper_config


def test_broken_strategy_shows_on_status_metrics_parse_and_sigterm_exits_0(tmp_path: Path) -> None:
    sdir = user_strategies.write(tmp_path / "strategies")
    cfg = paper_config(tmp_path, strategies=False, extra=user_strategies.entries_toml(sdir))
    cfg.write_text(cfg.read_text().replace("strategy_paths = []", f'strategy_paths = ["{sdir}"]'))
    d = DaemonProc(cfg)
    try:
        d.ready()
        # Each live candle: the good instance evaluates, the broken one fails once, with its traceback.
        for _ in range(3):
            failed = d.wait_for("evaluation.failed", instance="broken")
            assert "ZeroDivisionError" in failed["exception"]
            good = d.wait_for("signal", instance="buyer", candle=failed["candle"])
            assert good["action"] == "buy"
        status = d.get_json("/status")
        strategies = {s["name"]: s for s in status["strategies"]}
        assert strategies["broken"]["failures"] >= 3 and strategies["broken"]["failing"]
        assert strategies["buyer"]["failures"] == 0 and strategies["buyer"]["evaluations"] >= 3
        assert "strategy:broken" in status["alarms"]
        code, body = d.get("/health")
        health = json.loads(body)
        # Live (200) but not fully available: a strategy keeps failing.
        assert code == 200 and health["live"] and health["status"] == "degraded"
        assert health["alarms"] == ["strategy:broken"]
        code, text = d.get("/metrics")
        assert code == 200
        families = {f.name: f for f in text_string_to_metric_families(text.decode())}
        assert families["tradebot_evaluation_failures"].type == "counter"
        fails = [s.value for s in families["tradebot_evaluation_failures"].samples
                 if s.name.endswith("_total") and s.labels == {"instance": "broken"}]
        assert fails and fails[0] >= 3
        evals = {(s.labels["instance"], s.labels["action"]) for s in families["tradebot_evaluations"].samples}
        assert ("buyer", "buy") in evals
        http = [s for s in families["tradebot_http_requests"].samples if s.labels.get("service") == "atmos"]
        assert http and http[0].value > 0
        hist = families["tradebot_http_request_duration_seconds"]
        assert hist.type == "histogram"
        buckets = [s.value for s in hist.samples if s.name.endswith("_bucket") and s.labels["service"] == "atmos"]
        assert buckets == sorted(buckets) and buckets[-1] > 0  # cumulative
        assert families["tradebot_live"].samples[0].value == 1
        assert families["tradebot_alarm_active"].samples[0].labels == {"alarm": "strategy:broken"}
        jobs = families["tradebot_job_duration_seconds"]
        assert any(s.labels.get("job", "").startswith("poll:") for s in jobs.samples)
    finally:
        rc = d.terminate()
    assert rc == 0
    assert d.events("daemon.stopped") and not d.events("daemon.stop_cut")


def test_sigterm_while_a_poll_waits_for_its_answer_records_the_outcome_then_exits_0(tmp_path: Path) -> None:
    cfg = paper_config(tmp_path, log_level="debug")
    d = DaemonProc(cfg)
    try:
        d.ready()
        urls = d.get_json("/status")["sandbox"]["urls"]
        # From now on every request of this stream is answered only after 3 wall seconds.
        fault = {"latency_s": 3, "script": [{"kind": "latency", "count": 1000, "path_prefix": "/v1/binance/"}]}
        req = urllib.request.Request(urls["atmos"] + "/_sandbox/faults", method="POST",
                                     data=json.dumps(fault).encode(), headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
        d.skip_pending()
        started = d.wait_for("job.started", job="poll:atmos:binance:BTCUSDT")
        assert started
        d.proc.send_signal(15)
        d.wait_for("daemon.stopping")
        waiting = d.wait_for("daemon.waiting_for_jobs")
        assert "poll:atmos:binance:BTCUSDT" in waiting["jobs"]
        polled = d.wait_for("feed.polled", stream="atmos:binance:BTCUSDT")
        assert polled["candles"] >= 1
    finally:
        rc = d.finish()
    assert rc == 0
    order = [e["event"] for e in d.lines]
    assert order.index("daemon.stopping") < order.index("feed.polled", order.index("daemon.stopping"))
    assert not d.events("daemon.stop_cut")
