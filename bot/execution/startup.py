"""Live start checks: before anything trades in live mode, ask CoinBTR what the configured token may do.

`check_live` reads the token's session (`GET /api/v1/user/session`) and refuses to start, with a
`ConfigError` on `coinbtr.token` (the CLI exits 2), when the token

- is not accepted (401) or may not read its own session (403),
- has expired,
- lacks the `trade` permission (live mode needs it), or
- lacks the `withdraw` permission while `wallet.withdrawals_enabled` is true.

A CoinBTR that cannot be reached or answers nonsense at start-up is a `BotError` naming coinbtr (exit 1:
worth a restart later, unlike a token that will never work). The check runs against the simulated exchange
too (`sandbox.enabled`, its read-only token is refused like a real one); then it returns a one-line note,
for the start-up log, saying plainly that the exchange is simulated.

Usage (composition root, live mode, after the clients are built and before any producer starts)::

    note = await check_live(settings, clients.coinbtr)
    if note:
        log.warning("live.simulated", note=note)
"""

from __future__ import annotations

import asyncio

from bot.clients.coinbtr import CoinbtrClient
from bot.errors import AuthError, BotError, ConfigError
from bot.logs import get_logger
from bot.settings import Settings

log = get_logger("bot.execution.startup")

TOKEN = "coinbtr.token"
CHECK_TIMEOUT_S = 60.0  # wall seconds for the whole check, retries included


async def check_live(settings: Settings, client: CoinbtrClient, *,
                     timeout_s: float = CHECK_TIMEOUT_S) -> str | None:
    """Refuse live mode with a token that cannot trade (or withdraw, when withdrawals are enabled).

    Returns a note for the start-up log when the exchange is the simulator, else None.
    """
    where = "the simulated CoinBTR (sandbox)" if settings.sandbox.enabled else settings.coinbtr.base_url
    try:
        session = await asyncio.wait_for(client.session(), timeout_s)
    except AuthError as err:
        if err.status == 401:
            problem = "CoinBTR does not accept this token (401): check coinbtr.token (or its token_file) " \
                      "and that it has not been revoked"
        else:
            problem = "CoinBTR refused to show this token's session and permissions (permission denied): " \
                      "use a token of your own account with at least the trade permission"
        raise ConfigError(f"live mode refused: {where} rejected the configured token at start-up",
                          [(TOKEN, problem)]) from None
    except TimeoutError:
        raise BotError(f"no answer from {where} within {timeout_s:g} s at start-up: cannot check the token's "
                       "permissions, so live trading does not start (check coinbtr.base_url and the network)",
                       service="coinbtr") from None
    except BotError as err:
        raise BotError(f"cannot check the token's permissions at start-up ({where}): {err}; live trading "
                       "does not start (check coinbtr.base_url and the network)", service="coinbtr") from None

    perms = session.permissions
    now = client.http.clock.now()
    short: list[str] = []
    problems: list[tuple[str, str]] = []
    if session.expires is not None and session.expires <= now:
        short.append("has expired")
        problems.append((TOKEN, f"the token expired at {session.expires.isoformat()}: create a new one"))
    if not perms.trade:
        short.append("lacks the trade permission")
        problems.append((TOKEN, "the token lacks the trade permission: live mode needs a token that may "
                                "trade (or run with mode = \"paper\")"))
    if settings.wallet.withdrawals_enabled and not perms.withdraw:
        short.append("lacks the withdraw permission")
        problems.append((TOKEN, "the token lacks the withdraw permission, which wallet.withdrawals_enabled "
                                "needs (or set wallet.withdrawals_enabled = false)"))
    if problems:
        raise ConfigError(f"live mode refused: the CoinBTR token (user {session.username!r}) "
                          f"{' and '.join(short)}", problems)
    log.info("live.token_checked", user=session.username, trade=perms.trade, withdraw=perms.withdraw,
             deposit=perms.deposit, expires=session.expires.isoformat() if session.expires else None,
             simulated=settings.sandbox.enabled)
    if settings.sandbox.enabled:
        return (f"live mode against the SIMULATED exchange (sandbox.enabled = true): orders go to the built-in "
                f"CoinBTR simulator as {session.username!r}, no real order is placed and no real money moves")
    return None
