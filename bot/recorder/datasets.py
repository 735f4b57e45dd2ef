"""Which Atlas datasets the bot records into: one per (kind, subject), named and described from the settings.

A dataset key is `kind/subject` (`candles/atmos:binance:BTCUSDT`, `evaluations/btc-rsi`, `sensor/AA:BB:..`).
Its Atlas name is `<dataset_prefix>-<bot_name>-<kind>-<subject slug>`, so two bots with different names on
one Atlas user never share a dataset; the metadata says what it holds (`source`, `kind`, the subject,
`frequency`, `bot`, `instance` where there is one, `schema`), so it can be found again by metadata search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bot.settings import AtmosFeed, Settings, SfoxFeed

SCHEMA_VERSION = 1

CANDLES = "candles"
TICKS = "ticks"
EVALUATIONS = "evaluations"
SENSOR = "sensor"
ORDERS = "orders"
FILLS = "fills"
BALANCES = "balances"
TRANSFERS = "transfers"
KINDS = (CANDLES, TICKS, EVALUATIONS, SENSOR, ORDERS, FILLS, BALANCES, TRANSFERS)
# Rows of these kinds can arrive late (Atmotube uploads hours later): keyed by their own time, not appended
# in time order.
UNORDERED = (f"{SENSOR}/",)

OHLCV_COLUMNS = {"open": "float", "high": "float", "low": "float", "close": "float", "volume": "float"}


def key(kind: str, subject: str) -> str:
    return f"{kind}/{subject}"


def account(mode: str) -> str:
    """The subject of the wallet datasets: the exchange account live, the paper account on paper (never mixed)."""
    return "coinbtr" if mode == "live" else "coinbtr-paper"


def slug(text: str) -> str:
    """A subject as it appears in a dataset name: lower case, `_` and `.` kept (instance and bot names may
    use them, so `a_b` and `a-b` stay apart), every other run of characters (`:` of stream keys) as `-`.
    Instance names that differ only in case are refused when the configuration loads."""
    return re.sub(r"[^a-z0-9_.]+", "-", text.lower()).strip("-")


@dataclass(frozen=True)
class DatasetSpec:
    """What one dataset is: its key, Atlas name, description, metadata and declared numeric columns."""

    key: str
    kind: str
    name: str
    description: str
    metadata: dict[str, Any]
    columns: dict[str, str] = field(default_factory=dict)

    def named(self, generation: int) -> str:
        """The name of the `generation`-th dataset for this key (a deleted one is re-created suffixed)."""
        return self.name if generation <= 1 else f"{self.name}-r{generation}"


def _feed_meta(feed: AtmosFeed | SfoxFeed) -> dict[str, Any]:
    if isinstance(feed, AtmosFeed):
        return {"source": "atmos", "exchange": feed.exchange, "symbol": feed.symbol.upper(),
                "frequency": f"{feed.period}s"}
    return {"source": "sfox", "pair": feed.pair.lower(), "frequency": f"{feed.period}s"}


class Datasets:
    """Every dataset the configuration implies, by key."""

    def __init__(self, settings: Settings) -> None:
        self.prefix = settings.atlas.dataset_prefix
        self.bot = settings.bot_name
        self.specs: dict[str, DatasetSpec] = {}
        for cfg in settings.strategies:
            if not cfg.enabled:
                continue
            feed = cfg.feed.key
            meta = _feed_meta(cfg.feed)
            self._add(CANDLES, feed, meta, OHLCV_COLUMNS, f"closed candles of {feed}")
            self._add(TICKS, feed, meta, {**OHLCV_COLUMNS, "partial": "int"},
                      f"every poll of {feed}: its newest candle as the bot saw it, stamped with the time seen")
            self._add(EVALUATIONS, cfg.name, {"source": "tradebot", "instance": cfg.name,
                                               "strategy": cfg.strategy, "market": cfg.market,
                                               "feed": feed, "frequency": meta["frequency"]},
                      {"close": "float", "actionable": "int", "handoff": "int"},
                      f"every evaluation of strategy instance {cfg.name} ({cfg.strategy} on {feed})")
            self._add(ORDERS, cfg.market, {"source": "coinbtr", "market": cfg.market, "frequency": "event"},
                      {"price": "float", "amount": "float", "filled": "float"},
                      f"every state change of the bot's orders on {cfg.market}")
            self._add(FILLS, cfg.market, {"source": "coinbtr", "market": cfg.market, "frequency": "event"},
                      {"price": "float", "amount": "float", "fee": "float"}, f"the bot's fills on {cfg.market}")
        if settings.atmotube.enabled:
            for mac in settings.atmotube.devices:
                self._add(SENSOR, mac.upper(), {"source": "atmotube", "device": mac.upper(), "frequency": "60s"},
                          {}, f"Atmotube readings of device {mac.upper()}")
        acct = account(settings.mode)
        what = "CoinBTR account" if settings.mode == "live" else "paper account"
        self._add(BALANCES, acct, {"source": "coinbtr", "account": acct, "frequency": "event"}, {},
                  f"balances of the {what}: a column per coin and field at each change, and unexplained changes")
        if settings.mode == "live":
            self._add(TRANSFERS, acct, {"source": "coinbtr", "account": acct, "frequency": "event"},
                      {"amount": "float"}, "deposits, withdrawals and sweeps of the CoinBTR account")

    def _add(self, kind: str, subject: str, meta: dict[str, Any], columns: dict[str, str], desc: str) -> None:
        k = key(kind, subject)
        if k in self.specs:
            return
        name = f"{self.prefix}-{slug(self.bot)}-{kind}-{slug(subject)}"
        metadata = {**meta, "kind": kind, "bot": self.bot, "schema": SCHEMA_VERSION, "recorder_key": k}
        self.specs[k] = DatasetSpec(k, kind, name, desc, metadata, dict(columns))

    def get(self, dataset_key: str) -> DatasetSpec:
        spec = self.specs.get(dataset_key)
        if spec is None:  # a dataset of a subject no longer configured: still drained, described minimally
            kind, _, subject = dataset_key.partition("/")
            self._add(kind, subject, {"source": "tradebot"}, {}, f"{kind} of {subject}")
            spec = self.specs[dataset_key]
        return spec

    def matching(self, selector: str) -> list[DatasetSpec]:
        """Specs whose key is `selector` or whose kind is `selector`."""
        return [s for k, s in sorted(self.specs.items()) if selector in (k, s.kind)]
