"""`python -m bot` is `tradebot`."""

from bot.cli import entry

entry()
