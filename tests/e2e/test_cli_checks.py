"""`tradebot check-config` fails, with the reason and its dotted path, whenever a strategy cannot be loaded;
`--duration` below zero is a usage error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {"TRADEBOT_STATUS__LISTEN": "127.0.0.1:0"}

ENTRY = ('[[strategies]]\nname = "{name}"\nstrategy = "{strategy}"\nmarket = "btc-mxn"\n'
         'feed = {{ source = "atmos", symbol = "BTCUSDT" }}\norder_amount = "0.001"\n{extra}')

GOOD_USER_STRATEGY = '''
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from bot.domain import Action
from bot.strategy import HOLD, Codes, Floats, Strategy, StrategyParams


class P(StrategyParams):
    window: int = 3


class Mine(Strategy[P]):
    name: ClassVar[str] = "{name}"
    Params = P

    def indicators(self, params: P) -> Sequence[Any]:
        {indicators}

    def rule(self, cols: Mapping[str, Floats], params: P) -> Codes:
        return np.full(len(cols["close"]), HOLD, dtype=np.int8)

    def explain(self, action: Action, values: Mapping[str, float], params: P) -> str:
        return "hold"


STRATEGY = Mine()
'''


def tradebot(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **ENV, **(env or {})})


def config(tmp_path: Path, *entries: tuple[str, str], extra: str = "") -> Path:
    text = 'strategy_paths = ["user"]\n' + "".join(
        ENTRY.format(name=f"s{i}", strategy=s, extra=extra) for i, (s, _) in enumerate(entries))
    (tmp_path / "user").mkdir(exist_ok=True)
    for strategy, source in entries:
        if source:
            (tmp_path / "user" / f"{strategy}.py").write_text(source)
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    return cfg


def assert_refused(r: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    for text in expected:
        assert text in r.stderr, r.stderr
    assert "configuration OK" not in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""  # nothing printed but the problems


@pytest.mark.parametrize("source,reason", [
    ("def broken(:\n", "SyntaxError"),
    ("import no_such_module_for_tradebot\n", "ModuleNotFoundError: No module named 'no_such_module_for_tradebot'"),
    ("from bot.strategy import does_not_exist\n", "ImportError: cannot import name 'does_not_exist'"),
    ("raise SystemExit(3)\n", "SystemExit: 3"),
    ("STRATEGY = 42\n", "must define STRATEGY"),
])
def test_broken_user_strategy_file_fails_check_config_with_its_path(tmp_path: Path, source: str,
                                                                    reason: str) -> None:
    cfg = config(tmp_path, ("rsi_reversion", ""), ("mine", source))
    r = tradebot("check-config", "--config", str(cfg), cwd=tmp_path)
    assert_refused(r, "strategies.1.strategy: ", "user/mine.py", reason)
    assert "strategies.0" not in r.stderr  # the good entry is not blamed


def test_unknown_strategy_name_fails_check_config_listing_what_exists(tmp_path: Path) -> None:
    r = tradebot("check-config", "--config", str(config(tmp_path, ("no_such_strategy", ""))), cwd=tmp_path)
    assert_refused(r, "strategies.0.strategy: unknown strategy 'no_such_strategy'", "rsi_reversion")


def test_strategy_that_fails_on_its_params_fails_check_config(tmp_path: Path) -> None:
    source = GOOD_USER_STRATEGY.format(name="mine", indicators='raise KeyError("no indicator called wma")')
    r = tradebot("check-config", "--config", str(config(tmp_path, ("mine", source))), cwd=tmp_path)
    assert_refused(r, "strategies.0.strategy: mine fails on these params: KeyError")


def test_working_user_strategy_passes_check_config(tmp_path: Path) -> None:
    source = GOOD_USER_STRATEGY.format(name="mine", indicators="return []")
    r = tradebot("check-config", "--config", str(config(tmp_path, ("mine", source))), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stderr


def test_broken_builtin_strategy_module_fails_check_config(tmp_path: Path) -> None:
    # A `strategies` package that shadows the built-in one, with a module whose dependency is missing.
    pkg = tmp_path / "shadow" / "strategies"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "needs_dep.py").write_text("import not_installed_dependency_xyz\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(ENTRY.format(name="a", strategy="needs_dep", extra=""))
    r = tradebot("check-config", "--config", str(cfg), cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "shadow")})
    assert_refused(r, "strategies.0.strategy: strategy module strategies.needs_dep failed to import",
                   "not_installed_dependency_xyz")


def test_strategy_machinery_that_cannot_be_imported_never_says_ok(tmp_path: Path) -> None:
    # `ta` (which the indicators need) shadowed by a broken module: bot.strategy itself fails to import.
    shadow = tmp_path / "shadow" / "ta"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('ta is broken in this install')\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(ENTRY.format(name="a", strategy="rsi_reversion", extra=""))
    r = tradebot("check-config", "--config", str(cfg), cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "shadow")})
    assert r.returncode == 1, r.stderr
    assert "ta is broken in this install" in r.stderr
    assert "configuration OK" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize("command", [["run"], ["sandbox", "--port-base", "0"]])
@pytest.mark.parametrize("value", ["-1", "-0.5", "nan"])
def test_negative_duration_is_a_usage_error(tmp_path: Path, command: list[str], value: str) -> None:
    r = tradebot(*command, f"--duration={value}", cwd=tmp_path,
                 env={"TRADEBOT_CONFIG": str(ROOT / "config/paper.toml")})
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"tradebot {command[0]}: error: --duration must be 0 or more seconds" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not (tmp_path / "var").exists()  # refused before anything started


def test_check_config_prints_the_new_sections_with_notify_urls_masked(tmp_path: Path) -> None:
    urls_file = tmp_path / "notify-urls"
    urls_file.write_text("mailtos://bot:file-pass-4242@mail.example/\n")
    r = tradebot("check-config", "--config", str(ROOT / "config/paper.toml"), cwd=tmp_path,
                 env={"TRADEBOT_NOTIFY__URLS": '["tgram://123456:env-bot-token-abc/99"]',
                      "TRADEBOT_NOTIFY__URLS_FILE": str(urls_file), "TRADEBOT_BOT_NAME": "acct-1"})
    assert r.returncode == 0, r.stderr
    dumped = json.loads(r.stdout)
    assert dumped["bot_name"] == "acct-1" and dumped["stop_timeout_seconds"] == 20
    assert dumped["recorder"] == {"batch_size": 1000, "flush_interval_seconds": 5.0, "max_backlog_rows": 100000,
                                  "max_backlog_age_seconds": 3600.0}
    assert dumped["execution"]["on_stop"] == "cancel" and dumped["paper"]["participation"] == "0.1"
    assert dumped["notify"]["urls"] == ["**********", "**********"]
    assert "batch_size" not in dumped["atlas"]
    for secret in ("env-bot-token-abc", "file-pass-4242", "sandbox-coinbtr-token"):
        assert secret not in r.stdout + r.stderr
