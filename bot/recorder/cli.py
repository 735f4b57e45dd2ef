"""`tradebot atlas list | export | recreate`: see what was recorded without writing code.

The command talks to the Atlas of the configuration: the real one, an external sandbox (`sandbox.url`),
or the in-process demo's simulated Atlas: started from `state_dir` when no daemon runs, or the running
daemon's (its URLs are in `state_dir/sandbox-urls.json` while it runs).
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

from bot.clients.atlas import AtlasClient
from bot.errors import ConfigError
from bot.recorder.datasets import Datasets
from bot.recorder.outbox import Outbox
from bot.settings import Settings
from bot.store import Store

URLS_FILE = "sandbox-urls.json"


def write_urls(state_dir: Path, urls: dict[str, str]) -> None:
    """Called by the daemon while its in-process sandbox serves: lets `tradebot atlas` reach it."""
    (state_dir / URLS_FILE).write_text(json.dumps(urls))


def remove_urls(state_dir: Path) -> None:
    (state_dir / URLS_FILE).unlink(missing_ok=True)


@asynccontextmanager
async def atlas_client(settings: Settings) -> AsyncIterator[AtlasClient]:
    """An Atlas client for the configuration (see the module docstring)."""
    link = None
    base_url: str | None = None
    clock: Any = None
    if settings.sandbox.enabled:
        from bot.sandbox.embedded import open_sandbox

        try:
            link = await open_sandbox(settings, settings.state_dir)
            base_url, clock = link.urls["atlas"], link.clock
        except ConfigError as err:
            urls_file = settings.state_dir / URLS_FILE
            if "in use" not in err.message or not urls_file.exists():
                raise
            base_url = json.loads(urls_file.read_text())["atlas"]  # the running daemon's sandbox
    from bot.clock import WallClock

    client = AtlasClient.create(settings.atlas, clock or WallClock(), base_url=base_url)
    try:
        yield client
    finally:
        await client.close()
        if link is not None:
            await link.close()


def _store(settings: Settings) -> Store:
    return Store.open(settings.state_dir)


async def list_datasets(settings: Settings, out: TextIO = sys.stdout) -> int:
    """Every dataset of this bot: where it is in Atlas, its rows there, and what still waits locally."""
    specs = Datasets(settings)
    store = _store(settings)
    try:
        known = {r["dataset"]: dict(r) for r in store.query("SELECT * FROM recorder_datasets")}
        backlog = Outbox.backlog(store)
        quarantined = Outbox.quarantined(store)
    finally:
        store.close()
    keys = sorted(set(specs.specs) | set(known) | set(backlog))
    rows: list[tuple[str, ...]] = [("DATASET", "ATLAS NAME", "ID", "ROWS IN ATLAS", "WAITING", "QUARANTINED",
                                    "STATE")]
    async with atlas_client(settings) as client:
        for key in keys:
            spec = specs.get(key)
            state = known.get(key, {})
            name = state.get("name") or spec.name
            ds = await client.find_dataset(name)
            count = "-"
            if ds is not None:
                count = str(await _count(client, ds.id))
            rows.append((key, name, str(ds.id) if ds else "-", count, str(backlog.get(key, {}).get("rows", 0)),
                         str(quarantined.get(key, 0)), state.get("state", "new")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)
    return 0


async def _count(client: AtlasClient, dataset_id: int) -> int:
    n = 0
    async with aclosing(client.rows(dataset_id, page_size=1000)) as rows:
        async for _ in rows:
            n += 1
    return n


def _one(settings: Settings, target: str) -> str:
    specs = Datasets(settings)
    matches = [s.key for s in specs.matching(target)]
    if len(matches) != 1:
        choices = ", ".join(sorted(specs.specs))
        why = "no dataset" if not matches else f"{len(matches)} datasets"
        raise ConfigError(f"{why} match {target!r}", [("dataset", f"{target!r}: one of {choices}")])
    return matches[0]


async def export_csv(settings: Settings, target: str, path: Path) -> int:
    """Write one dataset to CSV (`-` for standard output) through Atlas's bulk download."""
    key = _one(settings, target)
    store = _store(settings)
    try:
        found = store.query("SELECT name FROM recorder_datasets WHERE dataset = ?", (key,))
    finally:
        store.close()
    name = found[0]["name"] if found else Datasets(settings).get(key).name
    async with atlas_client(settings) as client:
        ds = await client.find_dataset(name)
        if ds is None:
            raise ConfigError(f"{name} is not in Atlas (nothing recorded yet?)", [("dataset", key)])
        sink: Any = sys.stdout.buffer if str(path) == "-" else path.open("wb")
        try:
            async with aclosing(client.download_chunks(ds.id, "csv")) as chunks:
                async for chunk in chunks:
                    sink.write(chunk)
        finally:
            if sink is not sys.stdout.buffer:
                sink.close()
    if str(path) != "-":
        print(f"wrote {name} to {path}", file=sys.stderr)
    return 0


def recreate(settings: Settings, target: str) -> int:
    """Ask the recorder to re-create the datasets of `target` (a kind or a key) under a new name: the way
    out when a dataset was taken over by another user. The running daemon (or the next start) does it."""
    specs = Datasets(settings).matching(target)
    if not specs:
        raise ConfigError(f"no dataset matches {target!r}", [("dataset", target)])
    store = _store(settings)
    try:
        with store.transaction() as conn:
            for spec in specs:
                conn.execute(
                    "INSERT INTO recorder_datasets (dataset, name, state, updated_at) VALUES (?, ?, 'recreate', ?) "
                    "ON CONFLICT(dataset) DO UPDATE SET state = 'recreate', updated_at = excluded.updated_at",
                    (spec.key, spec.name, store.clock.now().isoformat()))
    finally:
        store.close()
    for spec in specs:
        print(f"{spec.key}: will be re-created under a new name by the recorder", file=sys.stderr)
    return 0
