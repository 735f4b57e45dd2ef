"""CoinBTR simulator HTTP handlers and route table (paths exactly as in `shared/contracts/coinbtr.md`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from aiohttp import web

from bot.clock import floor_minute, parse_iso
from bot.sandbox import coinbtr_wire as wire
from bot.sandbox.coinbtr import (
    CoinbtrSim,
    coin_param,
    decimal_param,
    int_param,
    json_body,
    private,
    public,
    side_of,
)
from bot.sandbox.exchange_rules import BOOKS, COINS, INVALID_PARAMS, BookSpec, ExchangeError

API = "/api/v1"
DAY = timedelta(days=1)


def _book(name: str | None) -> BookSpec:
    book = BOOKS.get((name or "").lower())
    if book is None:
        raise ExchangeError(INVALID_PARAMS, f"unknown book {name!r}")
    return book


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parse_iso(text)
    except ValueError:
        raise ExchangeError(INVALID_PARAMS, "since must be an ISO 8601 timestamp") from None


# ---- profile -----------------------------------------------------------------------------------


async def profile(request: web.Request, sim: CoinbtrSim, user: str) -> web.Response:
    return wire.ok({"email": f"{user}@sandbox.coinbtr.test", "username": user, "level": 2})


async def session(request: web.Request, sim: CoinbtrSim, user: str) -> web.Response:
    token = request.headers["Authorization"].split(" ", 1)[1].strip()
    spec = sim.tokens[token]
    return wire.ok({
        "username": user,
        "ip": request.remote or "127.0.0.1",
        "token": {
            "expires": sim.clock.now() + timedelta(days=30),
            "permissions": {"withdraw": spec.withdraw, "deposit": spec.deposit, "trade": spec.trade},
        },
    })


# ---- wallet ------------------------------------------------------------------------------------


async def deposit_address(request: web.Request, sim: CoinbtrSim, user: str) -> web.Response:
    source = request.query if request.method == "GET" else await json_body(request)
    coin = coin_param(source)
    return wire.ok({"coin": coin, "address": sim.desk.address(user, coin)})


async def withdraw(request: web.Request, sim: CoinbtrSim, user: str) -> web.Response:
    body = await json_body(request)
    coin = coin_param(body)
    address = body.get("address")
    if not isinstance(address, str) or not address:
        raise ExchangeError(INVALID_PARAMS, "address is required")
    w = sim.desk.withdraw(user, coin, address.strip(), decimal_param(body, "amount"))
    return wire.ok({"id": w.id, "coin": w.coin.upper(), "txid": w.txid, "status": w.status, "date": w.date})


async def list_balances(request: web.Request, sim: CoinbtrSim, user: str) -> web.Response:
    rows = []
    for coin, (available, frozen) in sim.balances_of(user).items():
        avail, froz = wire.n8(available), wire.n8(frozen)
        rows.append({
            "coin": coin.upper(),
            "balance": wire.Num(avail.value + froz.value),
            "available": avail,
            "pending": wire.n8(sim.desk.pending(user, coin)),
            "frozen": froz,
            "depositAddress": sim.desk.address(user, coin),
        })
    return wire.ok(rows, msg_key="message")


async def get_balance(request: web.Request, sim: CoinbtrSim, user: str) -> web.Response:
    coin = coin_param(request.query)
    available, frozen = sim.balances_of(user)[coin]
    balances = {"available": wire.s(available), "frozen": wire.s(frozen),
                "pending": wire.s(sim.desk.pending(user, coin))}
    return wire.ok({"coin": coin, "coin_name": COINS[coin].name, "balances": balances})


async def list_withdraws(request: web.Request, sim: CoinbtrSim, user: str) -> web.Response:
    return wire.ok([wire.withdrawal_json(w) for w in sim.desk.withdrawals_of(user)])


async def list_deposits(request: web.Request, sim: CoinbtrSim, user: str) -> web.Response:
    return wire.ok([wire.deposit_json(d) for d in sim.desk.deposits_of(user)])


# ---- trading -----------------------------------------------------------------------------------


async def place(request: web.Request, sim: CoinbtrSim, user: str) -> web.Response:
    body = await json_body(request)
    book = _book(body.get("market") if isinstance(body.get("market"), str) else None)
    amount, price = decimal_param(body, "amount"), decimal_param(body, "price")
    order = sim.engine.place(user, book.book, side_of(request), amount, price)
    return wire.ok({"id": order.id})


async def cancel(request: web.Request, sim: CoinbtrSim, user: str) -> web.Response:
    body = await json_body(request)
    sim.engine.cancel(user, int_param(body, "id"))
    return wire.respond({"success": True, "msg": "Order closed"})


async def list_open_orders(request: web.Request, sim: CoinbtrSim, user: str) -> web.Response:
    body = await json_body(request)
    book = _book(body["market"]).book if body.get("market") else None
    order_id = int_param(body, "id") if "id" in body else None
    return wire.ok([wire.order_json(o) for o in sim.engine.open_orders(user, book, order_id)])


async def list_transactions(request: web.Request, sim: CoinbtrSim, user: str) -> web.Response:
    market = request.query.get("market")
    book = _book(market).book if market else None
    fills = sim.engine.fills_of(user, book, _since(request.query.get("since")))
    return wire.ok([wire.fill_json(f) for f in fills])


async def get_transaction(request: web.Request, sim: CoinbtrSim, user: str) -> web.Response:
    return wire.ok(wire.fill_json(sim.engine.fill(user, int_param(request.query, "id"))))


# ---- market (public) ---------------------------------------------------------------------------


async def list_books(request: web.Request, sim: CoinbtrSim) -> web.Response:
    return wire.ok([wire.book_json(b) for b in BOOKS.values()])


async def order_book(request: web.Request, sim: CoinbtrSim) -> web.Response:
    book = _book(request.query.get("book"))
    asks, bids = sim.engine.depth(book)
    return wire.ok({
        "book": book.book,
        "asks": [wire.level_json(lv) for lv in asks],
        "bids": [wire.level_json(lv) for lv in bids],
        "updated_at": floor_minute(sim.clock.now()),
    })


def _day_stats(sim: CoinbtrSim, book: BookSpec) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """High, low, volume and volume-weighted price over the last 24 hours."""
    now = sim.clock.now()
    last = sim.market.price(book.book)
    # Aggregated by the market (cached per day) instead of summing 1,440 Decimal bars per request.
    stats = sim.market.stats(book.book, now - DAY, now)
    if stats is None or not stats.bars:
        return last, last, Decimal(0), last
    vwap = stats.vwap.quantize(book.price_step) if stats.volume else last
    return stats.high, stats.low, stats.volume, vwap


async def ticker(request: web.Request, sim: CoinbtrSim) -> web.Response:
    book = _book(request.query.get("book"))
    asks, bids = sim.engine.depth(book)
    high, low, volume, vwap = _day_stats(sim, book)
    last = sim.market.price(book.book)
    return wire.ok({
        "book": book.book,
        "last": wire.s(last),
        "bid": wire.s(bids[0].price if bids else last),
        "ask": wire.s(asks[0].price if asks else last),
        "high": wire.s(high),
        "low": wire.s(low),
        "volume": wire.s(volume),
        "vwap": wire.s(vwap),
        "created_at": sim.clock.now(),
    })


async def volume_24h(request: web.Request, sim: CoinbtrSim) -> web.Response:
    return wire.ok([{"book": b.book, "volume": wire.n(_day_stats(sim, b)[2])} for b in BOOKS.values()])


async def currencies(request: web.Request, sim: CoinbtrSim) -> web.Response:
    return wire.ok([wire.currency_json(c) for c in COINS.values()])


def add_routes(app: web.Application) -> None:
    """Register every contract path (and the seed's alternatives: GET deposit address, `whithdraw`)."""
    r = app.router
    r.add_get(f"{API}/wallet/user/profile", private(profile))
    r.add_get(f"{API}/user/session", private(session))
    r.add_post(f"{API}/wallet/getdepositaddress", private(deposit_address))
    r.add_get(f"{API}/wallet/getdepositaddress", private(deposit_address))
    r.add_post(f"{API}/wallet/withdraw", private(withdraw, "withdraw"))
    r.add_post(f"{API}/wallet/whithdraw", private(withdraw, "withdraw"))
    r.add_get(f"{API}/wallet/listbalances", private(list_balances))
    r.add_get(f"{API}/wallet/getbalance", private(get_balance))
    r.add_get(f"{API}/wallet/listwithdraws", private(list_withdraws))
    r.add_get(f"{API}/wallet/listdeposits", private(list_deposits))
    r.add_post(f"{API}/trading/place/buylimit", private(place, "trade"))
    r.add_post(f"{API}/trading/place/selllimit", private(place, "trade"))
    r.add_post(f"{API}/trading/cancel/buylimit", private(cancel, "trade"))
    r.add_post(f"{API}/trading/listopenorders", private(list_open_orders))
    r.add_get(f"{API}/trading/listtransactions", private(list_transactions))
    r.add_get(f"{API}/trading/gettransaction", private(get_transaction))
    r.add_get(f"{API}/market/listbooks", public(list_books))
    r.add_get(f"{API}/market/getorderbook", public(order_book))
    r.add_get(f"{API}/market/gettiker", public(ticker))
    r.add_get(f"{API}/market/get24hvolume", public(volume_24h))
    r.add_get(f"{API}/market/getcurrencies", public(currencies))
