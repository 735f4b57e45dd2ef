"""structlog set-up and secret redaction.

JSON lines when stdout is not a terminal or when running under systemd (`JOURNAL_STREAM` is set), a readable
console format otherwise. Every event passes through `Redactor`, which masks

- any configured secret value wherever it appears inside a string (messages, tracebacks, URLs), and
- any value stored under a key that names a credential (`authorization`, `token`, `api_key`, ...), at any
  depth of nested dicts and lists (so a headers dict logged by mistake is masked too).

Records from the standard `logging` module (apscheduler, aiohttp, asyncio, `warnings` through `py.warnings`)
go through the same processors: `configure()` puts a `structlog.stdlib.ProcessorFormatter` on one handler
of the root logger, so they come out in the same format, redacted (tracebacks included), with the logger's
name as `component`. apscheduler's and aiohttp's access chatter (a line per job run or request) is kept
at WARNING unless the level is debug.

The redactor is the one module-level global, explicit and resettable: `configure()` replaces its secrets,
`reset()` undoes `configure()`.
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
            if key in _PROCESSOR_META:
                continue
            val = event_dict[key]
            if is_sensitive_key(key) and val not in (None, ""):
                event_dict[key] = MASK
            else:
                event_dict[key] = self.scrub(val)
        return event_dict


# Keys `ProcessorFormatter` adds for its own use (the LogRecord itself); removed before rendering.
_PROCESSOR_META = frozenset({"_record", "_from_structlog"})

REDACTOR = Redactor()
# Loggers that say something at INFO for every job run or request; shown only at debug.
CHATTY_LOGGERS = ("apscheduler", "aiohttp.access")


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
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redactor,
    ]


def _stdlib_component(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Name a standard-library record's source the way our own loggers do (`component`)."""
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord):
        event_dict.setdefault("component", record.name)
    return event_dict


def foreign_processors(redactor: Redactor = REDACTOR) -> list[Any]:
    """The chain for standard `logging` records, up to (not including) the renderer."""
    return [_stdlib_component, *shared_processors(redactor)]


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler `configure()` installs (a class of its own, so it can be found and replaced)."""


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
    level_no = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared_processors(), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    _configure_stdlib(level_no, stream, renderer)


def _configure_stdlib(level_no: int, stream: TextIO, renderer: Any) -> None:
    handler = _Handler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=foreign_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_no)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(level_no if level_no <= logging.DEBUG else max(level_no, logging.WARNING))
    logging.captureWarnings(True)  # `warnings.warn` (ResourceWarning, DeprecationWarning...) as log records


def reset() -> None:
    """Undo `configure()`: structlog defaults, no secrets, the root logger without our handler."""
    REDACTOR.set_secrets([])
    structlog.reset_defaults()
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.setLevel(logging.WARNING)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    logging.captureWarnings(False)


def get_logger(name: str | None = None) -> Any:
    """A lazy structlog logger (safe at import time, before `configure`); `name` becomes the `component` key."""
    return structlog.get_logger(component=name) if name else structlog.get_logger()
