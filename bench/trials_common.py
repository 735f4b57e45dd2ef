"""Shared pieces of the reliability trials (`bench/chaos.py`, `bench/crash.py`, `bench/secrets.py`).

A trial runs `tradebot sandbox --state-dir` as its own process (so the simulated world outlives the daemon)
and `tradebot run` in live mode pointed at it (`[sandbox] url`). Afterwards every invariant is judged from
the simulators' own state, dumped through their control routes (`/_sandbox/state`, `/_sandbox/counters`),
beside the daemon's journal (read-only) and its log lines:

    world = World(wd, seed=7, speed=240)        # writes wd/trial.toml, starts the sandbox process
    d = world.daemon(); d.ready()
    ... faults, outages, deposits through world.post(service, path, body) ...
    rc = d.terminate()
    report = check(world, [d])                  # Invariant per promise, PASS/FAIL, with what failed
    world.close()
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("atmos", "sfox", "coinbtr", "atlas", "atmotube")
USER = "paper"  # the sandbox's trading user (its token is the config's coinbtr token)
BTC_ADDRESS = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
# The default mix, about 10% of requests in all: each kind drawn independently, the first hit wins.
FAULT_MIX = {"p_latency": 0.02, "p_429": 0.015, "p_5xx": 0.02, "p_drop_before": 0.015, "p_drop_after": 0.015,
             "p_truncate": 0.015, "p_bad_json": 0.01, "latency_s": 0.3}
# Log events that mean an exception reached a task's outer boundary (the daemon kept going, but it is a bug).
CRASH_EVENTS = frozenset({"task.restarting", "daemon.close_failed", "task.crashed"})


def free_port_base(span: int = 6) -> int:
    """A base port with `span` free ports above it (the sandbox listens on base .. base+5)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + span >= 65535:
            continue
        try:
            for p in range(base, base + span):
                with socket.socket() as t:
                    t.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port range")


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 30.0) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, method=method, data=data,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as err:
        return int(err.code), bytes(err.read())


def write_config(wd: Path, sandbox_url: str, *, secrets: dict[str, str] | None = None, sweep: bool = True,
                 extra: str = "", name: str = "trial.toml", state_dir: Path | None = None,
                 log_level: str = "info") -> Path:
    """config/paper.toml made live against the external sandbox, state in `wd/var`, status on a free port,
    a btc sweep above `keep` (deposits push it over); `secrets` replace the sandbox keys (section → value)."""
    text = (ROOT / "config" / "paper.toml").read_text()
    text = text.replace('mode = "paper"', 'mode = "live"')
    text = text.replace('state_dir = "var"', f'state_dir = "{state_dir or wd / "var"}"')
    text = text.replace('log_level = "info"', f'log_level = "{log_level}"')
    text = text.replace('listen = "127.0.0.1:8787"', 'listen = "127.0.0.1:0"')
    text = text.replace("seed = 42\n", f'seed = 42\nurl = "{sandbox_url}"\n')
    if sweep:
        text = text.replace("withdrawals_enabled = false", "withdrawals_enabled = true\n" + (
            f'sweeps = [{{coin = "btc", keep = "1.02", address = "{BTC_ADDRESS}", max_per_day = "100"}}]'))
    for section, value in (secrets or {}).items():
        text = _set_secret(text, section, value)
    path = wd / name
    path.write_text(text + extra)
    return path


def _set_secret(text: str, section: str, value: str) -> str:
    """`text` with the secret of `[section]` set to `value` (notify: enabled, with `value` as its one URL)."""
    field_name = "token" if section in ("coinbtr", "status") else "api_key"
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("["):
            inside = line.split("#")[0].strip() == f"[{section}]"
            out.append(line)
            if inside:
                out.append(f'enabled = true\nurls = ["{value}"]' if section == "notify" else
                           f'{field_name} = "{value}"')
            continue
        drop = ("enabled ", "urls ") if section == "notify" else (f"{field_name} ",)
        if not (inside and line.startswith(drop)):
            out.append(line)
    return "\n".join(out) + "\n"


class LogFile:
    """A process's stdout file, read as JSON lines as they are written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._pos = 0
        self._taken = 0

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            fh.seek(self._pos)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        self._pos += end
        for line in data[:end].decode(errors="replace").splitlines():
            self.raw.append(line)
            if line.startswith("{"):
                try:
                    self.lines.append(json.loads(line))
                except ValueError:
                    self.lines.append({"event": "(unparsed)", "line": line})

    def find(self, event: str, since: int = 0, **match: Any) -> dict[str, Any] | None:
        for e in self.lines[since:]:
            if e.get("event") == event and all(e.get(k) == v for k, v in match.items()):
                return e
        return None


class Proc:
    """A `python -m bot ...` subprocess with its stdout and stderr in files under `wd`."""

    def __init__(self, args: list[str], wd: Path, name: str, env: dict[str, str] | None = None) -> None:
        self.out = wd / f"{name}.log"
        self.err = wd / f"{name}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=ROOT, stdout=out, stderr=err,
                                         env={**os.environ, **(env or {})})
        self.log = LogFile(self.out)
        self.rc: int | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, event: str, timeout: float = 60.0, since: int = 0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            self.log.poll()
            found = self.log.find(event, since, **match)
            if found is not None:
                return found
            if not self.alive():
                self.log.poll()
                raise RuntimeError(f"{self.out.name} exited ({self.proc.returncode}) before {event}: "
                                   f"{self.stderr()[-1500:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {event} {match} within {timeout}s in {self.out.name}")
            time.sleep(0.05)

    def terminate(self, timeout: float = 60.0) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.rc = self.proc.wait(10)
            self.rc = -999 if self.rc == -9 else self.rc
        self.log.poll()
        return self.rc

    def kill(self) -> None:
        self.proc.kill()
        self.rc = self.proc.wait(10)
        self.log.poll()

    def stderr(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""


class Daemon(Proc):
    """`tradebot run` on the trial's config."""

    url = ""
    token = ""  # the status token, when the config sets one

    def status(self) -> dict[str, Any]:
        code, body = http("GET", self.url + "/status", headers={"Authorization": f"Bearer {self.token}"}
                          if self.token else None)
        if code != 200:
            raise RuntimeError(f"/status answered {code}")
        result: dict[str, Any] = json.loads(body)
        return result

    def settle(self, timeout: float = 120.0) -> bool:
        """Wait (faults off) until the outbox is drained; False when `timeout` wall seconds pass first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            if self.status()["recorder"]["backlog_rows"] == 0:
                return True
            time.sleep(0.5)
        return False

    def ready(self, timeout: float = 90.0) -> str:
        self.url = str(self.wait_for("status.listening", timeout)["url"])
        self.wait_for("daemon.ready", timeout)
        return self.url


@dataclass
class World:
    """The sandbox process (the simulated world) and the trial's config; daemons are started on it."""

    wd: Path
    seed: int = 42
    speed: float = 240.0
    secrets: dict[str, str] | None = None
    sweep: bool = True
    extra: str = ""
    log_level: str = "info"
    env: dict[str, str] = field(default_factory=dict)
    daemons: list[Daemon] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.wd.mkdir(parents=True, exist_ok=True)
        self.base = free_port_base()
        self.url = f"http://127.0.0.1:{self.base}"
        self.config = write_config(self.wd, self.url, secrets=self.secrets, sweep=self.sweep, extra=self.extra,
                                   log_level=self.log_level)
        self.sandbox = Proc(["sandbox", "--config", str(self.config), "--port-base", str(self.base),
                             "--speed", str(self.speed), "--seed", str(self.seed),
                             "--state-dir", str(self.wd / "world")], self.wd, "sandbox")
        deadline = time.monotonic() + 60
        while True:
            try:
                code, body = http("GET", self.url + "/_sandbox/info", timeout=2)
                if code == 200:
                    self.urls: dict[str, str] = json.loads(body)["urls"]
                    break
            except OSError:
                pass
            if not self.sandbox.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start: {self.sandbox.stderr()[-1500:]}")
            time.sleep(0.1)
        self.start_balances = self.balances()

    def balances(self) -> dict[str, Decimal]:
        """The trading user's balances on the exchange (available + frozen), from its own state."""
        held = self.get("coinbtr", "/_sandbox/state")["balances"].get(USER, {})
        return {c: Decimal(v["available"]) + Decimal(v["frozen"]) for c, v in held.items()}

    def daemon(self, env: dict[str, str] | None = None, config: Path | None = None, *args: str) -> Daemon:
        n = len(self.daemons) + 1
        d = Daemon(["run", "--config", str(config or self.config), *args], self.wd, f"daemon-{n}",
                   env={**self.env, **(env or {})})
        self.daemons.append(d)
        return d

    def get(self, service: str, path: str) -> Any:
        code, body = http("GET", self.urls[service] + path, timeout=120)
        if code != 200:
            raise RuntimeError(f"{service} {path}: HTTP {code}")
        return json.loads(body)

    def post(self, service: str, path: str, body: Any) -> Any:
        code, raw = http("POST", self.urls[service] + path, body)
        if code >= 300:
            raise RuntimeError(f"{service} {path}: HTTP {code} {raw[:200]!r}")
        return json.loads(raw)

    def now_s(self) -> float:
        """The world's simulated time, as a POSIX timestamp."""
        from bot.clock import parse_iso

        return parse_iso(str(self.get("coinbtr", "/_sandbox/clock")["sim"])).timestamp()

    def faults(self, **settings: Any) -> None:
        for service in SERVICES:
            self.post(service, "/_sandbox/faults", settings)

    def counters(self) -> dict[str, dict[str, Any]]:
        return {s: self.get(s, "/_sandbox/counters") for s in SERVICES}

    def close(self) -> None:
        for d in self.daemons:
            if d.alive():
                d.kill()
        self.sandbox.terminate(30)

    # -- the journal, read-only -------------------------------------------------------------------
    def db(self, sql: str) -> list[sqlite3.Row]:
        path = self.wd / "var" / "tradebot.sqlite3"
        if not path.exists():
            return []
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return list(conn.execute(sql).fetchall())
        finally:
            conn.close()


# -- invariants ---------------------------------------------------------------------------------------
@dataclass
class Report:
    """Each invariant's verdict and the problems behind a FAIL; figures for the table."""

    checks: dict[str, list[str]] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, problems: list[str]) -> None:
        self.checks.setdefault(name, []).extend(problems)

    @property
    def ok(self) -> bool:
        return not any(self.checks.values())


JOURNAL_TO_EXCHANGE = {"filled": {"filled"}, "cancelled": {"cancelled"}, "open": {"open"},
                       "partially_filled": {"open"}, "cancelling": {"open"}}


def check(world: World, daemons: list[Daemon], *, exits: list[int] | None = None) -> Report:
    """Every invariant, from the simulators' own state (the daemon is stopped)."""
    rep = Report()
    ex = world.get("coinbtr", "/_sandbox/state")
    orders = {o["id"]: o for o in ex["orders"] if o["user"] == USER}
    journal = world.db("SELECT id, state, exchange_id, filled, amount, market, side FROM orders")
    jfills = world.db("SELECT fill_id, order_id, market, side, price, amount, fee, fee_coin FROM fills")
    sweeps = world.db("SELECT id, state, withdrawal_id, amount, coin, address, intended_at FROM wallet_sweeps")
    withdrawals = [w for w in ex["withdrawals"] if w["user"] == USER]
    deposits = [d for d in ex["deposits"] if d["user"] == USER]

    # 1. no duplicate order: every exchange order maps to exactly one journal intent.
    claimed = Counter(int(r["exchange_id"]) for r in journal if r["exchange_id"])
    problems = [f"exchange order {i} claimed by {n} intents" for i, n in claimed.items() if n > 1]
    problems += [f"exchange order {i} ({o['side']} {o['amount']} @ {o['price']}) has no journal intent"
                 for i, o in orders.items() if i not in claimed]
    problems += [f"journal claims exchange order {i}, which does not exist" for i in claimed if i not in orders]
    rep.add("no duplicate order", problems)

    # 2. no duplicate withdrawal: every withdrawal maps to exactly one sweep.
    by_w = Counter(r["withdrawal_id"] for r in sweeps if r["withdrawal_id"] is not None)
    # A sweep whose withdraw answer was lost shortly before the stop is still intended/unknown: the daemon
    # had not yet found its withdrawal in listwithdraws (it blocks its coin until it does, or until it has
    # provably not landed). It stands for at most one withdrawal that it could have made, as the daemon's own
    # search matches it (same coin, address and amount, made at or after its intent); one that the daemon
    # declared not sent, or a second withdrawal, is still a problem.
    in_doubt = [r for r in sweeps if r["withdrawal_id"] is None and r["state"] in ("intended", "unknown")]

    def could_be(r: Any, w: dict[str, Any]) -> bool:
        return (r["coin"] == w["coin"] and r["address"] == w["address"]
                and Decimal(r["amount"]) == Decimal(w["amount"])
                and datetime.fromisoformat(w["date"]) >= datetime.fromisoformat(r["intended_at"]))

    problems = []
    for w in withdrawals:
        if w["id"] in by_w:
            continue
        lost = next((r for r in in_doubt if could_be(r, w)), None)
        if lost is not None:
            in_doubt.remove(lost)
            continue
        problems.append(f"withdrawal {w['id']} ({w['amount']} btc) has no sweep")
    problems += [f"withdrawal {i} claimed by {n} sweeps" for i, n in by_w.items() if n > 1]
    rep.add("no duplicate withdrawal", problems)

    # 3. every journal order in the exchange's true state.
    problems = []
    for r in journal:
        if r["state"] == "unknown" and not r["exchange_id"] and not any(
                o["market"] == r["market"] and o["side"].lower() == r["side"] and Decimal(o["amount"]) ==
                Decimal(r["amount"]) and o["id"] not in claimed for o in orders.values()):
            # A place whose answer was lost shortly before the stop and that did not land: the daemon cannot
            # prove that within the grace an exchange may take to show it (`UNKNOWN_GRACE`), so it stays
            # unknown for the next start to close; true to the exchange (nothing there), and placed nothing
            # more on that market meanwhile. One that landed would be an unclaimed exchange order (check 1).
            continue
        if r["state"] in ("new", "submitting", "unknown"):
            problems.append(f"journal order {r['id']} left {r['state']}")
            continue
        if r["state"] == "rejected" or (r["state"] == "cancelled" and not r["exchange_id"]):
            continue
        o = orders.get(int(r["exchange_id"])) if r["exchange_id"] else None
        if o is None:
            problems.append(f"journal order {r['id']} ({r['state']}) not on the exchange")
            continue
        if o["status"] not in JOURNAL_TO_EXCHANGE.get(r["state"], set()):
            problems.append(f"journal order {r['id']} is {r['state']}, exchange order {o['id']} is {o['status']}")
        if Decimal(r["filled"]) != Decimal(o["filled"]):
            problems.append(f"journal order {r['id']} filled {r['filled']}, exchange {o['filled']}")
    rep.add("journal orders in the exchange's state", problems)

    # 4. balances = start + journal fills and fees + transfers; and the journal's fills are the exchange's.
    ex_fills = {str(f["id"]): (o, f) for o in orders.values() for f in o["fills"]}
    mine = {str(r["fill_id"]).split(":", 1)[-1]: r for r in jfills}
    problems = [f"exchange fill {i} of order {o['id']} not in the journal" for i, (o, _f) in ex_fills.items()
                if i not in mine]
    problems += [f"journal fill {i} not on the exchange" for i in mine if i not in ex_fills]
    expected: dict[str, Decimal] = defaultdict(Decimal, world.start_balances)
    for r in jfills:
        base, quote = str(r["market"]).split("-")
        amount, value = Decimal(r["amount"]), Decimal(r["price"]) * Decimal(r["amount"])
        sign = 1 if r["side"] == "buy" else -1
        expected[base] += sign * amount
        expected[quote] -= sign * value
        expected[r["fee_coin"]] -= Decimal(r["fee"])
    for d in deposits:
        if d["confirmed"]:
            expected[d["coin"]] += Decimal(d["amount"])
    for w in withdrawals:
        if w["status"] != "failed":
            expected[w["coin"]] -= Decimal(w["amount"]) + Decimal(w["fee_amount"])
    held = {c: Decimal(v["available"]) + Decimal(v["frozen"]) for c, v in ex["balances"].get(USER, {}).items()}
    for coin in sorted(set(held) | set(expected)):
        got, want = held.get(coin, Decimal(0)), expected.get(coin, Decimal(0))
        if got != want:
            problems.append(f"{coin}: exchange holds {got}, start + fills + fees + transfers say {want}")
    rep.add("balances = start + fills, fees, transfers", problems)

    # 5. every recorded row in Atlas exactly once and in order (Atlas plus what the outbox still holds).
    atlas_problems, rows = _atlas_problems(world, jfills)
    rep.add("Atlas rows exactly once, in order", atlas_problems)

    # 6. zero unhandled exceptions in the log; 7. exit 0 at SIGTERM.
    rep.add("no unhandled exception in the logs", log_problems(daemons))
    if exits is not None:
        rep.add("daemon exit 0 at SIGTERM", [f"exit {rc}" for rc in exits if rc != 0])

    rep.figures.update({
        "orders": len(orders), "orders filled": sum(o["status"] == "filled" for o in orders.values()),
        "fills": len(ex_fills), "journal orders": len(journal),
        "withdrawals": len(withdrawals), "deposits": len(deposits), "sweeps": len(sweeps),
        "Atlas rows": rows, "outbox rows left": len(world.db("SELECT seq FROM outbox")),
        "unexplained wallet alarms": sum(e.get("event") == "wallet.unexplained"
                                         for d in daemons for e in d.log.lines),
    })
    return rep


def _atlas_problems(world: World, jfills: list[sqlite3.Row]) -> tuple[list[str], int]:
    """Per dataset no timestamp twice and time never going back in the order rows were stored; every journal
    fill recorded exactly once (Atlas plus the outbox); and the number of rows in Atlas."""
    state = world.get("atlas", "/_sandbox/state")
    outbox = world.db("SELECT dataset, ts, row_values FROM outbox ORDER BY seq")
    names = {r["name"]: r["dataset"] for r in world.db("SELECT dataset, name FROM recorder_datasets")}
    problems: list[str] = []
    rows_total = 0
    fills_seen: Counter[str] = Counter()
    for ds in state["datasets"]:
        if ds["owner"] != "tradebot":
            continue
        rows = ds["rows"]
        rows_total += len(rows)
        stamps = [r["timestamp"] for r in rows]
        dupes = [t for t, n in Counter(stamps).items() if n > 1]
        if dupes:
            problems.append(f"{ds['name']}: {len(dupes)} timestamps stored twice, e.g. {dupes[0]}")
        if names.get(ds["name"], "").startswith("fills/"):
            fills_seen.update(str(r["values"].get("fill")) for r in rows)
    for r in outbox:
        if str(r["dataset"]).startswith("fills/"):
            fills_seen.update([str(json.loads(r["row_values"]).get("fill"))])
    problems += _order_problems(world)
    for r in jfills:
        fid = str(r["fill_id"]).split(":", 1)[-1]
        if fills_seen.get(fid, 0) != 1:
            problems.append(f"fill {fid}: recorded {fills_seen.get(fid, 0)} times")
    return problems, rows_total


def _order_problems(world: World) -> list[str]:
    """Rows in the order they were stored (the simulator's row ids), per dataset: time never goes back."""
    path = world.wd / "world" / "sandbox" / "atlas.sqlite3"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        names = dict(conn.execute("SELECT id, name FROM datasets").fetchall())
        last: dict[int, int] = {}
        problems: list[str] = []
        for ds, ts in conn.execute("SELECT dataset_id, ts FROM rows ORDER BY id"):
            name = names[ds]
            if "-sensor-" in name:
                continue
            if ds in last and int(ts) < last[ds]:
                problems.append(f"{name}: a row at {ts} stored after one at {last[ds]}")
            last[ds] = max(last.get(ds, 0), int(ts))
        return problems[:20]
    finally:
        conn.close()


def log_problems(daemons: list[Daemon]) -> list[str]:
    """Tracebacks, `exception`/`exc_info` fields and crash events in every log line and on stderr."""
    problems: list[str] = []
    for d in daemons:
        d.log.poll()
        for e in d.log.lines:
            if e.get("event") in CRASH_EVENTS or "exception" in e or "exc_info" in e or "traceback" in e:
                problems.append(f"{d.out.name}: {e.get('event')}: {str(e.get('exception', ''))[-300:]}")
        err = d.stderr()
        for marker in ("Traceback", "exception was never retrieved", "Exception ignored", "task crashed"):
            if marker in err:
                at = err.index(marker)
                problems.append(f"{d.err.name}: {err[at:at + 300]!r}")
    return problems


def counters_table(counters: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for s in SERVICES:
        c = counters.get(s, {})
        faults = c.get("faults", {})
        shown = ", ".join(f"{k} {v}" for k, v in sorted(faults.items()))
        out.append((f"{s}", f"{c.get('requests_total', 0)} requests, {sum(faults.values())} faults ({shown})"))
    return out


def print_table(title: str, rows: list[tuple[str, str]], rep: Report) -> None:
    rows = [*rows, *((k, str(v)) for k, v in rep.figures.items())]
    rows += [(name, "PASS" if not probs else f"FAIL ({len(probs)})") for name, probs in rep.checks.items()]
    width = max(len(k) for k, _ in rows)
    print(title)
    print("-" * (width + 40))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("-" * (width + 40))
    for name, probs in rep.checks.items():
        for p in probs[:15]:
            print(f"FAIL {name}: {p}")
        if len(probs) > 15:
            print(f"FAIL {name}: ... and {len(probs) - 15} more")
    print("ALL PASS" if rep.ok else "SOME FAIL", flush=True)
