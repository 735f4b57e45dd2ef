"""The whole Sandbox on loopback: every service answers, settings drive credentials, services stop/start."""

from __future__ import annotations

import socket
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from bot.clock import ManualClock
from bot.sandbox import credentials as cred
from bot.sandbox.runner import SERVICES, Sandbox
from bot.settings import AtmosSettings, PaperSettings, Settings


async def _get(session: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with session.get(url, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_every_service_answers_once_on_ephemeral_ports(clock: ManualClock) -> None:
    clock.advance(30)
    async with Sandbox(clock) as sb, aiohttp.ClientSession() as http:
        assert set(sb.urls) == set(SERVICES)
        assert len({u.rsplit(":", 1)[1] for u in sb.urls.values()}) == 5
        u = sb.urls
        status, body = await _get(http, f"{u['atmos']}/v1/binance/BTCUSDT/ohlcv/latest",
                                  headers={"x-atmos-key": cred.ATMOS_KEY})
        assert status == 200 and Decimal(body["result"]["close"]) > 0
        now = int(clock.now().timestamp())
        status, body = await _get(http, f"{u['sfox']}/candlesticks",
                                  params={"pair": "btcusd", "startTime": str(now - 600), "endTime": str(now)})
        assert status == 200 and len(body) >= 5
        status, body = await _get(http, f"{u['coinbtr']}/api/v1/wallet/listbalances",
                                  headers={"Authorization": f"Token {cred.COINBTR_TOKEN}"})
        assert status == 200 and body["success"] is True
        status, body = await _get(http, f"{u['atlas']}/api/datasets/", headers={"X-API-Key": cred.ATLAS_KEY})
        assert status == 200
        status, body = await _get(http, f"{u['atmotube']}/api/v1/data", params={
            "api_key": cred.ATMOTUBE_KEY, "mac": cred.ATMOTUBE_DEVICES[0], "date": "2026-11-19"})
        assert status == 200 and body["data"]["total"] > 0
        for name in SERVICES:
            status, counters = await _get(http, f"{u[name]}/_sandbox/counters")
            assert status == 200 and counters["service"] == name and counters["requests_total"] == 1
        assert sb.market.price("btc-mxn") > 0


async def test_settings_supply_keys_limits_and_balances(clock: ManualClock) -> None:
    settings = Settings(
        atmos=AtmosSettings(api_key=SecretStr("my-own-key"), requests_per_minute=2),
        paper=PaperSettings(balances={"btc": Decimal("3"), "mxn": Decimal("5")}),
    )
    async with Sandbox(clock, settings=settings) as sb, aiohttp.ClientSession() as http:
        url = f"{sb.urls['atmos']}/v1/kraken/pairs"
        statuses = [(await _get(http, url, headers={"x-atmos-key": "my-own-key"}))[0] for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert (await _get(http, url, headers={"x-atmos-key": cred.ATMOS_KEY}))[0] == 200
        assert sb.counters()["atmos"]["sent_429"] == 1
        sb.reset_faults()  # also clears the rate-limit windows
        assert (await _get(http, url, headers={"x-atmos-key": "my-own-key"}))[0] == 200
        status, body = await _get(http, f"{sb.urls['coinbtr']}/api/v1/wallet/listbalances",
                                  headers={"Authorization": f"Token {cred.COINBTR_TOKEN}"})
        assert status == 200
        balances = {str(b["coin"]).lower(): Decimal(str(b["balance"])) for b in body["data"]}
        assert balances["btc"] == Decimal("3") and balances["mxn"] == Decimal("5")


async def test_a_stopped_service_refuses_connections_then_returns_with_state(clock: ManualClock) -> None:
    async with Sandbox(clock) as sb, aiohttp.ClientSession() as http:
        url = sb.urls["atlas"]
        headers = {"X-API-Key": cred.ATLAS_KEY}
        async with http.post(f"{url}/api/datasets/", json={"name": "kept", "description": "", "metadata": {}},
                             headers=headers) as resp:
            assert resp.status == 201
        await sb.stop_service("atlas")
        assert not sb.running("atlas")
        with pytest.raises(aiohttp.ClientConnectorError):
            await _get(http, f"{url}/api/datasets/", headers=headers)
        await sb.start_service("atlas")
        assert sb.urls["atlas"] == url
        status, body = await _get(http, f"{url}/api/datasets/", headers=headers)
        assert status == 200 and "kept" in str(body)


def _free_base() -> int:
    """A port base whose next five ports are free right now."""
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        socks = []
        try:
            for i in range(1, 6):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.skip("no five consecutive free ports")


async def test_port_base_gives_consecutive_ports_in_service_order(clock: ManualClock) -> None:
    base = _free_base()
    async with Sandbox(clock, port_base=base) as sb:
        assert [sb.urls[name] for name in SERVICES] == [f"http://127.0.0.1:{base + i}" for i in range(1, 6)]
