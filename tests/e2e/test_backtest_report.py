"""The backtest's HTML report opens in headless Chromium without console errors and draws equity and trades."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_backtest import config_text, synth_csv

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def render(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and every console message it logged."""
    assert CHROMIUM is not None
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        f"--user-data-dir={tmp_path / 'chromium'}", "--enable-logging=stderr", "--v=0",
                        "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    console = [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
    return r.stdout, console


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_report_opens_in_headless_chromium_with_equity_curve_and_trades(tmp_path: Path) -> None:
    cfg = tmp_path / "bt.toml"
    cfg.write_text(config_text(tmp_path))
    report = tmp_path / "report.html"
    r = subprocess.run([sys.executable, "-m", "bot", "backtest", "--config", str(cfg), "--data",
                        str(synth_csv(tmp_path, 20_000)), "--report", str(report), "--no-progress"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    html = report.read_text()
    assert "<script" in html and "<script src" not in html.replace("'", '"')  # plotly.js inline: works offline
    dom, console = render(report, tmp_path)
    assert console == []
    sections = re.findall(r"<section class=\"instance\" id=\"instance-(\w+)\">(.*?)</section>", dom, re.S)
    assert [name for name, _ in sections] == ["rsi", "sma"]
    for _name, body in sections:
        assert body.count('class="main-svg"') >= 1  # plotly drew the chart
        legend = set(re.findall(r'data-unformatted="([^"]+)"', body))
        assert {"buys", "sells", "equity", "candles and trades", "drawdown"} <= legend
        assert body.count('class="point"') > 20  # trade markers on the candles
        assert body.count('class="js-line"') >= 3  # equity (two lines) and drawdown
        assert 'class="trace boxes"' in body  # the candlesticks
