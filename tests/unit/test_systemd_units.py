"""The systemd units: `systemd-analyze verify` clean, `security` exposure at 2.0 or below, and the settings the
daemon relies on (notify, watchdog, a stop bound above the daemon's own, a credential for every secret)."""

from __future__ import annotations

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
