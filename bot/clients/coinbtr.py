"""CoinBTR client: profile, wallet, trading and market endpoints of `shared/contracts/coinbtr.md`.

The wire format (routes, keys, field maps, error codes, the contract's assumed parts) lives in
`bot.clients.coinbtr_wire`, the parsers in `bot.clients.coinbtr_parsers`. This module sends requests
through one shared `HttpService` (rolling 60/min limiter by default) and returns domain objects with
`Decimal` money. The endpoints are grouped the way the contract groups them: `client.wallet`,
`client.trading` and `client.market` (public, no token needed), plus `profile`/`session`/`permissions`.

Failures are typed (see `coinbtr_wire.error_for`): rejections carry the venue's `.code` (1002 is
`InsufficientFunds`, 1004 `OutsideLimits`, 1006 `BadAddress`, 1003 `NotFound`), 401/403/1007 are
`AuthError`, 429/1005 `RateLimited` (backed off and retried). Reads are retried on 5xx, drops and
malformed answers; an error from a 5xx keeps the venue's code (`code=1500`). **Mutating calls (place,
cancel, withdraw) are never retried**: a timeout, a drop after sending, a 5xx/1500 or an unreadable 2xx
answer raises `OutcomeUnknown`, and the caller resolves it by reading state (`trading.find_order` for a
place; `wallet.withdrawals()`; `trading.open_order(id)`). What an order filled, open or closed, comes from
its transactions: `trading.order_fills(market, order_id, since)`.

Every method queues for the shared 60/min budget with a `Priority`: cancels `CRITICAL`, places and order
lookups `HIGH`, market data and the account checks `NORMAL`, wallet reads (balances, transfers,
deposit address) and withdrawals `LOW`, so a wallet watcher polling balances never delays a cancel.

Usage::

    async with CoinbtrClient.create(settings.coinbtr, clock) as coinbtr:
        if not (await coinbtr.permissions()).trade: ...
        order_id = await coinbtr.trading.place("btc-mxn", Side.BUY, Decimal("0.001"), Decimal("100000"))
        # on OutcomeUnknown:
        match = await coinbtr.trading.find_order("btc-mxn", Side.BUY, price, amount, placed_after=sent_at)
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import structlog

from bot.clients import coinbtr_parsers as p
from bot.clients import coinbtr_wire as w
from bot.clients.base import ServiceClient
from bot.clients.coinbtr_match import OrderMatch, match_orders, match_withdrawals
from bot.clients.coinbtr_parsers import Currency, Permissions, Profile, SessionInfo, WithdrawalReceipt
from bot.clients.coinbtr_wire import BadAddress, InsufficientFunds, InvalidParams, OutsideLimits, Route
from bot.clock import Clock, iso_z
from bot.domain import Balance, Book, Deposit, ExchangeOrder, Fill, OrderBook, Side, Ticker, Withdrawal
from bot.errors import MalformedResponse, OutcomeUnknown
from bot.http import HttpService, Priority, Response, RollingWindowLimiter, Timeouts
from bot.settings import CoinbtrSettings

__all__ = [
    "BadAddress", "CoinbtrClient", "Currency", "InsufficientFunds", "InvalidParams", "OrderMatch",
    "OutsideLimits", "Permissions", "Profile", "SessionInfo", "WithdrawalReceipt",
]

log = structlog.get_logger(__name__)
T = TypeVar("T")

# How far the exchange's clock may be behind ours when comparing `created_at` with our own timestamps.
DEFAULT_CLOCK_SKEW = timedelta(seconds=5)
_MILLISECOND = timedelta(milliseconds=1)  # the resolution `since` is sent with (`iso_z`)
LOW, NORMAL, HIGH, CRITICAL = Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.CRITICAL


def decode(body: bytes) -> Any:
    """The body as JSON with every JSON number that has a fraction read straight into `Decimal` (never
    `float`: a balance of 1234567890.12345678 must keep its last digit), or None when it is not JSON.
    Bodies are fetched as bytes and decoded here so that `unwrap`, not `HttpService`, decides what an
    unreadable answer means (malformed on a read, outcome unknown on a mutation)."""
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


class _Api:
    """Request plumbing shared by the endpoint groups: envelope, typed errors, never-retried mutations.

    Bodies are fetched as bytes and decoded here (see `decode`); `unwrap` turns an unreadable 2xx into
    `MalformedResponse` on reads (retried) and `OutcomeUnknown` on mutations (never retried)."""

    def __init__(self, http: HttpService) -> None:
        self.http = http

    async def read(self, route: Route, parse: Callable[[Any], T], priority: Priority, *,
                   params: Mapping[str, str] | None = None, body: Any = None) -> T:
        """A read (retried on temporary trouble), POST reads included."""
        def handle(resp: Response) -> T:
            return parse(w.unwrap(resp.status, decode(resp.body), resp.body))

        return await self.http.call(route.method, route.path, handle, params=params, json=body,
                                    idempotent=True, expect="bytes", priority=priority)

    async def mutate(self, route: Route, parse: Callable[[Any], T], body: Mapping[str, Any], priority: Priority,
                     need_data: bool = True) -> T:
        """A mutating call: sent once. An answer we cannot read after a 2xx is an unknown outcome."""
        def handle(resp: Response) -> T:
            data = w.unwrap(resp.status, decode(resp.body), resp.body, mutating=True, need_data=need_data)
            try:
                return parse(data)
            except MalformedResponse as exc:
                raise OutcomeUnknown(f"accepted but unreadable answer to {route.path}: {exc.message}",
                                     service=w.SERVICE, status=resp.status, body=resp.body) from None

        return await self.http.call(route.method, route.path, handle, json=dict(body), idempotent=False,
                                    expect="bytes", priority=priority)


class WalletApi:
    """Deposit addresses, withdrawals, balances and transfer history."""

    def __init__(self, api: _Api) -> None:
        self._api = api

    async def deposit_address(self, coin: str) -> str:
        """The account's deposit address for `coin`."""
        return await self._api.read(w.R_DEPOSIT_ADDRESS, p.parse_deposit_address, LOW,
                                    body={w.B_COIN: coin.lower()})

    async def withdraw(self, coin: str, address: str, amount: Decimal) -> WithdrawalReceipt:
        """Request a withdrawal. Never retried: `OutcomeUnknown` means look at `withdrawals()`."""
        body = {w.B_COIN: coin.lower(), w.B_ADDRESS: address, w.B_AMOUNT: w.decimal_text(amount)}
        receipt = await self._api.mutate(w.R_WITHDRAW, p.parse_withdraw_answer, body, LOW)
        log.info("coinbtr.withdrawal_requested", withdrawal_id=receipt.id, coin=receipt.coin,
                 status=receipt.status.value)
        return receipt

    async def balances(self) -> list[Balance]:
        """Every coin's available, frozen (held by open orders) and pending amounts."""
        return await self._api.read(w.R_BALANCES, p.parse_balances, LOW)

    async def balance(self, coin: str) -> Balance:
        """One coin's balance."""
        return await self._api.read(w.R_BALANCE, p.parse_balance, LOW, params={w.Q_COIN: coin.lower()})

    async def withdrawals(self) -> list[Withdrawal]:
        """Withdrawals with their current status, newest first."""
        return await self._api.read(w.R_WITHDRAWS, lambda d: p.parse_list(d, p.parse_withdrawal, "withdrawals"),
                                    LOW)

    async def deposits(self) -> list[Deposit]:
        """Deposits with their confirmations, newest first."""
        return await self._api.read(w.R_DEPOSITS, lambda d: p.parse_list(d, p.parse_deposit, "deposits"), LOW)

    async def find_withdrawal(
        self, coin: str, address: str, amount: Decimal, requested_after: datetime, *,
        exclude_ids: Collection[int] = (), clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
    ) -> Withdrawal | None:
        """The one withdrawal an unknown-outcome withdraw request created, or None when none is listed
        (rule: `coinbtr_match.match_withdrawals`). Several candidates raise `OutcomeUnknown`: never guess."""
        matches = match_withdrawals(await self.withdrawals(), coin=coin, address=address, amount=amount,
                                    requested_after=requested_after - clock_skew, exclude_ids=exclude_ids)
        if len(matches) > 1:
            raise OutcomeUnknown(f"{len(matches)} withdrawals match the request "
                                 f"({', '.join(str(m.id) for m in matches)}); cannot tell which is ours",
                                 service=w.SERVICE)
        log.info("coinbtr.find_withdrawal", coin=coin.lower(), found=bool(matches),
                 withdrawal_id=matches[0].id if matches else None)
        return matches[0] if matches else None

    async def fills_since(self, since: datetime, *, clock_skew: timedelta = DEFAULT_CLOCK_SKEW) -> list[Fill]:
        """Every fill of the account, any market, at or after `since` (less `clock_skew`), each once, oldest
        first: the wallet watcher's view of what trading moved. Walks `listtransactions` pages like
        `TradingApi.order_fills`, at `LOW` priority (a wallet read: never ahead of the order path)."""
        cursor = since - clock_skew
        seen: dict[int, Fill] = {}
        while True:
            page = await self._api.read(w.R_TRANSACTIONS, p.parse_fills, LOW, params={w.Q_SINCE: iso_z(cursor)})
            new = [f for f in page if f.id not in seen]
            seen.update((f.id, f) for f in new)
            if new:
                cursor = max(cursor, *(f.created_at for f in page))
                continue
            if not page or any(f.created_at != cursor for f in page):
                break
            cursor = cursor.replace(microsecond=cursor.microsecond // 1000 * 1000) + _MILLISECOND
        return sorted(seen.values(), key=lambda f: (f.created_at, f.id))


class TradingApi:
    """Limit orders, cancels, open orders, fills, and resolving a place whose outcome is unknown."""

    def __init__(self, api: _Api) -> None:
        self._api = api

    async def place(self, market: str, side: Side, amount: Decimal, price: Decimal) -> int:
        """Place a limit order; returns the exchange's order id. Sent exactly once: on `OutcomeUnknown`
        the order may exist, resolve it with `find_order` (never resend blindly)."""
        body = {w.B_MARKET: market.lower(), w.B_AMOUNT: w.decimal_text(amount), w.B_PRICE: w.decimal_text(price)}
        order_id = await self._api.mutate(w.R_PLACE[side], p.parse_placed, body, HIGH)
        log.info("coinbtr.order_placed", order_id=order_id, market=market.lower(), side=side.value)
        return order_id

    async def cancel(self, order_id: int) -> None:
        """Cancel an open order of either side. `NotFound` (1003) when it is not open any more (filled
        or already cancelled): read its fills to learn the truth."""
        await self._api.mutate(w.R_CANCEL, lambda _d: None, {w.B_ID: order_id}, CRITICAL, need_data=False)
        log.info("coinbtr.order_cancelled", order_id=order_id)

    async def open_orders(self, market: str | None = None) -> list[ExchangeOrder]:
        """Open orders, all or of one market."""
        body = {w.B_MARKET: market.lower()} if market else {}
        return await self._api.read(w.R_OPEN_ORDERS, p.parse_orders, HIGH, body=body)

    async def open_order(self, order_id: int) -> ExchangeOrder | None:
        """The order if it is still open, else None (filled, cancelled or unknown)."""
        orders = await self._api.read(w.R_OPEN_ORDERS, p.parse_orders, HIGH, body={w.B_ID: order_id})
        return next((o for o in orders if o.order_id == order_id), None)

    async def transactions(self, market: str | None = None, since: datetime | None = None) -> list[Fill]:
        """Fills, newest first, optionally of one market and at or after `since`."""
        params: dict[str, str] = {}
        if market:
            params[w.Q_MARKET] = market.lower()
        if since is not None:
            params[w.Q_SINCE] = iso_z(since)
        return await self._api.read(w.R_TRANSACTIONS, p.parse_fills, HIGH, params=params or None)

    async def order_fills(
        self, market: str, order_id: int | str, since: datetime, *, clock_skew: timedelta = DEFAULT_CLOCK_SKEW
    ) -> list[Fill]:
        """Every fill of one order at or after `since`, each once, oldest first.

        The exchange cannot show a closed order by id (`listopenorders` forgets it); only its transactions
        remember what it filled. This reads `listtransactions` of `market` from `since` (less `clock_skew`,
        as the exchange's clock may run behind ours), keeps the fills of `order_id` and walks `since`
        forward to the newest fill of each answer, page after page, until an answer brings no fill not
        seen before. `since` is inclusive, so each answer starts with the last one's newest instant again:
        fills are de-duplicated by id, and when an answer is nothing but that instant, already seen, the
        walk steps one millisecond past it (the resolution `since` is sent with) and asks once more, so an
        instant with a page or more of fills cannot stall it. A walk with one page of fills costs three
        requests, each `HIGH` (an order lookup).

        Only an exchange that cut one instant's fills across pages *and* had a page or more of them in
        that instant could hide some from this walk (the simulator never cuts an instant; the real
        exchange's paging is not documented).
        """
        wanted = str(order_id).strip()
        cursor = since - clock_skew
        seen: set[int] = set()
        mine: list[Fill] = []
        pages = 0
        while True:
            page = await self.transactions(market, since=cursor)
            pages += 1
            new = [f for f in page if f.id not in seen]
            seen.update(f.id for f in new)
            mine.extend(f for f in new if str(f.order_id) == wanted)
            if new:
                cursor = max(cursor, *(f.created_at for f in page))
                continue
            if not page or any(f.created_at != cursor for f in page):
                break
            # The whole answer is the instant asked from, all seen: the walk's end, or an instant that
            # filled a page (asking again would get the same page). Step past it once to tell which.
            cursor = cursor.replace(microsecond=cursor.microsecond // 1000 * 1000) + _MILLISECOND
        log.debug("coinbtr.order_fills", market=market.lower(), order_id=wanted, fills=len(mine), pages=pages)
        return sorted(mine, key=lambda f: (f.created_at, f.id))

    async def transaction(self, fill_id: int) -> Fill:
        """One fill by its id (`NotFound` if there is none)."""
        return await self._api.read(w.R_TRANSACTION, p.parse_fill, HIGH, params={w.Q_ID: str(fill_id)})

    async def order_candidates(
        self, market: str, side: Side, price: Decimal, amount: Decimal, placed_after: datetime, *,
        exclude_ids: Collection[int] = (), after_order_id: int | None = None,
        clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
    ) -> list[OrderMatch]:
        """Every exchange order matching the intent (rule and limits: `bot.clients.coinbtr_match`)."""
        since = placed_after - clock_skew
        # Open orders first, then fills: an order that fills in between is still seen in the fills.
        orders = await self.open_orders(market)
        fills = await self.transactions(market, since=since)
        return match_orders(orders, fills, market=market, side=side, price=price, amount=amount,
                            placed_after=since, exclude_ids=exclude_ids, after_order_id=after_order_id)

    async def find_order(
        self, market: str, side: Side, price: Decimal, amount: Decimal, placed_after: datetime, *,
        exclude_ids: Collection[int] = (), after_order_id: int | None = None,
        clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
    ) -> OrderMatch | None:
        """The one order an unknown-outcome place created, or None if none is visible (not proof that
        none exists: see `coinbtr_match`). Several candidates raise `OutcomeUnknown` rather than guess."""
        matches = await self.order_candidates(market, side, price, amount, placed_after,
                                              exclude_ids=exclude_ids, after_order_id=after_order_id,
                                              clock_skew=clock_skew)
        if len(matches) > 1:
            raise OutcomeUnknown(f"{len(matches)} orders match the intent; cannot tell which is ours",
                                 service=w.SERVICE)
        log.info("coinbtr.find_order", market=market.lower(), side=side.value, found=bool(matches),
                 order_id=matches[0].order_id if matches else None)
        return matches[0] if matches else None


class MarketApi:
    """Public market data: books and their limits, order book, ticker, 24h volume, currencies."""

    def __init__(self, api: _Api) -> None:
        self._api = api

    async def books(self) -> list[Book]:
        """Every book with its placement limits, steps and fees."""
        return await self._api.read(w.R_BOOKS, p.parse_books, NORMAL)

    async def order_book(self, book: str) -> OrderBook:
        """Asks ascending and bids descending (at most 50 levels each)."""
        return await self._api.read(w.R_ORDER_BOOK, p.parse_order_book, NORMAL, params={w.Q_BOOK: book.lower()})

    async def ticker(self, book: str) -> Ticker:
        """Last, bid, ask and the 24h high, low, volume and VWAP."""
        return await self._api.read(w.R_TICKER, p.parse_ticker, NORMAL, params={w.Q_BOOK: book.lower()})

    async def volumes_24h(self) -> dict[str, Decimal]:
        """24h volume by book."""
        return await self._api.read(w.R_VOLUME, p.parse_volumes, NORMAL)

    async def currencies(self) -> list[Currency]:
        """Every listed coin with its decimals and withdrawal fee and minimum."""
        return await self._api.read(w.R_CURRENCIES, p.parse_currencies, NORMAL)


class CoinbtrClient(ServiceClient):
    """CoinBTR API client over one shared `HttpService`; endpoints grouped as `wallet`, `trading`, `market`."""

    def __init__(self, http: HttpService) -> None:
        super().__init__(http)
        api = _Api(http)
        self._api = api
        self.wallet = WalletApi(api)
        self.trading = TradingApi(api)
        self.market = MarketApi(api)

    @classmethod
    def create(cls, settings: CoinbtrSettings, clock: Clock, *, base_url: str | None = None,
               rng: random.Random | None = None, timeouts: Timeouts | None = None) -> CoinbtrClient:
        """A client with its own session and a rolling-window limiter sized from the settings."""
        token = settings.token.get_secret_value()
        http = HttpService(
            w.SERVICE, base_url or settings.base_url, clock,
            RollingWindowLimiter(clock, settings.requests_per_minute),
            headers={w.AUTH_HEADER: f"{w.AUTH_SCHEME} {token}"} if token else None,
            rng=rng, timeouts=timeouts, error_code=w.body_code,
        )
        return cls(http)

    async def profile(self) -> Profile:
        """The account's email, username and level."""
        return await self._api.read(w.R_PROFILE, p.parse_profile, NORMAL)

    async def session(self) -> SessionInfo:
        """Who the token belongs to, when it expires and what it may do."""
        return await self._api.read(w.R_SESSION, p.parse_session, NORMAL)

    async def permissions(self) -> Permissions:
        """The token's permissions (trade, withdraw, deposit), for the start-up check."""
        return (await self.session()).permissions
