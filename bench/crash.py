"""Crash trials: SIGKILL the live daemon at seeded random points, restart it, check every invariant.

    .venv/bin/python bench/crash.py [--trials 50] [--seed 11] [--speed 240] [--keep DIR]

One simulated world (`tradebot sandbox --state-dir`, its own process, so it outlives every kill) and one
daemon state carry on through all trials. Each trial starts the daemon, waits for READY, then kills it
with SIGKILL at a point drawn from the seeded RNG: every other trial inside a request — a place, a cancel,
a withdraw (a btc deposit makes a sweep due) or an Atlas bulk_insert — held there by injected latency on that
endpoint (`LATENCY_S` wall seconds; the kill comes as soon as the simulator counts the delayed request,
so the request is applied after the daemon died, its answer never read); the others at a random moment
(0.2 .. 6 wall seconds after READY). Then the daemon is started again, reconciles, runs a little, and is
stopped with SIGTERM; the invariants (`trials_common.check`) are judged from the simulators' state after
every trial. Prints the table; exit 1 on any FAIL.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

# This directory off the path (bench/secrets.py would shadow the standard library's secrets), the root on it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.trials_common import SERVICES, Daemon, Report, World, check, print_table  # noqa: E402

LATENCY_S = 1.0
# kind → (service, path prefix of the endpoint the kill lands in)
INSIDE = {"place": ("coinbtr", "/api/v1/trading/place"), "cancel": ("coinbtr", "/api/v1/trading/cancel"),
          "withdraw": ("coinbtr", "/api/v1/wallet/withdraw"), "bulk_insert": ("atlas", "/api/rows/bulk_insert")}
WAIT_INSIDE_S = 60.0  # wall seconds to wait for the endpoint to be called before killing anyway


def latency_count(world: World, service: str) -> int:
    return int(world.get(service, "/_sandbox/counters")["faults"].get("latency", 0))


def kill_inside(world: World, d: Daemon, kind: str) -> bool:
    """Hold the next request to `kind`'s endpoint; SIGKILL as soon as it is being held. False on a timeout."""
    service, prefix = INSIDE[kind]
    before = latency_count(world, service)
    world.post(service, "/_sandbox/faults", {"latency_s": LATENCY_S, "script": [
        {"kind": "latency", "count": 1, "path_prefix": prefix}]})
    if kind == "withdraw":
        world.post("coinbtr", "/_sandbox/deposits", {"coin": "btc", "amount": "0.1", "status": "confirmed"})
    deadline = time.monotonic() + WAIT_INSIDE_S
    while time.monotonic() < deadline and d.alive():
        if latency_count(world, service) > before:
            d.kill()
            return True
        time.sleep(0.02)
    d.kill()
    return False


def run(wd: Path, trials: int, seed: int, speed: float) -> int:
    rng = random.Random(seed)
    world = World(wd, seed=seed, speed=speed)
    points: Counter[str] = Counter()
    counters: dict[str, Counter[str]] = {s: Counter() for s in SERVICES}
    failed_trials: list[int] = []
    rep = Report()
    try:
        for trial in range(1, trials + 1):
            d = world.daemon()
            d.ready()
            if trial % 2 == 1:
                kind = rng.choice(sorted(INSIDE))
                landed = kill_inside(world, d, kind)
                points[f"inside {kind}" if landed else f"{kind}: not called in {WAIT_INSIDE_S:g}s, killed"] += 1
            else:
                time.sleep(rng.uniform(0.2, 6.0))
                d.kill()
                points["random moment"] += 1
            for service, c in world.counters().items():  # the reset below clears them: keep the sums
                counters[service]["requests"] += int(c["requests_total"])
                counters[service]["faults"] += sum(c["faults"].values())
                world.post(service, "/_sandbox/reset", {})  # an unused script must not hit the next trial
            time.sleep(LATENCY_S * 1.5)  # the held request lands (or not) before the restart looks
            d2 = world.daemon()
            d2.ready()
            d2.wait_for("execution.reconciled", 60)
            time.sleep(rng.uniform(0.5, 2.0))
            rc = d2.terminate()
            rep = check(world, world.daemons, exits=[rc])
            if not rep.ok:
                failed_trials.append(trial)
                print(f"trial {trial}: FAIL", {k: v[:3] for k, v in rep.checks.items() if v}, flush=True)
        rows = [(s, f"{counters[s]['requests']} requests, {counters[s]['faults']} delayed to kill inside")
                for s in SERVICES]
        rows += [(f"kill point: {k}", str(v)) for k, v in sorted(points.items())]
        rows += [("trials", str(trials)), ("daemon starts", str(len(world.daemons))),
                 ("trials failing an invariant", ", ".join(map(str, failed_trials)) or "none")]
        # The last check saw the whole history (one world, one journal); earlier failures are listed above.
        print_table(f"bench/crash.py --trials {trials} --seed {seed} --speed {speed:g}: SIGKILL, restart, "
                    "reconcile, SIGTERM, check", rows, _with_history(rep, failed_trials))
        return 0 if rep.ok and not failed_trials else 1
    finally:
        world.close()


def _with_history(rep: Report, failed_trials: list[int]) -> Report:
    if failed_trials:
        rep.add("every trial passed", [f"trial {t} failed an invariant" for t in failed_trials])
    else:
        rep.add("every trial passed", [])
    return rep


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--speed", type=float, default=240.0)
    p.add_argument("--keep", type=Path, help="work in DIR and keep it (logs, journal, world)")
    args = p.parse_args(argv)
    if args.keep:
        return run(args.keep, args.trials, args.seed, args.speed)
    with tempfile.TemporaryDirectory(prefix="crash-") as tmp:
        return run(Path(tmp), args.trials, args.seed, args.speed)


if __name__ == "__main__":
    sys.exit(main())
