"""SQLite model behind the Atlas simulator: users, tags, datasets, columns and rows.

The store is synchronous on purpose: the simulator is single-threaded asyncio and SQLite calls are
short, so a handler calls the store directly. Every mutating method runs in one transaction, which is
what makes `insert_rows` atomic. Rules of the Atlas seed that are about data (name uniqueness per owner,
tag-based read access, ownership) live here; HTTP shapes live in `atlas.py`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.clock import Clock
from bot.sandbox.atlas_rows import AtlasError, RowStore, format_ts, transaction

# Tags every fresh Atlas has, per the seed: `public` and `test` free to acquire, `premium` behind a secret.
PREMIUM_SECRET = "sandbox-premium-secret"
_SEED_TAGS: tuple[tuple[str, str, bool, str | None], ...] = (
    ("public", "Publicly accessible datasets", True, None),
    ("test", "Development and demo datasets", True, None),
    ("premium", "Premium tier datasets", False, PREMIUM_SECRET),
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, api_key TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS user_keys (
    api_key TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id));
CREATE TABLE IF NOT EXISTS tags (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT NOT NULL,
    is_public INTEGER NOT NULL, secret TEXT, metadata TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS user_tags (
    user_id INTEGER NOT NULL, tag_id INTEGER NOT NULL, PRIMARY KEY (user_id, tag_id));
CREATE TABLE IF NOT EXISTS datasets (
    id INTEGER PRIMARY KEY AUTOINCREMENT, owner_id INTEGER NOT NULL, name TEXT NOT NULL,
    description TEXT NOT NULL, metadata TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    UNIQUE (owner_id, name));
CREATE TABLE IF NOT EXISTS dataset_tags (
    dataset_id INTEGER NOT NULL, tag_id INTEGER NOT NULL, PRIMARY KEY (dataset_id, tag_id));
CREATE TABLE IF NOT EXISTS columns (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dataset_id INTEGER NOT NULL, name TEXT NOT NULL,
    dtype TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (dataset_id, name));
CREATE TABLE IF NOT EXISTS rows (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dataset_id INTEGER NOT NULL, ts INTEGER NOT NULL,
    vals TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS rows_by_time ON rows (dataset_id, ts, id);
"""

COLUMN_DTYPES = ("float", "int")


@dataclass(frozen=True)
class User:
    """An Atlas account, found by its API key."""

    id: int
    username: str


@dataclass(frozen=True)
class Access:
    """What one user may do with one dataset."""

    is_owner: bool
    matching_tags: list[str]

    @property
    def can_read(self) -> bool:
        return self.is_owner or bool(self.matching_tags)


class AtlasStore:
    """The Atlas data model in SQLite (a file, or `:memory:`)."""

    def __init__(self, clock: Clock, db_path: str = ":memory:") -> None:
        self._clock = clock
        self._db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        if db_path != ":memory:":
            # A file outlives the process: every committed change survives a SIGKILL (WAL: the kernel keeps what
            # was written). Not synced to the disk at each commit (a power cut is not what a simulator is for):
            # the simulators share one event loop (the daemon's, in-process), and an fsync per bulk insert held
            # it for milliseconds, so a CoinBTR answer waited behind Atlas's disk as no real service does (order
            # book round trip under the daemon bench: p90 20 ms, p99 42 ms with the syncs; 8 and 13 without).
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.rows = RowStore(self._db)
        with transaction(self._db):
            for name, description, is_public, secret in _SEED_TAGS:
                self._db.execute(
                    "INSERT OR IGNORE INTO tags (name, description, is_public, secret, metadata,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, '{}', ?, ?)",
                    (name, description, int(is_public), secret, self._now(), self._now()),
                )

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _now(self) -> str:
        return format_ts(self._clock.now().replace(microsecond=0))

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            self._db.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    # -- users ---------------------------------------------------------------------------------------

    def add_user(self, api_key: str, username: str) -> User:
        """Create (or find) `username` and give it `api_key`; a user may hold several keys."""
        with transaction(self._db):
            self._db.execute(
                "INSERT OR IGNORE INTO users (username, api_key) VALUES (?, ?)", (username, api_key)
            )
            row = self._db.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
            self._db.execute("INSERT OR IGNORE INTO user_keys (api_key, user_id) VALUES (?, ?)",
                             (api_key, row["id"]))
        user = self.user_for_key(api_key)
        if user is None or user.username != username:
            raise ValueError(f"API key already belongs to another user than {username!r}")
        return user

    def user_for_key(self, api_key: str) -> User | None:
        """The user owning `api_key`, if any."""
        row = self._db.execute(
            "SELECT u.id, u.username FROM user_keys k JOIN users u ON u.id = k.user_id WHERE k.api_key = ?",
            (api_key,),
        ).fetchone()
        return User(row["id"], row["username"]) if row else None

    # -- tags ----------------------------------------------------------------------------------------

    def list_tags(self) -> list[dict[str, Any]]:
        """Every tag in the system."""
        rows = self._db.execute("SELECT * FROM tags ORDER BY id").fetchall()
        return [_tag_dict(r) for r in rows]

    def find_tag(self, *, name: str | None = None, tag_id: int | None = None) -> dict[str, Any]:
        """A tag by name or id, or a 404."""
        if name is not None:
            row = self._db.execute("SELECT * FROM tags WHERE name = ?", (name,)).fetchone()
        else:
            row = self._db.execute("SELECT * FROM tags WHERE id = ?", (tag_id,)).fetchone()
        if row is None:
            raise AtlasError(404, "Tag not found", f"No tag {name if name is not None else tag_id}")
        return _tag_dict(row)

    def acquire_tag(self, user: User, name: str, secret: str | None) -> dict[str, Any]:
        """Give `user` the tag `name`; private tags need their secret (403 otherwise)."""
        row = self._db.execute("SELECT * FROM tags WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise AtlasError(404, "Tag not found", f"No tag named {name!r}")
        if not row["is_public"] and (secret is None or secret != row["secret"]):
            raise AtlasError(403, "Forbidden", f"tag {name!r} is private and needs a valid secret")
        with transaction(self._db):
            self._db.execute(
                "INSERT OR IGNORE INTO user_tags (user_id, tag_id) VALUES (?, ?)", (user.id, row["id"])
            )
        return _tag_dict(row)

    def user_tag_names(self, user: User) -> list[str]:
        """Names of the tags `user` has acquired."""
        rows = self._db.execute(
            "SELECT t.name FROM user_tags u JOIN tags t ON t.id = u.tag_id WHERE u.user_id = ? ORDER BY t.id",
            (user.id,),
        ).fetchall()
        return [r["name"] for r in rows]

    def dataset_tags(self, dataset_id: int) -> list[dict[str, Any]]:
        """Tags assigned to a dataset."""
        rows = self._db.execute(
            "SELECT t.* FROM dataset_tags d JOIN tags t ON t.id = d.tag_id"
            " WHERE d.dataset_id = ? ORDER BY t.id",
            (dataset_id,),
        ).fetchall()
        return [_tag_dict(r) for r in rows]

    def assign_tag(self, dataset_id: int, tag_id: int) -> bool:
        """Put a tag on a dataset; False when it already had it."""
        with transaction(self._db):
            cur = self._db.execute(
                "INSERT OR IGNORE INTO dataset_tags (dataset_id, tag_id) VALUES (?, ?)", (dataset_id, tag_id)
            )
        return cur.rowcount > 0

    def remove_tag(self, dataset_id: int, tag_id: int) -> None:
        """Take a tag off a dataset (404 when it was not on it)."""
        with transaction(self._db):
            cur = self._db.execute(
                "DELETE FROM dataset_tags WHERE dataset_id = ? AND tag_id = ?", (dataset_id, tag_id)
            )
        if cur.rowcount == 0:
            raise AtlasError(404, "Tag not assigned", f"tag {tag_id} is not on dataset {dataset_id}")

    # -- datasets ------------------------------------------------------------------------------------

    def access(self, user: User, dataset_id: int) -> Access:
        """Ownership and matching tags of `user` on a dataset (404 when there is no such dataset)."""
        row = self._db.execute("SELECT owner_id FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
        if row is None:
            raise AtlasError(404, "Dataset not found", f"No dataset with ID {dataset_id}")
        tags = self._db.execute(
            "SELECT t.name FROM dataset_tags d JOIN user_tags u ON u.tag_id = d.tag_id"
            " JOIN tags t ON t.id = d.tag_id WHERE d.dataset_id = ? AND u.user_id = ? ORDER BY t.id",
            (dataset_id, user.id),
        ).fetchall()
        return Access(row["owner_id"] == user.id, [t["name"] for t in tags])

    def require(self, user: User, dataset_id: int, *, write: bool) -> None:
        """404 for a missing dataset, 403 unless `user` may read it (or, with `write`, owns it)."""
        access = self.access(user, dataset_id)
        if write and not access.is_owner:
            raise AtlasError(403, "Forbidden", "only the dataset owner may do this")
        if not access.can_read:
            raise AtlasError(403, "Forbidden", "no matching tag for this dataset")

    def create_dataset(
        self, user: User, name: str, description: str, metadata: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A new dataset owned by `user`; 400 when the owner already has one with that name."""
        now = self._now()
        try:
            with transaction(self._db):
                cur = self._db.execute(
                    "INSERT INTO datasets (owner_id, name, description, metadata, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (user.id, name, description, json.dumps(dict(metadata)), now, now),
                )
        except sqlite3.IntegrityError:
            raise AtlasError(
                400, "dataset name already exists", f"you already own a dataset named {name!r}"
            ) from None
        assert cur.lastrowid is not None
        return self.get_dataset(cur.lastrowid)

    def get_dataset(self, dataset_id: int) -> dict[str, Any]:
        """A dataset with its columns (404 when missing)."""
        row = self._db.execute("SELECT * FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
        if row is None:
            raise AtlasError(404, "Dataset not found", f"No dataset with ID {dataset_id}")
        return self._dataset_dict(row)

    def _visible_rows(self, user: User) -> list[sqlite3.Row]:
        return self._db.execute(
            "SELECT * FROM datasets d WHERE d.owner_id = ? OR EXISTS (SELECT 1 FROM dataset_tags dt"
            " JOIN user_tags ut ON ut.tag_id = dt.tag_id WHERE dt.dataset_id = d.id AND ut.user_id = ?)"
            " ORDER BY d.id",
            (user.id, user.id),
        ).fetchall()

    def list_datasets(self, user: User, search: str | None) -> list[dict[str, Any]]:
        """Datasets `user` can read, filtered by a case-insensitive substring of name or description."""
        needle = (search or "").casefold()
        return [
            self._dataset_dict(r)
            for r in self._visible_rows(user)
            if needle in r["name"].casefold() or needle in r["description"].casefold()
        ]

    def search_metadata(self, user: User, filters: Mapping[str, str]) -> list[dict[str, Any]]:
        """Readable datasets whose metadata matches every filter exactly."""
        found = []
        for r in self._visible_rows(user):
            meta = json.loads(r["metadata"])
            if all(k in meta and _meta_equals(meta[k], v) for k, v in filters.items()):
                found.append(self._dataset_dict(r))
        return found

    def update_dataset(
        self, dataset_id: int, name: str, description: str, metadata: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Replace name, description and metadata (400 on a name clash)."""
        try:
            with transaction(self._db):
                self._db.execute(
                    "UPDATE datasets SET name = ?, description = ?, metadata = ?, updated_at = ?"
                    " WHERE id = ?",
                    (name, description, json.dumps(dict(metadata)), self._now(), dataset_id),
                )
        except sqlite3.IntegrityError:
            raise AtlasError(
                400, "dataset name already exists", f"you already own a dataset named {name!r}"
            ) from None
        return self.get_dataset(dataset_id)

    def set_metadata(self, dataset_id: int, metadata: Mapping[str, Any], *, merge: bool) -> dict[str, Any]:
        """Merge into (PATCH) or replace (PUT) a dataset's metadata."""
        current = self.get_dataset(dataset_id)["metadata"] if merge else {}
        current.update(metadata)
        with transaction(self._db):
            self._db.execute(
                "UPDATE datasets SET metadata = ?, updated_at = ? WHERE id = ?",
                (json.dumps(current), self._now(), dataset_id),
            )
        return self.get_dataset(dataset_id)

    def delete_dataset(self, dataset_id: int) -> None:
        """Delete a dataset and everything in it."""
        with transaction(self._db):
            for table in ("rows", "columns", "dataset_tags"):
                self._db.execute(f"DELETE FROM {table} WHERE dataset_id = ?", (dataset_id,))
            self._db.execute("DELETE FROM datasets WHERE id = ?", (dataset_id,))

    def _dataset_dict(self, row: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "name": row["name"],
            "description": row["description"],
            "metadata": json.loads(row["metadata"]),
            "columns": self.list_columns(row["id"]),
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
        }

    # -- columns -------------------------------------------------------------------------------------

    def list_columns(self, dataset_id: int) -> list[dict[str, Any]]:
        """Column definitions of a dataset, in creation order."""
        rows = self._db.execute(
            "SELECT * FROM columns WHERE dataset_id = ? ORDER BY id", (dataset_id,)
        ).fetchall()
        return [
            {"id": r["id"], "dataset": r["dataset_id"], "name": r["name"], "dtype": r["dtype"],
             "created_at": r["created_at"]}
            for r in rows
        ]

    def create_column(self, dataset_id: int, name: str, dtype: str) -> dict[str, Any]:
        """Declare a column (400 for an unknown dtype or a duplicate name)."""
        if dtype not in COLUMN_DTYPES:
            raise AtlasError(400, "invalid dtype", f"dtype must be one of {', '.join(COLUMN_DTYPES)}")
        try:
            with transaction(self._db):
                cur = self._db.execute(
                    "INSERT INTO columns (dataset_id, name, dtype, created_at) VALUES (?, ?, ?, ?)",
                    (dataset_id, name, dtype, self._now()),
                )
        except sqlite3.IntegrityError:
            raise AtlasError(400, "column already exists", f"dataset {dataset_id} has {name!r}") from None
        return next(c for c in self.list_columns(dataset_id) if c["id"] == cur.lastrowid)

    def dump(self, dataset_id: int | None = None) -> dict[str, Any]:
        """Users with their tags and every dataset (or one) with owner, columns and tag names, for the
        control route `/_sandbox/state` (rows are added by the caller)."""
        users = [{"username": r["username"], "tags": self.user_tag_names(User(r["id"], r["username"]))}
                 for r in self._db.execute("SELECT id, username FROM users ORDER BY id").fetchall()]
        sql = "SELECT d.*, u.username AS owner FROM datasets d JOIN users u ON u.id = d.owner_id"
        found = self._db.execute(sql + (" WHERE d.id = ?" if dataset_id is not None else "") + " ORDER BY d.id",
                                 () if dataset_id is None else (dataset_id,)).fetchall()
        datasets = [{**self._dataset_dict(r), "owner": r["owner"],
                     "tags": [t["name"] for t in self.dataset_tags(r["id"])]} for r in found]
        return {"users": users, "datasets": datasets}

    def dataset_exists(self, dataset_id: int) -> bool:
        """Whether the dataset is (still) there."""
        return self._db.execute("SELECT 1 FROM datasets WHERE id = ?", (dataset_id,)).fetchone() is not None


def _tag_dict(r: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": r["id"],
        "name": r["name"],
        "description": r["description"],
        "is_public": bool(r["is_public"]),
        "metadata": json.loads(r["metadata"]),
        "created_at": r["created_at"],
        "updated_at": r["updated_at"],
    }


def _meta_equals(stored: Any, wanted: str) -> bool:
    """Query parameters are strings; a stored number or boolean matches its JSON spelling."""
    if isinstance(stored, str):
        return stored == wanted
    return json.dumps(stored) == wanted
