"""The simulated market's catalogue: which instrument names exist and how busy each one trades.

Names: `BTCUSD`/`ETHUSD` (the reference path in USD), `<venue>:<SYMBOL>` for the Atmos venues, and
CoinBTR books such as `btc-mxn`. `model(name)` turns a name into an `InstrumentModel` for `pricepath`.
"""

from __future__ import annotations

from bot.sandbox.pricepath import InstrumentModel, stable_id

# Symbols each Atmos venue has market data for. Others may be listed by the Atmos pairs endpoint only.
VENUE_SYMBOLS: dict[str, tuple[str, ...]] = {
    "binance": ("BTCUSDT", "ETHUSDT", "BTCUSDC", "ETHUSDC", "ETHBTC"),
    "kraken": ("BTCUSD", "ETHUSD", "BTCUSDT", "ETHUSDT", "ETHBTC"),
    "coinbase": ("BTCUSD", "ETHUSD", "BTCUSDT", "ETHUSDT", "ETHBTC"),
}
COINBTR_BOOKS = ("btc-mxn", "eth-mxn", "eth-btc", "btc-usd", "eth-usd")

# Per-venue liquidity (relative volume, gap probability) and per-quote liquidity factor.
_VENUES = {"": (1.6, 0.01), "binance": (1.0, 0.01), "coinbase": (0.5, 0.02), "kraken": (0.25, 0.03)}
_QUOTE_FACTOR = {"USD": 1.0, "USDT": 1.0, "USDC": 0.3, "BTC": 0.2}
_BASE_VOLUME = {"BTC": 6.0, "ETH": 90.0}  # base coins per minute on binance
_BASE_TRADES = {"BTC": 250.0, "ETH": 160.0}
_COINBTR = {  # book: (volume per minute, trades per minute, gap probability)
    "btc-mxn": (0.08, 4.0, 0.04), "eth-mxn": (0.9, 3.0, 0.06), "eth-btc": (0.4, 2.0, 0.08),
    "btc-usd": (0.05, 3.0, 0.05), "eth-usd": (0.6, 2.0, 0.07),
}


class UnknownInstrument(ValueError):
    """The market has no such instrument."""



def _split_symbol(symbol: str) -> tuple[str, str] | None:
    for base in ("BTC", "ETH"):
        if symbol.startswith(base):
            quote = symbol[len(base):]
            if quote in _QUOTE_FACTOR and quote != base:
                return base, quote
    return None


def model(name: str) -> InstrumentModel:
    """Parse an instrument name into its model, or raise `UnknownInstrument`."""
    if name in ("BTCUSD", "ETHUSD"):
        base = name[:3]
        vf, gap = _VENUES[""]
        return InstrumentModel(name, base, "USD", 0.0, _BASE_VOLUME[base] * vf, _BASE_TRADES[base] * vf,
                               gap, 2)
    if name in _COINBTR:
        base, quote = name.upper().split("-")
        vol, trades, gap = _COINBTR[name]
        return InstrumentModel(name, base, quote, 0.0, vol, trades, gap, 8 if quote == "BTC" else 2)
    venue, sep, symbol = name.partition(":")
    if sep and venue in VENUE_SYMBOLS and symbol in VENUE_SYMBOLS[venue]:
        parts = _split_symbol(symbol)
        if parts is not None:
            base, quote = parts
            vf, gap = _VENUES[venue]
            qf = _QUOTE_FACTOR[quote]
            # A tiny, fixed venue basis of -3..+3 basis points, different per venue and symbol.
            basis = ((stable_id(name) % 601) / 100.0 - 3.0) * 1e-4
            return InstrumentModel(
                name, base, "BTC" if quote == "BTC" else "USD", basis,
                _BASE_VOLUME[base] * vf * qf, _BASE_TRADES[base] * vf * qf,
                gap if qf >= 1.0 else gap * 2.0, 8 if quote == "BTC" else 2,
            )
    raise UnknownInstrument(name)

