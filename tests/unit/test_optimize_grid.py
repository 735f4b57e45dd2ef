"""tradebot optimize's pure parts: grid parsing and validation, constraints, ordering, batching, worker checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.errors import ConfigError
from bot.optimize import cluster
from bot.optimize import grid as g
from bot.optimize.evaluate import indicator_key, order_by_indicators
from bot.optimize.runner import cut_batches
from bot.strategy import load_strategy


@pytest.mark.parametrize(("spec", "values"), [
    ("period=7..28:7", (7, 14, 21, 28)),
    ("period=7..27:7", (7, 14, 21)),
    ("x=0.1..0.3:0.1", (0.1, 0.2, 0.3)),  # exact decimal steps: no 0.30000000000000004, no missing end
    ("x=0..1:0.5", (0.0, 0.5, 1.0)),
    ("buy_below=20,25,30", (20, 25, 30)),
    ("flag=true,false", (True, False)),
    ("x=2.5", (2.5,)),
])
def test_an_axis_is_an_inclusive_range_or_a_list(spec: str, values: tuple[Any, ...]) -> None:
    axis = g.parse_axis(spec)
    assert axis.values == values
    assert [type(v) for v in axis.values] == [type(v) for v in values]


@pytest.mark.parametrize("spec", ["period", "period=", "=1,2", "p=28..7:7", "p=1..5:0", "p=1..5", "p=1,1"])
def test_a_malformed_axis_is_a_config_error_naming_grid(spec: str) -> None:
    with pytest.raises(ConfigError) as err:
        g.parse_axis(spec)
    assert err.value.problems[0][0].startswith("--grid")


def test_grid_points_decode_from_their_index_and_a_sample_is_seeded() -> None:
    grid = g.parse_grid(["a=1,2,3", "b=10,20"])
    assert grid.size == 6
    assert [grid.point(i) for i in range(6)] == [{"a": a, "b": b} for a in (1, 2, 3) for b in (10, 20)]
    assert grid.indices(4, seed=7) == grid.indices(4, seed=7) == sorted(grid.indices(4, seed=7))
    assert len(set(grid.indices(4, seed=7))) == 4
    assert grid.indices(None, 0) == grid.indices(99, 0) == list(range(6))
    with pytest.raises(ConfigError):
        g.parse_grid(["a=1,2", "a=3"])


def test_every_combination_is_validated_by_the_strategys_params() -> None:
    rsi = load_strategy("rsi_reversion")
    base = {"period": 14, "buy_below": 30.0, "sell_above": 70.0}
    grid = g.parse_grid(["period=7,14", "buy_below=20,25"])
    params = g.validate_points(rsi, base, grid, range(grid.size))
    assert [(p.period, p.buy_below, p.sell_above) for p in params] == [  # type: ignore[attr-defined]
        (7, 20.0, 70.0), (7, 25.0, 70.0), (14, 20.0, 70.0), (14, 25.0, 70.0)]
    for specs, name in ((["perod=7,14"], "--grid perod"), (["period=1,14"], "--grid period"),
                        (["buy_below=20,80"], "--grid buy_below")):
        bad = g.parse_grid(specs)
        with pytest.raises(ConfigError) as err:
            g.validate_points(rsi, base, bad, range(bad.size))
        assert {p for p, _m in err.value.problems} == {name}


def test_a_bad_grid_exits_2_naming_the_parameter_before_any_data_is_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'state_dir = "{tmp_path}/var"\n[[strategies]]\nname = "rsi"\nstrategy = "rsi_reversion"\n'
                   'market = "btc-usd"\nfeed = { source = "atmos", exchange = "binance", symbol = "BTCUSDT" }\n'
                   'order_amount = "0.001"\n')
    rc = main(["optimize", "--config", str(cfg), "--strategy", "rsi", "--data", str(tmp_path / "missing.csv"),
               "--grid", "period=1..3:1", "--workers", "0"])
    assert rc == 2
    assert "--grid period" in capsys.readouterr().err


def test_constraints_parse_aliases_and_refuse_unknown_metrics() -> None:
    fields = ["trades", "max_drawdown_pct", "sharpe"]
    c = g.parse_constraint("trades>=50", fields)
    assert (c.metric, c.op, c.bound) == ("trades", ">=", 50.0)
    assert c.holds({"trades": 50}) and not c.holds({"trades": 49})
    assert g.parse_constraint("drawdown <= 20", fields).metric == "max_drawdown_pct"
    assert not g.parse_constraint("sharpe>0", fields).holds({"sharpe": None})
    for bad in ("trades=>5", "tardes>=5", "trades>=x"):
        with pytest.raises(ConfigError):
            g.parse_constraint(bad, fields)


def test_sorting_puts_the_best_first_missing_values_last_ties_in_grid_order() -> None:
    items = [(0, {"sharpe": 1.0}), (1, {"sharpe": None}), (2, {"sharpe": 2.0}), (3, {"sharpe": 1.0})]
    assert [i for i, _m in sorted(items, key=g.sort_key("sharpe"))] == [2, 0, 3, 1]
    dd = [(0, {"max_drawdown_pct": 5.0}), (1, {"max_drawdown_pct": 2.0})]
    assert [i for i, _m in sorted(dd, key=g.sort_key("drawdown"))] == [1, 0]


def test_parameter_sets_sharing_indicators_are_grouped_for_one_batch() -> None:
    rsi = load_strategy("rsi_reversion")
    params = [rsi.parse_params({"period": p, "buy_below": b}) for b in (20, 25) for p in (7, 14)]
    order = order_by_indicators(rsi, params)
    keys = [indicator_key(rsi, params[i]) for i in order]
    assert keys == sorted(keys) and len(set(keys)) == 2
    assert [params[i].period for i in order] == [14, 14, 7, 7]  # type: ignore[attr-defined]


def test_batches_follow_indicator_groups_and_spread_over_workers() -> None:
    keys = [k for k in "abcd" for _ in range(25)]  # 4 indicator groups of 25 sets
    # 100 ms where the indicators are computed, 36 ms otherwise, 2 workers: one group per batch.
    assert [(s.start, s.stop) for s in cut_batches(keys, 0.1, 0.036, 2)] == [(0, 25), (25, 50), (50, 75), (75, 100)]
    tiny = cut_batches(keys, 0.002, 0.001, 2)  # tiny backtests: about half a second per task
    assert len(tiny) == 1
    slow = cut_batches(keys, 2.0, 1.0, 100)  # many workers: down to one set per task
    assert all(s.stop - s.start == 1 for s in slow)
    assert [i for s in cut_batches(keys, 0.1, 0.036, 8) for i in range(s.start, s.stop)] == list(range(100))


class _FakeClient:
    def __init__(self, answers: dict[str, object]) -> None:
        self.answers = answers

    def run(self, fn: Any, on_error: str) -> dict[str, object]:
        assert on_error == "return"
        return self.answers


def test_a_worker_on_another_version_is_named() -> None:
    from bot import __version__

    ok = _FakeClient({"tcp://10.0.0.1:1": __version__, "tcp://10.0.0.2:1": __version__})
    assert cluster.check_workers(ok) == ["tcp://10.0.0.1:1", "tcp://10.0.0.2:1"]
    bad = _FakeClient({"tcp://10.0.0.1:1": __version__, "tcp://10.0.0.2:1": "0.0.1",
                       "tcp://10.0.0.3:1": ModuleNotFoundError("No module named 'bot'")})
    with pytest.raises(ConfigError) as err:
        cluster.check_workers(bad)
    problems = dict(err.value.problems)
    assert set(problems) == {"worker tcp://10.0.0.2:1", "worker tcp://10.0.0.3:1"}
    assert "0.0.1" in problems["worker tcp://10.0.0.2:1"]
    assert "No module named 'bot'" in problems["worker tcp://10.0.0.3:1"]
    with pytest.raises(ConfigError):
        cluster.check_workers(_FakeClient({}))


def test_batches_are_spread_over_the_workers_by_their_parameter_sets_largest_first() -> None:
    from bot.optimize.cluster import spread

    assert spread([[1] * 25] * 4, ["a", "b"]) == [["a"], ["b"], ["a"], ["b"]]
    # Largest first: 10 to a; then 4, 3 and 3 to b (10); the last 2 to a, the first of two equals.
    assert spread([[1] * 3, [1] * 10, [1] * 3, [1] * 2, [1] * 4], ["a", "b"]) == [["b"], ["a"], ["b"], ["a"],
                                                                                   ["b"]]
    assert spread([[1], [1]], []) == [None, None]
