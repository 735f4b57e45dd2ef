"""Backtesting: the configured strategy instances on a candle history, with the live path's own rule.

- `data`: candles from a CSV file (columns detected, every row checked) with a binary cache keyed by the
  file's content, or from the daemon's Atlas recordings, or downloaded from Atmos/sFOX (`download`).
- `engine`: signals from `Strategy.evaluate_all` (indicators computed once over the whole history), then
  the trade simulation only where signals or open orders are: `next_open` (all-in at the next bar's open)
  or `limit` (the paper broker's resting-fill function, `bot.execution.fill_model.fill`).
- `metrics`: equity, return, drawdown, Sharpe, exposure, fees; `report`: the offline HTML report.
- `runner`: what `tradebot backtest` does, end to end.
"""
