"""What `optimize --maximize` can rank by: objective name -> (metric field, sign).

Its own module so the command line can list the choices without importing the backtest engine (pandas, ta).
The table is sorted by sign * value, highest first.
"""

from __future__ import annotations

OBJECTIVES: dict[str, tuple[str, float]] = {
    "sharpe": ("sharpe", 1.0),
    "return": ("total_return_pct", 1.0),
    "win_rate": ("win_rate_pct", 1.0),
    "trades": ("trades", 1.0),
    "drawdown": ("max_drawdown_pct", -1.0),  # the smallest drawdown is the best
    "exposure": ("exposure_pct", 1.0),
    "end_equity": ("end_equity", 1.0),
}
