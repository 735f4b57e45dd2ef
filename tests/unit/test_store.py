"""State store: migrations, primitives, and crash safety under SIGKILL."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

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


def test_kv_log_and_cursors(tmp_path: Path) -> None:
    s = Store.open(tmp_path)
    s.kv_set("k", {"amount": Decimal("0.10000000")})
    assert s.kv_get("k") == {"amount": "0.10000000"}  # Decimal kept exact as text
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
        s.append("events", {"i": i})
        print("committed", i, flush=True)
    with s.transaction() as c:
        for j in range(1000):
            c.execute("INSERT INTO log (stream, ts, payload) VALUES ('events', 'x', '{\\"half\\": 1}')")
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
