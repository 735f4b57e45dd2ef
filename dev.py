#!/usr/bin/env python3
"""Bootstrap and run tradebot from a fresh checkout with nothing but python3.

    python3 dev.py demo [tradebot run options]   # offline paper-trading demo
    python3 dev.py test [pytest options]          # the whole test suite
    python3 dev.py lint                           # ruff + mypy --strict on bot/
    python3 dev.py tradebot ARGS...               # any tradebot subcommand

The first call creates `.venv/` and installs the locked dependencies (`requirements-dev.lock` and
`requirements-build.lock`, hash checked) and tradebot itself in editable mode; later calls reinstall
only when a lock file changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("TRADEBOT_VENV", ROOT / ".venv"))
LOCK = ROOT / "requirements-dev.lock"
BUILD_LOCK = ROOT / "requirements-build.lock"
STAMP = VENV / ".tradebot-lock.sha256"


def _bin(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def _run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def ensure_env() -> None:
    """Create the virtualenv and install the locked dependencies when missing or stale."""
    digest = hashlib.sha256(
        LOCK.read_bytes() + BUILD_LOCK.read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    ).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest and _bin("tradebot").exists():
        return
    if not _bin("python").exists():
        print(f"dev.py: creating {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    py = _bin("python")
    print("dev.py: installing locked dependencies (first run only)", file=sys.stderr)
    _run(py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--require-hashes",
         "-r", LOCK, "-r", BUILD_LOCK)
    # Compat mode: a plain path in a .pth file. The default (strict) mode installs an import hook that every
    # Python start in the venv imports (about 20 ms of each `tradebot` command).
    _run(py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--no-build-isolation", "--config-settings", "editable_mode=compat", "-e", ".")
    STAMP.write_text(digest + "\n")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    ensure_env()
    env = dict(os.environ)
    if cmd == "demo":
        args = [str(_bin("tradebot")), "run", "--config", "config/paper.toml"]
        if not any(a.startswith("--duration") for a in rest):
            args += ["--duration", "120"]
        if not any(a.startswith("--view") for a in rest):
            args += ["--view", "auto"]
        args += rest
    elif cmd == "test":
        args = [str(_bin("python")), "-m", "pytest", *rest]
    elif cmd == "lint":
        rc = subprocess.run([str(_bin("ruff")), "check", "bot", "strategies", "tests", "bench"],
                            cwd=ROOT).returncode
        rc2 = subprocess.run([str(_bin("mypy")), "--strict", "bot"], cwd=ROOT).returncode
        return rc or rc2
    elif cmd == "tradebot":
        args = [str(_bin("tradebot")), *rest]
    else:
        print(f"dev.py: unknown command {cmd!r}; see python3 dev.py --help", file=sys.stderr)
        return 2
    try:
        return subprocess.run(args, cwd=ROOT, env=env).returncode
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
