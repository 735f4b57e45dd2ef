"""Parameter sweeps: `tradebot optimize` runs the backtest engine over a grid of a strategy's params on Dask.

- `grid`: `--grid` parsing and expansion, validation by the strategy's `Params`, objectives, constraints.
- `evaluate`: a batch of parameter sets through the backtest engine (the Dask task; pure).
- `cluster`: the LocalCluster or remote scheduler, worker version checks, shipping strategy code and data.
- `runner`: the command end to end (table, --json); `report`: the HTML report with the heatmap.
"""
