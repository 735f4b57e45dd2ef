"""Secrets sweep: distinctive secrets in every secret setting, errors provoked, every output searched.

    .venv/bin/python bench/secrets.py [--seed 5] [--keep DIR]

Every secret setting (`Settings.secrets()`: the Atmos, sFOX, CoinBTR, Atlas and Atmotube keys, the status
token, a notify URL with a password) gets a distinctive value, and the sandbox process is told to accept
them. Then, at log level debug:
1. the daemon runs live with a sweep under the full fault mix raised to 40% (429s, 5xx with bodies,
   truncated and half bodies, drops) plus a stretch of `bad_json` only; `/status` and `/metrics` are read
   with the token, and with a wrong one (401);
2. a daemon whose CoinBTR token the exchange does not know (401 at start-up: exit 2);
3. a daemon whose Atmos, Atlas and Atmotube keys are unknown (401s on every poll and insert), for a while;
4. `tradebot check-config` and `tradebot status` with a wrong token.
Searched, for each secret (and a URL's password and scheme-less form): every log line and stderr (daemons and
the sandbox), every error message printed, `/status`, `/metrics`, every Atlas dataset (metadata and rows),
and every file under the daemons' state dirs (the SQLite stores, raw bytes). Prints hits per place; exit 1 on
any hit.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This directory off the path (bench/secrets.py would shadow the standard library's secrets), the root on it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.trials_common import FAULT_MIX, ROOT, SERVICES, World, http, write_config  # noqa: E402


def secret_set(rng: random.Random, tag: str) -> dict[str, str]:
    def one(name: str) -> str:
        return f"S3cr3t{tag}{name}{rng.getrandbits(40):010x}"

    out = {s: one(s) for s in ("atmos", "sfox", "coinbtr", "atlas", "atmotube", "status")}
    out["notify"] = f"json://bot:{one('notifypw')}@127.0.0.1:9/{one('notifypath')}"
    return out


def needles(secrets: dict[str, str]) -> list[str]:
    out = []
    for value in secrets.values():
        out.append(value)
        if "://" in value:
            rest = value.split("://", 1)[1]
            out += [rest, rest.split("@")[0].split(":", 1)[1], rest.split("/", 1)[1]]
    return out


def run(wd: Path, seed: int) -> int:
    rng = random.Random(seed)
    good, bad = secret_set(rng, "Good"), secret_set(rng, "Bad")
    world = World(wd, seed=seed, secrets=good, log_level="debug")
    texts: dict[str, str] = {}
    try:
        # 1. live, faults, status and metrics.
        d = world.daemon()
        d.token = good["status"]
        d.ready()
        heavy = {k: (min(1.0, v * 4) if k.startswith("p_") else v) for k, v in FAULT_MIX.items()}
        world.faults(**heavy)
        world.post("coinbtr", "/_sandbox/deposits", {"coin": "btc", "amount": "0.1", "status": "confirmed"})
        time.sleep(6)
        world.faults(**{**{k: 0.0 for k in heavy if k.startswith("p_")}, "p_bad_json": 0.5})
        time.sleep(3)
        world.faults(p_bad_json=0.0)
        texts["/status"] = json.dumps(d.status())
        texts["/metrics"] = http("GET", d.url + "/metrics", headers={"Authorization": f"Bearer {good['status']}"}
                                 )[1].decode()
        for path in ("/status", "/metrics", "/health"):
            code, body = http("GET", d.url + path, headers={"Authorization": f"Bearer {bad['status']}"})
            texts[f"{path} with a wrong token ({code})"] = body.decode(errors="replace")
        texts["tradebot status, wrong token"] = _cli(["status", "--config", str(_with(world, wd, "status.toml",
                                                     {**good, "status": bad["status"]})), "--url", d.url])
        texts["tradebot check-config"] = _cli(["check-config", "--config", str(world.config)])
        rc = d.terminate()
        # 2. an unknown CoinBTR token: refused at start-up.
        cfg2 = _with(world, wd, "bad-token.toml", {**good, "coinbtr": bad["coinbtr"]}, state="var-bad-token")
        d2 = world.daemon(None, cfg2)
        d2.proc.wait(90)
        # 3. unknown Atmos, Atlas and Atmotube keys: 401s on every poll and insert.
        cfg3 = _with(world, wd, "bad-keys.toml", {**good, "atmos": bad["atmos"], "atlas": bad["atlas"],
                                                  "atmotube": bad["atmotube"]}, state="var-bad-keys")
        d3 = world.daemon(None, cfg3, "--duration", "8")
        d3.proc.wait(120)
        for p in (d, d2, d3):
            p.log.poll()
        texts.update({f"{p.out.name}": "\n".join(p.log.raw) for p in (d, d2, d3)})
        texts.update({f"{p.err.name}": p.stderr() for p in (d, d2, d3)})
        texts["sandbox log"] = world.sandbox.out.read_text(errors="replace") + world.sandbox.stderr()
        texts["Atlas (every dataset and row)"] = json.dumps(world.get("atlas", "/_sandbox/state"))
        hits = search(texts, wd, needles(good) + needles(bad))
        errors = sum('"level": "error"' in t or '"level": "warning"' in t for t in texts.values())
        rows = [(s, f"{c['requests_total']} requests, {sum(c['faults'].values())} faults")
                for s, c in world.counters().items() if s in SERVICES]
        rows += [("places searched", str(len(texts) + len(files(wd)))),
                 ("log lines searched", str(sum(t.count("\n") for t in texts.values()))),
                 ("401/403 answers provoked", str(sum(int(c.get("statuses", {}).get(k, 0))
                                                      for c in world.counters().values() for k in ("401", "403")))),
                 ("texts with warnings or errors", str(errors)),
                 ("exit codes (live, bad token, bad keys)", f"{rc}, {d2.proc.returncode}, {d3.proc.returncode}"),
                 ("secret hits", str(len(hits)))]
        width = max(len(k) for k, _ in rows)
        print(f"bench/secrets.py --seed {seed}: {len(needles(good) + needles(bad))} secret strings")
        print("-" * (width + 40))
        for k, v in rows:
            print(f"{k:<{width}}  {v}")
        print("-" * (width + 40))
        for h in hits:
            print("HIT", h)
        print("0 hits" if not hits else f"{len(hits)} HITS", flush=True)
        return 0 if not hits else 1
    finally:
        world.close()


def _with(world: World, wd: Path, name: str, secrets: dict[str, str], state: str = "var") -> Path:
    return write_config(wd, world.url, secrets=secrets, name=name, state_dir=wd / state, log_level="debug")


def _cli(args: list[str]) -> str:
    p = subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    return f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"


def files(wd: Path) -> list[Path]:
    """Every file the daemons wrote (state dirs); the world's own files are the simulators'."""
    return [p for p in wd.rglob("*") if p.is_file() and p.parts[len(wd.parts)].startswith("var")]


def search(texts: dict[str, str], wd: Path, secrets: list[str]) -> list[str]:
    hits = [f"{where}: {s}" for where, text in texts.items() for s in secrets if s in text]
    for f in files(wd):
        data = f.read_bytes()
        hits += [f"{f.relative_to(wd)}: {s}" for s in secrets if s.encode() in data]
    return hits


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--keep", type=Path, help="work in DIR and keep it")
    args = p.parse_args(argv)
    if args.keep:
        return run(args.keep, args.seed)
    with tempfile.TemporaryDirectory(prefix="secrets-") as tmp:
        return run(Path(tmp), args.seed)


if __name__ == "__main__":
    sys.exit(main())
