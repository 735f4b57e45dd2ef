"""Paper vs live: the same strategies, the same seeded market, the same simulated period, both brokers.

    .venv/bin/python bench/paper_vs_live.py [--hours 6] [--participation 0.05] [--coinbtr-rpm 10000] [--seed 42]

Two runs of the daemon's pipeline, built in-process as `bot.app.build` builds it (see bench/execution.py,
whose `Rig` this uses), each on a fresh seeded sandbox and a `ManualClock` starting at the same instant:

* **live**: `LiveBroker` against the sandbox's CoinBTR, so orders rest on the simulated exchange and are
  filled by its own matching (minute bars: a resting order fills in every minute whose range reaches its
  price, by at most its fill share of the minute's volume);
* **paper**: `PaperBroker` on the same exchange's public data only, filling resting orders with the paper
  model (what traded between two looks estimated from the ticker: its 24h volume's change and the prices
  seen), with `[paper] participation` set to the exchange's fill share (`--participation`).

20 instances (the user strategy `flip` with periods of 1, 5 and 15 minutes, and the built-in
`rsi_reversion`, `macd_trend`, `bollinger_breakout`) on four streams and two markets (btc-mxn, eth-mxn).
The clock steps through the daemon's cadence (each stream polled at its planned offset after the minute
closes, the manager's `follow()` every 20 s) for `--hours` simulated hours. The CoinBTR request budget is
raised (`--coinbtr-rpm`) so that neither run waits on it and the two differ by their fill models only; each
run's request rate is printed against the real budget of 60/min.

Printed side by side per market, from the venue's own fills (the exchange's for live, the paper account's
for paper): PnL (realised cash flow plus the position marked at the final mid, in the quote coin), fills,
fees (in the quote coin) and notional traded; the journal's fills are checked against the venue's. Then the
differences, PnL difference as % of notional traded (the mean of both runs') and the fill-count
difference, with what was observed to make them differ (paper's volume estimate against what the
exchange's minute bars traded over the same spans; orders and how they ended).

Targets: |PnL difference| <= 0.1% of notional traded; fill-count difference <= 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

# Not the script's own directory first: bench/secrets.py would shadow the standard library's `secrets`.
sys.path[:] = [p for p in sys.path if Path(p or '.').resolve() != Path(__file__).resolve().parent]
sys.path.append(str(Path(__file__).resolve().parent))  # for `execution`, after the standard library
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from execution import (  # noqa: E402
    FOLLOW_EVERY_S,
    FOLLOW_OFFSET_S,
    STREAMS,
    T0,
    InstanceSpec,
    Rig,
    quiet_logs,
    settings_for,
)

from bot.clock import ManualClock, floor_minute, parse_iso  # noqa: E402
from bot.domain import Side  # noqa: E402
from bot.execution.paper import PaperBroker  # noqa: E402
from bot.execution.pricing import best_ask, best_bid  # noqa: E402
from bot.sandbox.credentials import COINBTR_USER  # noqa: E402
from bot.sandbox.exchange import DEFAULT_FILL_SHARE  # noqa: E402

D = Decimal
ZERO = Decimal(0)
TARGET_PNL_PCT = D("0.1")
TARGET_FILLS_PCT = D("10")
MARKETS = sorted({m for _, m, _ in STREAMS})


def instances() -> list[InstanceSpec]:
    out: list[InstanceSpec] = []
    for s in range(len(STREAMS)):
        out += [InstanceSpec(f"flip1-{s}", "flip", s, "{ period = 1 }"),
                InstanceSpec(f"flip5-{s}", "flip", s, "{ period = 5 }"),
                InstanceSpec(f"flip15-{s}", "flip", s, "{ period = 15 }"),
                InstanceSpec(f"rsi-{s}", "rsi_reversion", s, "{ period = 7, buy_below = 35, sell_above = 65 }")]
    out += [InstanceSpec("macd-0", "macd_trend", 0), InstanceSpec("macd-2", "macd_trend", 2),
            InstanceSpec("boll-1", "bollinger_breakout", 1), InstanceSpec("boll-3", "bollinger_breakout", 3)]
    return out


@dataclass
class VenueFill:
    market: str
    side: Side
    price: Decimal
    amount: Decimal
    fee: Decimal
    fee_coin: str
    at: datetime


@dataclass
class MarketResult:
    fills: int = 0
    notional: Decimal = ZERO
    fees_quote: Decimal = ZERO
    cash: Decimal = ZERO  # quote coin received minus paid, net of quote fees
    qty: Decimal = ZERO  # base coin bought minus sold, net of base fees
    mid: Decimal = ZERO
    buys: int = 0
    sells: int = 0

    @property
    def pnl(self) -> Decimal:
        return self.cash + self.qty * self.mid


@dataclass
class RunResult:
    mode: str
    markets: dict[str, MarketResult]
    journal_fills: dict[str, tuple[int, Decimal]]  # market -> (fills, amount) as the bot journaled them
    venue_fills: dict[str, tuple[int, Decimal]]
    orders: Counter[str]  # final state (and why cancelled) -> count
    orders_filled_any: int
    orders_total: int
    requests_per_min: float
    wall_s: float
    looks: dict[str, Looks] = field(default_factory=dict)  # paper only
    handoffs: int = 0
    order_rows: list[dict[str, Any]] = field(default_factory=list)  # the journal's orders
    fill_rows: list[dict[str, Any]] = field(default_factory=list)  # the journal's fills


@dataclass
class Looks:
    """Paper's looks at one market (each `observe`), against what the exchange's bars show for the same spans."""

    count: int = 0
    estimated: Decimal = ZERO  # paper's estimate of the volume traded, summed over looks
    traded: Decimal = ZERO  # what the exchange's minute bars traded over the same spans
    zero: int = 0  # looks whose volume estimate was 0
    narrower: int = 0  # looks whose sampled price range is inside the range of the minute bars they overlap


def results(fills: list[VenueFill], mids: dict[str, Decimal]) -> dict[str, MarketResult]:
    out = {m: MarketResult(mid=mids[m]) for m in MARKETS}
    for f in fills:
        r = out[f.market]
        base, quote = f.market.split("-")
        value = f.price * f.amount
        r.fills += 1
        r.notional += value
        if f.side is Side.BUY:
            r.buys += 1
            r.cash -= value
            r.qty += f.amount
        else:
            r.sells += 1
            r.cash += value
            r.qty -= f.amount
        if f.fee_coin == quote:
            r.cash -= f.fee
            r.fees_quote += f.fee
        elif f.fee_coin == base:
            r.qty -= f.fee
            r.fees_quote += f.fee * r.mid
    return out


async def one_run(mode: str, args: argparse.Namespace, work: Path) -> RunResult:
    settings = settings_for(work, instances(), mode=mode, seed=args.seed, coinbtr_rpm=args.coinbtr_rpm,
                            participation=str(args.participation), max_open_orders=40)
    clock = ManualClock(T0)
    rig = await Rig.build(settings, clock)
    looks: dict[str, Looks] = defaultdict(Looks)
    looked: dict[str, str] = {}
    origin = T0 - timedelta(days=1)
    traded_by: dict[tuple[str, datetime], Decimal] = {}

    def traded_so_far() -> None:
        """What the exchange's bars traded from `origin` up to now (the running minute so far) per market,
        noted at every step's instant (the only instants a look can be taken at)."""
        now = clock.now()
        for m in MARKETS:
            st = rig.sandbox.market.stats(m, origin, now)
            traded_by[(m, now)] = st.volume if st is not None else ZERO

    def after_step(name: str) -> None:
        """Paper: each new look's estimate of what traded, beside what the exchange's bars traded then."""
        traded_so_far()
        if name != "follow" or not isinstance(rig.broker, PaperBroker):
            return
        for market, look in rig.broker.status()["last_look"].items():
            if looked.get(market) == look["at"]:
                continue
            looked[market] = look["at"]
            since, at = parse_iso(look["since"]), parse_iso(look["at"])
            if (market, since) not in traded_by or (market, at) not in traded_by:
                continue  # a look taken between steps (none expected)
            lk = looks[market]
            lk.count += 1
            lk.estimated += D(look["volume"])
            lk.traded += traded_by[(market, at)] - traded_by[(market, since)]
            lk.zero += int(D(look["volume"]) == 0)
            bars = rig.sandbox.market.bars(market, floor_minute(since), at)
            if bars and (D(look["low"]) > min(b.low for b in bars) or D(look["high"]) < max(b.high for b in bars)):
                lk.narrower += 1

    try:
        traded_so_far()
        requests0 = int(rig.clients.coinbtr.snapshot().get("requests", 0))
        wall0 = time.perf_counter()
        await rig.run(minutes(args), after_step)
        await rig.manager.follow()  # account what filled up to the end
        wall = time.perf_counter() - wall0
        requests = int(rig.clients.coinbtr.snapshot().get("requests", 0)) - requests0
        mids = {}
        for m in MARKETS:
            ob = await rig.clients.coinbtr.market.order_book(m)
            bid, ask = best_bid(ob), best_ask(ob)
            assert bid is not None and ask is not None
            mids[m] = (bid + ask) / 2
        if isinstance(rig.broker, PaperBroker):
            fills = [VenueFill(f.market, f.side, f.price, f.amount, f.fee_amount, f.fee_coin, f.created_at)
                     for f in rig.broker.account.fills_since_start()]
        else:
            fills = [VenueFill(f.book, f.side, f.price, f.amount, f.fee_amount, f.fee_coin, f.created_at)
                     for f in rig.sandbox.coinbtr.fills if f.username == COINBTR_USER]
        venue: dict[str, tuple[int, Decimal]] = {}
        for m in MARKETS:
            mine = [f for f in fills if f.market == m]
            venue[m] = (len(mine), sum((f.amount for f in mine), D(0)))
        journal = {}
        for m in MARKETS:
            amounts = rig.store.query("SELECT amount FROM fills WHERE market = ?", (m,))
            journal[m] = (len(amounts), sum((D(r["amount"]) for r in amounts), D(0)))
        orders: Counter[str] = Counter()
        filled_any = 0
        rows = [dict(r) for r in rig.store.query("SELECT * FROM orders ORDER BY id")]
        for r in rows:
            why = ""
            if r["state"] == "cancelled":
                note = str(r["note"] or "")
                why = (" (ttl)" if "ttl" in note else " (opposite signal)" if "opposite" in note
                       else f" ({note[:30]})" if note else "")
            orders[r["state"] + why] += 1
            filled_any += int(D(r["filled"]) > 0)
        return RunResult(mode, results(fills, mids), journal, venue, orders, filled_any, len(rows),
                         requests / minutes(args), wall, dict(looks), rig.handoffs.claimed, rows,
                         [dict(r) for r in rig.store.query("SELECT * FROM fills ORDER BY at")])
    finally:
        await rig.close()


def minutes(args: argparse.Namespace) -> int:
    return max(1, round(args.hours * 60))


def pct(a: Decimal, b: Decimal) -> str:
    return f"{a / b * 100:.3f}%" if b else "n/a"


def report(live: RunResult, paper: RunResult, args: argparse.Namespace) -> None:
    q = {m: m.split("-")[1].upper() for m in MARKETS}
    print(f"\n{'':22s}{'live (exchange matching)':>28s}{'paper (paper fill model)':>28s}")
    for m in MARKETS:
        lv, pp = live.markets[m], paper.markets[m]
        print(f"{m} (marked at mid {lv.mid:.2f}" + (f" / {pp.mid:.2f}" if pp.mid != lv.mid else "") + ")")
        print(f"  {'PnL ' + q[m]:20s}{lv.pnl:>28,.2f}{pp.pnl:>28,.2f}")
        print(f"  {'fills (buy/sell)':20s}{f'{lv.fills} ({lv.buys}/{lv.sells})':>28s}"
              f"{f'{pp.fills} ({pp.buys}/{pp.sells})':>28s}")
        print(f"  {'fees ' + q[m]:20s}{lv.fees_quote:>28,.2f}{pp.fees_quote:>28,.2f}")
        print(f"  {'notional ' + q[m]:20s}{lv.notional:>28,.2f}{pp.notional:>28,.2f}")
        print(f"  {'position held':20s}{lv.qty:>28.8f}{pp.qty:>28.8f}")
    print(f"{'hand-offs':22s}{live.handoffs:>28d}{paper.handoffs:>28d}")
    print(f"{'orders placed':22s}{live.orders_total:>28d}{paper.orders_total:>28d}")
    print(f"{'  with any fill':22s}{live.orders_filled_any:>28d}{paper.orders_filled_any:>28d}")
    for state in sorted(set(live.orders) | set(paper.orders)):
        print(f"{'  ' + state:22s}{live.orders.get(state, 0):>28d}{paper.orders.get(state, 0):>28d}")
    print(f"{'CoinBTR requests/min':22s}{live.requests_per_min:>28.1f}{paper.requests_per_min:>28.1f}"
          f"   (the real budget is 60/min)")
    print(f"{'wall time':22s}{live.wall_s:>27.1f}s{paper.wall_s:>27.1f}s")
    for run in (live, paper):
        for m in MARKETS:
            if run.journal_fills[m] != run.venue_fills[m]:
                print(f"!! {run.mode} {m}: the journal has {run.journal_fills[m][0]} fills for "
                      f"{run.journal_fills[m][1]} but the venue {run.venue_fills[m][0]} for {run.venue_fills[m][1]}")
    print("journal vs venue fills: " + ("equal in both runs" if all(
        r.journal_fills == r.venue_fills for r in (live, paper)) else "DIFFER (see !! above)"))

    print("\ndifferences (paper - live)")
    worst_pnl = worst_fills = D(0)
    for m in MARKETS:
        lv, pp = live.markets[m], paper.markets[m]
        notional = (lv.notional + pp.notional) / 2
        d_pnl = pp.pnl - lv.pnl
        d_fills = D(pp.fills - lv.fills)
        pnl_pct = abs(d_pnl) / notional * 100 if notional else D(0)
        fills_pct = abs(d_fills) / lv.fills * 100 if lv.fills else D(0)
        worst_pnl, worst_fills = max(worst_pnl, pnl_pct), max(worst_fills, fills_pct)
        print(f"  {m}: PnL {d_pnl:+,.2f} {q[m]} = {pnl_pct:.3f}% of notional traded (mean of both runs "
              f"{notional:,.2f}); fills {d_fills:+} = {fills_pct:.1f}% of live's {lv.fills}; notional "
              f"{pct(pp.notional - lv.notional, lv.notional)}")
    print(f"target PnL difference <= {TARGET_PNL_PCT}% of notional: "
          f"{'MET' if worst_pnl <= TARGET_PNL_PCT else 'MISSED'} (worst market {worst_pnl:.3f}%)")
    print(f"target fill-count difference <= {TARGET_FILLS_PCT}%: "
          f"{'MET' if worst_fills <= TARGET_FILLS_PCT else 'MISSED'} (worst market {worst_fills:.1f}%)")

    print("\nwhat makes them differ (observed)")
    for m in MARKETS:
        lk = paper.looks.get(m, Looks())
        print(f"  {m}: volume: over paper's {lk.count} looks it estimated {lk.estimated:.4f} traded where the "
              f"exchange's bars traded {lk.traded:.4f} in the same spans ({pct(lk.estimated, lk.traded)}); "
              f"{lk.zero} looks estimated 0 (the venue's 24h volume drops a whole minute at each minute's turn; "
              f"paper spreads such lumps with a rate smoothed over five minutes). What leaves the 24h window "
              f"is taken at the day's average rate, so over a short run the estimate is off by how the same "
              f"hours a day earlier differed from that average")
        print(f"  {m}: range: {lk.narrower} of {lk.count} looks sampled a narrower price range (ticker and book "
              f"reads) than the minute bars they overlap, which is what the exchange fills from")
    for m in MARKETS:
        lv, pp = live.markets[m], paper.markets[m]
        lo = {r["id"] for r in live.order_rows if r["market"] == m and D(r["filled"]) > 0}
        po = {r["id"] for r in paper.order_rows if r["market"] == m and D(r["filled"]) > 0}
        print(f"  {m}: pieces: orders with a fill {len(lo)} live vs {len(po)} paper; fills per such order "
              f"{lv.fills / max(1, len(lo)):.2f} live (the exchange fills the running minute again at each request) "
              f"vs {pp.fills / max(1, len(po)):.2f} paper")
    compare_orders(live, paper)
    print(f"  participation: exchange fill share {DEFAULT_FILL_SHARE} per minute bar, paper {args.participation} "
          f"per look (config/paper.toml ships 0.1)")


def compare_orders(live: RunResult, paper: RunResult) -> None:
    """The same signal's order in both runs (instance, candle, purpose, side, price): how each one filled."""
    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return r["instance"], r["candle_time"], r["purpose"], r["side"], r["price"], r["amount"]

    lv = {key(r): r for r in live.order_rows}
    pp = {key(r): r for r in paper.order_rows}
    both = sorted(set(lv) & set(pp), key=lambda k: (str(k[1]), k[0]))
    outcome: Counter[str] = Counter()
    for k in both:
        a, b = D(lv[k]["filled"]), D(pp[k]["filled"])
        if a == b:
            outcome["same fill" if a else "neither filled"] += 1
        elif a > b:
            how = "not at all" if not b else "less"
            outcome[f"paper filled {how} ({pp[k]['state']}{_why(pp[k])})"] += 1
        else:
            how = "not at all" if not a else "less"
            outcome[f"live filled {how} ({lv[k]['state']}{_why(lv[k])})"] += 1
    print(f"  orders: the same order (instance, candle, side, price, amount) in both runs: {len(both)}; only "
          f"live {len(set(lv) - set(pp))}, only paper {len(set(pp) - set(lv))} (the runs drift apart once a fill "
          f"differs); of the common ones:")
    for what, n in outcome.most_common():
        print(f"    {n:4d} {what}")
    # Orders the exchange filled but paper cancelled unfilled on an opposite signal: when did the exchange
    # fill them, relative to paper's last look (follow) before its cancel?
    live_fills: dict[int, list[datetime]] = defaultdict(list)
    for f in live.fill_rows:
        live_fills[int(f["order_id"])].append(parse_iso(str(f["at"])))
    after_look = lost = 0
    for k in both:
        a, b = lv[k], pp[k]
        if D(a["filled"]) > 0 and D(b["filled"]) == 0 and "opposite" in str(b.get("note") or ""):
            lost += 1
            cancelled = parse_iso(str(b["updated_at"]))
            last_look = _last_follow(cancelled)
            after_look += int(all(t > last_look for t in live_fills[int(a["id"])]))
    if lost:
        print(f"  cancel before a look: of the {lost} orders the exchange filled and paper cancelled unfilled on "
              f"an opposite signal, {after_look} were filled by the exchange only after paper's last look "
              f"before that cancel (the cancel looks once more, but one sample at the cancel rarely reaches "
              f"the low or high the minute bar had between two looks)")


def _last_follow(t: datetime) -> datetime:
    """The last follow (look) at or before `t` on the cadence of `Rig.timeline`."""
    offsets = [FOLLOW_OFFSET_S + FOLLOW_EVERY_S * i for i in range(int((60 - FOLLOW_OFFSET_S) // FOLLOW_EVERY_S) + 1)]
    minute = floor_minute(t)
    return max(m + timedelta(seconds=o) for m in (minute - timedelta(minutes=1), minute) for o in offsets
               if o < 60 and m + timedelta(seconds=o) <= t)


def _why(r: dict[str, Any]) -> str:
    note = str(r.get("note") or "")
    if r["state"] != "cancelled":
        return ""
    return ", ttl" if "ttl" in note else ", opposite signal" if "opposite" in note else ""


async def amain(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        stream = quiet_logs(work, args.log_level)
        try:
            print(f"{len(instances())} instances on {len(STREAMS)} streams -> {', '.join(MARKETS)}; "
                  f"{args.hours:g} simulated hours from {T0.isoformat()}; seed {args.seed}; "
                  f"paper participation {args.participation}")
            live = await one_run("live", args, work / "live")
            print(f"live run: {live.wall_s:.0f} s wall")
            paper = await one_run("paper", args, work / "paper")
            print(f"paper run: {paper.wall_s:.0f} s wall")
            report(live, paper, args)
        finally:
            stream.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=6.0, help="simulated hours")
    parser.add_argument("--participation", type=Decimal, default=DEFAULT_FILL_SHARE,
                        help="[paper] participation (default: the simulated exchange's fill share)")
    parser.add_argument("--coinbtr-rpm", type=int, default=10_000,
                        help="CoinBTR request budget (raised so neither run waits on it)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--log-level", default="info", help="the daemon's log level (lines go to a temp file)")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
