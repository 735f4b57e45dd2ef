"""structlog set-up and secret redaction.

JSON lines when stdout is not a terminal or when running under systemd (`JOURNAL_STREAM` is set), a readable
console format otherwise. Every event passes through `Redactor`, which masks

- any configured secret value wherever it appears inside a string (messages, tracebacks, URLs), and
- any value stored under a key that names a credential (`authorization`, `token`, `api_key`, ...), at any
  depth of nested dicts and lists (so a headers dict logged by mistake is masked too).

The redactor is the one module-level global, explicit and resettable: `configure()` replaces its secrets.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog

MASK = "***"
SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "token",
        "api_key",
        "apikey",
        "x-atmos-key",
        "x-api-key",
        "secret",
        "password",
        "credentials",
        "cookie",
        "set-cookie",
    }
)
_KEY_NORMALISE = re.compile(r"[\s_-]+")
_SENSITIVE_NORMALISED = frozenset(_KEY_NORMALISE.sub("", k) for k in SENSITIVE_KEYS)
# Secrets shorter than this are not substring-masked: masking "a" everywhere would destroy every log line.
_MIN_SECRET_LEN = 4


def is_sensitive_key(key: str) -> bool:
    """True when a mapping key names a credential (`Authorization`, `api_key`, `x-atmos-key`, `*_token`...)."""
    norm = _KEY_NORMALISE.sub("", key.lower())
    return norm in _SENSITIVE_NORMALISED or norm.endswith(("token", "apikey", "secret", "password"))


class Redactor:
    """A structlog processor that masks secrets by value and by key."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._pattern: re.Pattern[str] | None = None
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Replace the secret values to mask (longest first, so a secret containing another is masked whole)."""
        values = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_LEN}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in values)) if values else None

    def scrub(self, value: Any) -> Any:
        """Return `value` with secrets masked; containers are copied, never mutated."""
        if isinstance(value, str):
            return self._pattern.sub(MASK, value) if self._pattern else value
        if isinstance(value, Mapping):
            return {k: (MASK if isinstance(k, str) and is_sensitive_key(k) and v not in (None, "")
                        else self.scrub(v)) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return type(value)(self.scrub(v) for v in value) if not isinstance(value, tuple) else tuple(
                self.scrub(v) for v in value)
        if isinstance(value, bytes):
            return self.scrub(value.decode("utf-8", "replace"))
        if isinstance(value, BaseException):
            return self.scrub(f"{type(value).__name__}: {value}")
        # pydantic SecretStr and friends render as '**********' on their own; other objects by their repr.
        if self._pattern and not isinstance(value, int | float | bool | type(None)):
            text = str(value)
            if self._pattern.search(text):
                return self._pattern.sub(MASK, text)
        return value

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            val = event_dict[key]
            if is_sensitive_key(key) and val not in (None, ""):
                event_dict[key] = MASK
            else:
                event_dict[key] = self.scrub(val)
        return event_dict


REDACTOR = Redactor()


def wants_json(stream: TextIO | None = None) -> bool:
    """JSON when not on a terminal or under systemd's journal."""
    stream = stream or sys.stdout
    if os.environ.get("JOURNAL_STREAM"):
        return True
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return True


def shared_processors(redactor: Redactor = REDACTOR) -> list[Any]:
    """The processor chain used in every mode (and in tests, before capture)."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]


def configure(
    *,
    level: str = "info",
    secrets: Iterable[str] = (),
    json: bool | None = None,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog once for the process. Call again to change level or secrets."""
    REDACTOR.set_secrets(secrets)
    stream = stream or sys.stdout
    use_json = wants_json(stream) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty() if hasattr(stream, "isatty") else False)
    )
    structlog.configure(
        processors=[*shared_processors(), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None) -> Any:
    """A lazy structlog logger (safe at import time, before `configure`); `name` becomes the `component` key."""
    return structlog.get_logger(component=name) if name else structlog.get_logger()
