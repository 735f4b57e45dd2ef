"""Chaos soak: the live daemon against the five simulators with seeded faults on all of them and outages.

    .venv/bin/python bench/chaos.py [--minutes 1000] [--seed 7] [--speed 240] [--fault-rate 1.0] [--keep DIR]

`tradebot sandbox --state-dir` runs as its own process (CoinBTR's own matching: orders rest and fill) and
`tradebot run` in live mode points at it (`[sandbox] url`), with a btc sweep. Every service gets the
default fault mix (`trials_common.FAULT_MIX`, about 10% of requests: 429, 5xx, drops before and after the
handler, truncated and half bodies, latency; `--fault-rate` scales it) and one scheduled outage (503 or
dropped connections, alternately) at its own point of the run; a btc deposit every 45 simulated minutes
pushes the balance over the sweep's `keep`, so withdrawals happen, and every third withdrawal the bot has
sent is failed by the exchange (refunded, swept again). After `--minutes` simulated minutes the daemon gets
SIGTERM, and the invariants are judged from the simulators' state (see `trials_common.check`). Prints the
table; exit 1 on any FAIL.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

# This directory off the path (bench/secrets.py would shadow the standard library's secrets), the root on it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.trials_common import FAULT_MIX, SERVICES, World, check, counters_table, print_table  # noqa: E402

DEPOSIT_EVERY_MIN = 45
OUTAGE_MIN = 8  # simulated minutes each service is out (shorter in runs under 200 minutes)


def outages(start: float, minutes: float) -> dict[str, dict[str, str]]:
    """One outage per service, spread over the run, alternately 503 and dropped connections."""
    length = min(OUTAGE_MIN, minutes / 25)
    out = {}
    for i, service in enumerate(SERVICES):
        at = start + minutes * 60 * (i + 1) / (len(SERVICES) + 1)
        out[service] = {"start": iso(at), "end": iso(at + length * 60), "mode": "503" if i % 2 == 0 else "drop"}
    return out


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def run(wd: Path, minutes: float, seed: int, speed: float, fault_rate: float, settle: bool = True) -> int:
    """One soak in `wd`; with `settle`, faults stop at the end and the outbox drains before the SIGTERM."""
    world = World(wd, seed=seed, speed=speed)
    rng = random.Random(seed)
    try:
        mix = {k: (v * fault_rate if k.startswith("p_") else v) for k, v in FAULT_MIX.items()}
        start = world.now_s()
        for service, outage in outages(start, minutes).items():
            world.post(service, "/_sandbox/faults", {**mix, "outages": [outage]})
        d = world.daemon()
        d.ready()
        end = start + minutes * 60
        next_deposit = world.now_s() + 60
        looked: set[int] = set()
        loops = 0
        while (now := world.now_s()) < end and d.alive():
            if now >= next_deposit:
                world.post("coinbtr", "/_sandbox/deposits",
                           {"coin": "btc", "amount": rng.choice(("0.05", "0.08", "0.12")), "confirmations": 1})
                next_deposit += DEPOSIT_EVERY_MIN * 60
            loops += 1
            if loops % 5 == 0:  # every third new withdrawal fails at the exchange (refunded; swept again)
                for w in world.get("coinbtr", "/_sandbox/state")["withdrawals"]:
                    if w["status"] in ("pending", "signed") and w["id"] not in looked:
                        looked.add(w["id"])
                        if len(looked) % 3 == 0:
                            world.post("coinbtr", f"/_sandbox/withdrawals/{w['id']}/fail", {})
            time.sleep(min(1.0, max(0.05, (end - now) / speed)))
        counters = world.counters()
        settled = False
        if settle:  # calm: the outbox drains (rows recorded late, never lost), then a clean stop
            for service in SERVICES:
                world.post(service, "/_sandbox/reset", {})
            settled = d.settle()
        rc = d.terminate()
        rep = check(world, world.daemons, exits=[rc])
        done = (world.now_s() - start) / 60
        print_table(f"bench/chaos.py --minutes {minutes:g} --seed {seed} --speed {speed:g}: "
                    f"{done:.0f} simulated minutes, faults x{fault_rate:g}, one outage per service, "
                    f"outbox drained after the faults stopped: {'yes' if settled else 'no'}",
                    counters_table(counters), rep)
        return 0 if rep.ok else 1
    finally:
        world.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=1000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--speed", type=float, default=240.0, help="simulated minutes per wall minute")
    p.add_argument("--fault-rate", type=float, default=1.0, help="scale of the default fault mix")
    p.add_argument("--keep", type=Path, help="work in DIR and keep it (logs, journal, world)")
    args = p.parse_args(argv)
    if args.keep:
        return run(args.keep, args.minutes, args.seed, args.speed, args.fault_rate)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        return run(Path(tmp), args.minutes, args.seed, args.speed, args.fault_rate)


if __name__ == "__main__":
    sys.exit(main())
