"""State store: migrations, primitives, and crash safety under SIGKILL."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bot.clock import ManualClock
from bot.errors import StateError
from bot.store import MIGRATIONS, Migration, Store


def test_fresh_store_is_migrated_to_latest_in_wal_mode(tmp_path: Path) -> None:
    s = Store.open(tmp_path)
    assert s.schema_version == MIGRATIONS[-1].version
    assert s.query("PRAGMA journal_mode")[0][0] == "wal"
    s.close()


def test_reopen_applies_only_new_migrations(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    extra = [*MIGRATIONS, Migration(MIGRATIONS[-1].version + 1, "t", "CREATE TABLE extra (x INTEGER)")]
    s = Store(tmp_path / "tradebot.sqlite3", extra)
    assert s.schema_version == extra[-1].version
    s.query("SELECT x FROM extra")
    s.close()


def test_failed_migration_leaves_no_trace(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    bad = [*MIGRATIONS, Migration(MIGRATIONS[-1].version + 1, "bad",
                                  "CREATE TABLE half (x INTEGER); INSERT INTO nope VALUES (1)")]
    with pytest.raises(sqlite3.OperationalError):
        Store(tmp_path / "tradebot.sqlite3", bad)
    s = Store.open(tmp_path)
    assert s.schema_version == MIGRATIONS[-1].version
    assert not s.query("SELECT name FROM sqlite_master WHERE name = 'half'")
    s.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    s = Store.open(tmp_path)
    s.query("PRAGMA user_version = 999")
    s.close()
    with pytest.raises(StateError, match="newer"):
        Store.open(tmp_path)


def test_kv_entries_and_cursors(tmp_path: Path) -> None:
    s = Store.open(tmp_path)
    s.kv_set("k", {"amount": Decimal("0.10000000")})
    got = s.kv_get("k")
    assert got == {"amount": Decimal("0.10000000")} and str(got["amount"]) == "0.10000000"  # exact, exponent kept
    assert s.kv_get("missing", 5) == 5
    seqs = s.append_many("outbox", [{"i": 1}, {"i": 2}, {"i": 3}])
    assert seqs == sorted(seqs)
    s.cursor_set("outbox", seqs[0])
    assert [e.payload["i"] for e in s.read("outbox", after=s.cursor_get("outbox"))] == [2, 3]
    assert s.count("outbox") == 3
    s.close()


def test_exception_inside_transaction_rolls_back(tmp_path: Path) -> None:
    s = Store.open(tmp_path)
    with pytest.raises(RuntimeError), s.transaction() as c:
        c.execute("INSERT INTO kv (key, value, updated_at) VALUES ('a', '1', 'now')")
        raise RuntimeError("abort")
    assert s.kv_get("a") is None
    s.close()


WRITER = textwrap.dedent(
    """
    import sys, time
    from bot.store import Store
    s = Store.open(sys.argv[1])
    for i in range(50):
        with s.transaction(durable=i % 2 == 0):  # synced to the disk or not, a kill loses neither
            s.append("events", {"i": i})
        print("committed", i, flush=True)
    with s.transaction() as c:
        for j in range(1000):
            c.execute("INSERT INTO entries (topic, ts, payload) VALUES ('events', 'x', '{\\"half\\": 1}')")
        print("mid-transaction", flush=True)
        sys.stdin.readline()   # block here until killed
    """
)


def test_sigkill_keeps_committed_writes_and_drops_half_done_transaction(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None
    last = None
    for line in proc.stdout:  # wait for the writer to say where it is, no sleeping
        if line.startswith("mid-transaction"):
            break
        last = line
    assert last == "committed 49\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    s = Store.open(tmp_path)
    entries = s.read("events", limit=10_000)
    assert [e.payload for e in entries] == [{"i": i} for i in range(50)]
    s.close()


def _synchronous(s: Store) -> int:
    return int(s.query("PRAGMA synchronous")[0][0])


def test_commits_are_synced_unless_the_transaction_opts_out(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.store
    synced: list[str] = []
    real_fsync = bot.store.os.fsync
    monkeypatch.setattr(bot.store.os, "fsync", lambda fd: (synced.append(Path(f"/proc/self/fd/{fd}").readlink()
                                                                         .name), real_fsync(fd))[1])
    s = Store.open(tmp_path)
    with s.transaction(durable=False):
        s.kv_set("a", 1)  # a savepoint of it: inherits "not synced"
    assert _synchronous(s) == 1  # NORMAL: the commit wrote the WAL without syncing it
    s.kv_set("b", 2)  # a transaction of its own: durable by default
    assert _synchronous(s) == 2  # FULL
    assert synced == []  # SQLite synced those itself
    with s.transaction(durable=False):
        s.kv_set("c", 3)
        with s.transaction(durable=True):  # a durable write inside: the whole commit is synced after all
            s.kv_set("d", 4)
        assert synced == []  # not before the commit
    assert synced == ["tradebot.sqlite3-wal"]
    assert [s.kv_get(k) for k in "abcd"] == [1, 2, 3, 4]
    s.close()


# -- nested transactions ------------------------------------------------------------------------------


def test_inner_failure_caught_by_outer_undoes_only_the_inner_writes(tmp_path: Path) -> None:
    s = Store.open(tmp_path)
    with s.transaction():
        s.kv_set("outer.before", 1)
        try:
            with s.transaction():
                s.kv_set("inner", 2)
                s.append("events", {"inner": True})
                raise RuntimeError("inner fails")
        except RuntimeError:
            pass
        s.kv_set("outer.after", 3)
    assert s.kv_get("inner") is None
    assert s.count("events") == 0
    assert (s.kv_get("outer.before"), s.kv_get("outer.after")) == (1, 3)
    s.close()
    s = Store.open(tmp_path)  # committed, on disk
    assert (s.kv_get("outer.before"), s.kv_get("inner"), s.kv_get("outer.after")) == (1, None, 3)
    s.close()


def test_nested_savepoints_three_deep_and_outer_failure_undoes_everything(tmp_path: Path) -> None:
    s = Store.open(tmp_path)
    with s.transaction():
        s.kv_set("a", 1)
        with s.transaction():
            s.kv_set("b", 2)
            try:
                with s.transaction():
                    s.kv_set("c", 3)
                    raise ValueError
            except ValueError:
                pass
            with s.transaction():  # the same depth again after a rollback: sp_2 is reusable
                s.kv_set("d", 4)
    assert [s.kv_get(k) for k in "abcd"] == [1, 2, None, 4]
    with pytest.raises(KeyError), s.transaction():
        s.kv_set("e", 5)
        with s.transaction():
            s.kv_set("f", 6)  # released into the outer, then lost with it
        raise KeyError("outer fails")
    assert s.kv_get("e") is None and s.kv_get("f") is None
    s.kv_set("g", 7)  # the store is usable afterwards
    assert s.kv_get("g") == 7
    s.close()


# -- clock ----------------------------------------------------------------------------------------------


def test_timestamps_come_from_the_injected_clock(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    s = Store.open(tmp_path, clock=clock)
    s.kv_set("k", 1)
    s.append("events", {"i": 1})
    s.cursor_set("c", 1)
    assert s.query("SELECT updated_at FROM kv")[0][0] == "2026-01-02T03:04:05.000000+00:00"
    assert s.query("SELECT updated_at FROM cursors")[0][0] == "2026-01-02T03:04:05.000000+00:00"
    clock.advance(61)
    s.append("events", {"i": 2})
    assert [e.ts for e in s.read("events")] == [datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                                                 datetime(2026, 1, 2, 3, 5, 6, tzinfo=UTC)]
    s.close()


# -- migration 2: log -> entries ------------------------------------------------------------------------


def test_version_1_file_is_migrated_keeping_rows_and_sequence(tmp_path: Path) -> None:
    v1 = Store(tmp_path / "tradebot.sqlite3", MIGRATIONS[:1])
    with v1.transaction() as c:
        for i in range(3):
            c.execute("INSERT INTO log (stream, ts, payload) VALUES ('outbox', ?, ?)",
                      ("2025-05-01T00:00:00.000000+00:00", f'{{"i": {i}, "amount": "1.50"}}'))
        c.execute("DELETE FROM log WHERE seq = 3")  # the highest seq was used once: it must never come back
    v1.close()
    s = Store.open(tmp_path)
    assert s.schema_version == MIGRATIONS[-1].version
    entries = s.read("outbox")
    assert [(e.seq, e.topic, e.payload) for e in entries] == [
        (1, "outbox", {"i": 0, "amount": "1.50"}),  # an old plain-JSON row reads back as it was stored
        (2, "outbox", {"i": 1, "amount": "1.50"}),
    ]
    assert entries[0].ts == datetime(2025, 5, 1, tzinfo=UTC)
    assert s.append("outbox", {"i": 3}) == 4
    names = {r["name"] for r in s.query("SELECT name FROM sqlite_master")}
    assert {"entries", "entries_topic_seq"} <= names and not {"log", "log_stream_seq"} & names
    plan = s.query("EXPLAIN QUERY PLAN SELECT seq FROM entries WHERE topic = 'x' AND seq > 1")
    plan_text = " ".join(str(r[3]) for r in plan)
    assert "entries_topic_seq" in plan_text
    s.close()


def test_failed_later_migration_rolls_back_every_pending_one(tmp_path: Path) -> None:
    Store(tmp_path / "tradebot.sqlite3", MIGRATIONS[:1]).close()
    bad = [*MIGRATIONS, Migration(MIGRATIONS[-1].version + 1, "bad", "INSERT INTO nope VALUES (1)")]
    with pytest.raises(sqlite3.OperationalError):
        Store(tmp_path / "tradebot.sqlite3", bad)
    s = Store(tmp_path / "tradebot.sqlite3", MIGRATIONS[:1])
    assert s.schema_version == 1
    assert s.query("SELECT name FROM sqlite_master WHERE name = 'log'")
    s.close()


# -- pruning and maintenance ----------------------------------------------------------------------------


def test_prune_entries_deletes_delivered_ones_of_one_topic_and_seqs_are_never_reused(tmp_path: Path) -> None:
    s = Store.open(tmp_path)
    a = s.append_many("a", [{"i": i} for i in range(5)])
    b = s.append_many("b", [{"i": i} for i in range(2)])
    assert s.prune_entries("a", a[2]) == 3
    assert [e.payload["i"] for e in s.read("a")] == [3, 4]
    assert s.count("b") == 2
    assert s.prune_entries("a", b[-1]) == 2
    assert s.prune_entries("a", b[-1]) == 0
    assert s.append("a", {"i": 9}) > b[-1]
    s.close()


def test_prune_kv_by_prefix_and_age(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    s = Store.open(tmp_path, clock=clock)
    s.kv_set("eval.x.1", 1)
    s.kv_set("other.1", 1)
    clock.advance(3600)
    s.kv_set("eval.x.2", 2)
    s.kv_set("eval_x.3", 3)  # not under the prefix "eval." (and `_` is no wildcard)
    cutoff = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)
    assert s.prune_kv("eval.", cutoff) == 1
    assert s.kv_get("eval.x.1") is None and s.kv_get("other.1") == 1 and s.kv_get("eval.x.2") == 2
    clock.advance(3600)
    s.kv_set("eval.x.2", 22)  # rewritten: young again
    assert s.prune_kv("eval.", datetime(2026, 3, 1, 1, 30, tzinfo=UTC)) == 0
    assert s.prune_kv("eval", datetime(2026, 3, 2, tzinfo=UTC)) == 2
    s.close()


def test_new_file_uses_incremental_auto_vacuum_and_maintain_shrinks_it(tmp_path: Path) -> None:
    s = Store.open(tmp_path)
    assert s.auto_vacuum == "incremental"
    blob = "x" * 2000
    s.append_many("bulk", [{"blob": blob, "i": i} for i in range(2000)])
    s.maintain()
    db = tmp_path / "tradebot.sqlite3"
    big = db.stat().st_size
    assert s.prune_entries("bulk", 10**9) == 2000
    stats = s.maintain()
    assert stats["pages_freed"] > 0 and stats["free_pages"] == 0 and stats["wal_busy"] == 0
    assert db.stat().st_size < big / 4
    assert (tmp_path / "tradebot.sqlite3-wal").stat().st_size == 0  # checkpointed and truncated
    s.close()


def test_legacy_file_without_auto_vacuum_still_bounds_the_wal(tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "tradebot.sqlite3")  # made by an older tradebot: auto_vacuum=NONE
    raw.execute("CREATE TABLE t (x INTEGER)")
    raw.execute("DROP TABLE t")
    raw.commit()
    raw.close()
    s = Store.open(tmp_path)
    assert s.auto_vacuum == "none"
    s.append_many("bulk", [{"i": i} for i in range(100)])
    s.prune_entries("bulk", 10**9)
    stats = s.maintain()
    assert stats["pages_freed"] == 0 and stats["wal_busy"] == 0
    assert (tmp_path / "tradebot.sqlite3-wal").stat().st_size == 0
    s.close()


def test_maintain_refused_inside_a_transaction(tmp_path: Path) -> None:
    s = Store.open(tmp_path)
    with pytest.raises(StateError), s.transaction():
        s.maintain()
    s.close()
