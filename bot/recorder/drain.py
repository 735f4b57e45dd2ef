"""The drain: outbox → Atlas, in batches, in order per dataset, exactly once.

Exactly once, because Atlas inserts are not idempotent: before a batch goes out its seq/time range is
written down (`recorder.inflight.<dataset>`); a batch whose answer was lost (or a process killed while it
was in flight) is looked up in Atlas by its timestamps (unique within a dataset, see `outbox`) before
anything is sent again, and `bulk_insert` is atomic, so one present row means the whole batch is stored.
Rows leave the outbox only after Atlas confirmed them.

A dataset gone wrong never costs rows silently: deleted (404) → re-created under a suffixed name with
`replaces` in its metadata and an alarm naming what was lost with the old one; not ours any more (403) →
rows held, alarm, access re-checked now and then, or `tradebot atlas recreate`. A batch Atlas rejects as
invalid (400) is split until the bad rows are found; those are quarantined with the reason, the rest go on.

All database work runs in a thread on the drain's own connection, so a 10,000-row batch never holds the
event loop or the daemon's connection.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from bot.clients.atlas import AtlasClient, BulkInsertUnknown
from bot.clock import Clock
from bot.errors import AuthError, BotError, NotFound, Rejected, TemporaryError
from bot.events import AlarmCleared, AlarmRaised, EventBus
from bot.logs import get_logger
from bot.metrics import NS, Metrics
from bot.recorder.datasets import Datasets, DatasetSpec
from bot.recorder.outbox import Outbox, OutRow, ts_text
from bot.settings import Settings
from bot.store import Store

log = get_logger("bot.recorder")

class Sent(enum.Enum):
    """What became of one `bulk_insert` of a batch."""

    OK = "ok"  # stored (or quarantined)
    UNKNOWN = "unknown"  # the answer was lost: settled by lookup before anything else is sent
    REPLACED = "replaced"  # the dataset was deleted and re-created: send again (to the new id)
    GONE = "gone"  # the dataset is not ours any more: hold its rows


DELETE_STEP = 1000  # rows forgotten per store transaction after Atlas confirmed them
UNKNOWN_GRACE_S = 30.0  # wall seconds before a lost batch found absent is believed absent (Atlas may be slow)
FORBIDDEN_RECHECK_S = 300.0  # wall seconds between access checks of a dataset we may not write
MAX_BACKOFF_S = 60.0


class Drain:
    """Sends the outbox to Atlas; one supervised task (`run`), plus `flush` at stop."""

    def __init__(self, settings: Settings, clock: Clock, state_dir: Path, client: AtlasClient,
                 specs: Datasets, events: EventBus, metrics: Metrics, *,
                 unknown_grace_s: float = UNKNOWN_GRACE_S) -> None:
        self.unknown_grace_s = unknown_grace_s
        self.cfg = settings.recorder
        self.tags = list(settings.atlas.share_tags)
        self.clock = clock
        self.db = Store.open(state_dir, clock=clock)  # its own connection: reads and deletes off the loop
        self.client = client
        self.specs = specs
        self.events = events
        self._ids: dict[str, int] = {}  # dataset key → Atlas id, verified this run
        self._columns: dict[str, set[str]] = {}
        self._forbidden_at: dict[str, float] = {}
        self._failures = 0
        self.backlog: dict[str, dict[str, Any]] = {}
        self._refreshed = float("-inf")
        self.quarantined: dict[str, int] = {}
        self.stats: dict[str, int] = {"batches": 0, "rows": 0, "retries": 0, "ambiguous_resolved": 0,
                                      "ambiguous_stored": 0, "quarantined": 0, "recreated": 0}
        self.sent: dict[str, int] = {}
        self.alarms: set[str] = set()
        r = metrics.registry
        self.m_rows = Counter(f"{NS}_recorder_rows_sent", "Rows confirmed by Atlas", ["dataset"], registry=r)
        self.m_batches = Counter(f"{NS}_recorder_batches", "bulk_insert batches by result", ["result"], registry=r)
        self.m_quarantined = Counter(f"{NS}_recorder_rows_quarantined", "Rows Atlas rejected as invalid",
                                     ["dataset"], registry=r)
        metrics.add_gauges("recorder_backlog_rows", "Rows waiting in the outbox", "dataset",
                           lambda: {k: float(v["rows"]) for k, v in self.backlog.items()})
        metrics.add_gauge("recorder_backlog_oldest_seconds", "Age of the oldest row waiting (clock seconds)",
                          self.oldest_age_s)

    # -- the loop ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Drain forever: as fast as rows come while there is a backlog, else every flush interval."""
        while True:
            try:
                busy = await self.drain_once()
                self._failures = 0
            except BotError as err:
                # Atlas down or unreachable: the rows stay on disk; back off (wall time, the machine's pace).
                self._failures += 1
                self.stats["retries"] += 1
                delay = min(MAX_BACKOFF_S, self.cfg.flush_interval_seconds * 2 ** min(self._failures - 1, 6))
                log.warning("recorder.atlas_unavailable", kind=err.kind, error=str(err), retry_in_s=delay)
                await self._wait(delay)
                continue
            await self.check_backlog()
            if not busy:
                await asyncio.sleep(self.cfg.flush_interval_seconds)

    async def _wait(self, seconds: float) -> None:
        """Back off, keeping the backlog figures (status, metrics, the alarm) fresh meanwhile."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await self.check_backlog()
            await asyncio.sleep(min(left, self.cfg.flush_interval_seconds))

    async def flush(self, bound_s: float) -> None:
        """At stop: drain for at most `bound_s`; what is left waits on disk for the next start."""
        deadline = time.monotonic() + bound_s
        try:
            while time.monotonic() < deadline:
                if not await asyncio.wait_for(self.drain_once(), timeout=max(0.05, deadline - time.monotonic())):
                    break
        except (TimeoutError, BotError) as err:
            log.info("recorder.flush_cut", reason=type(err).__name__)
        await self._refresh(force=True)
        left = sum(v["rows"] for v in self.backlog.values())
        log.info("recorder.flushed", backlog=left)

    async def close(self) -> None:
        await asyncio.to_thread(self.db.close)

    async def drain_once(self) -> bool:
        """One batch per dataset with a backlog; True if anything was sent (more may be waiting).

        A problem of one dataset (deleted, taken over, a rejected lookup) is handled for that dataset and
        never stops the others; only Atlas being unreachable (temporary errors) ends the round."""
        pending = await asyncio.to_thread(Outbox.pending_datasets, self.db)
        busy = False
        for key in pending:
            try:
                busy |= await self._drain_dataset(key)
            except NotFound:
                await self._replace(key, self._ids.get(key), "deleted (404)")
                busy = True
            except AuthError as err:
                await self._auth_failed(key, err)
            except Rejected as err:  # a refused lookup or declaration: this dataset waits, the others go on
                self._raise(f"atlas:{key}:refused", f"Atlas refused a request for {key}: {err}")
                log.error("recorder.dataset_request_refused", dataset=key, error=str(err))
        return busy

    async def _drain_dataset(self, key: str) -> bool:
        state = await self._state(key)
        if state["state"] == "forbidden":
            self._raise(f"atlas:{key}:forbidden", f"may not write {state['name']}: rows held; fix access or "
                                                  f"`tradebot atlas recreate {key}`")
            if not await self._recheck_forbidden(key):
                return False
        atlas_id = await self._dataset_id(key, state)
        if atlas_id is None:
            return False
        if not await self._settle_inflight(key, atlas_id):
            return False
        batch = await asyncio.to_thread(Outbox.batch, self.db, key, self.cfg.batch_size)
        if not batch:
            return False
        return await self._send(key, atlas_id, batch) is not Sent.GONE

    # -- sending ----------------------------------------------------------------------------------------------

    async def _send(self, key: str, atlas_id: int, batch: Sequence[OutRow]) -> Sent:
        await self._declare_columns(key, atlas_id, batch)
        inflight = {"first": batch[0].seq, "last": batch[-1].seq, "ts": [ts_text(batch[0].ts), ts_text(batch[-1].ts)],
                    "sent_at": time.time()}
        await asyncio.to_thread(self.db.kv_set, f"recorder.inflight.{key}", inflight)
        rows = [(r.ts, r.raw) for r in batch]
        try:
            stored = await self.client.bulk_insert_encoded(atlas_id, rows)
        except BulkInsertUnknown:
            self.stats["retries"] += 1
            self.m_batches.labels("unknown").inc()
            log.warning("recorder.batch_unknown", dataset=key, rows=len(batch))
            await self._settle_inflight(key, atlas_id)
            return Sent.UNKNOWN
        except NotFound:
            await self._replace(key, atlas_id, "deleted (404)")
            return Sent.REPLACED
        except TemporaryError:
            await self._clear_inflight(key)  # provably never sent (connection refused, ...): nothing to settle
            raise
        except AuthError as err:
            await self._auth_failed(key, err)
            return Sent.GONE
        except Rejected as err:
            await self._clear_inflight(key)
            self.m_batches.labels("rejected").inc()
            return await self._split_rejected(key, atlas_id, batch, str(err))
        if stored != len(rows):  # not what was sent: find out what Atlas holds before anything else
            log.warning("recorder.insert_count_mismatch", dataset=key, sent=len(rows), stored=stored)
            await self._settle_inflight(key, atlas_id)
            return Sent.UNKNOWN
        await self._confirmed(key, batch[0].seq, batch[-1].seq, len(batch))
        return Sent.OK

    async def _confirmed(self, key: str, first: int, last: int, count: int) -> None:
        """Rows `first..last` of `key` are in Atlas: forget them, in steps of at most 1,000 rows so the
        store's single write lock is never held long (a crash between steps is settled by the in-flight
        mark, which goes with the last step)."""
        def commit() -> None:
            lo = first
            while True:
                hi = Outbox.first_seq_after(self.db, key, lo, DELETE_STEP)
                end = last if hi is None or hi > last else hi - 1
                # Not synced: rolled back by a power loss, the rows come back with their in-flight mark (which
                # was synced before the batch was sent), and the mark is settled against Atlas as after a crash.
                with self.db.transaction(durable=False) as conn:
                    Outbox.delete_range(self.db, key, lo, end)
                    if end == last:
                        conn.execute("UPDATE recorder_datasets SET sent_rows = sent_rows + ?, updated_at = ? "
                                     "WHERE dataset = ?", (count, ts_text(self.clock.now()), key))
                        self.db.kv_delete(f"recorder.inflight.{key}")
                if end == last or hi is None:
                    return
                lo = hi
        await asyncio.to_thread(commit)
        self.stats["batches"] += 1
        self.stats["rows"] += count
        self.sent[key] = self.sent.get(key, 0) + count
        self.m_rows.labels(key).inc(count)
        self.m_batches.labels("ok").inc()
        log.debug("recorder.sent", dataset=key, rows=count)

    async def _settle_inflight(self, key: str, atlas_id: int) -> bool:
        """Resolve a batch that may have been stored: look its timestamps up before sending anything again.
        "Not there" is believed only after `unknown_grace_s`: a request the client gave up on may still be
        being applied by Atlas. Returns True when the dataset may send again."""
        inflight = await asyncio.to_thread(self.db.kv_get, f"recorder.inflight.{key}")
        if not inflight:
            return True
        present = False
        for text in inflight["ts"]:
            present = present or await self._exists(atlas_id, datetime.fromisoformat(text))
        if present:
            self.stats["ambiguous_resolved"] += 1
            self.stats["ambiguous_stored"] += 1
            first, last = int(inflight["first"]), int(inflight["last"])
            count = await asyncio.to_thread(Outbox.count_range, self.db, key, first, last)
            log.info("recorder.ambiguous_batch_was_stored", dataset=key, rows=count)
            await self._confirmed(key, first, last, count)
            return True
        if time.time() - float(inflight.get("sent_at", 0)) < self.unknown_grace_s:
            return False  # not yet: look again next round
        self.stats["ambiguous_resolved"] += 1
        log.info("recorder.ambiguous_batch_not_stored", dataset=key)
        await self._clear_inflight(key)
        return True

    async def _exists(self, atlas_id: int, t: datetime) -> bool:
        """Whether Atlas holds a row at exactly `t` (timestamps are unique within a dataset)."""
        rows = self.client.rows(atlas_id, start=t, end=t, page_size=1)
        try:
            async for _row in rows:
                return True
            return False
        finally:
            await rows.aclose()

    async def _auth_failed(self, key: str, err: AuthError) -> None:
        """401: our key is refused for everything (one alarm, back off); 403: this dataset is not ours."""
        if err.status == 401:
            self._raise("atlas:unauthorized", f"Atlas refuses the configured API key: {err.message}")
            raise TemporaryError("Atlas refuses the API key (401)", service="atlas", status=401)
        await self._forbid(key, str(err))

    async def _clear_inflight(self, key: str) -> None:
        await asyncio.to_thread(self.db.kv_delete, f"recorder.inflight.{key}")

    async def _split_rejected(self, key: str, atlas_id: int, batch: Sequence[OutRow], reason: str) -> Sent:
        """Bisect a rejected batch: good halves are sent, the rows Atlas refuses on their own quarantined.
        Stops as soon as the dataset is gone (404/403): the rest waits for the next round."""
        if len(batch) == 1:
            await asyncio.to_thread(Outbox.quarantine, self.db, batch, reason, self.clock.now())
            self.stats["quarantined"] += 1
            self.quarantined[key] = self.quarantined.get(key, 0) + 1
            self.m_quarantined.labels(key).inc()
            log.error("recorder.row_quarantined", dataset=key, timestamp=batch[0].ts.isoformat(), reason=reason)
            return Sent.OK
        mid = len(batch) // 2
        for half in (batch[:mid], batch[mid:]):
            result = await self._send(key, atlas_id, half)
            if result is not Sent.OK:
                return result
        return Sent.OK

    # -- datasets -------------------------------------------------------------------------------------------

    async def _state(self, key: str) -> dict[str, Any]:
        spec = self.specs.get(key)

        def read() -> dict[str, Any]:
            rows = self.db.query("SELECT * FROM recorder_datasets WHERE dataset = ?", (key,))
            if rows:
                return dict(rows[0])
            with self.db.transaction() as conn:
                conn.execute("INSERT OR IGNORE INTO recorder_datasets (dataset, name, updated_at) VALUES (?, ?, ?)",
                             (key, spec.name, ts_text(self.clock.now())))
            return dict(self.db.query("SELECT * FROM recorder_datasets WHERE dataset = ?", (key,))[0])
        return await asyncio.to_thread(read)

    async def _dataset_id(self, key: str, state: dict[str, Any]) -> int | None:
        if state["state"] == "recreate":
            await self._replace(key, state["atlas_id"], "re-created on request (tradebot atlas recreate)")
            state = await self._state(key)
        if key in self._ids:
            return self._ids[key]
        spec = self.specs.get(key)
        generation = int(state["generation"])
        name = spec.named(generation)
        found = await self.client.find_dataset(name)
        if found is None and state["atlas_id"] is not None and int(state["sent_rows"]) > 0:
            # It held our rows and we cannot find it as ours: deleted, or taken over, while we were away.
            old_id = int(state["atlas_id"])
            try:
                access = await self.client.check_access(old_id, require_write=True)
            except NotFound:
                await self._replace(key, old_id, "deleted while the bot was stopped")
                return self._ids.get(key)
            if not access.is_owner:
                await self._forbid(key, f"dataset {old_id} is not ours any more")
                return None
        ds = await self.client.ensure_dataset(name, spec.description, self._metadata(spec, generation, state),
                                              spec.columns, self.tags)
        owner_key = ds.metadata.get("recorder_key")
        if owner_key not in (None, key):  # two subjects whose names collide: never mix their rows
            self._raise(f"atlas:{key}:name_clash", f"{name} already records {owner_key}")
            log.error("recorder.dataset_name_clash", dataset=key, name=name, holds=owner_key)
            return None
        await self._save_dataset(key, ds.id, name, generation)
        self._ids[key] = ds.id
        self._columns[key] = set(spec.columns)
        log.info("recorder.dataset_ready", dataset=key, atlas_id=ds.id, name=name)
        return ds.id

    def _metadata(self, spec: DatasetSpec, generation: int, state: dict[str, Any]) -> dict[str, Any]:
        meta = dict(spec.metadata)
        if generation > 1:
            meta["replaces"] = state.get("note") or spec.named(generation - 1)
        return meta

    async def _save_dataset(self, key: str, atlas_id: int, name: str, generation: int,
                            state: str = "ok", note: str | None = None, reset_sent: bool = False) -> None:
        def save() -> None:
            with self.db.transaction() as conn:
                conn.execute(
                    "UPDATE recorder_datasets SET atlas_id = ?, name = ?, generation = ?, state = ?, "
                    "note = COALESCE(?, note), sent_rows = CASE WHEN ? THEN 0 ELSE sent_rows END, updated_at = ? "
                    "WHERE dataset = ?", (atlas_id, name, generation, state, note, int(reset_sent),
                                          ts_text(self.clock.now()), key))
        await asyncio.to_thread(save)

    async def _replace(self, key: str, old_id: int | None, why: str) -> None:
        """The dataset is gone (or must be replaced): create the next generation and say what was lost."""
        state = await self._state(key)
        spec = self.specs.get(key)
        old_name, lost = state["name"], int(state["sent_rows"])
        generation = int(state["generation"]) + 1
        name = spec.named(generation)
        note = f"{old_name} (id {old_id})"
        await self._save_dataset(key, old_id or 0, old_name, generation - 1, state="replacing", note=note)
        await self._clear_inflight(key)
        meta = {**spec.metadata, "replaces": note, "replaced_because": why}
        ds = await self.client.ensure_dataset(name, spec.description, meta, spec.columns, self.tags)
        await self._save_dataset(key, ds.id, name, generation, note=note, reset_sent=True)
        self._ids[key] = ds.id
        self._columns[key] = set(spec.columns)
        self.stats["recreated"] += 1
        detail = (f"dataset {old_name} (id {old_id}) was {why}; the {lost} rows recorded in it are lost with it; "
                  f"recording continues in {name} (id {ds.id}) with every row still in the outbox")
        log.error("recorder.dataset_replaced", dataset=key, old=old_name, new=name, lost_rows=lost, why=why)
        self._raise(f"atlas:{key}:replaced", detail)
        self._clear(f"atlas:{key}:forbidden")

    async def _forbid(self, key: str, error: str) -> None:
        state = await self._state(key)
        await self._save_dataset(key, state["atlas_id"], state["name"], int(state["generation"]), state="forbidden")
        self._ids.pop(key, None)
        self._forbidden_at[key] = time.monotonic()
        log.error("recorder.dataset_forbidden", dataset=key, name=state["name"], error=error,
                  note="rows are held in the outbox; fix access or run: tradebot atlas recreate " + key)
        self._raise(f"atlas:{key}:forbidden",
                    f"may not write {state['name']}: rows held; fix access or `tradebot atlas recreate {key}`")

    async def _recheck_forbidden(self, key: str) -> bool:
        last = self._forbidden_at.get(key)
        if last is not None and time.monotonic() - last < FORBIDDEN_RECHECK_S:
            return False
        self._forbidden_at[key] = time.monotonic()
        state = await self._state(key)
        if state["atlas_id"] is None:
            return True
        try:
            access = await self.client.check_access(int(state["atlas_id"]), require_write=True)
        except Rejected:
            return False
        if not access.is_owner:
            return False
        await self._save_dataset(key, state["atlas_id"], state["name"], int(state["generation"]))
        self._clear(f"atlas:{key}:forbidden")
        log.info("recorder.dataset_writable_again", dataset=key)
        return True

    async def _declare_columns(self, key: str, atlas_id: int, batch: Sequence[OutRow]) -> None:
        """Declare numeric value keys not declared yet (indicator names are known only from the rows)."""
        known = self._columns.setdefault(key, set())
        new: dict[str, str] = {}
        # A sample is enough: a dataset's rows share their keys (indicator values turn from null to numbers).
        step = max(1, len(batch) // 20)
        for r in [*batch[::step], batch[-1]]:
            for k, v in r.values.items():
                if k in known or k in new or isinstance(v, bool) or not isinstance(v, int | float):
                    continue
                new[k] = "int" if isinstance(v, int) else "float"
        if new:
            await self.client.ensure_columns(atlas_id, new)
            known.update(new)

    # -- alarms, status -------------------------------------------------------------------------------------

    def _raise(self, name: str, detail: str) -> None:
        if name in self.alarms:
            return
        self.alarms.add(name)
        self.events.publish(AlarmRaised(at=self.clock.now(), name=name, detail=detail))

    def _clear(self, name: str) -> None:
        if name in self.alarms:
            self.alarms.discard(name)
            self.events.publish(AlarmCleared(at=self.clock.now(), name=name))

    async def _refresh(self, force: bool = False) -> None:
        """Re-count the backlog (a scan of the outbox): at most once per flush interval unless forced."""
        now = time.monotonic()
        if not force and now - self._refreshed < self.cfg.flush_interval_seconds:
            return
        self._refreshed = now
        self.backlog = await asyncio.to_thread(Outbox.backlog, self.db)
        self.quarantined = await asyncio.to_thread(Outbox.quarantined, self.db)

    def oldest_age_s(self) -> float:
        oldest = [v["oldest"] for v in self.backlog.values() if v.get("oldest")]
        if not oldest:
            return 0.0
        return max(0.0, (self.clock.now() - datetime.fromisoformat(min(oldest))).total_seconds())

    async def check_backlog(self, force: bool = False) -> None:
        """Refresh the backlog figures and raise or clear the backlog alarm."""
        await self._refresh(force)
        rows = sum(v["rows"] for v in self.backlog.values())
        age = self.oldest_age_s()
        name = "recorder:backlog"
        if rows > self.cfg.max_backlog_rows or age > self.cfg.max_backlog_age_seconds:
            if name not in self.alarms:
                log.warning("recorder.backlog_high", rows=rows, oldest_s=round(age),
                            max_rows=self.cfg.max_backlog_rows, max_age_s=self.cfg.max_backlog_age_seconds)
            self._raise(name, f"{rows} rows waiting for Atlas, oldest {age:.0f}s")
        else:
            self._clear(name)

    def status(self) -> dict[str, Any]:
        return {"backlog": self.backlog, "backlog_rows": sum(v["rows"] for v in self.backlog.values()),
                "oldest_age_s": round(self.oldest_age_s(), 1), "sent": dict(self.sent), **self.stats,
                "quarantined_rows": dict(self.quarantined), "datasets": dict(self._ids)}
