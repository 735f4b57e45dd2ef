"""The one seeded simulated market behind every simulator.

`SimMarket` answers "which 1-minute bars exist for this instrument between these times, as of now": gap
minutes have no bar, the current minute is a partial bar whose values depend on how much of the minute has
passed on the injected clock, and there are never future bars. Numbers come from `pricepath` (pure and
deterministic per (seed, instrument, day)) and names from `instruments`; this module adds caching, history
bounds, the partial minute and the conversion to `Decimal`.

Instruments:
- `BTCUSD`, `ETHUSD`: the reference path in USD (what sFOX aggregates);
- `<venue>:<SYMBOL>` for venues `binance`, `kraken`, `coinbase` and symbols in `VENUE_SYMBOLS` (Atmos);
  the same path with a tiny venue basis and the venue's own trades, volumes and gaps;
- CoinBTR books `btc-mxn`, `eth-mxn`, `eth-btc` (and `btc-usd`, `eth-usd`): quoted through a slowly
  drifting USD/MXN rate (~17-20) or as the ETH/BTC ratio.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from bot.clock import Clock
from bot.sandbox.instruments import COINBTR_BOOKS, VENUE_SYMBOLS, UnknownInstrument
from bot.sandbox.instruments import model as _model
from bot.sandbox.pricepath import (
    ASSETS,
    EPOCH_TS,
    MINUTES_PER_DAY,
    DailyLevels,
    DayTrades,
    FloatArray,
    InstrumentModel,
    asset_day,
    instrument_day,
    partial_minute,
    points_by,
)

VOLUME_DP = 8
VWAP_DP = 8

_CACHE_BLOCKS = 256
_PARTIALS_CACHE = 4096

__all__ = ["COINBTR_BOOKS", "VENUE_SYMBOLS", "Bar", "Row", "SimMarket", "UnknownInstrument", "WindowStats"]

# (ts, open, high, low, close, volume, trades, vwap, partial): bar values already formatted as decimal text.
Row = tuple[int, str, str, str, str, str, int, str, bool]
# A stretch of one day's closed minutes [a, b) (`None`), or the running minute's partial row.
_Piece = tuple[int, int, int, Row | None]


@dataclass(frozen=True)
class Bar:
    """One 1-minute bar; `time` is the minute's start, `partial` while that minute is still running."""

    time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int
    vwap: Decimal
    partial: bool


def _fmt(value: float, dp: int) -> str:
    return f"{value:.{dp}f}"


class _Day:
    """One cached instrument-day: trades plus lazily formatted closed rows."""

    __slots__ = ("bars", "rows", "trades", "volume_units")

    def __init__(self, trades: DayTrades) -> None:
        self.trades = trades
        self.rows: list[Row | None] | None = None
        self.bars: list[Bar | None] | None = None
        self.volume_units: npt.NDArray[np.int64] | None = None

    def volume_prefix(self, day: int, dp: int) -> npt.NDArray[np.int64]:
        """Prefix sums of closed volumes in units of 1e-8, exact (built from the formatted strings)."""
        if self.volume_units is None:
            units = [int(r[5].replace(".", "")) if r is not None else 0 for r in self.formatted(day, dp)]
            self.volume_units = np.concatenate(([0], np.cumsum(np.array(units, dtype=np.int64))))
        return self.volume_units

    def closed_bars(self, day: int, dp: int) -> list[Bar | None]:
        if self.bars is None:
            self.bars = [None if r is None else row_to_bar(r) for r in self.formatted(day, dp)]
        return self.bars

    def formatted(self, day: int, dp: int) -> list[Row | None]:
        if self.rows is None:
            t = self.trades
            base_ts = EPOCH_TS + day * 86_400
            cols = zip(
                t.exists.tolist(), t.open.tolist(), t.high.tolist(), t.low.tolist(), t.close.tolist(),
                t.vol.tolist(), t.ntrades.tolist(), t.vwap.tolist(), strict=True,
            )
            self.rows = [
                (base_ts + i * 60, _fmt(o, dp), _fmt(h, dp), _fmt(lo, dp), _fmt(c, dp),
                 _fmt(v, VOLUME_DP), n, _fmt(w, VWAP_DP), False) if ex else None
                for i, (ex, o, h, lo, c, v, n, w) in enumerate(cols)
            ]
        return self.rows


@dataclass(frozen=True)
class WindowStats:
    """The bars of a window summed up: what `bars()` returns, aggregated (volume exact)."""

    bars: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int
    vwap: Decimal


def row_to_bar(row: Row) -> Bar:
    """Turn a formatted row into a `Bar` of Decimals."""
    ts, o, h, lo, c, v, n, w, partial = row
    return Bar(datetime.fromtimestamp(ts, UTC), Decimal(o), Decimal(h), Decimal(lo), Decimal(c),
               Decimal(v), n, Decimal(w), partial)


class SimMarket:
    """A deterministic market: same (seed, instrument, minute) gives the same bar in any query order."""

    def __init__(self, clock: Clock, seed: int = 42, history_days: int = 8) -> None:
        self._clock = clock
        self.seed = seed
        start = clock.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self._history_start = start - timedelta(days=history_days)
        if self._history_start.timestamp() < EPOCH_TS:
            raise ValueError("the simulated market starts at 2020-01-01")
        self._levels = {name: DailyLevels(seed, model) for name, model in ASSETS.items()}
        self._models: dict[str, InstrumentModel] = {}
        self._partials: dict[tuple[str, int, int], Row | None] = {}
        self._assets: OrderedDict[tuple[str, int], tuple[FloatArray, FloatArray]] = OrderedDict()
        self._days: OrderedDict[tuple[str, int], _Day] = OrderedDict()

    # -- public interface -------------------------------------------------------------------------
    def now(self) -> datetime:
        """The market's current time (the injected clock's)."""
        return self._clock.now()

    def history_start(self) -> datetime:
        """The earliest minute with data."""
        return self._history_start

    def model(self, instrument: str) -> InstrumentModel:
        """The instrument's model (raises `UnknownInstrument`)."""
        m = self._models.get(instrument)
        if m is None:
            m = self._models[instrument] = _model(instrument)
        return m

    def has(self, instrument: str) -> bool:
        """Whether the market knows `instrument`."""
        try:
            self.model(instrument)
        except UnknownInstrument:
            return False
        return True

    def bars(self, instrument: str, start: datetime, end: datetime) -> list[Bar]:
        """Existing 1-minute bars with `start <= time <= end`, ascending; the running minute is partial."""
        out: list[Bar] = []
        for day, a, b, partial in self._span(instrument, start.timestamp(), end.timestamp()):
            if partial is not None:
                out.append(row_to_bar(partial))
            else:
                model = self.model(instrument)
                day_bars = self._day(model, day).closed_bars(day, model.price_dp)
                out.extend(x for x in day_bars[a:b] if x is not None)
        return out

    def price(self, instrument: str, at: datetime | None = None) -> Decimal:
        """Last trade price at `at` (default now; a future `at` is taken as now)."""
        model = self.model(instrument)
        now_ts = self._clock.now().timestamp()
        ts = now_ts if at is None else min(at.timestamp(), now_ts)
        mi = math.floor((ts - EPOCH_TS) / 60)
        frac = (ts - EPOCH_TS) / 60 - mi
        floor_mi = (self._history_start.timestamp() - EPOCH_TS) // 60 - MINUTES_PER_DAY
        while mi >= floor_mi:
            day, off = divmod(mi, MINUTES_PER_DAY)
            trades = self._day(model, day).trades
            if frac >= 1.0:
                if trades.exists[off]:
                    return Decimal(_fmt(float(trades.close[off]), model.price_dp))
            else:
                vals = partial_minute(trades, off, frac)
                if vals is not None:
                    return Decimal(_fmt(vals[3], model.price_dp))
            mi, frac = mi - 1, 1.0
        raise UnknownInstrument(f"{instrument}: no trades in history")  # practically unreachable

    def range_after(self, instrument: str, since: datetime, until: datetime) -> tuple[Decimal, Decimal] | None:
        """(low, high) of the trades in `since`'s minute after `since` and up to `until` (the minute's end at
        the latest, and never past now); None when none traded there. What a resting order placed at `since`
        could have met in its first minute: the minute's bar also holds the trades before it."""
        model = self.model(instrument)
        now_ts = self._clock.now().timestamp()
        pos = (since.timestamp() - EPOCH_TS) / 60
        mi = math.floor(pos)
        end = min((min(until.timestamp(), now_ts) - EPOCH_TS) / 60 - mi, 1.0)
        day, off = divmod(mi, MINUTES_PER_DAY)
        trades = self._day(model, day).trades
        j0, j1 = points_by(trades, off, pos - mi), points_by(trades, off, end)
        valid = trades.valid[off, j0:j1]
        if j1 <= j0 or not valid.any():
            return None
        prices = trades.price[off, j0:j1][valid]
        dp = model.price_dp
        return Decimal(_fmt(float(prices.min()), dp)), Decimal(_fmt(float(prices.max()), dp))

    def stats(self, instrument: str, start: datetime, end: datetime) -> WindowStats | None:
        """Aggregate of `bars(instrument, start, end)` (None when there are none), without building bars.

        Cheap enough to call per request (a 24 h ticker), unlike summing 1,440 `Bar`s of Decimals.
        """
        model = self.model(instrument)
        dp = model.price_dp
        n = trades = units = 0
        notional = 0.0
        high, low = -math.inf, math.inf
        first: float | None = None
        last = 0.0
        for day, a, b, partial in self._span(instrument, start.timestamp(), end.timestamp()):
            if partial is not None:
                p_open, p_high, p_low, p_close = (float(x) for x in partial[1:5])
                p_units = int(partial[5].replace(".", ""))
                n, trades, units = n + 1, trades + partial[6], units + p_units
                notional += float(partial[7]) * p_units
                high, low, last = max(high, p_high), min(low, p_low), p_close
                first = p_open if first is None else first
                continue
            cached = self._day(model, day)
            t = cached.trades
            ex = t.exists[a:b]
            count = int(ex.sum())
            if not count:
                continue
            prefix = cached.volume_prefix(day, dp)
            n += count
            trades += int(t.ntrades[a:b].sum())
            units += int(prefix[b] - prefix[a])
            notional += float((t.vwap[a:b] * t.vol[a:b])[ex].sum()) * 1e8
            high, low = max(high, float(t.high[a:b][ex].max())), min(low, float(t.low[a:b][ex].min()))
            idx = np.flatnonzero(ex)
            first = float(t.open[a + idx[0]]) if first is None else first
            last = float(t.close[a + idx[-1]])
        if first is None:
            return None
        volume = Decimal(units).scaleb(-VOLUME_DP)
        vwap = min(max(notional / units, low), high) if units else last
        return WindowStats(n, Decimal(_fmt(first, dp)), Decimal(_fmt(high, dp)), Decimal(_fmt(low, dp)),
                           Decimal(_fmt(last, dp)), volume, trades, Decimal(_fmt(vwap, VWAP_DP)))

    # -- fast path for the simulators ---------------------------------------------------------------
    def rows(self, instrument: str, start_ts: float, end_ts: float) -> list[Row]:
        """Like `bars` but as formatted rows (cheap to serialise); times are unix seconds."""
        out: list[Row] = []
        for day, a, b, partial in self._span(instrument, start_ts, end_ts):
            if partial is not None:
                out.append(partial)
            else:
                model = self.model(instrument)
                day_rows = self._day(model, day).formatted(day, model.price_dp)
                out.extend(r for r in day_rows[a:b] if r is not None)
        return out

    def _span(self, instrument: str, start_ts: float, end_ts: float) -> list[_Piece]:
        """(day, first offset, end offset, None) per day of closed minutes in range, then the partial row."""
        model = self.model(instrument)
        now_ts = self._clock.now().timestamp()
        cur_mi = math.floor((now_ts - EPOCH_TS) / 60)
        first = int(self._history_start.timestamp() - EPOCH_TS) // 60
        lo = max(math.ceil((start_ts - EPOCH_TS) / 60), first)
        hi = min(math.floor((end_ts - EPOCH_TS) / 60), cur_mi)
        out: list[_Piece] = []
        if hi < lo:
            return out
        closed_hi = min(hi, cur_mi - 1)
        for day in range(lo // MINUTES_PER_DAY, closed_hi // MINUTES_PER_DAY + 1):
            a = max(lo - day * MINUTES_PER_DAY, 0)
            b = min(closed_hi - day * MINUTES_PER_DAY, MINUTES_PER_DAY - 1)
            out.append((day, a, b + 1, None))
        if hi == cur_mi:
            part = self._partial_row(model, cur_mi, (now_ts - EPOCH_TS) / 60 - cur_mi)
            if part is not None:
                out.append((cur_mi // MINUTES_PER_DAY, 0, 0, part))
        return out

    def latest_row(self, instrument: str) -> Row | None:
        """The newest existing bar (the running minute's partial one if it has trades yet)."""
        model = self.model(instrument)
        now_ts = self._clock.now().timestamp()
        cur_mi = math.floor((now_ts - EPOCH_TS) / 60)
        part = self._partial_row(model, cur_mi, (now_ts - EPOCH_TS) / 60 - cur_mi)
        if part is not None:
            return part
        lo = int(self._history_start.timestamp() - EPOCH_TS) // 60
        mi = cur_mi - 1
        while mi >= lo:
            day, off = divmod(mi, MINUTES_PER_DAY)
            row = self._day(model, day).formatted(day, model.price_dp)[off]
            if row is not None:
                return row
            mi -= 1
        return None

    # -- internals ----------------------------------------------------------------------------------
    def _partial_row(self, model: InstrumentModel, mi: int, frac: float) -> Row | None:
        day, off = divmod(mi, MINUTES_PER_DAY)
        trades = self._day(model, day).trades
        # The partial bar only changes when another trade slot passes, so polls in between share one row.
        j = points_by(trades, off, frac)
        key = (model.name, mi, j)
        if key in self._partials:
            return self._partials[key]
        vals = partial_minute(trades, off, frac, j)
        row: Row | None = None
        if vals is not None:
            o, h, lo, c, v, n, w = vals
            dp = model.price_dp
            row = (EPOCH_TS + mi * 60, _fmt(o, dp), _fmt(h, dp), _fmt(lo, dp), _fmt(c, dp),
                   _fmt(v, VOLUME_DP), int(n), _fmt(w, VWAP_DP), True)
        if len(self._partials) > _PARTIALS_CACHE:
            self._partials.clear()
        self._partials[key] = row
        return row

    def _asset(self, asset: str, day: int) -> tuple[FloatArray, FloatArray]:
        key = (asset, day)
        hit = self._assets.get(key)
        if hit is None:
            hit = self._assets[key] = asset_day(self.seed, ASSETS[asset], self._levels[asset], day)
            if len(self._assets) > _CACHE_BLOCKS:
                self._assets.popitem(last=False)
        return hit

    def _day(self, model: InstrumentModel, day: int) -> _Day:
        key = (model.name, day)
        hit = self._days.get(key)
        if hit is not None:
            self._days.move_to_end(key)
            return hit
        levels, sigma = self._asset(model.base, day)
        if model.quote == "MXN":
            levels = levels + self._asset("USDMXN", day)[0]
        elif model.quote == "BTC":
            btc, btc_sigma = self._asset("BTC", day)
            levels = levels - btc
            sigma = np.sqrt(sigma**2 + btc_sigma**2) * 0.7
        hit = self._days[key] = _Day(instrument_day(self.seed, model, levels, sigma, day))
        if len(self._days) > _CACHE_BLOCKS:
            self._days.popitem(last=False)
        return hit
