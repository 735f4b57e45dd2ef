"""The daily summary: when it is due, and what it says.

It says what `/status` already knows (PnL per market from the `pnl` reporter, balances from the broker's or
execution's, rows recorded from the recorder's) plus the last day's fills and fees from the journal; nothing
is computed twice. `summary_text` is pure; `DailySummary` reads the sources when the summary is due.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from bot.notify.compose import num

DAY = timedelta(days=1)
COIN = Decimal("1e-8")  # balances shown to 8 places (a satoshi); PnL to 2


def next_summary(now: datetime, at: time) -> datetime:
    """The first `at` (UTC time of day) strictly after `now`."""
    now = now.astimezone(UTC)
    due = datetime.combine(now.date(), at.replace(tzinfo=None), tzinfo=UTC)
    return due if due > now else due + DAY


def summary_text(status: Mapping[str, Any], fills: Sequence[Mapping[str, Any]], rows: int | None) -> str:
    """The summary's body: fills and fees of the day, PnL per market, balances, rows recorded."""
    per_market: dict[str, int] = {}
    fees: dict[str, Decimal] = {}
    for f in fills:
        per_market[str(f["market"])] = per_market.get(str(f["market"]), 0) + 1
        fees[str(f["fee_coin"])] = fees.get(str(f["fee_coin"]), Decimal(0)) + Decimal(str(f["fee"]))
    lines = [f"fills (24 h): {len(fills)}" + (" (" + ", ".join(f"{m} {n}" for m, n in sorted(per_market.items()))
                                              + ")" if per_market else ""),
             "fees: " + (", ".join(f"{num(v)} {c}" for c, v in sorted(fees.items())) or "none")]
    markets = ((status.get("pnl") or {}).get("markets")) or {}
    for market, p in sorted(markets.items()):
        total = p.get("total")
        shown = (f"{Decimal(str(total)):,.2f}" if total is not None
                 else f"{Decimal(str(p.get('realized'))):,.2f} realised")
        lines.append(f"PnL {market}: {shown} {p.get('coin', '')}")
    if not markets:
        lines.append("PnL: no trades yet")
    balances = ((status.get("paper") or {}).get("balances") or (status.get("execution") or {}).get("balances")
                or {})
    if balances:
        lines.append("balances: " + ", ".join(
            f"{num((Decimal(str(b.get('available', 0))) + Decimal(str(b.get('frozen', 0)))).quantize(COIN))} {c}"
            for c, b in sorted(balances.items())))
    recorder = status.get("recorder")
    if isinstance(recorder, Mapping):
        done = sum((recorder.get("sent") or {}).values()) if rows is None else rows
        lines.append(f"rows recorded: {done:,} (backlog {recorder.get('backlog_rows', 0):,})")
    return "\n".join(lines)


class DailySummary:
    """The summary from the daemon's sources: `status` (the `/status` snapshot) and `fills_since` (the
    journal's). Rows recorded are counted since the previous summary."""

    def __init__(self, status: Callable[[], Mapping[str, Any]],
                 fills_since: Callable[[datetime], Sequence[Mapping[str, Any]]]) -> None:
        self.status = status
        self.fills_since = fills_since
        self._rows_before: int | None = None

    def __call__(self, now: datetime) -> str:
        status = self.status()
        recorder = status.get("recorder")
        rows: int | None = None
        if isinstance(recorder, Mapping):
            total = int(sum((recorder.get("sent") or {}).values()))
            rows = total - (self._rows_before or 0)
            self._rows_before = total
        return summary_text(status, self.fills_since(now - DAY), rows)
