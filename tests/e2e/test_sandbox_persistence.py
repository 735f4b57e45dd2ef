"""Simulators that outlive their process: `tradebot sandbox --state-dir` and the demo daemon, SIGKILLed and
restarted, keep the exchange and Atlas, never repeat an id and carry on the same clock; a daemon with
`[sandbox] url` follows an external sandbox's clock."""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

from bot.clients.atlas import AtlasClient, AtlasRow
from bot.clients.coinbtr import CoinbtrClient
from bot.clock import Clock, ManualClock, parse_iso
from bot.domain import Side
from bot.sandbox import credentials as cred
from bot.sandbox.atlas import AtlasSim
from bot.sandbox.coinbtr import CoinbtrSim, default_tokens
from bot.sandbox.coinbtr_control import exchange_state
from bot.sandbox.embedded import clock_from_info
from bot.sandbox.exchange_store import ExchangeStore
from bot.sandbox.market import SimMarket
from bot.settings import AtlasSettings, CoinbtrSettings
from tests.e2e.test_sandbox_cli import free_port_base

ROOT = Path(__file__).resolve().parents[2]
D = Decimal
BTC_ADDR = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
READY_S = 60.0  # generous: the machine is shared; every wait polls and returns as soon as it can


# ---- processes ---------------------------------------------------------------------------------------


@contextmanager
def started(args: list[str], log: Path, cwd: Path = ROOT, env: dict[str, str] | None = None
            ) -> Iterator[subprocess.Popen[bytes]]:
    """A `python -m bot ...` process with its output in `log`; SIGKILLed on the way out if still alive."""
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def tail(log: Path) -> str:
    return tail(log)


def sigkill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        assert resp.status == 200, f"{url}: {resp.status}"
        return await resp.json()


async def wait_json(http: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes], log: Path,
                    ready: Any = lambda body: True) -> Any:
    """Poll `url` until it answers JSON that `ready` accepts (fails at once if the process died)."""
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited {proc.returncode}:\n{tail(log)}"
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                if resp.status == 200:
                    body = await resp.json()
                    if ready(body):
                        return body
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} not ready after {READY_S}s:\n{tail(log)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- clients and state ---------------------------------------------------------------------------------


@asynccontextmanager
async def clients(urls: dict[str, str], clock: Clock) -> AsyncIterator[tuple[CoinbtrClient, AtlasClient]]:
    coinbtr = CoinbtrClient.create(CoinbtrSettings(token=SecretStr(cred.COINBTR_TOKEN)), clock,
                                   base_url=urls["coinbtr"], rng=random.Random(1))
    atlas = AtlasClient.create(AtlasSettings(api_key=SecretStr(cred.ATLAS_KEY)), clock,
                               base_url=urls["atlas"], rng=random.Random(1))
    async with coinbtr, atlas:
        yield coinbtr, atlas


async def trade(coinbtr: CoinbtrClient) -> list[int]:
    """A buy resting far below the market, a sell that crosses the book (filled at once, as taker), a
    cancelled buy, and a withdrawal."""
    bid = (await coinbtr.market.ticker("btc-mxn")).bid
    ids = [await coinbtr.trading.place("btc-mxn", Side.BUY, D("0.001"), (bid * D("0.8")).quantize(D("0.01"))),
           await coinbtr.trading.place("btc-mxn", Side.SELL, D("0.001"), (bid * D("0.98")).quantize(D("0.01"))),
           await coinbtr.trading.place("btc-mxn", Side.BUY, D("0.001"), (bid * D("0.7")).quantize(D("0.01")))]
    await coinbtr.trading.cancel(ids[2])
    await coinbtr.wallet.withdraw("btc", BTC_ADDR, D("0.001"))
    return ids


async def record(atlas: AtlasClient, name: str, n: int) -> int:
    ds = await atlas.ensure_dataset(name, "e2e", {"source": "e2e"}, columns={"price": "float"})
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [AtlasRow(t0 + timedelta(minutes=i), {"price": 100.5 + i, "n": i}) for i in range(n)]
    assert await atlas.bulk_insert(ds.id, rows) == n
    return ds.id


def exchange_on_disk(sandbox_dir: Path, at: datetime, tmp: Path) -> dict[str, Any]:
    """What a copy of the killed sandbox's exchange file holds, dumped like `/_sandbox/state` at `at`."""
    copy = tmp / f"copy-{time.monotonic_ns()}"
    shutil.copytree(sandbox_dir, copy)
    clock = ManualClock(at)
    sim = CoinbtrSim(SimMarket(clock, seed=42), clock, default_tokens(), cred.COINBTR_BALANCES, seed=42,
                     store=ExchangeStore(copy / "coinbtr.sqlite3"))
    try:
        return exchange_state(sim)
    finally:
        sim.close()


def atlas_on_disk(sandbox_dir: Path, tmp: Path) -> list[tuple[str, int]]:
    copy = tmp / f"copy-{time.monotonic_ns()}"
    shutil.copytree(sandbox_dir, copy)
    sim = AtlasSim(ManualClock(datetime(2026, 1, 1, tzinfo=UTC)), {}, db_path=str(copy / "atlas.sqlite3"))
    try:
        return [(d["name"], sim.store.rows.count_rows(d["id"], None, None)) for d in sim.store.dump()["datasets"]]
    finally:
        sim.close()


def kept(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Everything `before` showed is still there in `after` (which is later: fills and statuses move on)."""
    same = ("id", "user", "market", "side", "price", "amount", "created_at")
    now = {o["id"]: o for o in after["orders"]}
    for o in before["orders"]:
        assert {k: now[o["id"]][k] for k in same} == {k: o[k] for k in same}
        assert now[o["id"]]["fills"][: len(o["fills"])] == o["fills"]
        if o["status"] != "open":
            assert now[o["id"]] == o
    withdrawals = {w["id"]: w for w in after["withdrawals"]}
    for w in before["withdrawals"]:
        assert {k: v for k, v in withdrawals[w["id"]].items() if k not in ("status", "txid")} == {
            k: v for k, v in w.items() if k not in ("status", "txid")}
    assert [d["id"] for d in after["deposits"]][: len(before["deposits"])] == [d["id"] for d in before["deposits"]]


def max_ids(state: dict[str, Any]) -> tuple[int, int, int]:
    orders = [o["id"] for o in state["orders"]]
    fills = [f["id"] for o in state["orders"] for f in o["fills"]]
    return max(orders), max(fills), max(w["id"] for w in state["withdrawals"])


# ---- the tests ------------------------------------------------------------------------------------------


async def test_tradebot_sandbox_survives_sigkill_with_state_ids_and_clock(tmp_path: Path) -> None:
    state_dir, log = tmp_path / "world", tmp_path / "sandbox.log"
    base = free_port_base()
    args = ["sandbox", "--config", "config/paper.toml", "--state-dir", str(state_dir), "--port-base", str(base),
            "--speed", "60"]
    index = f"http://127.0.0.1:{base}/_sandbox/info"
    async with aiohttp.ClientSession() as http:
        with started(args, log) as proc:
            info = await wait_json(http, index, proc, log)
            clock = clock_from_info(info["clock"])
            async with clients(info["urls"], clock) as (coinbtr, atlas):
                old_ids = await trade(coinbtr)
                ds = await record(atlas, "kept", 5)
                async with http.post(f"{info['urls']['coinbtr']}/_sandbox/deposits",
                                     json={"coin": "eth", "amount": "1.5"}) as resp:
                    assert resp.status == 201
            before = await get_json(http, f"{info['urls']['coinbtr']}/_sandbox/state")
            atlas_before = await get_json(http, f"{info['urls']['atlas']}/_sandbox/state")
            clock_before = await get_json(http, f"{info['urls']['coinbtr']}/_sandbox/clock")
            sigkill(proc)

        # Everything answered before the kill is on disk, exactly.
        assert exchange_on_disk(state_dir / "sandbox", parse_iso(before["now"]), tmp_path) == before
        assert atlas_on_disk(state_dir / "sandbox", tmp_path) == [("kept", 5)]
        assert max(o["id"] for o in before["orders"]) == max(old_ids)

        with started(args, log) as proc:
            info = await wait_json(http, index, proc, log)
            clock_after = info["clock"]
            # The world went on while the sandbox was down: same anchor, same speed, no jump back.
            expected = parse_iso(clock_before["sim"]) + (
                parse_iso(clock_after["wall"]) - parse_iso(clock_before["wall"])) * 60
            assert parse_iso(clock_after["sim"]) > parse_iso(clock_before["sim"])
            assert abs((parse_iso(clock_after["sim"]) - expected).total_seconds()) < 2.0
            after = await get_json(http, f"{info['urls']['coinbtr']}/_sandbox/state")
            kept(before, after)
            atlas_after = await get_json(http, f"{info['urls']['atlas']}/_sandbox/state")
            assert atlas_after["datasets"] == atlas_before["datasets"]
            async with clients(info["urls"], clock_from_info(clock_after)) as (coinbtr, atlas):
                new_ids = await trade(coinbtr)
                assert (await atlas.find_dataset("kept")) is not None
                assert await record(atlas, "new", 1) > ds
            latest = await get_json(http, f"{info['urls']['coinbtr']}/_sandbox/state")
            old_order, old_fill, old_withdrawal = max_ids(before)
            assert min(new_ids) > old_order
            new_fills = [f["id"] for o in latest["orders"] if o["id"] in new_ids for f in o["fills"]]
            assert new_fills and min(new_fills) > old_fill
            assert latest["withdrawals"][-1]["id"] > old_withdrawal
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0


def daemon_config(tmp_path: Path, state_dir: Path, status_port: int, extra: str = "") -> Path:
    text = (ROOT / "config" / "paper.toml").read_text()
    text = text.replace('state_dir = "var"', f'state_dir = "{state_dir}"')
    text = text.replace('listen = "127.0.0.1:8787"', f'listen = "127.0.0.1:{status_port}"')
    text = text.replace('kill_switch_file = "KILL"', f'kill_switch_file = "{state_dir}/KILL"')
    assert str(state_dir) in text and str(status_port) in text
    path = tmp_path / "paper.toml"
    path.write_text(re.sub(r"(?m)^\[sandbox\].*$", lambda m: m.group(0) + "\n" + extra, text))
    return path


def has_sandbox_urls(body: Any) -> bool:
    return isinstance(body, dict) and bool(body.get("sandbox", {}).get("urls", {}).get("coinbtr"))


async def test_demo_daemon_sigkilled_keeps_its_simulated_exchange_and_atlas(tmp_path: Path) -> None:
    state_dir, log = tmp_path / "var", tmp_path / "daemon.log"
    port = free_port()
    config = daemon_config(tmp_path, state_dir, port)
    args = ["run", "--config", str(config)]
    status = f"http://127.0.0.1:{port}/status"
    async with aiohttp.ClientSession() as http:
        with started(args, log, cwd=tmp_path) as proc:
            urls = (await wait_json(http, status, proc, log, has_sandbox_urls))["sandbox"]["urls"]
            info = await get_json(http, f"{urls['coinbtr']}/_sandbox/clock")
            async with clients(urls, clock_from_info(info)) as (coinbtr, atlas):
                mine = await trade(coinbtr)
                await record(atlas, "e2e-kept", 7)
            before = await get_json(http, f"{urls['coinbtr']}/_sandbox/state")
            sigkill(proc)

        on_disk = exchange_on_disk(state_dir / "sandbox", parse_iso(before["now"]), tmp_path)
        assert on_disk == before
        assert ("e2e-kept", 7) in atlas_on_disk(state_dir / "sandbox", tmp_path)

        with started(args, log, cwd=tmp_path) as proc:
            urls = (await wait_json(http, status, proc, log, has_sandbox_urls))["sandbox"]["urls"]
            after = await get_json(http, f"{urls['coinbtr']}/_sandbox/state")
            kept(before, after)
            assert {o["id"] for o in after["orders"]} >= set(mine)
            info = await get_json(http, f"{urls['coinbtr']}/_sandbox/clock")
            assert parse_iso(info["sim"]) > parse_iso(before["now"])
            async with clients(urls, clock_from_info(info)) as (coinbtr, atlas):
                again = await trade(coinbtr)
                ds = await atlas.find_dataset("e2e-kept")
                assert ds is not None and len([r async for r in atlas.rows(ds.id)]) == 7
            assert min(again) > max(o["id"] for o in after["orders"] if o["id"] not in again)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0, tail(log)


async def test_daemon_follows_an_external_sandbox_clock(tmp_path: Path) -> None:
    base, port = free_port_base(), free_port()
    sandbox_log, daemon_log = tmp_path / "sandbox.log", tmp_path / "daemon.log"
    config = daemon_config(tmp_path, tmp_path / "var", port, f'url = "http://127.0.0.1:{base}"\n')
    async with aiohttp.ClientSession() as http:
        with started(["sandbox", "--config", "config/paper.toml", "--port-base", str(base), "--speed", "60",
                      "--state-dir", str(tmp_path / "world")], sandbox_log) as sandbox:
            info = await wait_json(http, f"http://127.0.0.1:{base}/_sandbox/info", sandbox, sandbox_log)
            with started(["run", "--config", str(config)], daemon_log, cwd=tmp_path) as daemon:
                status_url = f"http://127.0.0.1:{port}/status"
                status = await wait_json(http, status_url, daemon, daemon_log, has_sandbox_urls)
                assert status["sandbox"]["urls"] == info["urls"]
                assert not (tmp_path / "var" / "sandbox").exists()  # no in-process simulators
                for _ in range(5):
                    clock = await get_json(http, f"{info['urls']['atlas']}/_sandbox/clock")
                    w0 = datetime.now(UTC)
                    daemon_now = parse_iso((await get_json(http, status_url))["now"])
                    w1 = datetime.now(UTC)
                    # The sandbox's time over the wall interval in which the daemon read its clock.
                    sim, wall = parse_iso(clock["sim"]), parse_iso(clock["wall"])
                    lo, hi = sim + (w0 - wall) * 60, sim + (w1 - wall) * 60
                    slack = timedelta(seconds=1)  # one sim second is ~17 ms of wall time at speed 60
                    assert lo - slack <= daemon_now <= hi + slack, (lo, daemon_now, hi)
                    await asyncio.sleep(0.2)  # let the world move between samples
                daemon.send_signal(signal.SIGTERM)
                assert daemon.wait(timeout=15) == 0, tail(daemon_log)
            sandbox.send_signal(signal.SIGINT)
            assert sandbox.wait(timeout=10) == 0


def test_daemon_refuses_an_unreachable_external_sandbox(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    config = daemon_config(tmp_path, tmp_path / "var", free_port(), f'url = "http://127.0.0.1:{closed}"\n')
    r = subprocess.run([sys.executable, "-m", "bot", "run", "--config", str(config), "--duration", "5"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr
    assert "sandbox.url" in r.stderr and f"127.0.0.1:{closed}" in r.stderr
