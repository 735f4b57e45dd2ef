"""tradebot: a trading and wallet daemon."""

__version__ = "0.1.0"
