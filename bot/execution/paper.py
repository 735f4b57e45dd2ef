"""`PaperBroker`: trading on a simulated account against CoinBTR's real (or simulated) public market data.

It reads only the public market endpoints (`client.market`: books, currencies, order book, ticker) and
never sends a private request: no place, cancel, balance or transaction read reaches the exchange. The
account (balances, orders, fills, the last look at each market) lives in the store (`paper_account`), so it
survives restarts; it starts from `[paper] balances` on first use and `tradebot paper-reset` starts it over.

A paper order behaves like an exchange order (the rules in `paper_model` match the CoinBTR simulator's):

* `place` checks the book's limits (1001/1004) and the available funds (1002, `InsufficientFunds`),
  freezes them, and when the limit crosses the current order book takes liquidity at once as a *taker*,
  walking the opposite side's levels with `fill_model.take` (each piece at the level's price, taker fee).
  The rest rests. A place has no unknown outcome: it either committed or raised before committing.
* `observe` fills resting orders as *makers* at their own price with `fill_model.fill`, the model the
  simulated exchange and the backtest share, from an estimate of what traded since the last look (see
  `observe`), by at most `[paper] participation` of the estimated volume per look.
* `cancel` unfreezes what the rest held; fills already made stay.

The paper order book is the real one: a paper order never moves it, so two crossing paper orders in a row
may take the same levels (the simulator, by contrast, remembers what its takers took that minute).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog

from bot.clients.coinbtr import CoinbtrClient, InvalidParams, OutsideLimits
from bot.clock import Clock, iso_z
from bot.domain import Balance, Book, ExchangeOrder, Fill, OrderBook, Side, Ticker
from bot.errors import BotError, OutcomeUnknown, Rejected, TemporaryError
from bot.execution import fill_model
from bot.execution.paper_account import SERVICE, PaperAccount, PaperOrder
from bot.execution.paper_model import (
    INVALID_PARAMS,
    Look,
    Traded,
    placement_problem,
    sample_variance,
    trade_rate,
    traded_for,
    volume_estimate,
)
from bot.execution.snapshots import Snapshots, mids
from bot.settings import PaperSettings
from bot.store import Store

log = structlog.get_logger(__name__)

MAX_SEEN = 1000  # book reads remembered per market between two looks (the newest)
PRICE_SAMPLES = 90  # looks whose prices measure how much a market moves (half an hour at one per 20 s)
MIN_LOOK_SPAN_S = 1.0  # clock seconds after a look before another look reads the ticker again


class PaperBroker:
    """The paper account behind the `Broker` interface (see the module docstring)."""

    kind = "paper"

    def __init__(self, client: CoinbtrClient, store: Store, clock: Clock, settings: PaperSettings) -> None:
        self._client = client
        self._clock = clock
        self._settings = settings
        self.account = PaperAccount(store, clock)
        self._books: dict[str, Book] | None = None
        self._decimals: dict[str, int] | None = None
        self._ready = False
        # Book reads since each market's last look, `(seq, best ask, best bid)`, and the read sequence
        # number at each order's placement (orders placed by an earlier process saw none of these reads).
        self._seq = 0
        self._seen: dict[str, list[tuple[int, Decimal, Decimal]]] = defaultdict(list)
        self._placed_seq: dict[int, int] = {}
        self._last_traded: dict[str, dict[str, str]] = {}
        self._order_books = Snapshots(clock, self._read_order_book)
        self._tickers = Snapshots(clock, self._read_ticker)
        # Recent tickers' last prices per market (in memory; a restart starts over): how much prices move.
        self._prices: dict[str, deque[tuple[datetime, Decimal]]] = defaultdict(lambda: deque(maxlen=PRICE_SAMPLES))

    def _start(self) -> None:
        """Open the account from `[paper] balances` on first use; afterwards it carries on as stored."""
        if not self._ready:
            if self.account.started() is None:
                self.account.reset(self._settings.balances)
                log.info("paper.account_opened", balances={k: str(v) for k, v in self._settings.balances.items()})
            self._ready = True

    # ---- public market data -------------------------------------------------------------------

    async def books(self, *, refresh: bool = False) -> dict[str, Book]:
        """Every market's limits, steps and fees, by market name: read once, again with `refresh`."""
        if self._books is None or refresh:
            self._books = {b.name.lower(): b for b in await self._client.market.books()}
        return dict(self._books)

    async def order_book(self, market: str, *, max_age_s: float | None = None) -> OrderBook:
        """The market's current bids and asks, one read shared by the callers of one moment (`Snapshots`);
        each read is also remembered as a price seen for resting orders."""
        return await self._order_books.get(market.lower(), max_age_s)

    async def _read_order_book(self, market: str) -> OrderBook:
        ob = await self._client.market.order_book(market)
        self._saw(market, ob)
        return ob

    async def _book(self, market: str) -> Book:
        book = (await self.books()).get(market) or (await self.books(refresh=True)).get(market)
        if book is None:
            raise InvalidParams(f"unknown market {market!r}", service=SERVICE, code=INVALID_PARAMS)
        return book

    async def _coin_decimals(self) -> dict[str, int]:
        if self._decimals is None:
            self._decimals = {c.coin.lower(): c.decimals for c in await self._client.market.currencies()}
        return self._decimals

    def _saw(self, market: str, ob: OrderBook) -> None:
        """Remember a book read for the market's resting orders (only they can use it: an order placed
        later counts only reads after its placement), at most `MAX_SEEN` of them between two looks."""
        self._seq += 1
        if ob.asks and ob.bids and self.account.has_open_orders(market):
            seen = self._seen[market]
            seen.append((self._seq, ob.asks[0].price, ob.bids[0].price))
            if len(seen) > MAX_SEEN:
                del seen[: len(seen) - MAX_SEEN]

    async def _read_ticker(self, market: str) -> tuple[datetime, Ticker]:
        return self._clock.now(), await self._client.market.ticker(market)

    async def _fresh_ticker(self, market: str) -> tuple[datetime, Ticker]:
        """The market's ticker read after its last look (a shared read of this moment when there is one,
        else a new one): a look never reuses the answer the previous look was taken from. Within
        `MIN_LOOK_SPAN_S` of the last look nothing is read: that look's answer comes back, and the caller
        sees that no time passed."""
        ticker = await self._tickers.get(market)
        prev = self.account.look(market)
        if prev is not None and ticker[0] <= prev.at and \
                (self._clock.now() - prev.at).total_seconds() >= MIN_LOOK_SPAN_S:
            self._tickers.forget(market)
            ticker = await self._tickers.get(market)
        return ticker

    def _look_at(self, read: tuple[datetime, Ticker], number: int) -> Look:
        at, ticker = read
        prices = self._prices[ticker.book.lower()]
        if not prices or prices[-1][0] < at:
            prices.append((at, ticker.last))
        return Look(number, at, ticker.last, ticker.bid, ticker.ask, ticker.low, ticker.high, ticker.volume)

    # ---- orders -------------------------------------------------------------------------------

    async def place(self, market: str, side: Side, price: Decimal, amount: Decimal) -> int:
        """Place a paper limit order; returns its id. `Rejected` (1001/1002/1004) like the exchange; a
        failed market-data read raises `TemporaryError` (nothing was placed)."""
        self._start()
        market = market.lower()
        try:
            book = await self._book(market)
            problem = placement_problem(book, amount, price)
            if problem is not None:
                code, message = problem
                cls = InvalidParams if code == INVALID_PARAMS else OutsideLimits
                raise cls(message, service=SERVICE, code=code)
            decimals = await self._coin_decimals()
            if not self.account.open_orders(market):
                # A fresh baseline: no resting order depends on the old look (if any), and the first
                # observe after this place can already fill over a short, well-estimated span.
                ticker = await self._fresh_ticker(market)
                prev = self.account.look(market)
                if prev is None:
                    self.account.save_look(market, self._look_at(ticker, 1))
                elif ticker[0] > prev.at:  # the span since `prev` had no resting order: only its rate is kept
                    base = self._look_at(ticker, prev.look + 1)
                    self.account.save_look(market, replace(base, rate=volume_estimate(prev, base)[1]))
            ob = await self.order_book(market)
        except (Rejected, TemporaryError):
            raise
        except BotError as exc:  # a market-data read we could not use: the order was provably not placed
            raise TemporaryError(f"paper place: market data unavailable: {exc}", service=SERVICE) from exc
        look = self.account.look(market)
        takes = fill_model.take(side, price, amount, ob.asks if side is Side.BUY else ob.bids)
        order = self.account.place(book, side, price, amount, takes, decimals, look.look if look else 0)
        self._placed_seq[order.id] = self._seq
        log.info("paper.order_placed", order_id=order.id, market=market, side=side.value, price=str(price),
                 amount=str(amount), taken=str(order.filled), state=order.state)
        return order.id

    async def cancel(self, order_id: int) -> None:
        """Cancel an open paper order, unfreezing its rest; `NotFound` (1003) when it is not open. What traded
        since the last look is accounted first, as an exchange matches up to the moment the cancel arrives
        (a cancel that races a fill ends in the fill, as it would live)."""
        self._start()
        try:
            order = self.account.order(order_id)
            await self.observe(order.market if order is not None else None)
        except BotError as exc:  # no fresh look: cancel on what is known
            log.warning("paper.cancel_without_look", order_id=order_id, error=str(exc))
        order = self.account.cancel(order_id)
        self._placed_seq.pop(order_id, None)
        log.info("paper.order_cancelled", order_id=order_id, filled=str(order.filled))

    async def open_orders(self, market: str | None = None) -> list[ExchangeOrder]:
        """The paper account's open orders (all, or of one market), oldest first."""
        self._start()
        return [o.exchange_order() for o in self.account.open_orders(market)]

    async def order_fills(self, market: str, order_id: int, since: datetime) -> list[Fill]:
        """Every fill of one paper order at or after `since`, oldest first."""
        self._start()
        return self.account.order_fills(market, order_id, since)

    async def find_order(self, market: str, side: Side, price: Decimal, amount: Decimal, placed_after: datetime,
                         exclude_ids: Collection[int] = ()) -> int | None:
        """The paper order a place created when the journal never learnt its id (the process died between
        the paper account's commit and the journal's): the one order of `market` with this side, price and
        amount placed at or after `placed_after` and not in `exclude_ids`; None when there is none. A paper
        place never has a lost answer otherwise: it committed and returned its id or raised."""
        self._start()
        found = self.account.find(market.lower(), side, price, amount, placed_after, exclude_ids)
        if len(found) > 1:
            raise OutcomeUnknown(f"{len(found)} paper orders match the intent; cannot tell which is ours",
                                 service=SERVICE)
        return found[0] if found else None

    async def balances(self) -> dict[str, Balance]:
        """The paper account's available and frozen amounts per coin."""
        self._start()
        return self.account.balances()

    # ---- resting fills ------------------------------------------------------------------------

    async def observe(self, market: str | None = None) -> None:
        """Fill resting paper orders from what traded since the last look at each of their markets.

        One ticker read per market with open orders (public; the books and currencies are cached; a ticker
        read in the last moments is reused, `Snapshots`, and one already looked at adds nothing). A cancel
        observes only its order's market. Public
        data shows no trades, so what traded is estimated (`paper_model.traded_for`):

        * **volume** — the rise of the ticker's rolling 24h volume since the last look, plus the part of the
          last look's 24h volume that left the window meanwhile (taken pro rata: `volume_24h * dt / 24h`),
          smoothed over the last few minutes (an exponentially weighted rate times the span,
          `paper_model.volume_estimate`), since a venue's window may drop what left in lumps; an order
          placed since the last look gets the share of the span it was resting for;
        * **range** — the prices seen since the order was resting: the ticker's last price and best bid and
          ask now, every order book read through this broker in between (`order_book`, e.g. for pricing),
          and for an order resting since the last look that look's prices and any new 24h low or high. A
          best ask at or below a buy's price (best bid at or above a sell's) is a book that crossed the
          order: it counts as traded there. The range is widened by what the price, moving as much as
          recent looks show, reaches unseen between samples, less the part a book trading only a few times
          a minute (the trade rate read from how often the last price changes) does not reach
          (`paper_model.traded_for`).

        Each order then gets `fill_model.fill(side, price, remaining, low, high, volume, participation,
        amount_step)`: at its own price, maker fee, at most `participation` of the volume per look. A
        market's fills, balances and its new look are one transaction. A place into a market with no open
        paper order first takes a fresh baseline look (one ticker read), so the span a new order is judged
        over starts at its placement; a market without any look yet only gets its baseline here. A failed
        read raises and moves nothing, so the next look covers the whole span.
        """
        self._start()
        markets = sorted({o.market for o in self.account.open_orders(market)})
        if not markets:
            return
        decimals = await self._coin_decimals()
        for market in markets:
            book = await self._book(market)
            ticker = await self._fresh_ticker(market)
            prev = self.account.look(market)
            if prev is None:
                self.account.save_look(market, self._look_at(ticker, 1))
                self._seen.pop(market, None)
                continue
            if ticker[0] <= prev.at:  # no time passed since the last look: nothing to account
                continue
            cur = self._look_at(ticker, prev.look + 1)
            cur = replace(cur, rate=volume_estimate(prev, cur)[1])
            seen = self._seen.pop(market, [])
            amounts: dict[int, Decimal] = {}
            moves = self._moves(market)
            for order in self.account.open_orders(market):
                traded = self._traded(order, prev, cur, seen, moves)
                amounts[order.id] = fill_model.fill(order.side, order.price, order.remaining, traded.low,
                                                    traded.high, traded.volume, self._settings.participation,
                                                    book.amount_step)
            whole = traded_for(existed_at_prev=True, created_at=prev.at, prev=prev, cur=cur,
                               seen=[(a, b) for _, a, b in seen])
            fills = self.account.fill_resting(market, cur, book, decimals, amounts)
            self._last_traded[market] = {"at": iso_z(cur.at), "since": iso_z(prev.at), "volume": str(whole.volume),
                                         "low": str(whole.low), "high": str(whole.high), "fills": str(len(fills))}
            for f in fills:
                log.info("paper.order_filled", order_id=f.order_id, market=market, side=f.side.value,
                         price=str(f.price), amount=str(f.amount), fee=str(f.fee_amount), fee_coin=f.fee_coin)
        if market is not None:
            return
        open_ids = {o.id for o in self.account.open_orders()}
        self._placed_seq = {k: v for k, v in self._placed_seq.items() if k in open_ids}

    def _traded(self, order: PaperOrder, prev: Look, cur: Look, seen: list[tuple[int, Decimal, Decimal]],
                moves: tuple[Decimal, Decimal]) -> Traded:
        placed = self._placed_seq.get(order.id, -1)  # -1: placed by an earlier process, before every read
        return traded_for(existed_at_prev=order.after_look < prev.look, created_at=order.created_at, prev=prev,
                          cur=cur, seen=[(ask, bid) for seq, ask, bid in seen if seq > placed],
                          variance_per_s=moves[0], trades_per_s=moves[1])

    def _moves(self, market: str) -> tuple[Decimal, Decimal]:
        """The market's price variance per second and trade rate from its recent looks (once per look: a
        pass over up to `PRICE_SAMPLES` Decimal samples each)."""
        prices = list(self._prices[market])
        return sample_variance(prices), trade_rate(prices)

    # ---- status -------------------------------------------------------------------------------

    def marks(self) -> dict[str, Decimal]:
        """The mid of each market's order book as last read (no request): what positions are marked at."""
        return mids(self._order_books.latest())

    def status(self) -> dict[str, Any]:
        """Balances, starting balances, order and fill counts, and the last estimate per market."""
        started = self.account.started() or {}
        return {
            "kind": self.kind,
            "balances": {c: {"available": str(b.available), "frozen": str(b.frozen)}
                         for c, b in self.account.balances().items()},
            "start_balances": {c: str(v) for c, v in dict(started.get("balances", {})).items()},
            "started_at": iso_z(started["at"]) if isinstance(started.get("at"), datetime) else None,
            "participation": str(self._settings.participation),
            **self.account.counts(),
            "last_look": dict(self._last_traded),
        }
