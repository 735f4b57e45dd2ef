"""`tradebot status`: the running daemon's `/health` and `/status` as readable, aligned plain-text tables.

Pure functions of the JSON the daemon serves; a part the daemon does not report (an older daemon, a
component switched off) is left out rather than failing, so the command stays useful across versions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

Row = Sequence[object]


def table(title: str, headers: Sequence[str], rows: Sequence[Row]) -> list[str]:
    """A titled table, columns padded to their widest cell; `(none)` when there is no row."""
    if not rows:
        return [f"{title}: (none)"]
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    out = [title, "  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return out


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    if "E" in text:  # a Decimal string in exponent form (`0E-8`): plain digits are easier to read
        try:
            return format(Decimal(text), "f")
        except InvalidOperation:
            return text
    return text


def _short_time(value: object) -> str:
    """`2026-12-03T04:31:00+00:00` as `12-03 04:31:00`: enough to tell candles apart on a terminal."""
    text = str(value or "")
    if len(text) >= 19 and text[10] == "T":
        return f"{text[5:10]} {text[11:19]}"
    return text or "-"


def _dict(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    return value if isinstance(value, list) else []


def render(health_code: int, health: Mapping[str, Any], status: Mapping[str, Any] | None, url: str) -> str:
    """The whole report: a headline, then one table per part of the status."""
    state = health.get("status", "unknown")
    lines = [f"tradebot {status.get('bot', '?') if status else '?'} at {url}: {state} "
             f"(/health {health_code})"]
    for reason in health.get("reasons", []) or []:
        lines.append(f"  ! {reason}")
    if status is None:
        return "\n".join(lines)
    live = _dict(status, "liveness")
    lines.append(f"mode {status.get('mode', '?')}, phase {status.get('phase', '?')}, clock {status.get('now', '?')}, "
                 f"live {_cell(live.get('live'))}, loop lag {_cell(live.get('loop_lag_s'))}s")
    for part in (_strategies, _streams, _orders, _positions, _pnl, _balances, _recorder, _apis, _kill, _alarms,
                 _tasks):
        lines.append("")
        lines += part(status)
    return "\n".join(lines)


def _strategies(s: Mapping[str, Any]) -> list[str]:
    rows = []
    for st in _list(s, "strategies"):
        last = st.get("last") or {}
        signals = st.get("signals") or {}
        rows.append([st.get("name"), st.get("strategy"), st.get("market"), st.get("stream"), st.get("evaluations"),
                     st.get("failures"), f"{signals.get('buy', 0)}/{signals.get('sell', 0)}",
                     last.get("action"), _short_time(last.get("candle")), last.get("reason")])
    return table("Strategies", ["name", "strategy", "market", "stream", "evals", "fails", "buy/sell",
                                "last", "candle", "why"], rows)


def _streams(s: Mapping[str, Any]) -> list[str]:
    market = _dict(s, "market")
    rows = [[key, st.get("service"), _short_time(st.get("last_closed")), st.get("age_s"), st.get("stale"),
             st.get("polls"), st.get("errors"), st.get("last_error")]
            for key, st in sorted(_dict(market, "streams").items())]
    out = table("Streams (newest closed candle)", ["stream", "service", "closed", "age_s", "stale", "polls",
                                                  "errors", "last error"], rows)
    dropped = [[d.get("stream"), d.get("service"), d.get("reason")] for d in _list(market, "dropped")
               if isinstance(d, dict)]
    return out + (table("Dropped streams (over the request budget)", ["stream", "service", "reason"], dropped)
                  if dropped else [])


def _orders(s: Mapping[str, Any]) -> list[str]:
    ex = _dict(s, "execution")
    rows = [[o.get("order"), o.get("instance"), o.get("market"), o.get("side"), o.get("price"), o.get("amount"),
             o.get("filled"), o.get("state"), o.get("exchange_id")] for o in _list(ex, "working_orders")]
    return table("Open orders", ["order", "instance", "market", "side", "price", "amount", "filled", "state",
                                 "exchange id"], rows)


def _positions(s: Mapping[str, Any]) -> list[str]:
    ex = _dict(s, "execution")
    pnl = _dict(_dict(s, "pnl"), "instances")
    rows = []
    for name in sorted(set(_dict(ex, "positions")) | set(pnl)):
        p = _dict(pnl, name)
        rows.append([name, _dict(ex, "positions").get(name, p.get("position")), p.get("avg_cost"), p.get("mark"),
                     p.get("realized"), p.get("unrealized"), p.get("total"), p.get("coin")])
    return table("Positions and PnL (average cost, marked at the book mid)",
                 ["instance", "position", "avg cost", "mark", "realised", "unrealised", "pnl", "coin"], rows)


def _pnl(s: Mapping[str, Any]) -> list[str]:
    markets = _dict(_dict(s, "pnl"), "markets")
    rows = [[market, m.get("realized"), m.get("unrealized"), m.get("total"), m.get("coin")]
            for market, m in sorted(markets.items()) if isinstance(m, dict)]
    return table("PnL per market", ["market", "realised", "unrealised", "pnl", "coin"], rows)


def _balances(s: Mapping[str, Any]) -> list[str]:
    ex = _dict(s, "execution")
    balances = _dict(ex, "balances") or _dict(_dict(s, "paper"), "balances")
    start = _dict(_dict(s, "paper"), "start_balances")
    rows = [[coin, b.get("available"), b.get("frozen"), start.get(coin)]
            for coin, b in sorted(balances.items()) if isinstance(b, dict)]
    return table("Balances", ["coin", "available", "frozen", "paper start"], rows)


def _recorder(s: Mapping[str, Any]) -> list[str]:
    rec = s.get("recorder")
    if not isinstance(rec, dict):
        return ["Recorder: off"]
    return [f"Recorder: {rec.get('rows', 0)} rows sent in {rec.get('batches', 0)} batches; backlog "
            f"{rec.get('backlog_rows', 0)} rows, oldest {rec.get('oldest_age_s', 0)}s; quarantined "
            f"{rec.get('quarantined', 0)}"]


def _apis(s: Mapping[str, Any]) -> list[str]:
    rows = []
    for name, h in sorted(_dict(s, "http").items()):
        lim = h.get("limiter") or {}
        errors = sum((h.get("errors") or {}).values())
        skew = h.get("clock_skew_s")
        rows.append([name, h.get("requests"), h.get("rate_limited"), errors, h.get("retries"),
                     f"{lim.get('in_window', '?')}/{lim.get('limit', '?')}",
                     None if skew is None else f"{skew:+.2f}"])
    return table("APIs", ["service", "requests", "429s", "errors", "retries", "budget used", "clock skew s"], rows)


def _kill(s: Mapping[str, Any]) -> list[str]:
    ks = _dict(s, "kill_switch")
    if not ks:
        return ["Kill switch: -"]
    if ks.get("on"):
        return [f"Kill switch: ON since {ks.get('since')} ({ks.get('source')}): {ks.get('reason')}"]
    return ["Kill switch: off"]


def _alarms(s: Mapping[str, Any]) -> list[str]:
    rows = [[name, a.get("since"), a.get("detail")] for name, a in sorted(_dict(s, "alarms").items())]
    return table("Alarms", ["alarm", "since", "detail"], rows)


def _tasks(s: Mapping[str, Any]) -> list[str]:
    restarted = [[name, t.get("restarts"), t.get("running")] for name, t in sorted(_dict(s, "tasks").items())
                 if t.get("restarts")]
    jobs = [[name, j.get("runs"), j.get("failures"), j.get("overruns")] for name, j in sorted(_dict(s, "jobs").items())
            if j.get("failures") or j.get("overruns")]
    out = table("Restarted tasks", ["task", "restarts", "running"], restarted)
    return out + table("Jobs with failures or overruns", ["job", "runs", "failures", "overruns"], jobs)
