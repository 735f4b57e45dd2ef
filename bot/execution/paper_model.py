"""The paper account's pure rules: placement checks, funds, fees, and what traded between two looks.

The exchange-side rules match the CoinBTR simulator's (`bot.sandbox.exchange_rules`), which the unit tests
pin case by case, so a paper order and a sandbox order of the same size at the same prices end with the
same balances:

* a buy freezes exactly `amount * price` of the quote coin, a sell `amount` of the base coin (no fee
  headroom: the fee comes out of what the fill delivers);
* fees are charged in the coin received (a buy pays in base, a sell in quote), `received * percent / 100`
  rounded half-up to the coin's decimals; the percent is the book's maker or taker fee (`0.075` = 0.075%);
* a buy filled below its limit gets the difference back from frozen to available.

What traded between two looks at public data (the paper broker cannot see trades) is estimated by
`traded_volume` and `traded_for`; see their docstrings.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from bot.domain import Book, Side

ZERO = Decimal(0)
DAY = timedelta(days=1)
DAY_S = Decimal(86_400)
RATE_TAU_S = Decimal(300)  # the traded-volume rate's time constant (five minutes)
DEFAULT_DECIMALS = 8  # a coin the exchange does not list: fees rounded like BTC's
INVALID_PARAMS = 1001  # the contract's codes, for the errors a paper place raises like the exchange
INSUFFICIENT_FUNDS = 1002
NOT_FOUND = 1003
OUT_OF_LIMITS = 1004


def placement_problem(book: Book, amount: Decimal, price: Decimal) -> tuple[int, str] | None:
    """Why the exchange would refuse an order of `amount` at `price` on `book` (1001/1004), or None."""
    if amount <= 0 or price <= 0:
        return INVALID_PARAMS, "amount and price must be positive"
    if amount % book.amount_step != 0:
        return OUT_OF_LIMITS, f"amount must be a multiple of {book.amount_step}"
    if price % book.price_step != 0:
        return OUT_OF_LIMITS, f"price must be a multiple of {book.price_step}"
    if not book.minimum_amount <= amount <= book.maximum_amount:
        return OUT_OF_LIMITS, f"amount must be between {book.minimum_amount} and {book.maximum_amount}"
    if not book.minimum_price <= price <= book.maximum_price:
        return OUT_OF_LIMITS, f"price must be between {book.minimum_price} and {book.maximum_price}"
    if not book.minimum_value <= amount * price <= book.maximum_value:
        return OUT_OF_LIMITS, f"value must be between {book.minimum_value} and {book.maximum_value}"
    return None


def frozen_for(book: Book, side: Side, price: Decimal, amount: Decimal) -> tuple[str, Decimal]:
    """The coin and amount a new order freezes: `amount * price` quote for a buy, `amount` base for a sell."""
    if side is Side.BUY:
        return book.quote, amount * price
    return book.base, amount


def fee_amount(received: Decimal, fee_percent: Decimal, decimals: int) -> Decimal:
    """The fee on `received` at `fee_percent` percent, rounded half-up to the coin's decimals."""
    return (received * fee_percent / 100).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class Settlement:
    """What one fill moves: the payer's frozen coin leaves, the received coin arrives net of the fee."""

    paid_coin: str
    paid: Decimal  # out of frozen
    released: Decimal  # frozen handed back to available (a buy filled below its limit)
    received_coin: str
    received: Decimal  # gross, before the fee
    fee: Decimal


def settle(book: Book, side: Side, limit: Decimal, fill_price: Decimal, amount: Decimal, maker: bool,
           decimals: Mapping[str, int]) -> Settlement:
    """The balance movements of filling `amount` at `fill_price` for an order limited at `limit`;
    `decimals` are the coins' decimals (`DEFAULT_DECIMALS` for a coin not in it)."""
    pct = book.maker_fee if maker else book.taker_fee
    if side is Side.BUY:
        paid = amount * fill_price
        fee = fee_amount(amount, pct, decimals.get(book.base, DEFAULT_DECIMALS))
        return Settlement(book.quote, paid, amount * limit - paid, book.base, amount, fee)
    received = amount * fill_price
    fee = fee_amount(received, pct, decimals.get(book.quote, DEFAULT_DECIMALS))
    return Settlement(book.base, amount, ZERO, book.quote, received, fee)


# ---- what traded between two looks -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Look:
    """One look at a market's public ticker, numbered per market (1, 2, ...)."""

    look: int
    at: datetime
    last: Decimal
    bid: Decimal
    ask: Decimal
    low_24h: Decimal
    high_24h: Decimal
    volume_24h: Decimal
    rate: Decimal | None = None  # the traded-volume rate estimated at this look (base coin per second)


@dataclass(frozen=True, slots=True)
class Traded:
    """The estimate of what traded while a resting order was there: range and base-coin volume."""

    low: Decimal
    high: Decimal
    volume: Decimal


def _micros(delta: timedelta) -> Decimal:
    return Decimal(delta // timedelta(microseconds=1))


def volume_estimate(prev: Look, cur: Look) -> tuple[Decimal, Decimal | None]:
    """The base-coin volume traded between two looks and the traded-volume rate at `cur`: `(volume, rate)`.

    The ticker's rolling 24h volume rises by what traded since the last look and falls by what left the
    back of its window (the trades of the same span a day earlier). What left is not public; it is taken as
    the span's share of the 24h volume at the last look (`volume_24h * dt / 24h`, all of it once a day or
    more has passed), so the raw estimate of the span is `cur.volume_24h - prev.volume_24h + prev.volume_24h
    * min(dt, 24h) / 24h`. That share is an average, and a venue's window may drop what left in lumps (the
    simulated CoinBTR drops a whole minute at each minute's turn): one span's raw estimate is then far too
    low, even negative, and the next ones too high, although over many looks they add up to what traded.

    So a span is not given its own raw estimate but a smoothed rate times its length: the rate is an
    exponentially weighted average of the raw estimates per second, with time constant `RATE_TAU_S`
    (`rate = prev.rate * w + raw / dt * (1 - w)`, `w = exp(-dt / RATE_TAU_S)`), starting from the day's
    average (`volume_24h / 24h`) when the last look has none. Lumps and negative spans are spread over the
    neighbouring spans instead of leaving a span where trading happened with no volume (which would stop
    every order that the price reached there from filling), and over a run the volume given out still adds
    up to the raw estimates', give or take the last few minutes' worth. A volume is never negative (a rate
    can be, after a heavy lump left the window, and recovers as trading goes on); no time passed gives
    `(0, prev.rate)`.
    """
    dt = cur.at - prev.at
    if dt <= timedelta(0):
        return ZERO, prev.rate
    seconds = _micros(dt) / 1_000_000
    raw = cur.volume_24h - prev.volume_24h + prev.volume_24h * _micros(min(dt, DAY)) / _micros(DAY)
    prior = prev.rate if prev.rate is not None else prev.volume_24h / DAY_S
    w = (-seconds / RATE_TAU_S).exp()
    volume = (prior * w + raw / seconds * (1 - w)) * seconds
    if seconds <= DAY_S:
        return max(volume, ZERO), volume / seconds
    # After a day or more only the window's day is known to have traded (`raw` is the whole 24h volume);
    # the rate carried on is that day's, not that day spread over the whole gap.
    return max(volume, ZERO), prior * w + raw / DAY_S * (1 - w)


def traded_volume(prev: Look, cur: Look) -> Decimal:
    """The volume part of `volume_estimate`."""
    return volume_estimate(prev, cur)[0]


def traded_for(*, existed_at_prev: bool, created_at: datetime, prev: Look, cur: Look,
               seen: Sequence[tuple[Decimal, Decimal]] = (), variance_per_s: Decimal = ZERO,
               trades_per_s: Decimal = ZERO) -> Traded:
    """What traded, as far as public data shows, while one resting order was there since `prev`.

    The range is spanned by the prices seen: the last price and the best bid and ask at `cur`, and every
    book read since the order was placed (`seen`: `(best ask, best bid)` pairs). A best ask at or below a
    buy's price (a best bid at or above a sell's) means the book crossed the order there, so the asks count
    towards the low and the bids towards the high. An order that was already resting at `prev`
    (`existed_at_prev`) also counts `prev`'s prices (where the span started) and a new 24h low or high (one
    below `prev`'s 24h low, above its 24h high), which can only have traded after `prev`. An order placed
    since `prev` counts neither, nor anything before its placement: a move that happened before it cannot
    fill it. The volume is `traded_volume`, for an order placed since `prev` the share of the span it was
    there for (`(cur.at - created_at) / (cur.at - prev.at)`), trading taken as even over the span.

    Samples miss the extremes between them: a price that wandered below the lowest sample and back between
    two reads traded there, and the exchange fills from those extremes. With `variance_per_s` (the
    relative price variance per second seen across recent looks, `sample_variance`), the range is widened
    on both sides by the median excursion of a random walk between two samples, `price * sqrt(variance *
    gap * ln 2 / 2)` (for a Brownian bridge, the minimum falls that far below its ends with probability
    one half), where `gap` is the span the order was resting for divided by the number of samples in it.

    That excursion is a continuous path's. A thin book trades a few times a minute, and its extremes are
    those few trades, which fall short of the continuous path's by about `0.5826 * price * sqrt(variance /
    trades_per_s)` (the correction for a walk seen only at its trades, Broadie, Glasserman and Kou 1997).
    With `trades_per_s` (the venue's trade rate, `trade_rate`; 0 when unknown) the widening is reduced by
    that much, to nothing when about one trade or fewer falls between two samples: on such a book the
    samples already show about as much of the range as traded.
    """
    lows = [cur.last, cur.ask, *(ask for ask, _ in seen)]
    highs = [cur.last, cur.bid, *(bid for _, bid in seen)]
    volume = traded_volume(prev, cur)
    if existed_at_prev:
        lows += [prev.last, prev.ask]
        highs += [prev.last, prev.bid]
        if cur.low_24h < prev.low_24h:
            lows.append(cur.low_24h)
        if cur.high_24h > prev.high_24h:
            highs.append(cur.high_24h)
    elif volume > 0:
        span, there = _micros(cur.at - prev.at), _micros(cur.at - max(created_at, prev.at))
        volume = volume * min(max(there, ZERO), span) / span
    low, high = min(lows), max(highs)
    if variance_per_s > 0:
        resting_s = Decimal(max((cur.at - (prev.at if existed_at_prev else max(created_at, prev.at))).total_seconds(),
                                0.0))
        gap_s = resting_s / (len(seen) + (2 if existed_at_prev else 1))
        reach = (variance_per_s * gap_s * LN2 / 2).sqrt()
        if trades_per_s > 0:
            reach = max(reach - DISCRETE_BETA * (variance_per_s / trades_per_s).sqrt(), ZERO)
        low, high = low * (1 - reach), high * (1 + reach)
    return Traded(low, high, volume)


LN2 = Decimal(2).ln()
DISCRETE_BETA = Decimal("0.5826")  # zeta(1/2) / sqrt(2 pi), negated: a discretely seen walk's extreme
MIN_RATE_GAPS = 10  # sample gaps before a trade rate is estimated (ten looks: a few minutes)


def trade_rate(prices: Sequence[tuple[datetime, Decimal]]) -> Decimal:
    """Trades per second, estimated from how often the last price changed between samples `(time, last)`,
    oldest first: with trades arriving at random at rate `r`, a gap of `g` seconds holds at least one with
    probability `1 - exp(-r * g)`, so `r = -ln(1 - changed share) / mean gap`. A trade at the same price as
    the one before goes unseen, so this is a floor, and a floor is the unsafe side of the correction it
    feeds (`traded_for`): so 0, meaning unknown and no correction, with fewer than `MIN_RATE_GAPS` gaps or
    when every gap changed (the market trades more often than it is sampled; the rate is only known to be
    high)."""
    gaps = changed = 0
    seconds = ZERO
    for (t0, p0), (t1, p1) in itertools.pairwise(prices):
        dt = Decimal((t1 - t0).total_seconds())
        if dt > 0:
            gaps += 1
            seconds += dt
            changed += p1 != p0
    if gaps < MIN_RATE_GAPS or not 0 < changed < gaps:
        return ZERO
    return -(1 - Decimal(changed) / gaps).ln() / (seconds / gaps)


def sample_variance(prices: Sequence[tuple[datetime, Decimal]]) -> Decimal:
    """The relative price variance per second of a series of `(time, price)` samples, oldest first: the
    sum of squared relative changes over the seconds they span (0 with fewer than two samples or no time)."""
    total = ZERO
    seconds = ZERO
    for (t0, p0), (t1, p1) in itertools.pairwise(prices):
        dt = Decimal((t1 - t0).total_seconds())
        if dt > 0 and p0 > 0:
            total += ((p1 - p0) / p0) ** 2
            seconds += dt
    return total / seconds if seconds > 0 else ZERO
