"""What a person watching the daemon sees: a live terminal view, or one line per event, and a summary at stop.

`tradebot run --view auto` (the demo's way) shows a live view when standard output is a terminal and one
concise line per event otherwise; `--view live|lines` forces either. The daemon's structured log then goes
to `<state_dir>/tradebot.log` instead of standard output. Everything shown comes from two places: the event
bus (counted by `Tally`: ticks, closed candles, signals, orders, fills, fees, the cash and coins each market
moved) and the daemon's own `/status` snapshot (streams, strategies, open orders, balances, the recorder's
backlog, requests and 429s per API). Nothing here changes what the daemon does.

At stop, `Summary` prints what the run did: ticks, closed candles, signals, orders, fills, fees, PnL per
market (cash flow of the fills plus the coins still held, marked at the order book's last mid), rows recorded
per dataset, and 429s per API.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bot.events import (
    AlarmCleared,
    AlarmRaised,
    BalanceUnexplained,
    CandleClosed,
    DepositConfirmed,
    DepositSeen,
    Evaluation,
    EvaluationFailed,
    Event,
    FeedFresh,
    FeedStale,
    FillSeen,
    KillSwitchChanged,
    OrderChanged,
    SensorReadingSeen,
    TaskRestarted,
    Tick,
    WithdrawalChanged,
    WithdrawalFailed,
)

ZERO = Decimal(0)
FINAL = ("filled", "cancelled", "rejected")
RECENT = 8  # event lines kept for the live view


def _num(value: Decimal | str | float | None, places: int | None = None) -> str:
    """A number for people: thousands separated, trailing zeros dropped (or fixed `places`)."""
    if value is None:
        return "-"
    d = Decimal(str(value))
    if places is not None:
        return f"{d:,.{places}f}"
    text = f"{d.normalize():,f}"
    return text


def _hhmm(iso: str | None) -> str:
    return iso[11:16] if iso else "-"


class Tally:
    """Counts what happened, from the event bus; `on_event` returns a line for the notable events."""

    def __init__(self) -> None:
        self.ticks = 0
        self.candles = 0
        self.backfilled = 0
        self.readings = 0
        self.signals: Counter[str] = Counter()
        self.orders = 0
        self.outcomes: Counter[str] = Counter()
        self.fills = 0
        self.fees: dict[str, Decimal] = {}
        self.cash: dict[str, Decimal] = {}  # per market, in its quote coin: sells in, buys out, quote fees out
        self.held: dict[str, Decimal] = {}  # per market, its base coin: bought in, sold out, base fees out
        self.recent: deque[str] = deque(maxlen=RECENT)

    def on_event(self, ev: Event) -> str | None:
        line = self._count(ev)
        if line is not None:
            line = f"{ev.at:%H:%M:%S} {line}"
            self.recent.append(line)
        return line

    def _count(self, ev: Event) -> str | None:  # one branch per event kind, flat on purpose
        if isinstance(ev, Tick):
            self.ticks += 1
        elif isinstance(ev, CandleClosed):
            if ev.backfill:
                self.backfilled += 1
                return None
            self.candles += 1
            return f"candle  {ev.stream} {ev.candle.time:%H:%M} close {_num(ev.candle.close)}"
        elif isinstance(ev, SensorReadingSeen):
            self.readings += 1
        elif isinstance(ev, Evaluation):
            if ev.backfill or ev.action not in ("buy", "sell"):
                return None
            self.signals[ev.action] += 1
            note = "" if ev.actionable else f" (not acted on: {ev.note})"
            return f"signal  {ev.instance} {ev.action.upper()} on {ev.market}: {ev.reason}{note}"
        elif isinstance(ev, EvaluationFailed):
            return f"failed  {ev.instance}: {ev.error}"
        elif isinstance(ev, OrderChanged):
            if ev.state == "open" and ev.previous in ("submitting", "unknown"):
                self.orders += 1
            if ev.state in FINAL:
                self.outcomes[ev.state] += 1
            detail = f" ({ev.note})" if ev.note and ev.state in ("cancelled", "rejected", "unknown") else ""
            return (f"order   #{ev.order_id} {ev.instance} {ev.side} {_num(ev.amount)} {ev.market} @ "
                    f"{_num(ev.price)}: {ev.state}{detail}")
        elif isinstance(ev, FillSeen):
            self.fills += 1
            base, quote = ev.market.split("-")
            self.fees[ev.fee_coin] = self.fees.get(ev.fee_coin, ZERO) + ev.fee
            sign = 1 if ev.side == "sell" else -1
            self.cash[ev.market] = (self.cash.get(ev.market, ZERO) + sign * ev.price * ev.amount
                                    - (ev.fee if ev.fee_coin == quote else ZERO))
            self.held[ev.market] = (self.held.get(ev.market, ZERO) - sign * ev.amount
                                    - (ev.fee if ev.fee_coin == base else ZERO))
            return (f"fill    #{ev.order_id} {ev.side} {_num(ev.amount)} {ev.market} @ {_num(ev.price)} "
                    f"({'maker' if ev.maker else 'taker'}, fee {_num(ev.fee)} {ev.fee_coin})")
        elif isinstance(ev, AlarmRaised):
            return f"ALARM   {ev.name}: {ev.detail}"
        elif isinstance(ev, AlarmCleared):
            return f"cleared {ev.name}"
        elif isinstance(ev, KillSwitchChanged):
            return f"KILL    switch {'ON' if ev.on else 'off'} ({ev.source}: {ev.reason})"
        elif isinstance(ev, TaskRestarted):
            return f"restart {ev.task} after {ev.error} (#{ev.restarts})"
        elif isinstance(ev, FeedStale):
            return f"stale   {ev.stream}"
        elif isinstance(ev, FeedFresh):
            return f"fresh   {ev.stream}"
        elif isinstance(ev, DepositSeen | DepositConfirmed):
            state = "confirmed" if isinstance(ev, DepositConfirmed) else "seen"
            return f"deposit {_num(ev.amount)} {ev.coin} {state}"
        elif isinstance(ev, WithdrawalChanged):
            return f"withdraw {_num(ev.amount)} {ev.coin}: {ev.status}"
        elif isinstance(ev, WithdrawalFailed):
            return f"withdraw {_num(ev.amount)} {ev.coin} FAILED (refund {_num(ev.refund)})"
        elif isinstance(ev, BalanceUnexplained):
            return f"UNEXPLAINED {ev.coin} {ev.part} {_num(ev.amount)}: {ev.detail}"
        return None

    def pnl(self, marks: Mapping[str, Decimal | str]) -> dict[str, dict[str, Decimal | None]]:
        """Per market: cash flow, coins held, and PnL (cash + held at the mark; None without a mark)."""
        out: dict[str, dict[str, Decimal | None]] = {}
        for market in sorted(set(self.cash) | set(self.held)):
            cash, held = self.cash.get(market, ZERO), self.held.get(market, ZERO)
            mark = marks.get(market)
            value = cash + held * Decimal(str(mark)) if mark is not None else (cash if not held else None)
            out[market] = {"cash": cash, "held": held, "mark": Decimal(str(mark)) if mark else None, "pnl": value}
        return out


class View:
    """Shows the running daemon (live view or lines) and prints the summary at stop."""

    def __init__(self, mode: str = "auto", out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        if mode == "auto":
            mode = "live" if self.out.isatty() else "lines"
        self.mode = mode
        self.tally = Tally()
        self._status: Callable[[], dict[str, Any]] | None = None
        self._last: dict[str, Any] = {}
        self._t0 = time.monotonic()

    # -- wiring ---------------------------------------------------------------------------------------------

    def on_event(self, ev: Event) -> None:
        line = self.tally.on_event(ev)
        if line is not None and self.mode == "lines":
            print(line, file=self.out, flush=True)

    def attach(self, status: Callable[[], dict[str, Any]]) -> None:
        """Where the daemon's status snapshot comes from (`Daemon.status`)."""
        self._status = status

    def snapshot(self) -> dict[str, Any]:
        """The daemon's status now (kept: the summary uses the last one taken while it ran)."""
        if self._status is not None:
            with contextlib.suppress(Exception):  # a half-built or closing daemon: keep what was seen last
                self._last = self._status()
        return self._last

    async def run(self) -> None:
        """The live view's refresh loop (lines need none: they are printed as events come)."""
        if self.mode != "live":
            while True:
                await asyncio.sleep(1.0)
                self.snapshot()
        console = Console(file=self.out)
        with Live(self.render(self.snapshot()), console=console, refresh_per_second=4, transient=False) as live:
            while True:
                await asyncio.sleep(1.0)
                live.update(self.render(self.snapshot()))

    # -- the live view ----------------------------------------------------------------------------------------

    def render(self, s: Mapping[str, Any]) -> Group:
        t = self.tally
        speed = (s.get("sandbox") or {}).get("speed")
        head = Text.assemble(
            (f"tradebot {s.get('bot', '')} ", "bold"), (f"{s.get('mode', '')} ", "cyan"),
            f"phase {s.get('phase', '-')}  market time {str(s.get('now', ''))[:19].replace('T', ' ')}  ",
            f"speed x{speed:g}  " if speed else "", f"up {time.monotonic() - self._t0:.0f}s\n",
            f"ticks {t.ticks}  candles {t.candles}  signals {sum(t.signals.values())}  orders {t.orders}  "
            f"fills {t.fills}  readings {t.readings}")
        return Group(Panel(head), self._streams(s), self._strategies(s), self._orders(s), self._money(s),
                     self._services(s), Panel("\n".join(t.recent) or "(no events yet)", title="recent events"))

    @staticmethod
    def _streams(s: Mapping[str, Any]) -> Table:
        table = Table(title="streams", expand=True)
        for col in ("stream", "newest candle", "candles", "age s", "polls", "errors", "state"):
            table.add_column(col)
        for key, st in ((s.get("market") or {}).get("streams") or {}).items():
            state = "stale" if st.get("stale") else ("warming up" if not st.get("warmed_up") else "fresh")
            table.add_row(key, _hhmm(st.get("last_closed")), str(st.get("candles", "")), str(st.get("age_s", "")),
                          str(st.get("polls", "")), str(st.get("errors", "")), state)
        return table

    def _strategies(self, s: Mapping[str, Any]) -> Table:
        table = Table(title="strategies", expand=True)
        for col in ("instance", "market", "last signal", "at", "reason", "buy/sell", "position"):
            table.add_column(col, overflow="fold")
        positions = (s.get("execution") or {}).get("positions") or {}
        for st in s.get("strategies") or []:
            last = st.get("last") or {}
            sig = st.get("signals") or {}
            table.add_row(st.get("name", ""), st.get("market", ""), str(last.get("action", "-")),
                          _hhmm(last.get("candle")), str(last.get("reason", ""))[:60],
                          f"{sig.get('buy', 0)}/{sig.get('sell', 0)}", _num(positions.get(st.get("name"))))
        return table

    @staticmethod
    def _orders(s: Mapping[str, Any]) -> Table:
        table = Table(title="open orders", expand=True)
        for col in ("order", "instance", "market", "side", "price", "amount", "filled", "state"):
            table.add_column(col)
        for o in (s.get("execution") or {}).get("working_orders") or []:
            table.add_row(f"#{o['order']}", o["instance"], o["market"], o["side"], _num(o["price"]),
                          _num(o["amount"]), _num(o["filled"]), o["state"])
        return table

    def _money(self, s: Mapping[str, Any]) -> Table:
        table = Table(title="balances and PnL", expand=True)
        for col in ("coin / market", "available", "frozen", "started with", "PnL"):
            table.add_column(col)
        paper = s.get("paper") or {}
        balances = paper.get("balances") or (s.get("execution") or {}).get("balances") or {}
        start = paper.get("start_balances") or {}
        for coin, b in sorted(balances.items()):
            table.add_row(coin, _num(b.get("available")), _num(b.get("frozen")), _num(start.get(coin)), "")
        marks = (s.get("execution") or {}).get("marks") or {}
        for market, p in self.tally.pnl(marks).items():
            pnl = p["pnl"]
            table.add_row(market, "", "", "", f"{_num(pnl, 2) if pnl is not None else '-'} "
                          f"{market.split('-')[1]}")
        return table

    @staticmethod
    def _services(s: Mapping[str, Any]) -> Table:
        table = Table(title="services", expand=True)
        for col in ("API", "requests", "429s", "errors", "budget used"):
            table.add_column(col)
        for name, h in (s.get("http") or {}).items():
            lim = h.get("limiter") or {}
            table.add_row(name, str(h.get("requests", 0)), str(h.get("rate_limited", 0)),
                          str(sum((h.get("errors") or {}).values())),
                          f"{lim.get('in_window', 0)}/{lim.get('limit', '-')} per min")
        rec = s.get("recorder") or {}
        table.add_row("recorder", f"{rec.get('rows', 0)} rows sent", "", "",
                      f"backlog {rec.get('backlog_rows', 0)} rows")
        return table

    # -- the summary ----------------------------------------------------------------------------------------------

    def summary(self, code: int, final: Mapping[str, Any] | None = None) -> str:
        """What the run did, as text (see the module docstring)."""
        s = dict(self._last)
        s.update(final or {})
        t = self.tally
        out = [f"tradebot summary ({s.get('mode', '?')} mode, {time.monotonic() - self._t0:.0f} s wall, exit {code})",
               f"  ticks {t.ticks:,}   closed candles {t.candles:,}"
               + (f" (+{t.backfilled:,} loaded at warm-up)" if t.backfilled else "")
               + f"   sensor readings {t.readings:,}",
               f"  signals {sum(t.signals.values())} (buy {t.signals['buy']}, sell {t.signals['sell']})   "
               f"orders {t.orders} (" + ", ".join(f"{k} {v}" for k, v in sorted(t.outcomes.items()))
               + f"{', ' if t.outcomes else ''}still open {max(0, t.orders - sum(t.outcomes.values()))})   "
               f"fills {t.fills}",
               "  fees: " + (", ".join(f"{_num(v)} {k}" for k, v in sorted(t.fees.items())) or "none")]
        marks = (s.get("execution") or {}).get("marks") or {}
        pnl = t.pnl(marks)
        out.append("  PnL per market over this run (its fills' cash flow + the coins they moved, at the book's last "
                   "mid):")
        for market, p in pnl.items():
            base, quote = market.split("-")
            value = _num(p["pnl"], 2) if p["pnl"] is not None else "- (no mark)"
            out.append(f"    {market:<10} {value} {quote}   (coins {_num(p['held'])} {base}, "
                       f"cash {_num(p['cash'], 2)} {quote})")
        if not pnl:
            out.append("    (no fills)")
        rec = s.get("recorder") or {}
        sent = rec.get("sent") or {}
        out.append(f"  rows recorded to Atlas: {sum(sent.values()):,} in {len(sent)} datasets "
                   f"(backlog {rec.get('backlog_rows', 0)})")
        for key, n in sorted(sent.items()):
            out.append(f"    {key:<40} {n:>7,}")
        http = s.get("http") or {}
        out.append("  429s per API: " + ", ".join(f"{k} {v.get('rate_limited', 0)}" for k, v in http.items()))
        return "\n".join(out)
