"""Candles from services: the daemon's Atlas recordings, and history downloaded from Atmos or sFOX.

Downloads go through our own clients, so their request budgets (Atmos 20/min, sFOX 60/min, the limiters
sized from the settings) hold; they are written to CSV chunk by chunk, so an interrupted download resumes
after the last row it wrote. With `[sandbox] enabled` the simulators are used (in-process, or the running
daemon's, as `tradebot atlas` does).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bot.backtest.data import Candles
from bot.backtest.progress import step
from bot.clock import Clock, WallClock
from bot.domain import Candle
from bot.errors import ConfigError
from bot.indicators import OHLCV
from bot.settings import AtmosFeed, Settings, SfoxFeed

URLS_FILE = "sandbox-urls.json"  # where a running daemon publishes its in-process simulators' URLs
# Candles asked for per chunk: one progress step and one append to the CSV (Atmos pages are 100 candles).
CHUNK_CANDLES = 1000


@dataclass
class Link:
    """The clock and base URLs to use (the simulators' when the sandbox is on)."""

    clock: Clock
    urls: dict[str, str]


@asynccontextmanager
async def service_link(settings: Settings) -> AsyncIterator[Link]:
    """The configured services, or the sandbox's: in-process, or the running daemon's when it holds the
    state directory."""
    if not settings.sandbox.enabled:
        yield Link(WallClock(), {})
        return
    from bot.sandbox.embedded import open_sandbox

    try:
        link = await open_sandbox(settings, settings.state_dir)
    except ConfigError as err:
        urls_file = settings.state_dir / URLS_FILE
        if "in use" not in err.message or not urls_file.exists():
            raise
        from bot.sandbox.embedded import make_clock

        yield Link(make_clock(settings, settings.state_dir), dict(json.loads(urls_file.read_text())))
        return
    try:
        yield Link(link.clock, dict(link.urls))
    finally:
        await link.close()


# ----------------------------------------------------------------------------------------------- Atlas


async def atlas_candles(settings: Settings, feed_key: str, show: bool = True) -> Candles:
    """The closed candles of one stream the daemon recorded in Atlas (`candles/<feed key>`)."""
    from bot.clients.atlas import AtlasClient
    from bot.recorder.datasets import CANDLES, Datasets, key
    from bot.store import Store

    dataset = key(CANDLES, feed_key)
    store = Store.open(settings.state_dir)
    try:
        found = store.query("SELECT name FROM recorder_datasets WHERE dataset = ?", (dataset,))
    finally:
        store.close()
    name = found[0]["name"] if found else Datasets(settings).get(dataset).name
    rows: dict[int, list[float]] = {}
    async with service_link(settings) as link:
        client = AtlasClient.create(settings.atlas, link.clock, base_url=link.urls.get("atlas"))
        try:
            ds = await client.find_dataset(name)
            if ds is None:
                raise ConfigError(f"{name} is not in Atlas (nothing recorded yet?)", [("--from", f"atlas: {dataset}")])
            with step(f"reading {name} from Atlas", enabled=show) as progress:
                async with aclosing(client.bulk_download(ds.id, "json")) as stream:
                    async for row in stream:
                        try:
                            rows[_ns(row.timestamp)] = [float(row.values[c]) for c in OHLCV]
                        except (KeyError, TypeError, ValueError):
                            continue  # not a candle row (should not happen): skipped
                        progress.advance()
        finally:
            await client.close()
    times = np.array(sorted(rows), dtype=np.int64)
    ohlcv = np.array([rows[int(t)] for t in times], dtype=np.float64).reshape(-1, 5).T.copy()
    return Candles(times, ohlcv, f"atlas:{name}")


def _ns(when: datetime) -> int:
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


# ------------------------------------------------------------------------------------------- downloads


@dataclass(frozen=True)
class Remote:
    """One remote history: Atmos `exchange`/`symbol` (1-minute) or sFOX `pair` at `period` seconds."""

    source: str
    exchange: str = "binance"
    symbol: str = ""
    pair: str = ""
    period: int = 60

    @classmethod
    def of_feed(cls, feed: AtmosFeed | SfoxFeed) -> Remote:
        if isinstance(feed, AtmosFeed):
            return cls("atmos", exchange=feed.exchange, symbol=feed.symbol.upper())
        return cls("sfox", pair=feed.pair.lower(), period=feed.period)

    @property
    def label(self) -> str:
        if self.source == "atmos":
            return f"atmos:{self.exchange}:{self.symbol}"
        return f"sfox:{self.pair}:{self.period}"


def _last_row_time(path: Path) -> datetime | None:
    """The time of the last row of a CSV this module wrote (None when it has no rows)."""
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - 4096))
        lines = [ln for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    if len(lines) < 1 or lines[-1].startswith("timestamp"):
        return None
    try:
        return datetime.fromisoformat(lines[-1].split(",", 1)[0].replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise ConfigError(f"cannot resume {path}: its last line is not a candle row",
                          [("--out", str(path))]) from None


def _prepare(out: Path, start: datetime, period: int) -> datetime:
    """Where the download into `out` starts: after its last row when it has rows (a new file gets the header)."""
    if out.exists() and out.stat().st_size > 0:
        last = _last_row_time(out)
        return start if last is None else max(start, last + timedelta(seconds=period))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("timestamp,open,high,low,close,volume\n")
    return start


def _row(c: Candle) -> str:
    return (f"{c.time.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')},{c.open},{c.high},{c.low},{c.close},"
            f"{c.volume}\n")


async def download(settings: Settings, remote: Remote, start: datetime | None, end: datetime | None, out: Path,
                   show: bool = True, on_chunk: Callable[[int], Any] | None = None) -> tuple[int, int]:
    """Download `remote`'s candles with `start <= time < end` into the CSV `out`, resuming after its last
    row when it exists. Defaults: `end` now (the service's clock), `start` a day before `end`. Returns
    (candles written now, candles in the file's range)."""
    from bot.clients.atmos import AtmosClient
    from bot.clients.sfox import SfoxClient

    written = 0
    async with service_link(settings) as link:
        now = link.clock.now()
        end_t = end or now.replace(second=0, microsecond=0)
        start_t = start or end_t - timedelta(days=1)
        if end_t <= start_t:
            raise ConfigError("nothing to download: --end is not after --start",
                              [("--end", f"{end_t.isoformat()} <= {start_t.isoformat()}")])
        resume_from = _prepare(out, start_t, remote.period)
        span = timedelta(seconds=remote.period * CHUNK_CANDLES)
        chunks = max(0, math.ceil((end_t - resume_from) / span))
        client: AtmosClient | SfoxClient
        if remote.source == "atmos":
            client = AtmosClient.create(settings.atmos, link.clock, base_url=link.urls.get("atmos"))
        else:
            client = SfoxClient.create(settings.sfox, link.clock, base_url=link.urls.get("sfox"))
        try:
            with step(f"downloading {remote.label}", total=chunks, enabled=show) as progress, out.open("a") as fh:
                lo = resume_from
                while lo < end_t:
                    hi = min(end_t, lo + span)
                    last_incl = hi - timedelta(seconds=1)  # the clients' ranges include both ends
                    if isinstance(client, AtmosClient):
                        got = await client.history(remote.exchange, remote.symbol, lo, last_incl)
                    else:
                        got = await client.candles(remote.pair, lo, last_incl, period=remote.period)
                    fh.write("".join(_row(c) for c in got if not c.partial and lo <= c.time < hi))
                    fh.flush()
                    written += sum(1 for c in got if not c.partial and lo <= c.time < hi)
                    if on_chunk is not None:
                        on_chunk(written)
                    progress.advance()
                    lo = hi
        finally:
            await client.close()
    return written, _count_rows(out)


def _count_rows(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh) - 1
