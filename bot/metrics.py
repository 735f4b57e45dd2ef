"""Prometheus metrics: one registry owned by the daemon, real labels, counters, gauges and histograms.

Most figures come from the event path (`Metrics.on_event` is a subscriber), so a producer never needs to
know about metrics. Figures that already live in a component (HTTP counters per client, alarms, liveness)
are read at scrape time through collectors, so there is one source of truth for each number. Later issues
add their metrics to this registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.events import (
    BalanceUnexplained,
    CandleClosed,
    CycleCommitted,
    DepositConfirmed,
    DepositSeen,
    Evaluation,
    EvaluationFailed,
    Event,
    FeedFresh,
    FeedStale,
    FillSeen,
    OrderChanged,
    SensorReadingSeen,
    SweepChanged,
    TaskRestarted,
    Tick,
    WithdrawalChanged,
)

NS = "tradebot"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Wall seconds: a poll's round trip plus a cycle's commit (tick), and the fetch → place path (order request).
TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ORDER_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
                 2.5, 5.0)


def counts(values: Iterable[str], keys: Iterable[str] = ()) -> dict[str, float]:
    """How many times each value occurs, every one of `keys` present (0 when absent): a gauge's samples."""
    out = dict.fromkeys(keys, 0.0)
    for v in values:
        out[v] = out.get(v, 0.0) + 1
    return out


class _Callback(Collector):
    """A collector whose families are computed at scrape time."""

    def __init__(self, fn: Callable[[], Iterable[Metric]]) -> None:
        self._fn = fn

    def collect(self) -> Iterator[Metric]:
        yield from self._fn()


def http_families(snapshots: Mapping[str, Mapping[str, Any]]) -> list[Metric]:
    """HTTP client counters (`HttpService.snapshot()` per service) as Prometheus families."""
    requests = CounterMetricFamily(f"{NS}_http_requests", "HTTP requests sent (attempts)", labels=["service"])
    limited = CounterMetricFamily(f"{NS}_http_rate_limited", "HTTP 429 answers (an incident: the budget was "
                                  "planned never to hit them)", labels=["service"])
    failed = CounterMetricFamily(f"{NS}_http_failures", "HTTP calls that failed, every kind together",
                                 labels=["service"])
    retries = CounterMetricFamily(f"{NS}_http_retries", "HTTP requests retried", labels=["service"])
    responses = CounterMetricFamily(f"{NS}_http_responses", "HTTP responses by status class (429 apart)",
                                    labels=["service", "status"])
    errors = CounterMetricFamily(f"{NS}_http_errors", "HTTP calls that failed, by error kind",
                                 labels=["service", "kind"])
    latency = HistogramMetricFamily(f"{NS}_http_request_duration_seconds", "HTTP attempt latency (wall)",
                                    labels=["service"])
    for service, snap in sorted(snapshots.items()):
        requests.add_metric([service], snap.get("requests", 0))
        limited.add_metric([service], snap.get("rate_limited", 0))
        failed.add_metric([service], sum(snap.get("errors", {}).values()))
        retries.add_metric([service], snap.get("retries", 0))
        for status, n in sorted(snap.get("statuses", {}).items()):
            responses.add_metric([service, status], n)
        for kind, n in sorted(snap.get("errors", {}).items()):
            errors.add_metric([service, kind], n)
        lat = snap.get("latency", {})
        buckets: list[tuple[str, float]] = []
        total = 0
        for key, n in lat.get("buckets", {}).items():
            total += n
            bound = "+Inf" if key == "le_inf" else key[3:]
            buckets.append((bound, total))
        if buckets:
            latency.add_metric([service], buckets, lat.get("sum", 0.0))
    return [requests, limited, failed, retries, responses, errors, latency]


class Metrics:
    """The daemon's registry and the metrics fed by events and jobs."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.ticks = Counter(f"{NS}_ticks", "Polls of a stream that returned candles", ["stream"], registry=r)
        self.candles = Counter(f"{NS}_candles_closed", "Closed candles handed on", ["stream", "backfill"],
                               registry=r)
        self.evaluations = Counter(f"{NS}_evaluations", "Strategy evaluations",
                                   ["instance", "action", "actionable"], registry=r)
        self.evaluation_failures = Counter(f"{NS}_evaluation_failures", "Evaluations that raised",
                                           ["instance"], registry=r)
        self.handoffs = Counter(f"{NS}_handoffs", "Actionable evaluations handed off (once per candle)",
                                ["instance"], registry=r)
        self.sensor_readings = Counter(f"{NS}_sensor_readings", "Sensor readings seen", ["device"], registry=r)
        self.feed_stale = Gauge(f"{NS}_feed_stale", "1 while a stream is stale", ["stream"], registry=r)
        self.task_restarts = Counter(f"{NS}_task_restarts", "Supervised task restarts", ["task"], registry=r)
        self.job_runs = Counter(f"{NS}_job_runs", "Scheduled job runs by result (ok, error, overrun, cancelled)",
                                ["job", "result"], registry=r)
        self.job_duration = Histogram(f"{NS}_job_duration_seconds", "Scheduled job run time (wall)", ["job"],
                                      buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                      registry=r)
        self.transfers = Counter(f"{NS}_wallet_transfers", "Deposit and withdrawal events seen, by kind and status",
                                 ["kind", "coin", "status"], registry=r)
        self.unexplained = Counter(f"{NS}_wallet_unexplained", "Balance changes nothing the bot knows explains",
                                   ["coin", "part"], registry=r)
        self.sweeps = Counter(f"{NS}_wallet_sweeps", "Sweep state changes", ["coin", "state"], registry=r)
        self.tick_latency = Histogram(f"{NS}_tick_latency_seconds", "Wall time from a poll's start to the commit "
                                      "of a closed candle's cycle (evaluations, hand-offs, cursor)", ["stream"],
                                      buckets=TICK_BUCKETS, registry=r)
        self.order_latency = Histogram(f"{NS}_candle_to_order_seconds", "Wall time from the fetch that closed a "
                                       "candle returning to the place request of the order it led to", ["market"],
                                       buckets=ORDER_BUCKETS, registry=r)
        self.order_changes = Counter(f"{NS}_order_changes", "Orders that moved into each state", ["state"],
                                     registry=r)
        self.fills = Counter(f"{NS}_fills", "Fills of the bot's orders", ["market", "side"], registry=r)
        self.fill_amount = Counter(f"{NS}_filled_amount", "Base amount filled", ["market", "side"], registry=r)
        self.fees = Counter(f"{NS}_fees", "Fees paid, in the coin charged", ["coin"], registry=r)
        # Notifications (bot.notify): a target is its index in notify.urls, never its URL (it holds a token).
        self.notify = {
            "sent": Counter(f"{NS}_notify_sent", "Notifications delivered, per target", ["target"], registry=r),
            "failed": Counter(f"{NS}_notify_failures", "Notification sends that failed (retried with backoff)",
                              ["target"], registry=r),
            "dropped": Counter(f"{NS}_notify_dropped", "Notifications dropped, by reason (queue_full: a service "
                               "was down longer than notify.queue_size messages)", ["reason"], registry=r),
        }

    def on_event(self, event: Event) -> None:
        """The event-path subscriber."""
        if isinstance(event, Tick):
            self.ticks.labels(event.stream).inc()
        elif isinstance(event, CandleClosed):
            self.candles.labels(event.stream, str(event.backfill).lower()).inc()
        elif isinstance(event, CycleCommitted):
            self.tick_latency.labels(event.stream).observe(event.seconds)
        elif isinstance(event, OrderChanged):
            self.order_changes.labels(event.state).inc()
        elif isinstance(event, FillSeen):
            self.fills.labels(event.market, event.side).inc()
            self.fill_amount.labels(event.market, event.side).inc(float(event.amount))
            if event.fee > 0:  # a counter only rises: a maker rebate is in the fills dataset, not here
                self.fees.labels(event.fee_coin).inc(float(event.fee))
        elif isinstance(event, Evaluation):
            self.evaluations.labels(event.instance, event.action, str(event.actionable).lower()).inc()
            if event.handoff:
                self.handoffs.labels(event.instance).inc()
        elif isinstance(event, EvaluationFailed):
            self.evaluation_failures.labels(event.instance).inc()
        elif isinstance(event, SensorReadingSeen):
            self.sensor_readings.labels(event.device).inc()
        elif isinstance(event, FeedStale):
            self.feed_stale.labels(event.stream).set(1)
        elif isinstance(event, FeedFresh):
            self.feed_stale.labels(event.stream).set(0)
        elif isinstance(event, TaskRestarted):
            self.task_restarts.labels(event.task).inc()
        elif isinstance(event, DepositSeen):
            self.transfers.labels("deposit", event.coin, "confirmed" if event.confirmed else "pending").inc()
        elif isinstance(event, DepositConfirmed):
            self.transfers.labels("deposit", event.coin, "confirmed").inc()
        elif isinstance(event, WithdrawalChanged):
            self.transfers.labels("withdrawal", event.coin, event.status).inc()
        elif isinstance(event, BalanceUnexplained):
            self.unexplained.labels(event.coin, event.part).inc()
        elif isinstance(event, SweepChanged):
            self.sweeps.labels(event.coin, event.state).inc()

    def on_job(self, job: str, result: str, seconds: float) -> None:
        """Called by `Jobs` after each run."""
        self.job_runs.labels(job, result).inc()
        if result != "overrun":
            self.job_duration.labels(job).observe(seconds)

    def observe_order_request(self, market: str, seconds: float) -> None:
        """The order manager, right before a hand-off's place request (`OrderManager.on_request`)."""
        self.order_latency.labels(market).observe(seconds)

    def on_notify(self, what: str, label: str) -> None:
        """The notifier's counts: `what` is sent, failed or dropped; `label` the target index or drop reason."""
        self.notify[what].labels(label).inc()

    def add_http(self, snapshots: Callable[[], Mapping[str, Mapping[str, Any]]]) -> None:
        self.registry.register(_Callback(lambda: http_families(snapshots())))

    def add_gauges(self, name: str, doc: str, label: str, values: Callable[[], Mapping[str, float]]) -> None:
        """A labelled gauge read at scrape time (alarms, subscriber errors, ...)."""
        def families() -> list[Metric]:
            fam = GaugeMetricFamily(f"{NS}_{name}", doc, labels=[label])
            for k, v in sorted(values().items()):
                fam.add_metric([k], v)
            return [fam]
        self.registry.register(_Callback(families))

    def add_labelled_gauges(self, name: str, doc: str, labels: list[str],
                            values: Callable[[], Mapping[tuple[str, ...], float]]) -> None:
        """A gauge with several labels read at scrape time (wallet balances by coin and field, ...)."""
        def families() -> list[Metric]:
            fam = GaugeMetricFamily(f"{NS}_{name}", doc, labels=labels)
            for k, v in sorted(values().items()):
                fam.add_metric(list(k), v)
            return [fam]
        self.registry.register(_Callback(families))

    def add_gauge(self, name: str, doc: str, value: Callable[[], float]) -> None:
        """An unlabelled gauge read at scrape time."""
        self.registry.register(_Callback(lambda: [GaugeMetricFamily(f"{NS}_{name}", doc, value=value())]))

    def render(self) -> bytes:
        return self.renderer()()

    def renderer(self) -> Callable[[], bytes]:
        """Read every family now (on the event loop: the scrape-time gauges read the daemon's own state) and
        return what formats them: the text of a scrape is ~85 KB and 20-60 ms of pure formatting, which
        the status server runs in a thread so a scrape never holds the loop."""
        families = list(self.registry.collect())
        frozen = CollectorRegistry(auto_describe=False)
        frozen.register(_Callback(lambda: families))
        return lambda: generate_latest(frozen)
