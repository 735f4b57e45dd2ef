"""The configured URLs as Apprise targets: one Apprise object per URL, so one failing service is retried on its
own and never re-sends to the others. The only module that imports Apprise.

A target is known outside this module by its index in `notify.urls` and its service's name (`json`,
`tgram`, `ntfys`: the scheme), never by its URL, which carries a token.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from bot.logs import get_logger

log = get_logger("bot.notify")
APPRISE_LOGGER = "apprise"


def _apprise() -> Any:
    import apprise

    # Apprise logs at INFO for every message sent; our root handler redacts it, but keep it to warnings.
    logging.getLogger(APPRISE_LOGGER).setLevel(max(logging.WARNING, logging.getLogger().level))
    return apprise


def scheme(url: str) -> str:
    """The service part of an Apprise URL (`tgram` of `tgram://...`): not a secret."""
    return url.split("://", 1)[0].lower() if "://" in url else "?"


def problems(urls: Sequence[SecretStr]) -> list[tuple[str, str]]:
    """Each URL Apprise cannot use, as (`notify.urls.N`, why) without the URL (it is a secret)."""
    apprise = _apprise()
    out: list[tuple[str, str]] = []
    for i, url in enumerate(urls):
        if apprise.Apprise.instantiate(url.get_secret_value()) is None:
            out.append((f"notify.urls.{i}", f"Apprise does not accept this {scheme(url.get_secret_value())}:// URL "
                                            "(a wrong scheme, or a token or part missing; not shown: it is a "
                                            "secret)"))
    return out


@dataclass
class Target:
    """One URL: its Apprise object and its send state (kept by the sender)."""

    index: int
    service: str
    _apprise: Any = field(repr=False)

    def send(self, title: str, body: str) -> bool:
        """Send one message; blocking (run it in a thread). True when the service accepted it."""
        try:
            return bool(self._apprise.notify(title=title, body=body))
        except Exception:  # a plugin bug is a failed send, never a dead sender
            log.exception("notify.send_raised", target=self.index, service=self.service)
            return False


def open_targets(urls: Sequence[SecretStr]) -> list[Target]:
    """A target per URL (URLs Apprise rejects are skipped: `check-config` names them)."""
    apprise = _apprise()
    out: list[Target] = []
    for i, url in enumerate(urls):
        value = url.get_secret_value()
        a = apprise.Apprise()
        if a.add(value):
            out.append(Target(i, scheme(value), a))
    return out
