"""The sweep's HTML report: the best results as a table and a heatmap of the objective over two parameters.

One self-contained file (plotly.js inline, works offline). The heatmap's cell for (x, y) is the best
objective over the other parameters' values (the feasible sets only); cells never evaluated stay empty.
The two parameters are `--heatmap X,Y`, else the first two `--grid` parameters with more than one value.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from bot.optimize.objectives import OBJECTIVES
from bot.optimize.runner import Outcome, table


def heatmap_axes(outcome: Outcome, chosen: tuple[str, str] | None) -> tuple[str, str] | None:
    """The two parameters drawn, or None when fewer than two vary."""
    if chosen is not None:
        return chosen
    varying = [a.name for a in outcome.axes if len(a.values) > 1]
    return (varying[0], varying[1]) if len(varying) >= 2 else None


def heatmap_cells(outcome: Outcome, x: str, y: str) -> tuple[list[Any], list[Any], list[list[float | None]]]:
    """(x values, y values, z[y][x]): the best objective per cell (objective sign applied back)."""
    field, sign = OBJECTIVES[outcome.objective]
    xs = next(a.values for a in outcome.axes if a.name == x)
    ys = next(a.values for a in outcome.axes if a.name == y)
    best: dict[tuple[Any, Any], float] = {}
    for r in outcome.results:
        value = r.metrics.get(field)
        if not r.feasible or value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        cell = (r.point[x], r.point[y])
        if cell not in best or sign * value > sign * best[cell]:
            best[cell] = float(value)
    z = [[best.get((vx, vy)) for vx in xs] for vy in ys]
    return list(xs), list(ys), z


def write_report(path: Path, outcome: Outcome, chosen: tuple[str, str] | None, top: int) -> None:
    """Write the report to `path`."""
    import plotly.graph_objects as go  # type: ignore[import-untyped]
    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

    title = f"tradebot optimize: by {outcome.objective}"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}pre{font-size:13px}</style>",
             f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(outcome.results)} parameter sets; {html.escape(outcome.where)}; constraints: "
             f"{html.escape(', '.join(map(str, outcome.constraints)) or 'none')}</p>",
             f"<h2>best {top}</h2><pre class='results'>{html.escape(chr(10).join(table(outcome, top)))}</pre>"]
    axes = heatmap_axes(outcome, chosen)
    if axes is None:
        parts.append("<p>No heatmap: fewer than two parameters vary.</p>")
    else:
        x, y = axes
        xs, ys, z = heatmap_cells(outcome, x, y)
        fig = go.Figure(go.Heatmap(x=[str(v) for v in xs], y=[str(v) for v in ys], z=z, colorscale="Viridis",
                                   colorbar={"title": outcome.objective}, hoverongaps=False))
        fig.update_layout(title=f"best {outcome.objective} over {x} and {y}", xaxis_title=x, yaxis_title=y,
                          height=600, template="plotly_white")
        parts.append(f"<h2>heatmap</h2>{fig.to_html(full_html=False, include_plotlyjs=False, div_id='heatmap')}")
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts), encoding="utf-8")
