"""`check_live` against the CoinBTR simulator over loopback: which tokens may start live mode, and why not."""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bot.clients.coinbtr import CoinbtrClient
from bot.clock import ManualClock
from bot.errors import BotError, ConfigError
from bot.execution.startup import check_live
from bot.sandbox.coinbtr import CoinbtrSim, TokenSpec, create_app, default_tokens
from bot.sandbox.credentials import COINBTR_BALANCES, COINBTR_READONLY_TOKEN, COINBTR_TOKEN
from bot.sandbox.faults import Faults
from bot.sandbox.market import SimMarket
from bot.settings import Settings

TRADE_ONLY = "test-trade-only"  # may trade, may not withdraw

Check = Callable[..., Awaitable[str | None]]


def live_settings(token: str, url: str, *, sandbox: bool = True, withdrawals: bool = False) -> Settings:
    data: dict[str, Any] = {
        "mode": "live", "coinbtr": {"token": token, "base_url": url},
        "sandbox": {"enabled": sandbox}, "wallet": {"withdrawals_enabled": withdrawals},
    }
    return Settings(**data)


@pytest.fixture
async def sim_url(clock: ManualClock) -> AsyncIterator[str]:
    tokens = {**default_tokens(), TRADE_ONLY: TokenSpec("trader", trade=True, withdraw=False, deposit=True)}
    sim = CoinbtrSim(SimMarket(clock, seed=42, history_days=1), clock, tokens, COINBTR_BALANCES, seed=42)
    server = TestServer(create_app(sim, Faults("coinbtr", seed=0, clock=clock)), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def check(clock: ManualClock) -> AsyncIterator[Check]:
    opened: list[CoinbtrClient] = []

    async def run(settings: Settings) -> str | None:
        client = CoinbtrClient.create(settings.coinbtr, clock, rng=random.Random(1))
        opened.append(client)
        return await check_live(settings, client)

    yield run
    for c in opened:
        await c.close()


async def test_trading_token_passes_and_says_the_exchange_is_simulated(sim_url: str, check: Check) -> None:
    note = await check(live_settings(COINBTR_TOKEN, sim_url, withdrawals=True))
    assert note is not None and "SIMULATED" in note and "no real order" in note and "\n" not in note


async def test_trading_token_against_a_real_exchange_gives_no_note(sim_url: str, check: Check) -> None:
    # The same simulator, but configured as if it were the real exchange (sandbox off): no note.
    assert await check(live_settings(COINBTR_TOKEN, sim_url, sandbox=False)) is None


async def test_read_only_token_is_refused_naming_coinbtr_token(sim_url: str, check: Check) -> None:
    with pytest.raises(ConfigError) as info:
        await check(live_settings(COINBTR_READONLY_TOKEN, sim_url))
    err = info.value
    assert "lacks the trade permission" in err.message
    assert [p for p, _ in err.problems] == ["coinbtr.token"]
    assert "lacks the trade permission" in err.problems[0][1]
    assert COINBTR_READONLY_TOKEN not in str(err) + repr(err.problems)


async def test_withdrawals_need_the_withdraw_permission(sim_url: str, check: Check) -> None:
    assert await check(live_settings(TRADE_ONLY, sim_url)) is not None  # no withdrawals asked: fine
    with pytest.raises(ConfigError) as info:
        await check(live_settings(TRADE_ONLY, sim_url, withdrawals=True))
    assert info.value.problems == [("coinbtr.token", "the token lacks the withdraw permission, which "
                                    "wallet.withdrawals_enabled needs (or set wallet.withdrawals_enabled = false)")]
    with pytest.raises(ConfigError) as both:
        await check(live_settings(COINBTR_READONLY_TOKEN, sim_url, withdrawals=True))
    assert len(both.value.problems) == 2
    assert "trade permission and lacks the withdraw permission" in both.value.message


async def test_unknown_token_is_a_config_error_on_coinbtr_token(sim_url: str, check: Check) -> None:
    with pytest.raises(ConfigError) as info:
        await check(live_settings("not-a-token", sim_url))
    assert info.value.problems[0][0] == "coinbtr.token" and "(401)" in info.value.problems[0][1]
    assert "not-a-token" not in str(info.value) + repr(info.value.problems)


async def test_unreachable_coinbtr_is_an_error_naming_coinbtr(check: Check) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BotError) as info:
        await check(live_settings(COINBTR_TOKEN, f"http://127.0.0.1:{port}", sandbox=False))
    assert not isinstance(info.value, ConfigError)
    assert info.value.service == "coinbtr" and str(info.value).startswith("coinbtr: ")
    assert "permissions" in str(info.value) and "coinbtr.base_url" in str(info.value)
