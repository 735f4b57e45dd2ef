"""The systemd units: `systemd-analyze verify` clean, `security` exposure at 2.0 or below, and the settings the
daemon relies on (notify, watchdog, a stop bound above the daemon's own, a credential for every secret)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import Settings, _SecretSection

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
INSTALLED_BINARY = "/opt/tradebot/.venv/bin/tradebot"
MAX_EXPOSURE = 2.0

analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    analyze is None, reason="systemd-analyze is not installed (apt-get install systemd) to check the units")


def _directives(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def _installable_copy(unit: str, tmp: Path, instance: str = "") -> Path:
    """The unit with ExecStart pointing at a binary that exists here (verify checks it), named as systemd
    would see it (`tradebot@alice.service` for the template)."""
    text = (UNITS / unit).read_text()
    assert INSTALLED_BINARY in text
    text = text.replace(INSTALLED_BINARY, str(Path(sys.executable).with_name("tradebot")))
    name = unit.replace("@.", f"@{instance}.") if instance else unit
    path = tmp / name
    path.write_text(text)
    return path


UNIT_CASES = [("tradebot.service", ""), ("tradebot@.service", "alice")]


@needs_analyze
@pytest.mark.parametrize(("unit", "instance"), UNIT_CASES)
def test_unit_passes_systemd_analyze_verify(tmp_path: Path, unit: str, instance: str) -> None:
    assert Path(sys.executable).with_name("tradebot").exists()
    path = _installable_copy(unit, tmp_path, instance)
    proc = subprocess.run([str(analyze), "verify", path.name], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    # verify reports problems on stderr yet may exit 0: any line naming our unit is a problem.
    problems = [ln for ln in (proc.stdout + proc.stderr).splitlines() if path.name in ln or "tradebot" in ln]
    assert problems == []


@needs_analyze
@pytest.mark.parametrize(("unit", "instance"), UNIT_CASES)
def test_unit_exposure_is_at_most_2(tmp_path: Path, unit: str, instance: str) -> None:
    path = _installable_copy(unit, tmp_path, instance)
    proc = subprocess.run([str(analyze), "security", "--offline=true", "--no-pager", str(path)],
                          capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout + proc.stderr)
    assert found, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert float(found.group(1)) <= MAX_EXPOSURE, proc.stdout


@pytest.mark.parametrize("unit", ["tradebot.service", "tradebot@.service"])
def test_unit_is_a_notify_service_with_watchdog_state_dir_and_a_stop_bound_above_the_daemons(unit: str) -> None:
    d = _directives(UNITS / unit)
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"]
    assert d["Restart"] == ["on-failure"]
    assert int(d["WatchdogSec"][0]) >= 10
    drain_bound = Settings.model_fields["stop_timeout_seconds"].metadata
    le = max(m.le for m in drain_bound if hasattr(m, "le"))  # the largest stop bound the config accepts
    assert int(d["TimeoutStopSec"][0]) > le
    assert d["StateDirectory"][0].startswith("tradebot")
    assert d["DynamicUser"] == ["yes"] and d["ProtectSystem"] == ["strict"]


@pytest.mark.parametrize("unit", ["tradebot.service", "tradebot@.service"])
def test_unit_loads_a_credential_for_every_secret_section(unit: str) -> None:
    d = _directives(UNITS / unit)
    loaded = {v.partition(":")[0] for v in d["LoadCredential"]}
    sections = {cls.SECTION for cls in _SecretSection.__subclasses__()} | {"notify"}
    assert sections <= loaded
    assert all(v.partition(":")[2].startswith("/etc/tradebot/credentials/") for v in d["LoadCredential"])


def test_template_instance_names_the_bot_its_state_and_its_config() -> None:
    d = _directives(UNITS / "tradebot@.service")
    assert "TRADEBOT_BOT_NAME=%i" in d["Environment"]
    assert "TRADEBOT_STATE_DIR=%S/tradebot/%i" in d["Environment"]
    assert d["StateDirectory"] == ["tradebot/%i"]
    assert "--config /etc/tradebot/%i.toml" in d["ExecStart"][0]
    assert all("/%i/" in v for v in d["LoadCredential"])


def _check_config(config: Path, creds: Path | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k != "CREDENTIALS_DIRECTORY"}
    if creds is not None:
        env["CREDENTIALS_DIRECTORY"] = str(creds)
    return subprocess.run([sys.executable, "-m", "bot", "check-config", "--config", str(config)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


def test_live_example_is_clean_but_for_the_placeholder_it_names(tmp_path: Path) -> None:
    config = ROOT / "config" / "live.example.toml"
    proc = _check_config(config, None)
    assert proc.returncode == 2
    problems = [ln.strip() for ln in proc.stderr.splitlines() if ln.startswith("  ")]
    assert problems == ["coinbtr.token: live mode needs a CoinBTR token"]
    assert "credentials/coinbtr" in config.read_text()  # the file names that placeholder


def test_live_example_passes_with_every_secret_from_systemd_credentials(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"  # what LoadCredential= makes of /etc/tradebot/credentials/*
    creds.mkdir()
    loaded = [v.partition(":")[0] for v in _directives(UNITS / "tradebot.service")["LoadCredential"]]
    for name in loaded:
        (creds / name).write_text("json://hooks.example.net/T0K3N\n" if name == "notify" else f"secret-{name}-42\n")
    proc = _check_config(ROOT / "config" / "live.example.toml", creds)
    assert proc.returncode == 0, proc.stderr
    dump = json.loads(proc.stdout)
    assert dump["mode"] == "live" and dump["sandbox"]["enabled"] is False
    assert dump["coinbtr"]["token"] == dump["atmos"]["api_key"] == "**********"
    assert "secret-" not in proc.stdout + proc.stderr and "T0K3N" not in proc.stdout + proc.stderr
