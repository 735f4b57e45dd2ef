"""The whole daemon as a subprocess on a sped-up demo market: time to READY, closed-candle-to-order latency,
and resident memory as closed candles pile up.

    .venv/bin/python bench/daemon.py [--speed 60] [--sandbox external|in-process] [--flips 14] [--period 30]
                                     [--candles 10000] [--keep DIR]

It runs `tradebot run` (paper mode, the demo's `config/paper.toml` strategies) against the five simulators
in a `tradebot sandbox` process of their own (`--sandbox external`, the default: real services are remote,
so their work is never the daemon's; the daemon follows the sandbox's sped-up clock), or in-process on the
daemon's own event loop as the demo runs them (`--sandbox in-process`), plus `--flips` instances of a user
strategy `flip` (buy for `--period` simulated minutes, then sell for as many: an order every `--period`
minutes), one per stream over fourteen streams (twelve Atmos, two sFOX), trading the two CoinBTR markets, at
`--speed` simulated minutes per wall minute, with `$NOTIFY_SOCKET` pointing at a datagram socket of the
bench's own, and reads:

* **time to READY**: wall seconds from spawning the process to the `READY=1` datagram, and its parts from the
  daemon's log lines (interpreter and imports, build: simulators when in-process, store, clients, status;
  reconcile; warm-up; schedule). The target applies to READY *minus the warm-up phase* (the warm-up is the
  history I/O the strategies' windows need; its length depends on the upstreams, not on the daemon).
* **closed-candle-to-order latency**: the daemon's own `tradebot_candle_to_order_seconds` histogram (wall
  time from the fetch that closed a candle returning to the broker's `place` call), median and p99
  interpolated within its buckets the way Prometheus' `histogram_quantile` does, plus the exact share of
  orders within 50 ms (a bucket bound) on which the target is judged.
* **resident memory**: `VmRSS` of the daemon's process (`/proc/PID/status`) when the closed candles it has
  processed (`tradebot_candles_closed_total`, all streams) first reach 1,000 and 10,000 (`--candles`).

Targets: READY < 3 s without warm-up I/O; p99 < 50 ms; memory at 10,000 within 10% of 1,000. The default
speed is the demo's (60: a simulated minute, 18 streams' candles, every wall second); at 240 the daemon's one
core is saturated (job overruns) and the latency is queueing.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Not the script's own directory first: bench/secrets.py would shadow the standard library's `secrets`.
if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parent))  # for `execution`, after the standard library
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import queue  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from datetime import datetime  # noqa: E402
from typing import Any  # noqa: E402

from execution import FLIP  # noqa: E402  (the user strategy the execution bench writes too)
from machine import StealMeter  # noqa: E402

MARKET = {"BTC": ("btc-mxn", "0.001"), "ETH": ("eth-mxn", "0.01")}
READY_TARGET_S = 3.0
P99_TARGET_S = 0.050
MEMORY_TARGET = 0.10

# Every stream the simulators serve (twelve Atmos, two sFOX; Atmos' 20 requests per simulated minute cover
# twelve polls a minute): (feed, CoinBTR market its flip instance trades, order amount).
STREAMS = tuple(
    [(f'{{ source = "atmos", exchange = "{venue}", symbol = "{symbol}" }}', *MARKET[symbol[:3]])
     for venue, symbols in (("binance", ("BTCUSDT", "ETHUSDT", "BTCUSDC", "ETHUSDC")),
                            ("kraken", ("BTCUSD", "ETHUSD", "BTCUSDT", "ETHUSDT")),
                            ("coinbase", ("BTCUSD", "ETHUSD", "BTCUSDT", "ETHUSDT")))
     for symbol in symbols]
    + [(f'{{ source = "sfox", pair = "{pair}", period = 60 }}', *MARKET[pair[:3].upper()])
       for pair in ("btcusd", "ethusd")])



def write_config(wd: Path, speed: float, flips: int, period: int, sandbox_url: str = "",
                 stagger: bool = False) -> Path:
    """config/paper.toml with state in `wd`, status on a free port, the flips added, at `speed`; with
    `sandbox_url`, the daemon uses that external `tradebot sandbox` instead of in-process simulators."""
    strategies = wd / "strategies"
    strategies.mkdir(parents=True, exist_ok=True)
    (strategies / "flip.py").write_text(FLIP)
    text = (ROOT / "config" / "paper.toml").read_text()
    for old, new in (('state_dir = "var"', f'state_dir = "{wd / "var"}"'),
                     ("strategy_paths = []", f'strategy_paths = ["{strategies}"]'),
                     ('listen = "127.0.0.1:8787"', 'listen = "127.0.0.1:0"'),
                     ("max_open_orders = 4", f"max_open_orders = {flips + 8}"),
                     ('daily_loss_limit = { mxn = "20000" }', 'daily_loss_limit = { mxn = "100000000" }')):
        assert old in text, old
        text = text.replace(old, new)
    if sandbox_url:
        text = text.replace("seed = 42\n", f'seed = 42\nurl = "{sandbox_url}"\n', 1)
        assert sandbox_url in text
    for i in range(flips):
        feed, market, amount = STREAMS[i % len(STREAMS)]
        offset = i * 2 * period // flips if stagger else 0  # staggered: the instances' flips spread evenly
        text += (f'\n[[strategies]]\nname = "flip-{i:02d}"\nstrategy = "flip"\nmarket = "{market}"\n'
                 f'feed = {feed}\nparams = {{ period = {period}, offset = {offset} }}\n'
                 f'order_amount = "{amount}"\n'
                 'order_ttl_seconds = 120\n')
    path = wd / "bench.toml"
    path.write_text(text)
    return path


class Daemon:
    """`tradebot run` as a subprocess with a notify socket; its JSON log lines of interest, timestamped."""

    KEEP = frozenset({"daemon.start", "daemon.built", "daemon.phase_done", "daemon.ready", "status.listening",
                      "daemon.stopped", "daemon.stop_cut", "task.restarting", "job.overrun"})

    def __init__(self, config: Path, wd: Path, speed: float) -> None:
        self.log_path = wd / "daemon.log"
        self.sock_path = str(wd / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.sock_path)
        env = {**os.environ, "NOTIFY_SOCKET": self.sock_path, "TRADEBOT_SANDBOX__SPEED": str(speed)}
        self.spawned = time.time()
        self.proc = subprocess.Popen([sys.executable, "-m", "bot", "run", "--config", str(config)], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log_path, "w") as log:
            for line in self.proc.stdout:  # every line is read (the pipe never fills) and written to the log
                log.write(line)
                if line.startswith("{") and any(f'"{e}"' in line for e in self.KEEP):
                    try:
                        self.lines.put(json.loads(line))
                    except ValueError:
                        continue

    def events(self) -> list[dict[str, Any]]:
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return self.seen

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Wall seconds from spawning to the `READY=1` datagram; later datagrams are read and dropped, as
        systemd would read them (a notify socket nobody reads fills up, and the daemon's send blocks)."""
        self.sock.settimeout(timeout)
        while True:
            data = self.sock.recv(4096).decode()
            if "READY=1" in data.split("\n"):
                ready = time.time() - self.spawned
                self.sock.settimeout(None)
                threading.Thread(target=self._drain_notify, daemon=True).start()
                return ready

    def _drain_notify(self) -> None:
        try:
            while self.sock.recv(4096):
                pass
        except OSError:
            return

    def url(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events():
                if e.get("event") == "status.listening":
                    return str(e["url"])
            time.sleep(0.05)
        raise SystemExit("the daemon never said where it listens")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self, timeout: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self.reader.join(10)  # the log file complete and closed (read again by `handoff_gaps`)
        self.sock.close()
        return rc


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name → [(labels, value)] from the daemon's `/metrics`."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(v for _labels, v in samples.get(name, []))


def buckets(samples: dict[str, list[tuple[dict[str, str], float]]], name: str) -> list[tuple[float, float]]:
    """A histogram's cumulative buckets summed over its labels: [(upper bound, count)], ascending."""
    acc: dict[float, float] = {}
    for labels, v in samples.get(f"{name}_bucket", []):
        le = float(labels["le"])
        acc[le] = acc.get(le, 0.0) + v
    return sorted(acc.items())


def quantile(cumulative: list[tuple[float, float]], q: float) -> float:
    """`histogram_quantile`: linear interpolation inside the bucket holding the q-th observation."""
    count = cumulative[-1][1]
    rank = q * count
    lower, below = 0.0, 0.0
    for bound, n in cumulative:
        if n >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * ((rank - below) / (n - below) if n > below else 1.0)
        lower, below = bound, n
    return lower


def stamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def phases(d: Daemon) -> dict[str, float]:
    """Wall seconds of each start-up part, from the daemon's log lines."""
    deadline = time.monotonic() + 30
    while not any(e.get("event") == "daemon.ready" for e in d.events()) and time.monotonic() < deadline:
        time.sleep(0.05)
    ev = d.events()
    first = {e["event"]: e for e in reversed(ev)}
    done = [e for e in ev if e.get("event") == "daemon.phase_done"]
    reconciled = max((stamp(e) for e in done if e.get("phase") == "reconcile"), default=stamp(first["daemon.built"]))
    warmed = max((stamp(e) for e in done if e.get("phase") == "warm_up"), default=reconciled)
    return {"interpreter and imports": stamp(first["daemon.start"]) - d.spawned,
            "build (simulators, store, clients, status)": stamp(first["daemon.built"]) - stamp(first["daemon.start"]),
            "reconcile": reconciled - stamp(first["daemon.built"]),
            "warm-up (history I/O)": warmed - reconciled,
            "schedule": stamp(first["daemon.ready"]) - warmed}


def handoff_gaps(log_path: Path) -> tuple[list[float], list[int]]:
    """From the daemon's log: for each order, the wall milliseconds from its hand-off (`signal` line with
    `handoff`) to its `order.changed` to SUBMITTING (the intent journaled, the broker called right after), and
    how many other streams' candles were evaluated in between (their `signal` lines): the order's wait behind
    other work on the one event loop."""
    last: dict[str, tuple[float, int, str]] = {}
    signals: list[tuple[int, str]] = []  # (line number, stream) of every signal line
    gaps: list[float] = []
    others: list[int] = []
    with open(log_path) as log:
        for n, line in enumerate(log):
            if not line.startswith("{") or ('"signal"' not in line and '"order.changed"' not in line):
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") == "signal":
                signals.append((n, str(e.get("stream"))))
                if e.get("handoff"):
                    last[str(e["instance"])] = (stamp(e), n, str(e.get("stream")))
            elif e.get("event") == "order.changed" and e.get("state") == "submitting" and e.get("previous") == "new":
                handoff = last.get(str(e.get("instance")))
                if handoff is None:
                    continue
                at, first, stream = handoff
                gaps.append((stamp(e) - at) * 1000)
                others.append(len({s for i, s in signals if i > first and s != stream}))
    return gaps, others


def free_port_base(count: int = 6) -> int:
    """A port with the `count - 1` after it free on loopback (the sandbox's index and its five services)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise SystemExit("no run of free ports for the sandbox")


class Sandbox:
    """`tradebot sandbox` as a process of its own: the five simulators off the daemon's event loop, as real
    services are (they are remote: their work is never the daemon's)."""

    def __init__(self, wd: Path, speed: float) -> None:
        self.base = free_port_base()
        self.url = f"http://127.0.0.1:{self.base}"
        config = wd / "sandbox.toml"
        config.write_text((ROOT / "config" / "paper.toml").read_text().replace('state_dir = "var"',
                                                                               f'state_dir = "{wd / "sbx"}"'))
        self.proc = subprocess.Popen([sys.executable, "-m", "bot", "sandbox", "--config", str(config),
                                      "--port-base", str(self.base), "--speed", f"{speed:g}",
                                      "--state-dir", str(wd / "sandbox-state")], cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"tradebot sandbox exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/_sandbox/info", timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("tradebot sandbox never answered")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speed", type=float, default=60.0, help="simulated minutes per wall minute (default: the "
                    "demo's, config/paper.toml; at 240 the 18 streams saturate the daemon's core)")
    ap.add_argument("--flips", type=int, default=len(STREAMS), help="instances of the flip strategy, one per "
                    f"stream round robin over the {len(STREAMS)} streams")
    ap.add_argument("--period", type=int, default=30, help="flip: simulated minutes between a buy and a sell")
    ap.add_argument("--stagger", action="store_true", help="flip instances spread their flips evenly over the "
                    "period instead of all flipping in the same minute (a burst of an order per stream)")
    ap.add_argument("--candles", type=int, default=10_000, help="closed candles to run for")
    ap.add_argument("--keep", type=Path, help="keep the state directory here (default: a temp dir, removed)")
    ap.add_argument("--sandbox", choices=("external", "in-process"), default="external",
                    help="external (default): the simulators run as a `tradebot sandbox` process of their own, "
                         "as real services are remote; in-process: on the daemon's own event loop, as the demo")
    args = ap.parse_args()
    wd = args.keep or Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    wd.mkdir(parents=True, exist_ok=True)
    sandbox = Sandbox(wd, args.speed) if args.sandbox == "external" else None
    config = write_config(wd, args.speed, args.flips, args.period, sandbox.url if sandbox else "", args.stagger)
    streams = min(len(STREAMS), args.flips) if args.flips else 0
    print(f"daemon: paper demo + {args.flips} flip instances ({streams} streams, a buy or a sell every "
          f"{args.period} simulated minutes each), speed {args.speed:g}x, simulators "
          f"{'in a `tradebot sandbox` process of their own' if sandbox else 'in-process'}, "
          f"until {args.candles:,} closed candles; state in {wd}", flush=True)
    d = Daemon(config, wd, args.speed)
    marks = sorted({1_000, args.candles})
    rss: dict[int, tuple[float, float]] = {}
    try:
        ready_s = d.wait_ready()
        url = d.url()
        parts = phases(d)
        started = time.monotonic()
        last: dict[str, list[tuple[dict[str, str], float]]] = {}
        steal = StealMeter().__enter__()
        while len(rss) < len(marks):
            if d.proc.poll() is not None:
                raise SystemExit(f"the daemon exited with {d.proc.returncode}")
            last = scrape(url)
            closed = total(last, "tradebot_candles_closed_total")
            for m in marks:
                if closed >= m and m not in rss:
                    rss[m] = (d.rss_mb(), closed)
                    print(f"  {closed:,.0f} closed candles after {time.monotonic() - started:.0f}s: "
                          f"RSS {rss[m][0]:.1f} MB", flush=True)
            time.sleep(1.0)  # a scrape every second (Prometheus: every 15 s); each one costs the daemon work
        wall = time.monotonic() - started
        steal.__exit__(None, None, None)
    finally:
        rc = d.stop()
        if sandbox is not None:
            sandbox.stop()
    overruns = sum(1 for e in d.events() if e.get("event") == "job.overrun")
    restarts = sum(1 for e in d.events() if e.get("event") == "task.restarting")
    lat = buckets(last, "tradebot_candle_to_order_seconds")
    orders = lat[-1][1] if lat else 0.0
    within = next((n for b, n in lat if b == P99_TARGET_S), 0.0)
    ticks = buckets(last, "tradebot_tick_latency_seconds")
    without_warmup = ready_s - parts["warm-up (history I/O)"]
    growth = rss[marks[-1]][0] / rss[marks[0]][0] - 1

    print()
    print(f"time to READY (spawn -> READY=1, wall): {ready_s:.2f} s")
    for name, s in parts.items():
        print(f"  {name:<44} {s:6.2f} s")
    print(f"  READY without warm-up I/O (READY - warm-up):  {without_warmup:6.2f} s   target < {READY_TARGET_S:g} s: "
          f"{verdict(without_warmup < READY_TARGET_S)}")
    print(f"closed-candle-to-order-request latency (wall, fetch returned -> broker.place), {orders:,.0f} orders "
          f"over {wall:.0f} s:")
    if orders:
        print(f"  median {quantile(lat, 0.5) * 1000:.1f} ms, p99 {quantile(lat, 0.99) * 1000:.1f} ms "
              f"(interpolated in buckets); within 50 ms: {within / orders:.2%}   target p99 < 50 ms: "
              f"{verdict(within / orders >= 0.99)}")
    else:
        print("  no order was placed: MISSED")
    if ticks:
        print(f"  (tick latency, poll start -> cycle committed: median {quantile(ticks, 0.5) * 1000:.1f} ms, "
              f"p99 {quantile(ticks, 0.99) * 1000:.1f} ms over {ticks[-1][1]:,.0f} candles)")
    gaps, others = handoff_gaps(d.log_path)
    if gaps:
        order = sorted(range(len(gaps)), key=lambda i: gaps[i])
        slow = order[-max(1, len(order) // 100):]
        print(f"  (hand-off -> order journaled SUBMITTING, from the log: median {statistics.median(gaps):.1f} ms, "
              f"p99 {gaps[order[min(len(order) - 1, int(0.99 * len(order)))]]:.1f} ms over {len(gaps)} orders; the "
              f"slowest 1% waited behind {statistics.mean(others[i] for i in slow):.1f} other streams' candles "
              f"on average, the rest {statistics.mean(others[i] for i in order[:-len(slow)] or slow):.1f})")
    print("resident memory (VmRSS of the daemon):")
    for m in marks:
        print(f"  after {m:>6,} closed candles: {rss[m][0]:7.1f} MB")
    print(f"  growth {growth:+.1%}   target within {MEMORY_TARGET:.0%}: {verdict(abs(growth) <= MEMORY_TARGET)}")
    print(f"job overruns {overruns}, task restarts {restarts}, exit code {rc}; {steal.describe()} while it ran "
          "(bench/machine.py)")
    if args.keep is None:
        shutil.rmtree(wd, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
