"""Settings: Decimal floats from TOML, bot identity, stop bound, and the recorder/execution/notify homes."""

from __future__ import annotations

import json
from datetime import time
from decimal import Decimal
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.logs import Redactor
from bot.settings import DEFAULT_NOTIFY_EVENTS, load_settings

PAPER = Path(__file__).resolve().parents[2] / "config" / "paper.toml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def problems(tmp_path: Path, text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as ei:
        load_settings(write(tmp_path, text))
    return dict(ei.value.problems)


def test_toml_floats_stay_exact_in_decimal_fields_and_still_fill_float_fields(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, (
        "[sandbox]\nspeed = 12.5\n"
        "[paper]\nbalances = { btc = 12345678.123456789 }\nparticipation = 0.25\n"
        "[recorder]\nflush_interval_seconds = 0.5\n"
        '[notify]\nmin_interval_seconds = { order_filled = 1.5 }\n'
        "[[strategies]]\nname = \"a\"\nstrategy = \"rsi_reversion\"\nmarket = \"btc-mxn\"\n"
        "feed = { source = \"atmos\", symbol = \"BTCUSDT\" }\norder_amount = 0.001\n"
    )))
    assert s.paper.balances["btc"] == Decimal("12345678.123456789")
    assert str(s.paper.balances["btc"]) == "12345678.123456789"  # through a float: 12345678.12345679
    assert str(s.strategies[0].order_amount) == "0.001"
    assert s.paper.participation == Decimal("0.25")
    assert s.sandbox.speed == 12.5 and isinstance(s.sandbox.speed, float)
    assert s.recorder.flush_interval_seconds == 0.5 and isinstance(s.recorder.flush_interval_seconds, float)
    assert s.notify.min_interval_seconds == {"order_filled": 1.5}
    assert isinstance(s.notify.min_interval_seconds["order_filled"], float)


def test_whole_number_float_fits_an_int_field_and_a_fraction_does_not(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "[market]\nmax_candles = 500.0\n")).market.max_candles == 500
    assert "market.max_candles" in problems(tmp_path, "[market]\nmax_candles = 500.5\n")


def test_defaults_of_the_new_fields() -> None:
    s = load_settings(PAPER)
    assert s.bot_name == "default" and s.stop_timeout_seconds == 20
    assert (s.recorder.batch_size, s.recorder.flush_interval_seconds, s.recorder.max_backlog_rows) == (
        1000, 5.0, 100_000)
    assert (s.execution.on_stop, s.execution.price_offset_steps, s.execution.cancel_unknown_orders,
            s.execution.orphans) == ("cancel", 0, False, "cancel")
    assert s.paper.participation == Decimal("0.1")
    assert not s.notify.enabled and s.notify.urls == [] and s.notify.events == DEFAULT_NOTIFY_EVENTS
    assert s.notify.daily_summary_at is None


def test_bot_name_from_the_environment_as_the_template_unit_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBOT_BOT_NAME", "acct-2")
    assert load_settings(PAPER).bot_name == "acct-2"


@pytest.mark.parametrize("name", ["", "Upper", "-lead", "has space", "x" * 41, "dot.ted"])
def test_bad_bot_names_are_refused(tmp_path: Path, name: str) -> None:
    assert "bot_name" in problems(tmp_path, f'bot_name = "{name}"\n')


@pytest.mark.parametrize("value,ok", [("0", False), ("-1", False), ("0.5", True), ("80", True), ("80.5", False)])
def test_stop_timeout_bounds(tmp_path: Path, value: str, ok: bool) -> None:
    text = f"stop_timeout_seconds = {value}\n"
    if ok:
        assert load_settings(write(tmp_path, text)).stop_timeout_seconds == float(value)
    else:
        assert "stop_timeout_seconds" in problems(tmp_path, text)


def test_recorder_bounds_and_atlas_keys_that_moved(tmp_path: Path) -> None:
    got = problems(tmp_path, "[recorder]\nbatch_size = 0\nflush_interval_seconds = 0\nmax_backlog_rows = 0\n")
    assert {"recorder.batch_size", "recorder.flush_interval_seconds", "recorder.max_backlog_rows"} <= set(got)
    assert "recorder.batch_size" in problems(tmp_path, "[recorder]\nbatch_size = 10001\n")
    got = problems(tmp_path, "[atlas]\nbatch_size = 10\n")
    assert got == {"atlas.batch_size": "moved to [recorder] batch_size"}
    got = problems(tmp_path, "[atlas]\nflush_seconds = 1\n")
    assert got == {"atlas.flush_seconds": "moved to [recorder] flush_interval_seconds"}


def test_execution_choices_are_checked(tmp_path: Path) -> None:
    got = problems(tmp_path, '[execution]\non_stop = "flatten"\norphans = "sell"\nprice_offset_steps = -1\nx = 1\n')
    assert {"execution.on_stop", "execution.orphans", "execution.price_offset_steps"} <= set(got)
    assert got["execution.x"] == "unknown key"


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1"])
def test_paper_participation_must_be_a_share(tmp_path: Path, value: str) -> None:
    assert "paper.participation" in problems(tmp_path, f"[paper]\nparticipation = {value}\n")


def test_notify_urls_inline_from_file_and_credentials_are_secrets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    urls_file = tmp_path / "urls"
    urls_file.write_text("# chat\ntgram://123456789:AAFileToken/4242\n\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "notify").write_text("mailtos://user:cred-pass-999@mail.example/\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    s = load_settings(write(tmp_path, (
        '[notify]\nenabled = true\nurls = ["ntfys://inline-topic-abc"]\n'
        f'urls_file = "{urls_file}"\nevents = ["order_filled"]\ndaily_summary_at = 08:30:00\n')))
    values = [u.get_secret_value() for u in s.notify.urls]
    assert values == ["ntfys://inline-topic-abc", "tgram://123456789:AAFileToken/4242",
                      "mailtos://user:cred-pass-999@mail.example/"]
    assert s.notify.daily_summary_at == time(8, 30)
    secrets = s.secrets()
    assert set(values) <= set(secrets)
    assert "cred-pass-999" in secrets and "123456789:AAFileToken/4242" in secrets
    dumped = json.dumps(s.public_dump())
    for v in values:
        assert v not in dumped
    assert Redactor(secrets).scrub("POST 123456789:AAFileToken/4242 failed") == "POST *** failed"


def test_bad_notify_url_is_reported_without_showing_it(tmp_path: Path) -> None:
    got = problems(tmp_path, '[notify]\nurls = ["ok://x", "no-scheme-secret-value"]\n')
    assert "item 1 is not a URL" in got["notify.urls"]
    assert "no-scheme-secret-value" not in json.dumps(got)


def test_missing_urls_file_names_the_field(tmp_path: Path) -> None:
    got = problems(tmp_path, '[notify]\nurls_file = "/nonexistent/urls"\n')
    assert "cannot read" in got["notify.urls_file"]


@pytest.mark.parametrize("text,path", [
    ('[notify]\nevents = ["Order Filled"]\n', "notify.events.0"),
    ("[notify]\nmin_interval_seconds = { x = -1 }\n", "notify.min_interval_seconds.x"),
    ('[notify]\ndaily_summary_at = "25:00"\n', "notify.daily_summary_at"),
])
def test_notify_fields_are_checked(tmp_path: Path, text: str, path: str) -> None:
    assert path in problems(tmp_path, text)
