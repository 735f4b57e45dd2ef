"""A Sandbox with `state_dir`: the exchange and Atlas outlive it, and a restart is invisible to clients."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from bot.clients.atlas import AtlasClient, AtlasRow
from bot.clients.coinbtr import CoinbtrClient
from bot.clock import ManualClock
from bot.domain import Side
from bot.errors import ConfigError
from bot.sandbox import credentials as cred
from bot.sandbox.runner import Sandbox
from bot.settings import AtlasSettings, CoinbtrSettings

D = Decimal
BTC_ADDR = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"


@asynccontextmanager
async def clients(sb: Sandbox, clock: ManualClock) -> AsyncIterator[tuple[CoinbtrClient, AtlasClient]]:
    coinbtr = CoinbtrClient.create(CoinbtrSettings(token=SecretStr(cred.COINBTR_TOKEN)), clock,
                                   base_url=sb.urls["coinbtr"], rng=random.Random(1))
    atlas = AtlasClient.create(AtlasSettings(api_key=SecretStr(cred.ATLAS_KEY)), clock,
                               base_url=sb.urls["atlas"], rng=random.Random(1))
    async with coinbtr, atlas:
        yield coinbtr, atlas


async def state(sb: Sandbox, service: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{sb.urls[service]}/_sandbox/state") as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def trade_a_little(coinbtr: CoinbtrClient, clock: ManualClock, tag: str) -> list[int]:
    """A resting buy below the market, a crossing sell (taker fills), a cancelled buy, a withdrawal,
    and a few market minutes for maker fills and withdrawal statuses."""
    ticker = await coinbtr.market.ticker("btc-mxn")
    ids = [
        await coinbtr.trading.place("btc-mxn", Side.BUY, D("0.002"), (ticker.bid * D("0.999")).quantize(D("0.01"))),
        await coinbtr.trading.place("btc-mxn", Side.SELL, D("0.001"), (ticker.bid * D("0.99")).quantize(D("0.01"))),
        await coinbtr.trading.place("btc-mxn", Side.BUY, D("0.001"), (ticker.bid * D("0.9")).quantize(D("0.01"))),
    ]
    await coinbtr.trading.cancel(ids[2])
    await coinbtr.wallet.withdraw("btc", BTC_ADDR, D("0.01"))
    for _ in range(4):
        clock.advance(60)
        await coinbtr.wallet.balances()  # any request brings fills and withdrawals up to the clock
    return ids


def rows(clock: ManualClock, n: int, start: int) -> list[AtlasRow]:
    return [AtlasRow(clock.now() + timedelta(minutes=start + i), {"price": 100.25 + i, "n": start + i})
            for i in range(n)]


async def test_a_new_sandbox_on_the_same_state_dir_continues_the_exchange_and_atlas(
        clock: ManualClock, tmp_path: Path) -> None:
    async with Sandbox(clock, state_dir=tmp_path) as sb, clients(sb, clock) as (coinbtr, atlas):
        old_ids = await trade_a_little(coinbtr, clock, "first")
        ds = await atlas.ensure_dataset("prices", "btc", {"source": "test"}, columns={"price": "float"},
                                        tags=["public"])
        assert await atlas.bulk_insert(ds.id, rows(clock, 5, 0)) == 5
        exchange_before, atlas_before = await state(sb, "coinbtr"), await state(sb, "atlas")
        open_before = await coinbtr.trading.open_orders()
        fills_before = await coinbtr.trading.transactions()
        balances_before = await coinbtr.wallet.balances()
        withdrawals_before = await coinbtr.wallet.withdrawals()
    assert fills_before and open_before and withdrawals_before  # something of each kind to keep

    async with Sandbox(clock, state_dir=tmp_path) as sb, clients(sb, clock) as (coinbtr, atlas):
        assert await state(sb, "coinbtr") == exchange_before
        assert await state(sb, "atlas") == atlas_before
        assert await coinbtr.trading.open_orders() == open_before
        assert await coinbtr.trading.transactions() == fills_before
        assert await coinbtr.wallet.balances() == balances_before
        assert await coinbtr.wallet.withdrawals() == withdrawals_before
        assert [r async for r in atlas.rows(ds.id)] == [r async for r in atlas.rows(ds.id)]
        assert [r.values["n"] for r in [r async for r in atlas.rows(ds.id)]] == [0, 1, 2, 3, 4]
        assert (await atlas.find_dataset("prices")) == ds

        new_ids = await trade_a_little(coinbtr, clock, "second")
        assert min(new_ids) > max(o["id"] for o in exchange_before["orders"]) == max(old_ids)
        after = await state(sb, "coinbtr")
        old_fills = {f["id"] for o in exchange_before["orders"] for f in o["fills"]}
        new_fills = {f["id"] for o in after["orders"] for f in o["fills"]} - old_fills
        assert new_fills and min(new_fills) > max(old_fills)
        assert after["withdrawals"][-1]["id"] > exchange_before["withdrawals"][-1]["id"]
        again = await atlas.ensure_dataset("volumes", "btc", {"source": "test"})
        assert again.id > ds.id


async def test_a_restart_is_invisible_the_world_goes_on_exactly_as_without_one(
        clock: ManualClock, tmp_path: Path) -> None:
    """Everything a fill or a withdrawal depends on is kept: fill progress of resting orders, liquidity
    taken this minute, the seeded withdrawal-failure draws. A restarted sandbox ends where one that never
    stopped ends."""
    start = clock.now() + timedelta(seconds=17)  # not on a minute: fills in partial minutes matter

    async def session(sb: Sandbox, c: ManualClock, tag: str) -> None:
        sb.coinbtr.desk.failure_rate = 0.5  # so the seeded draws decide something
        async with clients(sb, c) as (coinbtr, _atlas):
            await trade_a_little(coinbtr, c, tag)
            for _ in range(4):
                await coinbtr.wallet.withdraw("btc", BTC_ADDR, D("0.001"))
            # End on a sell that takes liquidity: the next session starts in this same minute.
            bid = (await coinbtr.market.order_book("btc-mxn")).bids[0]
            await coinbtr.trading.place("btc-mxn", Side.SELL, bid.amount, bid.price)

    async def finish(sb: Sandbox, c: ManualClock) -> dict[str, Any]:
        c.advance(600)
        return await state(sb, "coinbtr")

    c1 = ManualClock(start)
    async with Sandbox(c1, state_dir=tmp_path / "restarted") as sb:
        await session(sb, c1, "a")
    async with Sandbox(c1, state_dir=tmp_path / "restarted") as sb:
        await session(sb, c1, "b")
        restarted = await finish(sb, c1)

    c2 = ManualClock(start)
    async with Sandbox(c2) as sb:
        await session(sb, c2, "a")
        await session(sb, c2, "b")
        uninterrupted = await finish(sb, c2)
    assert restarted == uninterrupted
    assert {w["status"] for w in restarted["withdrawals"]} == {"confirmed", "failed"}


async def test_control_routes_inject_deposits_fail_withdrawals_and_are_never_counted(
        clock: ManualClock, tmp_path: Path) -> None:
    async with Sandbox(clock, state_dir=tmp_path) as sb, aiohttp.ClientSession() as http, \
            clients(sb, clock) as (coinbtr, _atlas):
        url = sb.urls["coinbtr"]
        before = {b.coin: b for b in await coinbtr.wallet.balances()}
        async with http.post(f"{url}/_sandbox/deposits", json={"coin": "btc", "amount": "0.12345678"}) as resp:
            assert resp.status == 201
            pending = await resp.json()
        assert (pending["user"], pending["amount"], pending["confirmations"], pending["confirmed"]) == (
            cred.COINBTR_USER, "0.12345678", 0, False)
        async with http.post(f"{url}/_sandbox/deposits",
                             json={"coin": "eth", "amount": "2", "status": "confirmed"}) as resp:
            assert resp.status == 201 and (await resp.json())["confirmed"] is True
        bal = {b.coin: b for b in await coinbtr.wallet.balances()}
        assert bal["btc"].pending == D("0.12345678") and bal["btc"].available == before["btc"].available
        assert bal["eth"].available == before["eth"].available + 2
        clock.advance(3 * 60)  # btc needs 3 confirmations at 1 per minute
        deposits = await coinbtr.wallet.deposits()
        assert deposits[-1].confirmed and deposits[-1].amount == D("0.12345678")
        bal = {b.coin: b for b in await coinbtr.wallet.balances()}
        assert bal["btc"].available == before["btc"].available + D("0.12345678") and bal["btc"].pending == 0

        receipt = await coinbtr.wallet.withdraw("btc", BTC_ADDR, D("0.01"))
        async with http.post(f"{url}/_sandbox/withdrawals/{receipt.id}/fail") as resp:
            assert resp.status == 200
            failed = await resp.json()
        assert failed["status"] == "failed" and failed["amount"] == "0.01"
        assert (await coinbtr.wallet.withdrawals())[0].status.value == "failed"
        assert {b.coin: b for b in await coinbtr.wallet.balances()}["btc"].available == bal["btc"].available
        async with http.post(f"{url}/_sandbox/withdrawals/{receipt.id}/fail") as resp:
            assert resp.status == 409
        async with http.post(f"{url}/_sandbox/withdrawals/999999/fail") as resp:
            assert resp.status == 404
        async with http.post(f"{url}/_sandbox/deposits", json={"coin": "doge", "amount": "1"}) as resp:
            assert resp.status == 400
        async with http.post(f"{url}/_sandbox/deposits", json={"coin": "btc", "amount": "-1"}) as resp:
            assert resp.status == 400

        counted = sb.faults["coinbtr"].snapshot()["requests_total"]
        sb.faults["coinbtr"].configure(p_5xx=1.0)  # control routes are never faulted either
        dump = await state(sb, "coinbtr")
        assert sb.faults["coinbtr"].snapshot()["requests_total"] == counted
        assert [d["amount"] for d in dump["deposits"]] == ["0.12345678", "2"]
        assert dump["withdrawals"][-1]["status"] == "failed"
        assert dump["balances"][cred.COINBTR_USER]["btc"]["available"] == str(bal["btc"].available)

    async with Sandbox(clock, state_dir=tmp_path) as sb:  # what the control routes did was kept too
        dump = await state(sb, "coinbtr")
        assert [d["confirmed"] for d in dump["deposits"]] == [True, True]
        assert dump["withdrawals"][-1]["status"] == "failed"


async def test_every_service_publishes_the_clock_and_the_index_describes_the_sandbox(clock: ManualClock) -> None:
    async with Sandbox(clock, seed=9) as sb, aiohttp.ClientSession() as http:
        for name, url in sb.urls.items():
            async with http.get(f"{url}/_sandbox/clock") as resp:
                body = await resp.json()
            assert body["sim"] == clock.now().isoformat() and body["speed"] == 1.0 and body["wall"], name
            assert sb.faults[name].snapshot()["requests_total"] == 0
        async with http.get(f"{sb.index_url}/_sandbox/info") as resp:
            info = await resp.json()
        assert info["urls"] == sb.urls and info["seed"] == 9 and info["persistent"] is False
        assert info["clock"]["sim"] == clock.now().isoformat()


async def test_atlas_state_dumps_datasets_with_rows_or_one_dataset(clock: ManualClock) -> None:
    async with Sandbox(clock) as sb, clients(sb, clock) as (_coinbtr, atlas), aiohttp.ClientSession() as http:
        a = await atlas.ensure_dataset("a", metadata={"source": "t"}, columns={"price": "float"}, tags=["test"])
        b = await atlas.ensure_dataset("b", metadata={"source": "t"})
        await atlas.bulk_insert(a.id, rows(clock, 3, 0))
        dump = await state(sb, "atlas")
        got = {d["name"]: d for d in dump["datasets"]}
        assert got["a"]["row_count"] == 3 and [r["values"]["n"] for r in got["a"]["rows"]] == [0, 1, 2]
        assert got["a"]["owner"] == cred.ATLAS_USER and got["a"]["tags"] == ["test"]
        assert [c["name"] for c in got["a"]["columns"]] == ["price"] and got["b"]["rows"] == []
        async with http.get(f"{sb.urls['atlas']}/_sandbox/state", params={"dataset": str(b.id)}) as resp:
            assert [d["id"] for d in (await resp.json())["datasets"]] == [b.id]
        async with http.get(f"{sb.urls['atlas']}/_sandbox/state", params={"rows": "0"}) as resp:
            assert all("rows" not in d and "row_count" in d for d in (await resp.json())["datasets"])
        async with http.get(f"{sb.urls['atlas']}/_sandbox/state", params={"dataset": "424242"}) as resp:
            assert resp.status == 404


async def test_two_sandboxes_never_share_a_state_dir(clock: ManualClock, tmp_path: Path) -> None:
    async with Sandbox(clock, state_dir=tmp_path):
        with pytest.raises(ConfigError, match="in use by another tradebot"):
            Sandbox(clock, state_dir=tmp_path)
    async with Sandbox(clock, state_dir=tmp_path) as sb:  # free again once the first one closed
        assert sb.running("coinbtr")


async def test_a_sandbox_that_cannot_listen_lets_go_of_its_state_dir(clock: ManualClock, tmp_path: Path) -> None:
    async with Sandbox(clock) as busy:
        port = int(busy.urls["atmos"].rsplit(":", 1)[1])  # port_base + 1 is taken
        with pytest.raises(OSError):
            async with Sandbox(clock, port_base=port - 1, state_dir=tmp_path):
                pass
    async with Sandbox(clock, state_dir=tmp_path) as sb:
        assert sb.running("coinbtr")
