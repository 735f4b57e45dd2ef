"""Command line: `tradebot run | check-config | sandbox | atlas | kill | resume | status | export-trades |
paper-reset | notify-test | backtest | download | optimize`.

The only place that turns errors into exit codes: 0 success, 2 a user error (configuration, arguments), 1 an
unexpected failure (logged with its traceback). A user error never prints a traceback.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bot import __version__
from bot.errors import BotError, ConfigError

if TYPE_CHECKING:
    from bot.settings import Settings

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _asyncio_run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio  # not at the top: the one-shot commands that never run a loop do not pay for its import

    return asyncio.run(coro)


def _print_problems(err: ConfigError) -> None:
    print(f"tradebot: {err.message}", file=sys.stderr)
    for path, msg in err.problems:
        print(f"  {path}: {msg}", file=sys.stderr)


def load_settings(path: str | None) -> Settings:
    from bot.settings import load_settings as load

    return load(path)


def load_checked(path: str | None) -> Settings:
    """Load settings and validate what only the strategy registry can check (names, imports, params)."""
    settings = load_settings(path)
    # No fallback: if the strategy machinery cannot even be imported, nothing can be checked, and saying
    # "configuration OK" would be a lie (the ImportError ends the command as an unexpected failure).
    from bot.strategy import validate_strategies

    problems = validate_strategies(settings)
    if problems:
        raise ConfigError("invalid strategy configuration", problems)
    if settings.notify.urls:  # Apprise knows which URLs it can use; a bad one is named by index, never shown
        from bot.notify.targets import problems as notify_problems

        bad = notify_problems(settings.notify.urls)
        if bad:
            raise ConfigError("invalid notification configuration", bad)
    return settings


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = load_checked(args.config)
    print(json.dumps(settings.public_dump(), indent=2, sort_keys=False))
    print("configuration OK", file=sys.stderr)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from bot import logs
    from bot.app import run_daemon

    settings = load_checked(args.config)
    if args.view == "off":
        logs.configure(level=settings.log_level, secrets=settings.secrets())
        return _asyncio_run(run_daemon(settings, duration=args.duration))
    from bot.view import View

    view = View(args.view)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.state_dir / "tradebot.log"
    print(f"tradebot: showing the run ({view.mode}); the daemon's log goes to {log_path}", flush=True)
    with log_path.open("a", encoding="utf-8") as log_file:
        logs.configure(level=settings.log_level, secrets=settings.secrets(), json=True, stream=log_file)
        return _asyncio_run(run_daemon(settings, duration=args.duration, view=view))


def cmd_sandbox(args: argparse.Namespace) -> int:
    from bot import logs
    from bot.sandbox.cli import serve

    settings = load_checked(args.config)
    logs.configure(level=settings.log_level, secrets=())
    return _asyncio_run(serve(settings, host=args.host, port_base=args.port_base, speed=args.speed,
                             seed=args.seed, duration=args.duration, state_dir=args.state_dir))


def cmd_atlas(args: argparse.Namespace) -> int:
    from bot import logs
    from bot.recorder import cli as rc

    settings = load_checked(args.config)
    logs.configure(level="warning", secrets=settings.secrets())
    if args.action == "list":
        return _asyncio_run(rc.list_datasets(settings))
    if args.action == "export":
        return _asyncio_run(rc.export_csv(settings, args.dataset, Path(args.out)))
    return rc.recreate(settings, args.dataset)


def _daemon_command(args: argparse.Namespace, path: str, body: dict[str, str] | None) -> dict[str, object]:
    """POST to the running daemon's status endpoint (never touches the state directory); prints its answer."""
    from bot.status import call_daemon

    settings = load_settings(args.config)
    hint = (f"To stop trading without it, create the kill file {settings.kill_switch_path}."
            if path == "/kill" else "")
    answer = call_daemon(settings.status, path, body, hint=hint)
    print(json.dumps(answer, indent=2, default=str))
    print(f"tradebot: {answer.get('message', 'done')}", file=sys.stderr)
    return answer


def cmd_kill(args: argparse.Namespace) -> int:
    _daemon_command(args, "/kill", {"reason": args.reason or ""})
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    answer = _daemon_command(args, "/resume", None)
    return EXIT_FAILURE if answer.get("on") else EXIT_OK  # still on: the kill file exists (the answer says)


def _status_target(args: argparse.Namespace) -> tuple[str, str]:
    """The daemon's base URL (`--url`, else the configuration's status.listen) and the bearer token
    (`--token-file`, else the configuration's status.token)."""
    from bot.status import daemon_url

    settings = load_settings(args.config) if (args.config or not args.url) else None
    base = args.url.rstrip("/") if args.url else daemon_url(settings.status) if settings else ""
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {args.token_file}: {exc.strerror}",
                              [("--token-file", f"{args.token_file}: {exc.strerror}")]) from None
    else:
        token = settings.status.token.get_secret_value() if settings else ""
    return base, token


def cmd_status(args: argparse.Namespace) -> int:
    """Print the running daemon's health and status; exit 1 when it is unhealthy (503) or unreachable."""
    from bot.status import fetch_status
    from bot.status_table import render

    base, token = _status_target(args)
    code, health, status = fetch_status(base, token)
    if args.json:
        print(json.dumps({"health": health, "status": status}, indent=2, default=str))
    else:
        print(render(code, health, status, base))
    if code != 200:
        reasons = health.get("reasons") or health.get("alarms") or []
        print(f"tradebot: unhealthy ({health.get('status')}): {'; '.join(map(str, reasons)) or 'see above'}",
              file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_export_trades(args: argparse.Namespace) -> int:
    """Every fill in the journal, with fees and realised PnL per instance, as CSV (read-only)."""
    from bot.export import export_trades

    settings = load_settings(args.config)
    n = export_trades(settings.state_dir, args.since, args.csv)
    print(f"tradebot: {n} fill(s) exported{' to ' + args.csv if args.csv and args.csv != '-' else ''}",
          file=sys.stderr)
    return EXIT_OK


def cmd_paper_reset(args: argparse.Namespace) -> int:
    """Start the paper account over: balances from `[paper] balances`, open paper orders cancelled. Refused
    (exit 2) while a daemon holds the state directory, since it would go on from the account it has."""
    from bot.clock import WallClock
    from bot.dirlock import state_lock
    from bot.execution.paper_account import PaperAccount
    from bot.store import Store

    settings = load_settings(args.config)
    lock = state_lock(settings.state_dir)
    try:
        lock.acquire()
    except ConfigError as err:
        raise ConfigError(f"cannot reset the paper account: a running tradebot holds {settings.state_dir}; "
                          "stop it first", err.problems) from None
    try:
        store = Store.open(settings.state_dir, clock=WallClock())
        try:
            done = PaperAccount(store, store.clock).reset(settings.paper.balances)
        finally:
            store.close()
    finally:
        lock.release()
    balances = ", ".join(f"{coin} {amount}" for coin, amount in sorted(settings.paper.balances.items()))
    print(f"tradebot: paper account reset in {settings.state_dir}: balances {balances or 'none'}; "
          f"{done['cancelled_orders']} open paper order(s) cancelled", file=sys.stderr)
    return EXIT_OK


def cmd_notify_test(args: argparse.Namespace) -> int:
    """One test message to every configured notification URL (enabled or not); exit 1 when any failed."""
    from bot import logs
    from bot.notify.sender import send_test
    from bot.notify.targets import open_targets

    settings = load_checked(args.config)
    logs.configure(level="warning", secrets=settings.secrets(), stream=sys.stderr)
    if not settings.notify.urls:
        raise ConfigError("no notification URL is configured",
                          [("notify.urls", 'set urls, urls_file, or the "notify" systemd credential')])
    targets = open_targets(settings.notify.urls)
    results = _asyncio_run(send_test(settings, targets))
    for t in targets:  # by index and service only: a URL holds a token
        print(f"notify.urls.{t.index} ({t.service}): {'sent' if results[t.index] else 'FAILED'}")
    failed = sum(not ok for ok in results.values())
    print(f"tradebot: {len(results) - failed} of {len(results)} notification target(s) reached"
          + ("; the log above says why the others failed" if failed else ""), file=sys.stderr)
    return EXIT_FAILURE if failed else EXIT_OK


# ---------------------------------------------------------------------------------- backtest, download


def _when(text: str) -> datetime:
    """An ISO date or time for --start/--end; naive means UTC."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _fee(text: str) -> float:
    """A fee rate as a fraction of the traded value (0.001 is 0.1%)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 0.5:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 0.5), got {text}")
    return value


def cmd_backtest(args: argparse.Namespace) -> int:
    """The configured strategy instances over a candle history: figures, and --json/--report/--signals."""
    from bot.backtest.runner import CACHE_DIR, Options, run

    settings = load_checked(args.config)
    opts = Options(
        strategies=args.strategy or (), data=Path(args.data) if args.data else None, source=args.source,
        start=args.start, end=args.end, fill=args.fill, fee_maker=args.fee_maker, fee_taker=args.fee_taker,
        cash=args.cash, report=Path(args.report) if args.report else None,
        json_out=Path(args.json) if args.json else None, signals_out=Path(args.signals) if args.signals else None,
        cache_dir=None if args.no_cache else (Path(args.cache_dir) if args.cache_dir
                                                else settings.state_dir / CACHE_DIR),
        progress=not args.no_progress)
    run(settings, opts)
    return EXIT_OK


def cmd_download(args: argparse.Namespace) -> int:
    """History from Atmos or sFOX to CSV, within the request budgets, resuming an existing file."""
    from bot import logs
    from bot.backtest.sources import Remote, download

    settings = load_checked(args.config)
    logs.configure(level="warning", secrets=settings.secrets())
    if args.source == "atmos":
        if not args.symbol:
            raise ConfigError("--source atmos needs --symbol", [("--symbol", "e.g. BTCUSDT")])
        remote = Remote("atmos", exchange=args.exchange, symbol=args.symbol.upper())
    else:
        if not args.pair:
            raise ConfigError("--source sfox needs --pair", [("--pair", "e.g. btcusd")])
        remote = Remote("sfox", pair=args.pair.lower(), period=args.period)
    out = Path(args.out)
    written, total = _asyncio_run(download(settings, remote, args.start, args.end, out, not args.no_progress))
    print(f"tradebot: {written} candle(s) of {remote.label} downloaded to {out} ({total} in the file)",
          file=sys.stderr)
    return EXIT_OK


def _add_backtest_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                          config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    sp = sub.add_parser("backtest", help="run the configured strategy instances over a candle history (CSV, "
                                         "Atlas recordings, or Atmos/sFOX downloads)")
    config_arg(sp)
    sp.add_argument("--strategy", action="append", metavar="NAME",
                    help="an instance name from the configuration (repeatable; default: every enabled one)")
    src = sp.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="CSV", help="candles: a time column (timestamp/date/time) and "
                                                   "open,high,low,close,volume in any case")
    src.add_argument("--from", dest="source", choices=("atlas", "atmos", "sfox"),
                     help="each instance's feed: as the daemon recorded it in Atlas, or downloaded (cached)")
    sp.add_argument("--start", type=_when, metavar="ISO", help="first candle time (UTC unless given)")
    sp.add_argument("--end", type=_when, metavar="ISO", help="candles before this time")
    sp.add_argument("--fill", choices=("next_open", "limit"), default="next_open",
                    help="next_open: all in at the next candle's open (taker fee); limit: a resting order at the "
                         "signal close filled like the paper broker's (maker fee, order_ttl_seconds)")
    sp.add_argument("--fee-maker", type=_fee, default=0.0, metavar="RATE", help="e.g. 0.001 for 0.1%% (default 0)")
    sp.add_argument("--fee-taker", type=_fee, default=0.0, metavar="RATE", help="e.g. 0.002 for 0.2%% (default 0)")
    sp.add_argument("--cash", type=float, default=10_000.0, help="starting cash in the quote coin (default 10000)")
    sp.add_argument("--report", metavar="HTML", help="write a self-contained HTML report (works offline)")
    sp.add_argument("--json", metavar="PATH", help="write each instance's results as JSON")
    sp.add_argument("--signals", metavar="CSV", help="write every candle's decision per instance")
    sp.add_argument("--cache-dir", metavar="DIR", help="parsed-CSV cache (default: <state_dir>/cache/backtest)")
    sp.add_argument("--no-cache", action="store_true", help="parse the CSV again, write no cache")
    sp.add_argument("--no-progress", action="store_true", help="no progress bars")
    sp.set_defaults(func=cmd_backtest)

    sp = sub.add_parser("download", help="candle history from Atmos or sFOX to CSV (request budgets respected, "
                                         "resumable)")
    config_arg(sp)
    sp.add_argument("--source", choices=("atmos", "sfox"), required=True)
    sp.add_argument("--exchange", default="binance", choices=("binance", "kraken", "coinbase"), help="Atmos only")
    sp.add_argument("--symbol", help="Atmos symbol, e.g. BTCUSDT")
    sp.add_argument("--pair", help="sFOX pair, e.g. btcusd")
    sp.add_argument("--period", type=int, default=60, choices=(60, 300, 900, 3600, 21600, 86400),
                    help="sFOX candle seconds (Atmos is 1-minute)")
    sp.add_argument("--start", type=_when, metavar="ISO", help="first candle (default: a day before --end)")
    sp.add_argument("--end", type=_when, metavar="ISO", help="candles before this time (default: now)")
    sp.add_argument("--out", required=True, metavar="CSV", help="CSV file; an existing one is resumed")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_download)


# ------------------------------------------------------------------------------------------------ optimize


def _grid_pair(text: str) -> tuple[str, str]:
    """`X,Y`: the two --grid parameters the report's heatmap is drawn over."""
    parts = [t.strip() for t in text.split(",")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise argparse.ArgumentTypeError(f"expected two different parameters X,Y, got {text!r}")
    return parts[0], parts[1]


def cmd_optimize(args: argparse.Namespace) -> int:
    """One instance's params over a grid, on Dask: a table by the objective, and --json/--report."""
    from bot.backtest.runner import CACHE_DIR
    from bot.optimize.runner import Options, run

    settings = load_checked(args.config)
    opts = Options(
        strategy=args.strategy, grid=args.grid, data=Path(args.data) if args.data else None, source=args.source,
        start=args.start, end=args.end, fill=args.fill, fee_maker=args.fee_maker, fee_taker=args.fee_taker,
        cash=args.cash, samples=args.samples, seed=args.seed, maximize=args.maximize,
        constraints=args.constraint or (), top=args.top, scheduler=args.scheduler, workers=args.workers,
        batch_size=args.batch_size, json_out=Path(args.json) if args.json else None,
        report=Path(args.report) if args.report else None, heatmap=args.heatmap,
        cache_dir=None if args.no_cache else (Path(args.cache_dir) if args.cache_dir
                                                else settings.state_dir / CACHE_DIR),
        progress=not args.no_progress)
    run(settings, opts)
    return EXIT_OK


def _add_optimize_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                         config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    from bot.optimize.objectives import OBJECTIVES

    def positive(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
        return value

    def count(text: str) -> int:
        value = positive(text) if text.strip() != "0" else 0
        return value

    sp = sub.add_parser("optimize", help="backtest one instance over a grid of its params, on Dask (a local "
                                         "cluster, or an existing one with --scheduler)")
    config_arg(sp)
    sp.add_argument("--strategy", required=True, metavar="NAME", help="an instance name from the configuration")
    src = sp.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="CSV", help="candles, as for backtest")
    src.add_argument("--from", dest="source", choices=("atlas", "atmos", "sfox"), help="the instance's feed")
    sp.add_argument("--grid", action="append", required=True, metavar="NAME=A..B:STEP|NAME=V1,V2",
                    help="one parameter's values: an inclusive range with a step, or a list (repeat per parameter)")
    sp.add_argument("--samples", type=positive, metavar="N", help="evaluate N combinations drawn at random")
    sp.add_argument("--seed", type=int, default=0, help="seed of --samples (default 0)")
    sp.add_argument("--maximize", choices=tuple(OBJECTIVES), default="sharpe",
                    help="the objective the table is sorted by (drawdown: the smallest first; default sharpe)")
    sp.add_argument("--constraint", action="append", metavar="EXPR",
                    help="e.g. 'trades>=50' or 'drawdown<=20' (repeatable): sets failing one are left out of "
                         "the table (kept in --json, feasible false)")
    sp.add_argument("--top", type=positive, default=10, help="rows in the table (default 10)")
    sp.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://host:8786 "
                                                           "(default: a local cluster)")
    sp.add_argument("--workers", type=count, metavar="N", help="local cluster worker processes (default: one per "
                                                              "core); 0 runs serially in this process")
    sp.add_argument("--batch-size", type=positive, metavar="N", help="parameter sets per Dask task (default: "
                                                                     "about half a second of work)")
    sp.add_argument("--start", type=_when, metavar="ISO", help="first candle time (UTC unless given)")
    sp.add_argument("--end", type=_when, metavar="ISO", help="candles before this time")
    sp.add_argument("--fill", choices=("next_open", "limit"), default="next_open", help="as for backtest")
    sp.add_argument("--fee-maker", type=_fee, default=0.0, metavar="RATE", help="as for backtest")
    sp.add_argument("--fee-taker", type=_fee, default=0.0, metavar="RATE", help="as for backtest")
    sp.add_argument("--cash", type=float, default=10_000.0, help="starting cash (default 10000)")
    sp.add_argument("--json", metavar="PATH", help="write every evaluated set as a JSON list of {params, metrics}")
    sp.add_argument("--report", metavar="HTML", help="write an HTML report: the best sets and a heatmap")
    sp.add_argument("--heatmap", type=_grid_pair, metavar="X,Y", help="the report heatmap's two parameters "
                                                                     "(default: the first two that vary)")
    sp.add_argument("--cache-dir", metavar="DIR", help="parsed-CSV cache (default: <state_dir>/cache/backtest)")
    sp.add_argument("--no-cache", action="store_true", help="parse the CSV again, write no cache")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_optimize)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tradebot", description="Trading and wallet daemon.")
    p.add_argument("--version", action="version", version=f"tradebot {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def config_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", metavar="PATH",
                        help="TOML file (default: $TRADEBOT_CONFIG, else config/paper.toml)")

    sp = sub.add_parser("run", help="run the daemon")
    config_arg(sp)
    sp.add_argument("--duration", type=float, metavar="SECONDS", help="stop by itself after SECONDS")
    sp.add_argument("--view", choices=("auto", "live", "lines", "off"), default="off",
                    help="show the run: a live view on a terminal, one line per event otherwise (auto), and a "
                         "summary at stop; the log then goes to <state_dir>/tradebot.log (default: off, log to "
                         "stdout)")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("check-config", help="validate the configuration and print it with secrets masked")
    config_arg(sp)
    sp.set_defaults(func=cmd_check_config)

    sp = sub.add_parser("sandbox", help="serve the five simulators standalone")
    config_arg(sp)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port-base", type=int, default=18000)
    sp.add_argument("--speed", type=float, default=None, help="market minutes per wall minute (default: config)")
    sp.add_argument("--seed", type=int, default=None, help="market seed (default: config)")
    sp.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                    help="keep the clock anchor, exchange and Atlas state in DIR and carry on from it on restart "
                         "(a daemon's state_dir works: same layout)")
    sp.add_argument("--duration", type=float, metavar="SECONDS", help=argparse.SUPPRESS)
    sp.set_defaults(func=cmd_sandbox)

    sp = sub.add_parser("atlas", help="what was recorded in Atlas: list datasets, export one to CSV, re-create")
    asub = sp.add_subparsers(dest="action", required=True)
    ap = asub.add_parser("list", help="the bot's datasets with rows in Atlas and rows still waiting locally")
    config_arg(ap)
    ap = asub.add_parser("export", help="one dataset to CSV")
    config_arg(ap)
    ap.add_argument("dataset", help="a dataset key (e.g. candles/atmos:binance:BTCUSDT) or a kind with one dataset")
    ap.add_argument("--out", default="-", metavar="FILE", help="CSV file (default: standard output)")
    ap = asub.add_parser("recreate", help="re-create a kind's (or one key's) datasets under a new name, e.g. "
                                          "after another user took one over")
    config_arg(ap)
    ap.add_argument("dataset", help="a kind (candles, ticks, evaluations, sensor, ...) or a dataset key")
    sp.set_defaults(func=cmd_atlas)

    sp = sub.add_parser("kill", help="stop trading now: the running daemon cancels its open orders and places "
                                     "none until `tradebot resume` (kept across restarts)")
    config_arg(sp)
    sp.add_argument("--reason", metavar="TEXT", default="", help="why (shown in /status and the logs)")
    sp.set_defaults(func=cmd_kill)

    sp = sub.add_parser("resume", help="clear `tradebot kill`; trading resumes unless the kill file exists "
                                       "(then exits 1 and says so)")
    config_arg(sp)
    sp.set_defaults(func=cmd_resume)

    sp = sub.add_parser("status", help="the running daemon's health and status as tables; exits 1 when it is "
                                       "unhealthy (/health 503) or does not answer")
    config_arg(sp)
    sp.add_argument("--url", metavar="URL", help="the daemon's status endpoint, e.g. http://127.0.0.1:8787 "
                                                 "(default: status.listen of the configuration)")
    sp.add_argument("--token-file", metavar="PATH", help="file holding status.token (default: the configuration's)")
    sp.add_argument("--json", action="store_true", help="print the raw health and status JSON instead")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("export-trades", help="every fill with fees and realised PnL per instance (average "
                                              "cost), as CSV; safe while the daemon runs")
    config_arg(sp)
    sp.add_argument("--since", metavar="ISO", help="only fills at or after this time, e.g. 2026-01-01 or "
                                                   "2026-01-01T12:00:00Z (PnL still counts every earlier fill)")
    sp.add_argument("--csv", metavar="PATH", default="-", help="CSV file (default: standard output)")
    sp.set_defaults(func=cmd_export_trades)

    sp = sub.add_parser("paper-reset", help="start the paper account over from [paper] balances, cancelling "
                                            "its open orders (not while a daemon runs on the state_dir)")
    config_arg(sp)
    sp.set_defaults(func=cmd_paper_reset)

    sp = sub.add_parser("notify-test", help="send one test notification to every configured URL (notify.urls) "
                                            "and say which worked; exits 1 when one failed")
    config_arg(sp)
    sp.set_defaults(func=cmd_notify_test)

    _add_backtest_parsers(sub, config_arg)
    _add_optimize_parser(sub, config_arg)
    return p


def _check_duration(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`--duration` (run, sandbox) must not be negative; a usage error like any other bad argument."""
    duration = getattr(args, "duration", None)
    if duration is not None and not duration >= 0:  # also refuses NaN
        parser.exit(EXIT_USAGE, f"tradebot {args.command}: error: --duration must be 0 or more seconds, "
                                f"got {duration:g}\n")


# What a command imports first, imported with the garbage collector off. pydantic, pandas and ta make a few
# hundred thousand long-lived objects and no garbage, so the collections their imports trigger are pure cost
# (about a tenth of a short backtest's whole process). The collector is back on before the command runs, with
# those objects frozen out of its scans.
_PRELOAD: dict[str, tuple[str, ...]] = {
    "run": ("bot.settings", "bot.strategy"),
    "check-config": ("bot.settings", "bot.strategy"),
    "backtest": ("bot.settings", "bot.strategy", "bot.backtest.runner"),
    "optimize": ("bot.settings", "bot.strategy", "bot.optimize.runner"),
}
# Commands that end by leaving the process without the interpreter's teardown (see `entry`).
_FAST_EXIT = frozenset({"backtest", "check-config"})


def _preload(command: str) -> None:
    enabled = gc.isenabled()
    gc.disable()
    try:
        for name in _PRELOAD.get(command, ()):
            importlib.import_module(name)
    finally:
        if enabled:
            gc.freeze()
            gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    return _main(argv)[0]


def _main(argv: Sequence[str] | None) -> tuple[int, str]:
    """The exit code and the command that gave it."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_duration(parser, args)
    command: str = args.command
    try:
        _preload(command)
        rc: int = args.func(args)
        return rc, command
    except ConfigError as err:
        _print_problems(err)
        return EXIT_USAGE, command
    except BotError as err:
        print(f"tradebot: {err}", file=sys.stderr)
        return EXIT_FAILURE, command
    except KeyboardInterrupt:
        return 130, command


def entry() -> None:
    """The `tradebot` program (and `python -m bot`): `main`, then the exit.

    A one-shot command in `_FAST_EXIT` has closed every file it wrote by the time it returns, so its process
    leaves with `os._exit` once stdout and stderr are flushed, instead of tearing down pandas' and pydantic's
    modules object by object (about 0.1 s, an eighth of a whole backtest of a year of minutes). `main` itself
    never does this: tests and other callers get its return value.
    """
    rc, command = _main(None)
    if command in _FAST_EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":
    entry()
