"""One exception root, split by what the caller should do about it.

    BotError
    ├── ConfigError          fix the configuration (fatal at start-up; the CLI exits 2)
    ├── TemporaryError       retry later (network trouble, 5xx on a read, an outage)
    │   └── RateLimited      retry after the limiter says so (HTTP 429)
    ├── Rejected             the venue said no; never retry the same request
    ├── OutcomeUnknown       a mutating request may or may not have been applied; resolve by reading state
    ├── MalformedResponse    the peer answered something we cannot parse (bad JSON, truncated, missing field)
    └── StateError           our own invariant was broken (illegal order transition, store corruption)

Errors carry the service, HTTP status, the venue's code and a short body excerpt with secrets removed.
Only `bot.cli` turns an error into an exit code.
"""

from __future__ import annotations

import re

_EXCERPT_LEN = 200
# Anything that looks like a credential in a body excerpt is blanked before it is kept on an error.
_SECRETISH = re.compile(
    r"(?i)(\"?(?:authorization|token|api_key|apikey|x-atmos-key|x-api-key|secret|password)\"?\s*[:=]\s*)"
    r"(\"[^\"]*\"|[^\s,&}]+)"
)


def excerpt(body: str | bytes | None, limit: int = _EXCERPT_LEN) -> str:
    """A short, single-line, secret-free excerpt of a response body for error messages."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = _SECRETISH.sub(r"\1***", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class BotError(Exception):
    """Root of every error tradebot raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        service: str | None = None,
        status: int | None = None,
        code: int | None = None,
        body: str | bytes | None = None,
    ) -> None:
        self.message = message
        self.service = service
        self.status = status
        self.code = code
        self.body_excerpt = excerpt(body)
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [f"{self.service}: {self.message}" if self.service else self.message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.code is not None:
            parts.append(f"code={self.code}")
        if self.body_excerpt:
            parts.append(f"body={self.body_excerpt!r}")
        return " ".join(parts)

    @property
    def kind(self) -> str:
        """Short name used in counters and logs (`temporary`, `rate_limited`, ...)."""
        return _KIND_NAMES.get(type(self), type(self).__name__)


class ConfigError(BotError):
    """The configuration is wrong; the user has to fix it. `problems` lists `(dotted.path, message)`."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message)


class TemporaryError(BotError):
    """Worth retrying later: connection trouble, timeouts on reads, 5xx, outages."""


class RateLimited(TemporaryError):
    """The service answered 429. `retry_after` is the server's hint in seconds, if it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class Rejected(BotError):
    """The venue refused the request (bad params, insufficient funds, not found). Never retried."""


class AuthError(Rejected):
    """Missing or invalid credentials (401), or a permission the token does not have (403)."""


class NotFound(Rejected):
    """The thing asked for does not exist (404, CoinBTR 1003)."""


class OutcomeUnknown(BotError):
    """A mutating request may have been applied (timeout or drop after sending, 5xx). Read state to resolve."""


class MalformedResponse(BotError):
    """The response could not be understood: bad JSON, truncated body, missing or mistyped field."""


class StateError(BotError):
    """An internal invariant was broken (illegal state transition, inconsistent store)."""


_KIND_NAMES: dict[type, str] = {
    BotError: "error",
    ConfigError: "config",
    TemporaryError: "temporary",
    RateLimited: "rate_limited",
    Rejected: "rejected",
    AuthError: "auth",
    NotFound: "not_found",
    OutcomeUnknown: "outcome_unknown",
    MalformedResponse: "malformed",
    StateError: "state",
}
