"""Settings: TOML + environment overrides, secrets from files, masking, dotted-path errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.settings import load_settings, resolve_config_path

PAPER = Path(__file__).resolve().parents[2] / "config" / "paper.toml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_default_paper_config_loads_with_decimal_money() -> None:
    s = load_settings(PAPER)
    assert s.mode == "paper"
    assert str(s.paper.balances["mxn"]) == "2000000"
    assert s.strategies[0].feed.key == "atmos:binance:BTCUSDT"
    assert str(s.strategies[0].order_amount) == "0.001"


def test_environment_overrides_file_with_nested_delimiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBOT_COINBTR__TOKEN", "from-env-token")
    monkeypatch.setenv("TRADEBOT_RISK__MAX_OPEN_ORDERS", "7")
    monkeypatch.setenv("TRADEBOT_CONFIG", "ignored-as-a-field.toml")
    s = load_settings(PAPER)
    assert s.coinbtr.token.get_secret_value() == "from-env-token"
    assert s.risk.max_open_orders == 7
    assert s.atmos.api_key.get_secret_value() == "sandbox-atmos-key"  # untouched sibling keeps file value


def test_config_path_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRADEBOT_CONFIG", raising=False)
    assert resolve_config_path(None) == Path("config/paper.toml")
    monkeypatch.setenv("TRADEBOT_CONFIG", "/etc/tradebot/x.toml")
    assert resolve_config_path(None) == Path("/etc/tradebot/x.toml")
    assert resolve_config_path("given.toml") == Path("given.toml")


def test_secret_read_from_token_file(tmp_path: Path) -> None:
    secret = tmp_path / "coinbtr"
    secret.write_text("file-token-123\n")
    cfg = write(tmp_path, f'[coinbtr]\ntoken_file = "{secret}"\n')
    assert load_settings(cfg).coinbtr.token.get_secret_value() == "file-token-123"


def test_missing_secret_file_names_the_field(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[atlas]\napi_key_file = "/nonexistent/atlas"\n')
    with pytest.raises(ConfigError) as ei:
        load_settings(cfg)
    assert ei.value.problems[0][0] == "atlas.api_key_file"


def test_secret_read_from_systemd_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "atlas").write_text("cred-dir-key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    s = load_settings(write(tmp_path, '[atlas]\napi_key = "inline"\n'))
    assert s.atlas.api_key.get_secret_value() == "cred-dir-key"
    assert s.coinbtr.token.get_secret_value() == ""  # no credential file for coinbtr


def test_public_dump_masks_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBOT_STATUS__TOKEN", "status-secret-xyz")
    s = load_settings(PAPER)
    text = json.dumps(s.public_dump())
    for secret in s.secrets():
        assert secret not in text
    assert "status-secret-xyz" in s.secrets()


def test_unknown_key_and_wrong_type_both_reported_with_dotted_paths(tmp_path: Path) -> None:
    cfg = write(tmp_path, 'bogus = 1\n[risk]\nmax_open_orders = "many"\n[wallet]\nextra = true\n')
    with pytest.raises(ConfigError) as ei:
        load_settings(cfg)
    paths = {p for p, _ in ei.value.problems}
    assert {"bogus", "risk.max_open_orders", "wallet.extra"} <= paths
    assert dict(ei.value.problems)["bogus"] == "unknown key"


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "mode = \n"))


def test_live_mode_may_run_against_the_sandbox_but_needs_a_token(tmp_path: Path) -> None:
    # Live against the in-process simulated exchange is how the live path is exercised offline.
    assert load_settings(write(tmp_path, 'mode = "live"\n[coinbtr]\ntoken = "t"\n')).mode == "live"
    with pytest.raises(ConfigError) as ei:
        load_settings(write(tmp_path, 'mode = "live"\n'))
    assert ("coinbtr.token", "live mode needs a CoinBTR token") in ei.value.problems


def test_duplicate_strategy_names_rejected(tmp_path: Path) -> None:
    block = (
        '[[strategies]]\nname = "a"\nstrategy = "rsi_reversion"\nmarket = "btc-mxn"\n'
        'feed = { source = "atmos", symbol = "BTCUSDT" }\norder_amount = "0.001"\n'
    )
    with pytest.raises(ConfigError, match="invalid configuration") as ei:
        load_settings(write(tmp_path, block + block))
    assert any("unique" in m for _, m in ei.value.problems)


def test_instance_names_that_differ_only_in_case_are_refused(tmp_path: Path) -> None:
    block = ('[[strategies]]\nname = "{n}"\nstrategy = "rsi_reversion"\nmarket = "btc-mxn"\n'
             'feed = {{ source = "atmos", symbol = "BTCUSDT" }}\norder_amount = "0.001"\n')
    with pytest.raises(ConfigError) as ei:
        load_settings(write(tmp_path, block.format(n="BTC-rsi") + block.format(n="btc-rsi")))
    assert any("differ in more than case" in m for _, m in ei.value.problems)
