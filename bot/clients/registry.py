"""One client per service, built once in the composition root and shared by whoever needs it.

Sharing is what makes a service's request budget real: execution and the wallet watcher both use the one
CoinBTR client, so its limiter (60/min, with priorities: a cancel before a balance read) sees every request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.clients.atlas import AtlasClient
from bot.clients.atmos import AtmosClient
from bot.clients.atmotube import AtmotubeClient
from bot.clients.coinbtr import CoinbtrClient
from bot.clients.sfox import SfoxClient
from bot.clock import Clock
from bot.settings import Settings


@dataclass
class Clients:
    """The five service clients of one daemon."""

    atmos: AtmosClient
    sfox: SfoxClient
    coinbtr: CoinbtrClient
    atlas: AtlasClient
    atmotube: AtmotubeClient

    @classmethod
    def build(cls, settings: Settings, clock: Clock, urls: Mapping[str, str] | None = None) -> Clients:
        """Every client from the settings; `urls` (the simulators') override the configured base URLs."""
        u = dict(urls or {})
        return cls(
            atmos=AtmosClient.create(settings.atmos, clock, base_url=u.get("atmos")),
            sfox=SfoxClient.create(settings.sfox, clock, base_url=u.get("sfox")),
            coinbtr=CoinbtrClient.create(settings.coinbtr, clock, base_url=u.get("coinbtr")),
            atlas=AtlasClient.create(settings.atlas, clock, base_url=u.get("atlas")),
            atmotube=AtmotubeClient.create(settings.atmotube, clock, base_url=u.get("atmotube")),
        )

    def all(self) -> dict[str, Any]:
        return {"atmos": self.atmos, "sfox": self.sfox, "coinbtr": self.coinbtr, "atlas": self.atlas,
                "atmotube": self.atmotube}

    def snapshots(self) -> dict[str, dict[str, Any]]:
        """HTTP counters per service (only services that were used)."""
        snaps = {name: c.snapshot() for name, c in self.all().items()}
        return {name: snap for name, snap in snaps.items() if snap.get("requests")}

    async def close(self) -> None:
        for client in self.all().values():
            await client.close()
