"""`tradebot status` against the real status server (in-process, with chosen health and status): a table
and exit 0 when healthy, exit 1 with a one-line reason when unhealthy or unreachable, exit 2 on a refused
token, the token from --token-file."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.cli import main
from bot.settings import StatusSettings
from bot.status import StatusServer

TOKEN = "s3cret-status-token"

STATUS: dict[str, Any] = {
    "bot": "alice", "mode": "paper", "phase": "running", "now": "2026-12-03T04:30:36+00:00",
    "liveness": {"live": True, "loop_lag_s": 0.002},
    "alarms": {"feed:atmos:binance:BTCUSDT:stale": {"detail": "newest closed candle 200s old",
                                                    "since": "2026-12-03T04:29:00+00:00"}},
    "strategies": [{"name": "btc-rsi", "strategy": "rsi_reversion", "market": "btc-mxn",
                    "stream": "atmos:binance:BTCUSDT", "evaluations": 23, "failures": 0,
                    "signals": {"buy": 1, "sell": 0, "hold": 22},
                    "last": {"candle": "2026-12-03T04:31:00+00:00", "action": "hold", "reason": "RSI(14) 64.47"}}],
    "market": {"streams": {"atmos:binance:BTCUSDT": {"service": "atmos", "last_closed": "2026-12-03T04:28:00+00:00",
                                                     "age_s": 97.0, "stale": True, "polls": 24, "errors": 3}}},
    "execution": {"working_orders": [{"order": 1, "instance": "btc-rsi", "market": "btc-mxn", "side": "buy",
                                      "price": "1676250.47", "amount": "0.00100000", "filled": "0",
                                      "state": "open", "exchange_id": "1"}],
                  "positions": {"btc-rsi": "0E-8"},
                  "balances": {"mxn": {"available": "1998323.74953", "frozen": "1676.25047"}}},
    "recorder": {"rows": 488, "batches": 42, "backlog_rows": 3, "oldest_age_s": 1.5},
    "http": {"atmos": {"requests": 52, "rate_limited": 0, "errors": {"temporary": 3}, "retries": 2,
                       "limiter": {"in_window": 2, "limit": 20}, "clock_skew_s": -0.269}},
    "clock_skew_s": {"atmos": -0.269},
    "kill_switch": {"on": False},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemonish:
    """The daemon's status server with a health the test sets."""

    def __init__(self) -> None:
        self.code = 200
        self.port = _free_port()
        settings = StatusSettings(listen=f"127.0.0.1:{self.port}", token=SecretStr(TOKEN))
        self.server = StatusServer(settings, lambda: STATUS, self.health, lambda: lambda: b"")

    def health(self) -> tuple[int, dict[str, Any]]:
        if self.code == 200:
            return 200, {"status": "ok", "live": True, "alarms": [], "reasons": []}
        return 503, {"status": "unavailable", "live": True, "alarms": ["feed:atmos:binance:BTCUSDT:stale"],
                     "reasons": ["feed:atmos:binance:BTCUSDT:stale: newest closed candle 200s old"]}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def daemon() -> AsyncIterator[Daemonish]:
    d = Daemonish()
    await d.server.start()
    yield d
    await d.server.stop()


async def _status(*args: str) -> int:
    return await asyncio.to_thread(main, ["status", *args])


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


async def test_healthy_daemon_prints_tables_and_exits_0(daemon: Daemonish, token_file: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    rc = await _status("--url", daemon.url, "--token-file", str(token_file))
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith(f"tradebot alice at {daemon.url}: ok (/health 200)")
    lines = out.splitlines()
    assert any(ln.split()[:3] == ["btc-rsi", "rsi_reversion", "btc-mxn"] for ln in lines)
    assert any(ln.split()[:4] == ["atmos", "52", "0", "3"] and ln.rstrip().endswith("-0.27") for ln in lines)
    assert any(ln.split()[:2] == ["btc-rsi", "0.00000000"] for ln in lines)  # 0E-8 printed as digits
    assert "feed:atmos:binance:BTCUSDT:stale" in out and TOKEN not in out


async def test_unhealthy_daemon_exits_1_with_the_reason_on_one_line(daemon: Daemonish, token_file: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    daemon.code = 503
    rc = await _status("--url", daemon.url, "--token-file", str(token_file))
    captured = capsys.readouterr()
    assert rc == 1
    assert "unavailable (/health 503)" in captured.out
    err = captured.err.strip().splitlines()
    assert err == ["tradebot: unhealthy (unavailable): feed:atmos:binance:BTCUSDT:stale: newest closed candle "
                   "200s old"]


async def test_a_refused_token_exits_2(daemon: Daemonish, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await _status("--url", daemon.url) == 2
    assert "requires a token" in capsys.readouterr().err
    wrong = tmp_path / "wrong"
    wrong.write_text("nope")
    assert await _status("--url", daemon.url, "--token-file", str(wrong)) == 2
    assert "refused the token" in capsys.readouterr().err


async def test_json_output(daemon: Daemonish, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert await _status("--url", daemon.url, "--token-file", str(token_file), "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["health"]["status"] == "ok" and data["status"]["clock_skew_s"] == {"atmos": -0.269}


def test_unreachable_daemon_exits_1_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()  # nothing listens there
    assert main(["status", "--url", f"http://127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"tradebot: no tradebot daemon answers at http://127.0.0.1:{port}")


def test_url_from_the_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[status]\nlisten = "127.0.0.1:{port}"\n')
    assert main(["status", "--config", str(cfg)]) == 1
    assert f"at http://127.0.0.1:{port}" in capsys.readouterr().err
