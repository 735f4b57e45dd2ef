"""Signals: run every strategy instance on each closed candle, isolated, and hand actionable ones off once."""
