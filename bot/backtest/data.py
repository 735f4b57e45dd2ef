"""Candle histories for backtests: float arrays on a UTC time axis, from CSV (checked row by row), cached.

A CSV needs a time column (`timestamp`, `date`, `time` or `datetime`: ISO text, or epoch seconds or
milliseconds) and `open, high, low, close, volume`, in any case and order (so both the common
`timestamp,open,...` files and `gen_synth.py`'s `date,Open,...` load); other columns are ignored. Every
row is checked: a missing column, a value that is not a number, a missing value, an unparseable time, or
a time not after the previous row's (unsorted or duplicated) is a `ConfigError` naming the row and column.

Parsing a year of minutes takes pandas ~0.4 s; the parsed arrays are cached as one `.npy` file named by a
hash of the CSV's bytes, so a changed file can never be read from a stale cache.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from bot.domain import Candle
from bot.errors import ConfigError
from bot.indicators import OHLCV

TIME_COLUMNS = ("timestamp", "date", "time", "datetime")
CACHE_VERSION = "1"
# Epoch numbers below this are seconds, above it milliseconds (1e11 s is the year 5138).
_EPOCH_MS_FROM = 1e11

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Candles:
    """A candle history: `times` (UTC nanoseconds, strictly increasing) and `ohlcv` (5 x n floats)."""

    times: Ints
    ohlcv: Floats
    source: str

    def __len__(self) -> int:
        return len(self.times)

    def column(self, name: str) -> Floats:
        column: Floats = self.ohlcv[OHLCV.index(name)]
        return column

    @property
    def period(self) -> int:
        """The usual spacing in seconds (the median; gaps stay gaps)."""
        if len(self.times) < 2:
            return 60
        return max(1, int(np.median(np.diff(self.times)) // 1_000_000_000))

    def frame(self) -> pd.DataFrame:
        """The float OHLCV frame strategies compute on, on a UTC index named `time`."""
        index = pd.DatetimeIndex(self.times.astype("datetime64[ns]"), name="time").tz_localize("UTC")
        return pd.DataFrame(dict(zip(OHLCV, self.ohlcv, strict=True)), index=index)

    def between(self, start: datetime | None, end: datetime | None) -> Candles:
        """Candles starting at or after `start` and before `end` (either may be None)."""
        lo = 0 if start is None else int(np.searchsorted(self.times, _ns(start), "left"))
        hi = len(self.times) if end is None else int(np.searchsorted(self.times, _ns(end), "left"))
        return Candles(self.times[lo:hi], self.ohlcv[:, lo:hi], self.source)


def _ns(when: datetime) -> int:
    return int(pd.Timestamp(when).tz_convert("UTC").value) if when.tzinfo else int(pd.Timestamp(when).value)


def from_domain(candles: Sequence[Candle], source: str) -> Candles:
    """Domain candles (Decimal) as a float history, sorted by time, later duplicates dropped."""
    by_time = {c.time: c for c in candles}
    ordered = [by_time[t] for t in sorted(by_time)]
    times = np.array([int(pd.Timestamp(c.time).value) for c in ordered], dtype=np.int64)
    ohlcv = np.array([[float(getattr(c, f)) for c in ordered] for f in OHLCV], dtype=np.float64).reshape(5, -1)
    return Candles(times, ohlcv, source)


# ------------------------------------------------------------------------------------------------- CSV


def _bad(path: Path, row: int | None, column: str | None, message: str) -> ConfigError:
    """A bad-input error: `row` is the 1-based data row (the file's line is one more, after the header)."""
    where = str(path)
    if row is not None:
        where += f": row {row} (line {row + 1})"
    if column is not None:
        where += f", column {column!r}"
    return ConfigError(f"bad candle data in {path}", [(where, message)])


def _header(path: Path, raw: bytes) -> tuple[str, list[str]]:
    """The time column and the five OHLCV column names as spelled in the file."""
    first = raw.split(b"\n", 1)[0].decode("utf-8", "replace").strip().lstrip("\ufeff")
    names = [n.strip().strip('"') for n in first.split(",")]
    lower = {n.lower(): n for n in names}
    time_col = next((lower[t] for t in TIME_COLUMNS if t in lower), None)
    missing = [c for c in OHLCV if c not in lower]
    if time_col is None:
        missing.insert(0, "/".join(TIME_COLUMNS))
    if missing:
        raise _bad(path, None, None, f"missing column(s): {', '.join(missing)} (header: {first[:200]!r})")
    assert time_col is not None
    return time_col, [lower[c] for c in OHLCV]


def _first_bad_number(path: Path, raw: bytes, cols: Sequence[str]) -> ConfigError:
    text = pd.read_csv(io.BytesIO(raw), usecols=list(cols), dtype=str, keep_default_na=False)
    for col in cols:
        values = text[col]
        numbers = pd.to_numeric(values.str.strip(), errors="coerce")
        bad = np.flatnonzero(numbers.isna().to_numpy())
        if len(bad):
            i = int(bad[0])
            shown = values.iloc[i]
            return _bad(path, i + 1, col, f"{shown!r} is not a number" if shown.strip() else "missing value")
    return _bad(path, None, None, "a value is not a number")


def _times(path: Path, values: pd.Series, col: str) -> Ints:
    if pd.api.types.is_numeric_dtype(values):
        nums = values.to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(nums))
        if len(bad):
            raise _bad(path, int(bad[0]) + 1, col, "missing time")
        scale = 1_000_000 if len(nums) and np.nanmax(np.abs(nums)) >= _EPOCH_MS_FROM else 1_000_000_000
        return (nums * scale).astype(np.int64)
    try:
        parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
        bad = np.flatnonzero(parsed.isna().to_numpy())
        i = int(bad[0]) if len(bad) else 0
        raise _bad(path, i + 1, col, f"{values.iloc[i]!r} is not a time") from None
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        raise _bad(path, int(bad[0]) + 1, col, "missing time")
    return np.asarray(parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64), dtype=np.int64)


def parse_csv(path: Path, raw: bytes) -> Candles:
    """Parse and check CSV bytes (see the module docstring); raises `ConfigError` naming row and column."""
    time_col, cols = _header(path, raw)
    try:
        frame = pd.read_csv(io.BytesIO(raw), usecols=[time_col, *cols], dtype=dict.fromkeys(cols, np.float64),
                            engine="c")
    except ValueError:
        raise _first_bad_number(path, raw, cols) from None
    if frame.empty:
        raise _bad(path, None, None, "no rows")
    ohlcv = np.ascontiguousarray(frame[cols].to_numpy(dtype=np.float64).T)
    for col, values in zip(cols, ohlcv, strict=True):
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise _bad(path, int(bad[0]) + 1, col, "missing value")
    times = _times(path, frame[time_col], time_col)
    steps = np.diff(times)
    wrong = np.flatnonzero(steps <= 0)
    if len(wrong):
        i = int(wrong[0]) + 1  # 0-based index of the offending row
        stamp = pd.Timestamp(int(times[i]), tz="UTC").isoformat()
        what = "duplicated timestamp" if steps[i - 1] == 0 else "timestamp before the previous row's (unsorted)"
        raise _bad(path, i + 1, time_col, f"{what}: {stamp}; rows must be in strictly increasing time order")
    return Candles(times, ohlcv, str(path))


def load_csv(path: Path, cache_dir: Path | None) -> Candles:
    """A CSV history, from the cache when this exact content was parsed before.

    The cache file is named by the SHA-256 of the CSV's bytes. Hashing 34 MB costs ~60 ms with the read, so
    the digest is remembered per file under its (size, mtime_ns, inode) signature, as git's index does: a
    file rewritten in any way gets a new signature, hence a new hash."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", [("--data", f"{path}: {exc.strerror}")]) from None
    if cache_dir is None:
        return parse_csv(path, _read(path))
    signature = f"{st.st_size} {st.st_mtime_ns} {st.st_ino}"
    memo = cache_dir / f"v{CACHE_VERSION}-path-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]}"
    digest = _read_memo(memo, signature)
    if digest is not None:
        hit = _read_cache(cache_dir / f"v{CACHE_VERSION}-{digest}.npy", str(path))
        if hit is not None:
            return hit
    raw = _read(path)
    digest = hashlib.sha256(raw).hexdigest()[:40]  # sha256: hardware-accelerated, ~30 ms for 34 MB
    cached = cache_dir / f"v{CACHE_VERSION}-{digest}.npy"
    candles = _read_cache(cached, str(path))
    if candles is None:
        candles = parse_csv(path, raw)
        _write_cache(cached, candles)
    _write_atomic(memo, f"{signature} {digest}".encode())
    return candles


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", [("--data", f"{path}: {exc.strerror}")]) from None


def _read_memo(memo: Path, signature: str) -> str | None:
    try:
        size, mtime, ino, digest = memo.read_text().split()
    except (OSError, ValueError):
        return None
    return digest if f"{size} {mtime} {ino}" == signature else None


def pack(candles: Candles) -> Ints:
    """One (6, n) int64 array: the times, then the five float columns' bits (a plain .npy loads fastest)."""
    return np.vstack([candles.times[None, :], np.ascontiguousarray(candles.ohlcv).view(np.int64)])


def unpack(packed: Ints, source: str) -> Candles | None:
    """The candles of a `pack`ed array; None when it is not one."""
    if packed.ndim != 2 or packed.shape[0] != 6 or packed.dtype != np.int64:
        return None
    return Candles(packed[0], packed[1:].view(np.float64), source)


def _read_cache(path: Path, source: str) -> Candles | None:
    try:
        packed = np.load(path)
    except (OSError, ValueError):
        return None  # absent or unreadable: parse again
    return unpack(packed, source)


def _write_cache(path: Path, candles: Candles) -> None:
    buf = io.BytesIO()
    np.save(buf, pack(candles))
    _write_atomic(path, buf.getvalue())


def _write_atomic(path: Path, body: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(body)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache directory only costs the next run a parse


def write_csv(candles: Candles, out: Any) -> None:
    """Candles as `timestamp,open,high,low,close,volume` (ISO UTC) to a text stream."""
    frame = candles.frame()
    stamps = pd.DatetimeIndex(frame.index).strftime("%Y-%m-%dT%H:%M:%SZ")
    frame.index = pd.Index(stamps, name="timestamp")
    frame.to_csv(out, float_format="%.10g")
