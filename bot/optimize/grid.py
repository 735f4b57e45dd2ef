"""Parameter grids, objectives and constraints: parsing and expansion, pure and validated up front.

- `--grid name=a..b:step` is an inclusive range (exact decimal steps: `0.1..0.3:0.1` is three values);
  `--grid name=v1,v2,...` a list (ints, floats, `true`/`false`, else text). One flag per parameter.
- Every combination is the instance's configured params with the grid's values laid over them, validated by
  the strategy's own `Params` model before anything runs; any failure is a `ConfigError` naming the
  parameter (the CLI's exit 2).
- `--samples N --seed S`: N combinations drawn without replacement from the full grid (never materialised:
  a combination is decoded from its index), in grid order.
"""

from __future__ import annotations

import math
import operator
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from bot.errors import ConfigError
from bot.optimize.objectives import OBJECTIVES
from bot.strategy import Strategy, StrategyParams, params_problems

Value = int | float | bool | str
MAX_RANGE_VALUES = 100_000
# Short names accepted in constraints besides the metric fields themselves.
METRIC_ALIASES = {name: field for name, (field, _sign) in OBJECTIVES.items()}
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(-?[0-9.eE+-]+)\s*$")
_RANGE = re.compile(r"^(-?[0-9.]+)\.\.(-?[0-9.]+):([0-9.]+)$")


@dataclass(frozen=True)
class Axis:
    """One `--grid` flag: a parameter and its values in the order given."""

    name: str
    values: tuple[Value, ...]


def _scalar(text: str) -> Value:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()




def parse_axis(spec: str) -> Axis:
    """`name=a..b:step` or `name=v1,v2`; raises `ConfigError` naming `--grid` and the parameter."""
    name, sep, body = spec.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier() or not body.strip():
        raise ConfigError("bad --grid", [("--grid", f"{spec!r}: expected name=a..b:step or name=v1,v2")])
    where = f"--grid {name}"
    match = _RANGE.match(body.replace(" ", ""))
    if match:
        try:
            lo, hi, step = (Decimal(g) for g in match.groups())
        except InvalidOperation:
            raise ConfigError("bad --grid", [(where, f"{body!r}: not numbers")]) from None
        if step <= 0 or hi < lo:
            raise ConfigError("bad --grid", [(where, f"{body!r}: needs a <= b and a positive step")])
        count = int((hi - lo) / step) + 1
        if count > MAX_RANGE_VALUES:
            raise ConfigError("bad --grid", [(where, f"{body!r}: {count:,} values (at most {MAX_RANGE_VALUES:,})")])
        integral = not any(c in text for text in match.groups() for c in ".eE")  # one type per axis
        values: tuple[Value, ...] = tuple(int(lo + i * step) if integral else float(lo + i * step)
                                          for i in range(count))
    elif ".." in body:
        raise ConfigError("bad --grid", [(where, f"{body!r}: a range is a..b:step")])
    else:
        values = tuple(_scalar(v) for v in body.split(",") if v.strip())
    if not values:
        raise ConfigError("bad --grid", [(where, "no values")])
    if len(set(values)) != len(values):
        raise ConfigError("bad --grid", [(where, f"{body!r}: a value is repeated")])
    return Axis(name, values)


@dataclass(frozen=True)
class Grid:
    """The axes of a sweep; combination `i` is decoded from its index (last axis fastest)."""

    axes: tuple[Axis, ...]

    @property
    def size(self) -> int:
        return math.prod(len(a.values) for a in self.axes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    def point(self, index: int) -> dict[str, Value]:
        out: dict[str, Value] = {}
        for axis in reversed(self.axes):
            index, k = divmod(index, len(axis.values))
            out[axis.name] = axis.values[k]
        return {name: out[name] for name in self.names}

    def indices(self, samples: int | None, seed: int) -> list[int]:
        """Every index, or `samples` of them drawn with `seed`, in grid order."""
        if samples is None or samples >= self.size:
            return list(range(self.size))
        return sorted(random.Random(seed).sample(range(self.size), samples))


def parse_grid(specs: Sequence[str]) -> Grid:
    """The `--grid` flags as a grid; a parameter given twice is an error."""
    if not specs:
        raise ConfigError("nothing to optimize", [("--grid", "give at least one, e.g. --grid period=7..28:7")])
    axes = tuple(parse_axis(s) for s in specs)
    seen = [a.name for a in axes]
    twice = sorted({n for n in seen if seen.count(n) > 1})
    if twice:
        raise ConfigError("bad --grid", [(f"--grid {n}", "given more than once (one flag per parameter)")
                                         for n in twice])
    return Grid(axes)


def validate_points(strategy: Strategy[Any], base: Mapping[str, Any], grid: Grid,
                    indices: Sequence[int]) -> list[StrategyParams]:
    """Each combination laid over `base` and validated by the strategy's `Params`; every problem (at most a
    few per parameter) is raised as one `ConfigError` naming `--grid <parameter>`."""
    fields = set(strategy.Params.model_fields)
    unknown = [n for n in grid.names if n not in fields]
    if unknown:
        raise ConfigError(f"{strategy.name} has no such parameter", [
            (f"--grid {n}", f"unknown; {strategy.name} takes {', '.join(sorted(fields)) or 'none'}") for n in unknown])
    out: list[StrategyParams] = []
    problems: dict[str, list[str]] = {}
    for i in indices:
        point = grid.point(i)
        try:
            out.append(strategy.parse_params({**base, **point}))
        except ValidationError as exc:
            for path, msg in params_problems(exc, "p"):
                name = path.removeprefix("p.").split(".")[0] if path != "p" else "params"
                shown = ", ".join(f"{k}={v}" for k, v in point.items())
                problems.setdefault(name, []).append(f"{msg} (at {shown})")
    if problems:
        raise ConfigError("the grid has parameter sets the strategy refuses", [
            (f"--grid {name}", msg) for name, msgs in problems.items() for msg in msgs[:3]])
    return out


@dataclass(frozen=True)
class Constraint:
    """`metric op number`, e.g. `trades>=50`."""

    metric: str
    op: str
    bound: float

    def holds(self, metrics: Mapping[str, Any]) -> bool:
        value = metrics.get(self.metric)
        return value is not None and _OPS[self.op](float(value), self.bound)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"


def parse_constraint(text: str, metric_fields: Sequence[str]) -> Constraint:
    """`trades>=50`, `drawdown<=20`, `total_return_pct>0`; raises `ConfigError` naming `--constraint`."""
    match = _CONSTRAINT.match(text)
    if not match:
        raise ConfigError("bad --constraint", [("--constraint", f"{text!r}: expected e.g. 'trades>=50'")])
    name, op, number = match.groups()
    metric = METRIC_ALIASES.get(name, name)
    if metric not in metric_fields:
        known = sorted(set(METRIC_ALIASES) | set(metric_fields))
        raise ConfigError("bad --constraint", [("--constraint",
                                                f"{name!r} is not a metric; one of {', '.join(known)}")])
    try:
        bound = float(number)
    except ValueError:
        raise ConfigError("bad --constraint", [("--constraint", f"{number!r} is not a number")]) from None
    return Constraint(metric, op, bound)


def sort_key(objective: str) -> Callable[[tuple[int, Mapping[str, Any]]], tuple[float, int]]:
    """Key for `(grid index, metrics)`: best objective first, a missing value (no Sharpe) last, ties in grid order."""
    field, sign = OBJECTIVES[objective]

    def key(item: tuple[int, Mapping[str, Any]]) -> tuple[float, int]:
        value = item[1].get(field)
        return (math.inf if value is None else -sign * float(value), item[0])

    return key


def chunk(items: Sequence[int], parts: int) -> list[list[int]]:
    """`items` cut into `parts` contiguous runs of near-equal length (none empty)."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for k in range(parts):
        end = start + size + (1 if k < extra else 0)
        out.append(list(items[start:end]))
        start = end
    return out
