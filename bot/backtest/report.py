"""The backtest's HTML report: one self-contained file (plotly.js inline) that works offline.

Per instance: the figures as a table, then one chart with three stacked panels on a shared time axis:
the candles with every fill drawn on them (buys up, sells down), the equity curve, and the drawdown.
A long history is drawn in buckets (at most `MAX_POINTS` candles: each bucket's open, high, low and
close; equity and drawdown at each bucket's worst and last point) so the page stays light.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bot.backtest.data import Candles
from bot.backtest.engine import Simulation
from bot.backtest.metrics import Summary, drawdown, equity_curve

MAX_POINTS = 3000
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Section:
    """One instance's part of the report."""

    summary: Summary
    sim: Simulation
    candles: Candles


def _buckets(n: int) -> npt.NDArray[np.intp]:
    step = max(1, -(-n // MAX_POINTS))
    return np.arange(0, n, step, dtype=np.intp)


def _times(ns: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    return np.datetime_as_string(ns.astype("datetime64[ns]"), unit="s")


def _figure(section: Section) -> str:
    import plotly.graph_objects as go  # type: ignore[import-untyped]
    from plotly.subplots import make_subplots  # type: ignore[import-untyped]

    candles, sim = section.candles, section.sim
    n = len(candles)
    starts = _buckets(n)
    ends = np.append(starts[1:], n) - 1
    x = _times(candles.times[starts])
    opens = candles.column("open")[starts]
    highs = np.maximum.reduceat(candles.column("high"), starts)
    lows = np.minimum.reduceat(candles.column("low"), starts)
    closes = candles.column("close")[ends]
    equity, _units = equity_curve(sim, candles)
    dd = drawdown(equity)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.03, row_heights=[0.55, 0.25, 0.2],
                        subplot_titles=("candles and trades", "equity", "drawdown"))
    fig.add_trace(go.Candlestick(x=x, open=opens, high=highs, low=lows, close=closes, name="candles",
                                 showlegend=False), row=1, col=1)
    fills = sim.fills
    for side, name, symbol, color in ((1, "buys", "triangle-up", "#1a9850"), (-1, "sells", "triangle-down",
                                                                             "#d73027")):
        pick = fills.side == side
        fig.add_trace(go.Scatter(x=_times(candles.times[fills.bar[pick]]), y=fills.price[pick], mode="markers",
                                 name=name, marker={"symbol": symbol, "size": 8, "color": color}), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=np.minimum.reduceat(equity, starts), mode="lines", name="equity (bucket low)",
                             line={"color": "#9ecae1", "width": 1}, showlegend=False), row=2, col=1)
    fig.add_trace(go.Scatter(x=x, y=equity[ends], mode="lines", name="equity", line={"color": "#08519c"}),
                  row=2, col=1)
    fig.add_trace(go.Scatter(x=x, y=-100.0 * np.maximum.reduceat(dd, starts), mode="lines", name="drawdown %",
                             fill="tozeroy", line={"color": "#cb181d"}), row=3, col=1)
    fig.update_layout(height=900, margin={"l": 60, "r": 20, "t": 40, "b": 30}, xaxis_rangeslider_visible=False,
                      legend={"orientation": "h"}, template="plotly_white")
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{section.summary.instance}"))


def _table(summary: Summary) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in summary.as_dict().items())
    return f'<table class="summary">{rows}</table>'


_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table.summary{border-collapse:collapse;margin-bottom:1em}
table.summary th{text-align:left;padding:2px 12px 2px 0;font-weight:500;color:#555}
table.summary td{padding:2px 0}"""


def write_report(path: Path, sections: Sequence[Section], title: str = "tradebot backtest") -> None:
    """Write the report to `path` (plotly.js inline: no network needed to open it)."""
    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style><script type='text/javascript'>{get_plotlyjs()}</script></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        s = section.summary
        parts.append(f"<section class='instance' id='instance-{html.escape(s.instance)}'>"
                     f"<h2>{html.escape(s.instance)} ({html.escape(s.strategy)}, fill {html.escape(s.fill)})</h2>")
        parts.append(_table(s))
        parts.append(_figure(section))
        parts.append("</section>")
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts), encoding="utf-8")
