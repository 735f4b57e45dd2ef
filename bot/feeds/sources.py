"""Candle sources: one instrument of one API, fetched through its client in `bot.clients`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bot.clients.atmos import AtmosClient
from bot.clients.sfox import SfoxClient
from bot.domain import Candle


class CandleSource(Protocol):
    """Fetches candles of one instrument from one API."""

    service: str
    period_s: int

    async def fetch(self, start: datetime, end: datetime) -> list[Candle]: ...


@dataclass
class AtmosSource:
    """Atmos 1-minute candles of one exchange's symbol."""

    client: AtmosClient
    exchange: str
    symbol: str
    period_s: int = 60
    service: str = "atmos"

    async def fetch(self, start: datetime, end: datetime) -> list[Candle]:
        # The history endpoint, not `latest`: only it returns the final version of the minute that just
        # closed (one request covers the closed candles and the new partial one).
        return await self.client.history(self.exchange, self.symbol, start, end)


@dataclass
class SfoxSource:
    """sFOX candlesticks of one pair at one period."""

    client: SfoxClient
    pair: str
    period_s: int = 60
    service: str = "sfox"

    async def fetch(self, start: datetime, end: datetime) -> list[Candle]:
        return await self.client.candles(self.pair, start, end, self.period_s)
