"""CoinBTR simulator: the exchange of `shared/contracts/coinbtr.md` over real HTTP (aiohttp.web).

`CoinbtrSim` owns the state (ledger, order engine, transfer desk, tokens, rate limiter) and exposes
Python helpers for tests and the demo; `create_app(sim, faults)` serves it. Every handler first brings
fills, withdrawals and deposits up to the clock's now (`sim.process()`), so the state a client reads is
always the state at the clock's current time.

Behaviour beyond the contract's letter, fixed here so clients and tests can rely on it:
- Auth: `Authorization: Token <t>`. Missing or unknown token → HTTP 401, code 1007. Rate limit (60 per
  rolling clock minute per token, private endpoints only; public market endpoints are not limited) →
  429/1005. A token without `trade` (place, cancel) or `withdraw` permission → 403/1007. Reads and
  deposit addresses need no permission (`deposit` is only reported by the session endpoint).
- Every user with a trading token starts with `balances`, plus 10 ETH unless `balances` names eth.
- Parameter errors (1001) on GET endpoints answer **HTTP 200** with `success: false` (clients must check
  `success`); on POST endpoints they answer 400. Not found (1003) is 404 on every method.
- Number types and coin case on the wire: see `bot.sandbox.coinbtr_wire`.
- Order fill rules: see `bot.sandbox.exchange`; withdrawal and deposit timing: `bot.sandbox.exchange_wallet`.
- With a `store` (`bot.sandbox.exchange_store`) the state continues from an earlier run and every change is
  saved before the answer that follows it is sent (a middleware inside the fault injection).
- Control routes (deposits, failing a withdrawal, a state dump): `bot.sandbox.coinbtr_control`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog
from aiohttp import web

from bot.clock import Clock
from bot.domain import Side, to_decimal
from bot.sandbox import coinbtr_wire as wire
from bot.sandbox.credentials import (
    COINBTR_READONLY_TOKEN,
    COINBTR_READONLY_USER,
    COINBTR_TOKEN,
    COINBTR_USER,
)
from bot.sandbox.exchange import Ledger, OrderEngine, SimFill, SimOrder
from bot.sandbox.exchange_rules import (
    COINS,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    PERMISSION_DENIED,
    RATE_LIMITED,
    ExchangeError,
    MarketView,
)
from bot.sandbox.exchange_store import ExchangeStore
from bot.sandbox.exchange_wallet import SimDeposit, SimWithdrawal, TransferDesk
from bot.sandbox.faults import Faults
from bot.sandbox.ratelimit import RollingWindowLimiter

log = structlog.get_logger(__name__)

EXTRA_TRADER_BALANCES = {"eth": Decimal("10")}  # traders also get some ETH unless `balances` names it


@dataclass(frozen=True, slots=True)
class TokenSpec:
    """Who a token belongs to and what it may do."""

    username: str
    trade: bool
    withdraw: bool
    deposit: bool


def default_tokens() -> dict[str, TokenSpec]:
    """The sandbox's tokens: a full-permission `paper` token and a read-only `reader` token."""
    return {
        COINBTR_TOKEN: TokenSpec(COINBTR_USER, trade=True, withdraw=True, deposit=True),
        COINBTR_READONLY_TOKEN: TokenSpec(COINBTR_READONLY_USER, trade=False, withdraw=False, deposit=False),
    }


class CoinbtrSim:
    """The simulated exchange's state plus the Python-side helpers tests and the demo use."""

    def __init__(
        self,
        market: MarketView,
        clock: Clock,
        tokens: dict[str, TokenSpec],
        balances: dict[str, Decimal],
        requests_per_minute: int = 60,
        seed: int = 42,
        *,
        balances_by_user: dict[str, dict[str, Decimal]] | None = None,
        fill_share: Decimal = Decimal("0.05"),
        withdrawal_failure_rate: float = 0.1,
        store: ExchangeStore | None = None,
    ) -> None:
        self.market = market
        self.clock = clock
        self.tokens = dict(tokens)
        self.seed = seed
        self.ledger = Ledger()
        self.engine = OrderEngine(market, clock, self.ledger, seed=seed, fill_share=fill_share)
        self.desk = TransferDesk(clock, self.ledger, seed=seed, failure_rate=withdrawal_failure_rate)
        self.limiter = RollingWindowLimiter(clock, requests_per_minute, 60.0)
        # With a store, state saved by an earlier run is continued; only users new to it get starting funds.
        self.store = store
        loaded: set[str] = set()
        if store is not None and store.has_state():
            loaded = store.load(self)
            if store.meta("seed") != seed:
                log.warning("coinbtr_sim_seed_changed", saved=store.meta("seed"), seed=seed)
        self.funded = set(loaded)
        for spec in self.tokens.values():
            if spec.trade and spec.username not in self.funded:
                self.funded.add(spec.username)
                start = {**EXTRA_TRADER_BALANCES, **{k.lower(): v for k, v in balances.items()}}
                self.ledger.fund(spec.username, start)
        for username, amounts in (balances_by_user or {}).items():
            if username not in loaded:
                self.funded.add(username)
                self.ledger.fund(username, amounts)
        self.persist()

    # ---- Python-side helpers -------------------------------------------------------------------

    @property
    def orders(self) -> dict[int, SimOrder]:
        """Every order ever placed, by id."""
        return self.engine.orders

    @property
    def fills(self) -> list[SimFill]:
        return self.engine.fills

    @property
    def withdrawals(self) -> list[SimWithdrawal]:
        return self.desk.withdrawals

    @property
    def deposits(self) -> list[SimDeposit]:
        return self.desk.deposits

    def username(self, username_or_token: str) -> str:
        """The user a token belongs to, or the argument itself when it is not a token."""
        spec = self.tokens.get(username_or_token)
        return spec.username if spec else username_or_token

    def process(self) -> None:
        """Advance fills, withdrawals and deposits up to the clock's now."""
        self.engine.process()
        self.desk.process()

    def persist(self) -> None:
        """Make every change so far durable (a no-op without a store). Runs before each answer is sent."""
        if self.store is not None:
            self.store.save(self, self.funded)

    def close(self) -> None:
        """Save and close the store (the simulator cannot be served afterwards)."""
        if self.store is not None:
            self.persist()
            self.store.close()
            self.store = None

    def inject_deposit(
        self, username_or_token: str, coin: str, amount: Decimal, address: str | None = None, *,
        confirmations: int = 0, confirmed: bool = False,
    ) -> SimDeposit:
        """An incoming deposit (at 0 confirmations by default); it is credited once it has enough."""
        d = self.desk.inject_deposit(self.username(username_or_token), coin.lower(), amount, address,
                                     confirmations=confirmations, confirmed=confirmed)
        self.persist()
        return d

    def fail_next_withdrawal(self) -> None:
        """The next accepted withdrawal fails (and is refunded) when it would have been sent."""
        self.desk.fail_next()
        self.persist()

    def fail_withdrawal(self, withdrawal_id: int) -> SimWithdrawal:
        """Fail a pending, signed or sent withdrawal now, refunding amount and fee (see `TransferDesk.fail`)."""
        self.process()
        w = self.desk.fail(withdrawal_id)
        self.persist()
        return w

    def balances_of(self, username: str) -> dict[str, tuple[Decimal, Decimal]]:
        """`{coin: (available, frozen)}` for every coin the exchange lists."""
        user = self.username(username)
        return {c: (self.ledger.available(user, c), self.ledger.frozen(user, c)) for c in COINS}

    def authenticate(self, header: str | None, permission: str | None) -> TokenSpec:
        """The token's spec, or raise 401/1007, 429/1005 or 403/1007 (checked in that order)."""
        scheme, _, token = (header or "").strip().partition(" ")
        spec = self.tokens.get(token.strip()) if scheme.lower() == "token" else None
        if spec is None:
            raise ExchangeError(PERMISSION_DENIED, "invalid or missing token", status=401)
        if not self.limiter.allow(token.strip()):
            raise ExchangeError(RATE_LIMITED, "too many requests")
        if permission is not None and not getattr(spec, permission):
            raise ExchangeError(PERMISSION_DENIED, f"token lacks the {permission} permission")
        return spec


SIM_KEY = web.AppKey("coinbtr_sim", CoinbtrSim)
FAULTS_KEY = web.AppKey("coinbtr_faults", Faults)
Private = Callable[[web.Request, CoinbtrSim, str], Awaitable[web.Response]]
Public = Callable[[web.Request, CoinbtrSim], Awaitable[web.Response]]


Route = Callable[[web.Request], Awaitable[web.Response]]


def private(handler: Private, permission: str | None = None) -> Route:
    """Wrap a handler with auth, rate limit, permission check and `process()`."""

    async def wrapped(request: web.Request) -> web.Response:
        sim = request.app[SIM_KEY]
        try:
            spec = sim.authenticate(request.headers.get("Authorization"), permission)
        except ExchangeError as exc:
            if exc.code == RATE_LIMITED:
                request.app[FAULTS_KEY].count_429()
            raise
        sim.process()
        return await handler(request, sim, spec.username)

    return wrapped


def public(handler: Public) -> Route:
    """Wrap an unauthenticated handler with `process()`."""

    async def wrapped(request: web.Request) -> web.Response:
        sim = request.app[SIM_KEY]
        sim.process()
        return await handler(request, sim)

    return wrapped


# ---- request parsing ---------------------------------------------------------------------------


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (an empty body is `{}`); floats parse straight to Decimal."""
    text = await request.text()
    if not text.strip():
        return {}
    try:
        body = json.loads(text, parse_float=Decimal)
    except ValueError:
        raise ExchangeError(INVALID_PARAMS, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ExchangeError(INVALID_PARAMS, "body must be a JSON object")
    return body


def decimal_param(source: dict[str, Any], name: str) -> Decimal:
    if name not in source:
        raise ExchangeError(INVALID_PARAMS, f"{name} is required")
    try:
        return to_decimal(source[name], field_name=name)
    except ValueError as exc:
        raise ExchangeError(INVALID_PARAMS, str(exc)) from None


def int_param(source: Any, name: str) -> int:
    value = source.get(name)
    if isinstance(value, bool) or value is None:
        raise ExchangeError(INVALID_PARAMS, f"{name} must be an integer")
    try:
        return int(str(value))
    except ValueError:
        raise ExchangeError(INVALID_PARAMS, f"{name} must be an integer") from None


def coin_param(source: Any) -> str:
    coin = str(source.get("coin") or "").lower()
    if coin not in COINS:
        raise ExchangeError(INVALID_PARAMS, f"unknown coin {coin!r}")
    return coin


def side_of(request: web.Request) -> Side:
    return Side.BUY if request.path.endswith("buylimit") else Side.SELL


# ---- the app -----------------------------------------------------------------------------------


@web.middleware
async def envelope_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn refusals and surprises into the contract's error envelope."""
    try:
        return await handler(request)
    except ExchangeError as exc:
        # The documented quirk: parameter errors on GET come back as HTTP 200 with success false.
        status = 200 if request.method == "GET" and exc.code == INVALID_PARAMS else exc.status
        return wire.error(status, exc.code, exc.message)
    except web.HTTPNotFound:
        return wire.error(404, INVALID_PARAMS, "no such endpoint")
    except web.HTTPMethodNotAllowed as exc:
        return wire.error(405, INVALID_PARAMS, f"method {exc.method} not allowed")
    except Exception:
        log.exception("coinbtr_sim_error", path=request.path)
        return wire.error(500, INTERNAL_ERROR, "internal error")


def create_app(sim: CoinbtrSim, faults: Faults) -> web.Application:
    """The CoinBTR simulator as an aiohttp application, with fault injection and control routes."""
    from bot.sandbox.coinbtr_control import add_control_routes  # both import this module's helpers
    from bot.sandbox.coinbtr_routes import add_routes

    def fault_error(status: int, message: str) -> web.Response:
        return wire.error(status, RATE_LIMITED if status == 429 else INTERNAL_ERROR, message)

    @web.middleware
    async def persist_middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # Inside the faults middleware: a `drop_after` fault drops an answer whose effect is already saved.
        try:
            return await handler(request)
        finally:
            sim.persist()

    faults.error_factory = fault_error
    faults.on_reset(sim.limiter.reset)
    app = web.Application(middlewares=[faults.middleware, persist_middleware, envelope_middleware])
    app[SIM_KEY] = sim
    app[FAULTS_KEY] = faults
    faults.add_control_routes(app)
    add_control_routes(app)
    add_routes(app)
    return app

