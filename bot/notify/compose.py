"""What a notification says: one short line per event (a `Note`), and one message per batch of notes.

Pure: no I/O, no clock. Texts are written for a phone's lock screen: the title says what happened, the body
the details, numbers with thousands separators and no trailing zeros. In paper mode every title and body
starts with "PAPER". Secrets are scrubbed from every message by the sender (`Redactor`), whatever an event
carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bot.events import (
    AlarmCleared,
    AlarmRaised,
    BalanceUnexplained,
    DaemonStarted,
    DaemonStopping,
    DailyLossLimitReached,
    DepositConfirmed,
    Event,
    FeedFresh,
    FeedStale,
    FillSeen,
    KillSwitchChanged,
    OrderChanged,
    OrderUnresolved,
    TaskRestarted,
    WithdrawalChanged,
    WithdrawalFailed,
)
from bot.notify import kinds as k

MAX_LINES = 10  # lines listed in a collapsed message; the rest are counted
MAX_BODY = 1000  # characters (Telegram allows 4096, SMS gateways far less: stay short)
# A collapsed message's title, per group: "{n} fills".
GROUP_TITLES = {k.ORDER_FILLED: "{n} fills", "feed": "{n} feed changes", "alarm": "{n} alarm changes",
                k.DEPOSIT: "{n} deposits", k.WITHDRAWAL: "{n} withdrawal updates",
                k.BALANCE_UNEXPLAINED: "{n} unexplained balance changes", k.TASK_RESTARTED: "{n} task restarts",
                k.ORDER_REJECTED: "{n} orders rejected", k.ORDER_UNKNOWN: "{n} orders unresolved",
                k.KILL_SWITCH: "Kill switch changed {n} times", k.DAEMON: "{n} daemon events",
                k.DAILY_LOSS_LIMIT: "Daily loss limit reached ({n})"}


@dataclass(frozen=True, slots=True)
class Note:
    """One event as a notification line. `title` is used when the note is alone in its message."""

    kind: str
    at: datetime
    title: str
    line: str

    @property
    def group(self) -> str:
        return k.group_of(self.kind)


@dataclass(frozen=True, slots=True)
class Message:
    """What is sent: a title and a body, secret-free and short."""

    kind: str
    title: str
    body: str


def num(value: Decimal | float | int | None) -> str:
    """A number for people: thousands separated, trailing zeros dropped."""
    if value is None:
        return "-"
    d = Decimal(str(value))
    return f"{d.normalize():,f}" if d else "0"


def _coin(market: str, part: int) -> str:
    pieces = market.split("-")
    return pieces[part] if len(pieces) == 2 else ""


def describe(ev: Event) -> Note | None:  # one branch per event kind, flat on purpose (like `view.Tally`)
    """The note for `ev`, or None when it is not something a person is told about."""
    at = ev.at
    if isinstance(ev, FillSeen):
        base, quote = _coin(ev.market, 0), _coin(ev.market, 1)
        verb = "bought" if ev.side == "buy" else "sold"
        line = (f"{ev.instance} {verb} {num(ev.amount)} {base} @ {num(ev.price)} {quote} on {ev.market}, "
                f"fee {num(ev.fee)} {ev.fee_coin}")
        return Note(k.ORDER_FILLED, at, f"Fill: {ev.side.upper()} {num(ev.amount)} {ev.market}", line)
    if isinstance(ev, OrderChanged):
        if ev.state != "rejected":
            return None
        line = (f"{ev.instance} {ev.side} {num(ev.amount)} {ev.market} @ {num(ev.price)} rejected"
                + (f": {ev.note[:120]}" if ev.note else ""))
        return Note(k.ORDER_REJECTED, at, f"Order rejected on {ev.market}", line)
    if isinstance(ev, OrderUnresolved):
        line = (f"order #{ev.order_id} {ev.instance} {ev.side} {num(ev.amount)} {ev.market} @ {num(ev.price)}: "
                f"outcome unknown for {ev.age_s / 60:.0f} min ({ev.reason[:120]}); nothing more is placed on "
                f"{ev.market} until it is resolved")
        return Note(k.ORDER_UNKNOWN, at, f"Order outcome unknown on {ev.market}", line)
    if isinstance(ev, KillSwitchChanged):
        state = "ON: no orders, open ones cancelled" if ev.on else "off: trading resumes"
        line = f"kill switch {state} ({ev.source}{': ' + ev.reason[:120] if ev.reason else ''})"
        return Note(k.KILL_SWITCH, at, f"Kill switch {'ON' if ev.on else 'off'}", line)
    if isinstance(ev, DailyLossLimitReached):
        line = (f"today's PnL {num(ev.pnl)} {ev.coin} reached the limit -{num(ev.limit)} {ev.coin}: buys blocked "
                "until 00:00 UTC")
        return Note(k.DAILY_LOSS_LIMIT, at, f"Daily loss limit reached ({ev.coin})", line)
    if isinstance(ev, DepositConfirmed):
        line = f"deposit of {num(ev.amount)} {ev.coin} confirmed ({ev.confirmations} confirmations)"
        return Note(k.DEPOSIT, at, f"Deposit {num(ev.amount)} {ev.coin}", line)
    if isinstance(ev, WithdrawalChanged):
        if ev.status == "failed":
            return None  # `WithdrawalFailed` says it, with the refund
        line = f"withdrawal #{ev.withdrawal_id} of {num(ev.amount)} {ev.coin}: {ev.status}"
        return Note(k.WITHDRAWAL, at, f"Withdrawal {num(ev.amount)} {ev.coin} {ev.status}", line)
    if isinstance(ev, WithdrawalFailed):
        line = (f"withdrawal #{ev.withdrawal_id} of {num(ev.amount)} {ev.coin} FAILED; {num(ev.refund)} "
                f"{ev.coin} refunded")
        return Note(k.WITHDRAWAL, at, f"Withdrawal FAILED {num(ev.amount)} {ev.coin}", line)
    if isinstance(ev, BalanceUnexplained):
        line = f"{ev.coin} {ev.part} moved {num(ev.amount)} and nothing the bot did explains it: {ev.detail[:160]}"
        return Note(k.BALANCE_UNEXPLAINED, at, f"Unexplained {ev.coin} balance change", line)
    if isinstance(ev, FeedStale):
        age = f"newest candle {ev.age_s:.0f}s old" if ev.age_s is not None else "no candle yet"
        return Note(k.FEED_STALE, at, f"Feed stale: {ev.stream}",
                    f"{ev.stream} stale ({age}, limit {ev.limit_s:.0f}s): its signals are held back")
    if isinstance(ev, FeedFresh):
        return Note(k.FEED_FRESH, at, f"Feed fresh: {ev.stream}", f"{ev.stream} fresh again")
    if isinstance(ev, AlarmRaised):
        return Note(k.ALARM_RAISED, at, f"Alarm: {ev.name}", f"ALARM {ev.name}: {ev.detail[:200]}")
    if isinstance(ev, AlarmCleared):
        return Note(k.ALARM_CLEARED, at, f"Cleared: {ev.name}", f"cleared {ev.name}")
    if isinstance(ev, TaskRestarted):
        line = f"task {ev.task} failed ({ev.error[:120]}); restart #{ev.restarts} in {ev.delay_s:.0f}s"
        return Note(k.TASK_RESTARTED, at, f"Task restarted: {ev.task}", line)
    if isinstance(ev, DaemonStarted):
        shown = ", ".join(ev.instances[:6]) + (f" +{len(ev.instances) - 6}" if len(ev.instances) > 6 else "")
        line = (f"tradebot {ev.bot} started, {ev.mode} mode{' on the simulators' if ev.sandbox else ''}; "
                f"{len(ev.instances)} instance(s): {shown or 'none'}")
        return Note(k.DAEMON, at, f"Started ({ev.mode})", line)
    if isinstance(ev, DaemonStopping):
        return Note(k.DAEMON, at, "Stopping", f"tradebot {ev.bot} stopping ({ev.reason})")
    return None


def collapse(notes: Sequence[Note], extra: int = 0) -> tuple[str, str]:
    """One (title, body) for a batch of notes of one group: the note itself when alone, else a count and the
    lines (the first `MAX_LINES`, then how many more). `extra` counts notes that were not kept."""
    total = len(notes) + extra
    if total == 1:
        return notes[0].title, notes[0].line
    group = notes[0].group
    title = GROUP_TITLES.get(group, "{n} notifications").format(n=total)
    lines = [f"{n.at:%H:%M} {n.line}" for n in notes[:MAX_LINES]]
    if total > len(lines):
        lines.append(f"... and {total - len(lines)} more")
    return title, "\n".join(lines)


def message(kind: str, title: str, body: str, *, paper: bool, bot: str) -> Message:
    """The message as sent: "PAPER" in title and body in paper mode, the bot's name when it is not the
    default, the body cut to `MAX_BODY`."""
    if bot != "default":
        title = f"{title} [{bot}]"
    if paper:
        title, body = f"PAPER {title}", f"PAPER {body}"
    if len(body) > MAX_BODY:
        body = body[:MAX_BODY - 1] + "…"
    return Message(kind, title, body)
