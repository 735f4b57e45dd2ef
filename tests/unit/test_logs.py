"""Log redaction: configured secrets and credential-named keys never reach a log line."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import LogCapture

from bot import logs
from bot.logs import REDACTOR, Redactor, is_sensitive_key, shared_processors


@pytest.fixture
def captured() -> Iterator[LogCapture]:
    cap = LogCapture()
    REDACTOR.set_secrets(["s3cret-token-value", "atlas-key-999"])
    structlog.configure(processors=[*shared_processors(), cap])
    yield cap
    REDACTOR.set_secrets([])
    structlog.reset_defaults()


def test_configured_secret_masked_inside_any_string(captured: LogCapture) -> None:
    structlog.get_logger().info("request.sent", url="https://x/api?key=s3cret-token-value&a=1",
                                note="nested", extra={"list": ["atlas-key-999 here"]})
    entry = captured.entries[0]
    assert entry["url"] == "https://x/api?key=***&a=1"
    assert entry["extra"] == {"list": ["*** here"]}


@pytest.mark.parametrize("key", ["authorization", "Authorization", "token", "api_key", "x-atmos-key",
                                 "X-API-Key", "coinbtr_token", "password"])
def test_values_under_credential_keys_masked(captured: LogCapture, key: str) -> None:
    structlog.get_logger().info("evt", **{key: "not-configured-but-sensitive"},
                                headers={key: "abc", "accept": "json"})
    entry = captured.entries[0]
    assert entry[key] == "***"
    assert entry["headers"] == {key: "***", "accept": "json"}


def test_secret_in_exception_traceback_masked(captured: LogCapture) -> None:
    try:
        raise RuntimeError("auth failed for s3cret-token-value")
    except RuntimeError:
        structlog.get_logger().exception("boom")
    assert "s3cret-token-value" not in captured.entries[0]["exception"]
    assert "***" in captured.entries[0]["exception"]


def test_harmless_keys_and_numbers_untouched(captured: LogCapture) -> None:
    structlog.get_logger().info("fill", price="101.5", amount=3, market="btc-mxn", token_count=None)
    e = captured.entries[0]
    assert (e["price"], e["amount"], e["market"]) == ("101.5", 3, "btc-mxn")


def test_sensitive_key_detection_table() -> None:
    assert is_sensitive_key("x-atmos-key") and is_sensitive_key("API_KEY") and is_sensitive_key("status_token")
    assert not is_sensitive_key("market")
    assert not is_sensitive_key("price")


def test_short_secrets_are_not_substring_masked() -> None:
    r = Redactor(["ab"])
    assert r.scrub("abc") == "abc"


def test_json_output_renders_redacted_line() -> None:
    buf = io.StringIO()
    logs.configure(level="info", secrets=["json-secret-1234"], json=True, stream=buf)
    try:
        structlog.get_logger().info("hello", detail="x json-secret-1234 y")
    finally:
        logs.reset()
    line = json.loads(buf.getvalue().strip())
    assert line["event"] == "hello" and line["detail"] == "x *** y" and line["level"] == "info"
