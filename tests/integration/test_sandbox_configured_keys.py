"""The sandbox accepts the configured keys as the same users as its own (a second key, not a second user)."""

from __future__ import annotations

from pydantic import SecretStr

from bot.clients.atlas import AtlasClient
from bot.clock import ManualClock
from bot.sandbox import credentials as cred
from bot.sandbox.runner import Sandbox
from bot.settings import AtlasSettings, Settings


async def test_configured_atlas_key_is_the_bot_user_beside_the_sandbox_key(clock: ManualClock) -> None:
    settings = Settings(atlas=AtlasSettings(api_key=SecretStr("my-own-atlas-key-1234")))
    async with Sandbox(clock, settings=settings) as sb:
        mine = AtlasClient.create(settings.atlas, clock, base_url=sb.urls["atlas"])
        theirs = AtlasClient.create(settings.atlas, clock, base_url=sb.urls["atlas"], api_key=cred.ATLAS_KEY)
        try:
            created = await mine.create_dataset("tradebot.candles", "x", {"source": "test"})
            found = await theirs.find_dataset("tradebot.candles")
        finally:
            await mine.close()
            await theirs.close()
    assert found is not None and found.id == created.id
