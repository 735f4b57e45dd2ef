"""What the machine itself did during a measurement: the CPU time the hypervisor took (steal).

On a virtual machine the host can run other guests on our cores; the kernel counts that time as *steal*
(`/proc/stat`). A throughput or latency figure taken while steal was high says more about the neighbours
than about the code, so the benchmarks print it beside their figures.

    with StealMeter() as m:
        run()
    print(m.describe())   # "steal 13.7% of CPU time" (or "steal n/a" where /proc/stat is missing)
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

_STAT = Path("/proc/stat")


def cpu_times() -> list[int] | None:
    """The aggregate `cpu` line of /proc/stat (user nice system idle iowait irq softirq steal ...), or None."""
    try:
        first = _STAT.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    return [int(x) for x in first[1:9]] if first and first[0] == "cpu" and len(first) >= 9 else None


class StealMeter:
    """The share of all CPU time that was stolen between entering and leaving the block."""

    def __init__(self) -> None:
        self._start: list[int] | None = None
        self.steal_pct: float | None = None

    def __enter__(self) -> StealMeter:
        self._start = cpu_times()
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        end = cpu_times()
        if self._start is None or end is None:
            return
        delta = [b - a for a, b in zip(self._start, end, strict=True)]
        total = sum(delta)
        self.steal_pct = 100.0 * delta[7] / total if total > 0 else None

    def describe(self) -> str:
        return "steal n/a" if self.steal_pct is None else f"steal {self.steal_pct:.1f}% of CPU time"
