"""Bursts gathered, groups paced: when the notes waiting in each group become a message.

Pure: times are clock seconds (`Clock.monotonic()`), passed in. A group's first note opens a batch; the
batch is due at the later of "first note + the group's gather window" (so ten fills in a minute are one
message) and "last message of the group + its minimum interval" (so a flapping feed or alarm makes at most
one message per interval, listing every flip). A batch keeps its first `MAX_KEPT` notes and counts the rest,
so memory stays bounded however long a group waits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bot.notify import kinds as k
from bot.notify.compose import Note

MAX_KEPT = 50


@dataclass
class Batch:
    """The notes of one group waiting for their message."""

    group: str
    opened: float
    notes: list[Note] = field(default_factory=list)
    extra: int = 0  # notes past MAX_KEPT, counted only

    @property
    def kind(self) -> str:
        return self.notes[0].kind


def intervals(configured: Mapping[str, float], kinds: Iterable[str] = k.KINDS) -> dict[str, float]:
    """Minimum seconds between two messages per group: the configured (else default) interval of each kind,
    the longest of a group's kinds."""
    out: dict[str, float] = {}
    for kind in kinds:
        value = configured.get(kind, k.MIN_INTERVAL_S.get(kind, 0.0))
        group = k.group_of(kind)
        out[group] = max(out.get(group, 0.0), value)
    return out


class Pacer:
    """Batches per group and when each is due (see the module docstring)."""

    def __init__(self, interval_s: Mapping[str, float], gather_s: Mapping[str, float] | None = None,
                 default_gather_s: float = k.DEFAULT_GATHER_S) -> None:
        self.interval_s = dict(interval_s)
        self.gather_s = dict(k.GATHER_S if gather_s is None else gather_s)
        self.default_gather_s = default_gather_s
        self.batches: dict[str, Batch] = {}
        self.last_sent: dict[str, float] = {}

    def add(self, note: Note, now: float) -> None:
        batch = self.batches.get(note.group)
        if batch is None:
            batch = self.batches[note.group] = Batch(note.group, now)
        if len(batch.notes) < MAX_KEPT:
            batch.notes.append(note)
        else:
            batch.extra += 1

    def due_at(self, batch: Batch) -> float:
        gather = self.gather_s.get(batch.group, self.default_gather_s)
        last = self.last_sent.get(batch.group)
        paced = last + self.interval_s.get(batch.group, 0.0) if last is not None else batch.opened
        return max(batch.opened + gather, paced)

    def next_due(self) -> float | None:
        """When the earliest batch is due (None when nothing waits)."""
        return min((self.due_at(b) for b in self.batches.values()), default=None)

    def take(self, now: float, *, everything: bool = False) -> list[Batch]:
        """The batches due at `now` (every batch with `everything`, at a stop), in the order they are due;
        their groups count as sent at `now`."""
        due = sorted((b for b in self.batches.values() if everything or self.due_at(b) <= now), key=self.due_at)
        for b in due:
            del self.batches[b.group]
            self.last_sent[b.group] = now
        return due

    def waiting(self) -> dict[str, int]:
        return {g: len(b.notes) + b.extra for g, b in sorted(self.batches.items())}
