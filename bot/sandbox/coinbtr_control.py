"""Control routes of the CoinBTR simulator, for tests and tools (unauthenticated; never counted or faulted).

- `POST /_sandbox/deposits` body `{"coin": "btc", "amount": "0.5"}` plus optional `"user"` (a username or a
  token; default the sandbox's trading user), `"address"`, `"confirmations"` (int, default 0) and
  `"status"`: `"pending"` (default: credited once the coin's confirmations are reached) or `"confirmed"`
  (credited at once) → 201 with the deposit as in `/_sandbox/state`.
- `POST /_sandbox/withdrawals/{id}/fail` → 200 with the withdrawal, now `failed`, its amount and fee refunded
  to available funds; 404 for an unknown id, 409 when it is already `confirmed` or `failed`.
- `GET /_sandbox/state` → the whole exchange at the clock's now (fills, withdrawals and deposits brought
  up to date first, like any request), every decimal as an exact string, times as ISO 8601 UTC with `Z`:

      {"now": "...",
       "next_ids": {"order": 1004, "fill": 5007, "withdrawal": 302, "deposit": 701},
       "balances": {"paper": {"btc": {"available": "0.999", "frozen": "0.001", "pending": "0"}, ...}},
       "orders": [{"id", "user", "market", "side": "buy"|"sell", "price", "amount", "remaining", "filled",
                   "status": "open"|"filled"|"cancelled", "fee_percent", "frozen", "created_at", "closed_at",
                   "fills": [{"id", "price", "amount", "fee_amount", "fee_coin", "role": "maker"|"taker",
                              "created_at"}]}],
       "withdrawals": [{"id", "user", "coin", "address", "amount", "fee_amount", "status", "txid", "date"}],
       "deposits": [{"id", "user", "coin", "address", "amount", "txid", "confirmations", "confirmed", "date"}]}

  Lists are in id order (oldest first); `next_ids` are the ids the next order, fill, withdrawal and deposit
  will get (never reused, also across restarts of a persisted sandbox).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from bot.domain import to_decimal
from bot.sandbox.coinbtr import SIM_KEY, CoinbtrSim
from bot.sandbox.coinbtr_wire import s
from bot.sandbox.credentials import COINBTR_USER
from bot.sandbox.exchange import SimFill, SimOrder
from bot.sandbox.exchange_rules import COINS
from bot.sandbox.exchange_wallet import SimDeposit, SimWithdrawal
from bot.sandbox.faults import CONTROL_PREFIX


def ts(t: datetime | None) -> str | None:
    """ISO 8601 UTC with `Z`, microseconds kept."""
    return None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def fill_state(f: SimFill) -> dict[str, Any]:
    return {"id": f.id, "price": s(f.price), "amount": s(f.amount), "fee_amount": s(f.fee_amount),
            "fee_coin": f.fee_coin, "role": "maker" if f.maker else "taker", "created_at": ts(f.created_at)}


def order_state(o: SimOrder, fills: list[SimFill]) -> dict[str, Any]:
    return {"id": o.id, "user": o.username, "market": o.book, "side": o.side.value, "price": s(o.price),
            "amount": s(o.initial_amount), "remaining": s(o.remaining), "filled": s(o.filled),
            "status": o.status, "fee_percent": s(o.fee_percent), "frozen": s(o.frozen_left),
            "created_at": ts(o.created_at), "closed_at": ts(o.closed_at), "fills": [fill_state(f) for f in fills]}


def withdrawal_state(w: SimWithdrawal) -> dict[str, Any]:
    return {"id": w.id, "user": w.username, "coin": w.coin, "address": w.address, "amount": s(w.amount),
            "fee_amount": s(w.fee_amount), "status": w.status, "txid": w.txid, "date": ts(w.date)}


def deposit_state(d: SimDeposit) -> dict[str, Any]:
    return {"id": d.id, "user": d.username, "coin": d.coin, "address": d.address, "amount": s(d.amount),
            "txid": d.txid, "confirmations": d.confirmations, "confirmed": d.confirmed, "date": ts(d.date)}


def exchange_state(sim: CoinbtrSim) -> dict[str, Any]:
    """The whole exchange as plain JSON data (see the module docstring)."""
    fills_by_order: dict[int, list[SimFill]] = defaultdict(list)
    for f in sim.engine.fills:
        fills_by_order[f.order_id].append(f)
    users = sorted({u for u, _ in sim.ledger.entries()} | sim.funded)
    balances = {
        u: {c: {"available": s(sim.ledger.available(u, c)), "frozen": s(sim.ledger.frozen(u, c)),
                "pending": s(sim.desk.pending(u, c))} for c in COINS}
        for u in users
    }
    engine, desk = sim.engine.counters(), sim.desk.counters()
    return {
        "now": ts(sim.clock.now()),
        "next_ids": {"order": engine["next_order_id"], "fill": engine["next_fill_id"],
                     "withdrawal": desk["next_withdrawal_id"], "deposit": desk["next_deposit_id"]},
        "balances": balances,
        "orders": [order_state(o, fills_by_order[o.id]) for o in sorted(sim.engine.orders.values(),
                                                                       key=lambda o: o.id)],
        "withdrawals": [withdrawal_state(w) for w in sim.desk.withdrawals],
        "deposits": [deposit_state(d) for d in sim.desk.deposits],
    }


def _bad(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def get_state(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    sim.process()
    return web.json_response(exchange_state(sim))


async def post_deposit(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        coin = str(body.get("coin") or "").lower()
        if coin not in COINS:
            raise ValueError(f"coin must be one of {sorted(COINS)}")
        amount: Decimal = to_decimal(body.get("amount"), field_name="amount")
        confirmations = body.get("confirmations", 0)
        if isinstance(confirmations, bool) or not isinstance(confirmations, int) or confirmations < 0:
            raise ValueError("confirmations must be a non-negative integer")
        status = body.get("status", "pending")
        if status not in ("pending", "confirmed"):
            raise ValueError("status must be 'pending' or 'confirmed'")
        address = body.get("address")
        if address is not None and not isinstance(address, str):
            raise ValueError("address must be a string")
        sim.process()
        d = sim.inject_deposit(str(body.get("user") or COINBTR_USER), coin, amount, address,
                               confirmations=confirmations, confirmed=status == "confirmed")
    except (ValueError, TypeError) as exc:
        return _bad(400, str(exc))
    return web.json_response(deposit_state(d), status=201)


async def post_fail_withdrawal(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    try:
        w = sim.fail_withdrawal(int(request.match_info["id"]))
    except KeyError:
        return _bad(404, f"no withdrawal {request.match_info['id']}")
    except ValueError as exc:
        return _bad(409, str(exc))
    return web.json_response(withdrawal_state(w))


def add_control_routes(app: web.Application) -> None:
    """The exchange's own control routes (the faults, counters and clock routes come from `Faults`)."""
    app.router.add_get(CONTROL_PREFIX + "state", get_state)
    app.router.add_post(CONTROL_PREFIX + "deposits", post_deposit)
    app.router.add_post(CONTROL_PREFIX + r"withdrawals/{id:\d+}/fail", post_fail_withdrawal)
