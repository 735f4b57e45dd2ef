"""Notifications from the outside: `check-config` names a URL Apprise rejects, `notify-test` says which URLs
work, and the demo daemon (a subprocess, paper mode on the simulators) tells a local HTTP receiver that it
started, each paper fill with its details, and that it stops, with no configured secret anywhere."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bot import logs
from bot.cli import main
from bot.notify.compose import num
from tests.e2e.daemon_proc import DaemonProc, paper_config

TOKEN = "hook-Xk29fdT0kenValue"  # the secret part of the receiver's URL


class Receiver:
    """A local HTTP endpoint (in a thread: the daemon is another process) collecting Apprise's json:// posts."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with outer.cond:
                    outer.messages.append({"path": self.path, **body})
                    outer.cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/{TOKEN}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, what: str, timeout: float) -> list[dict[str, Any]]:
        """Block until a message whose title or body contains `what` arrived; all messages so far."""
        with self.cond:
            ok = self.cond.wait_for(lambda: any(what in m["title"] + m["message"] for m in self.messages), timeout)
            assert ok, f"no message with {what!r} within {timeout}s: {self.messages}"
            return list(self.messages)

    def texts(self) -> list[str]:
        with self.cond:
            return [f"{m['title']}\n{m['message']}" for m in self.messages]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def notify_config(tmp_path: Path, urls: list[str]) -> Path:
    cfg = paper_config(tmp_path)
    text = cfg.read_text()
    head, sep, rest = text.partition("\n[notify]")
    assert sep
    line_end = rest.index("\n") + 1  # after the section header (and its comment)
    cfg.write_text(head + sep + rest[:line_end] + f'urls_file = "{tmp_path / "urls"}"\n' + rest[line_end:])
    (tmp_path / "urls").write_text("# one per line\n" + "\n".join(urls) + "\n")
    return cfg


def test_check_config_names_a_url_apprise_rejects_by_index_without_showing_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = notify_config(tmp_path, ["json://127.0.0.1:9/fine-path", "tgram://bad-secret-Zz81"])
    assert main(["check-config", "--config", str(cfg)]) == 2
    out, err = capsys.readouterr()
    assert "notify.urls.1: Apprise does not accept this tgram:// URL" in err
    assert "notify.urls.0" not in err
    assert "bad-secret-Zz81" not in out + err and "fine-path" not in out + err


def test_notify_test_sends_to_every_url_and_says_which_worked(
        tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]) -> None:
    down = f"json://127.0.0.1:{closed_port()}/other-Secret-77"
    cfg = notify_config(tmp_path, [receiver.url, down])
    try:
        rc = main(["notify-test", "--config", str(cfg)])
    finally:
        logs.reset()
    out, err = capsys.readouterr()
    assert rc == 1
    assert out.splitlines() == ["notify.urls.0 (json): sent", "notify.urls.1 (json): FAILED"]
    assert "1 of 2 notification target(s) reached" in err
    assert [m["title"] for m in receiver.messages] == ["PAPER Test notification"]
    assert receiver.messages[0]["message"] == "PAPER tradebot default (paper) can reach you here."
    for secret in (TOKEN, "other-Secret-77"):
        assert secret not in out + err


@pytest.mark.slow
def test_the_demo_daemon_tells_start_each_paper_fill_with_its_details_and_stop(
        tmp_path: Path, receiver: Receiver) -> None:
    cfg = paper_config(tmp_path)
    env = {"TRADEBOT_SANDBOX__SPEED": "240", "TRADEBOT_NOTIFY__ENABLED": "true",
           "TRADEBOT_NOTIFY__URLS": json.dumps([receiver.url])}
    d = DaemonProc(cfg, env=env)
    d.ready()
    started = receiver.wait("Started", timeout=30)
    receiver.wait("Fill", timeout=90)  # a single fill ("Fill: BUY ...") or a collapsed "N fills"
    status = d.get_json("/status")
    _, metrics = d.get("/metrics")
    assert d.terminate() == 0
    receiver.wait("Stopping", timeout=10)
    texts = receiver.texts()
    assert started[0]["title"] == "PAPER Started (paper)"
    assert "4 instance(s): btc-rsi, btc-macd-sfox, eth-bollinger, eth-rsi-sfox" in started[0]["message"]
    stopping = [i for i, t in enumerate(texts) if t.startswith("PAPER Stopping")]
    assert len(stopping) == 1 and texts[stopping[0]] == "PAPER Stopping\nPAPER tradebot default stopping (SIGTERM)"
    # After it only what the stop itself did: fills of the orders cancelled at stop (told, not lost).
    assert all("fill" in t.split("\n")[0].lower() for t in texts[stopping[0] + 1:]), texts[stopping[0]:]
    assert all(t.startswith("PAPER ") and "\nPAPER " in t for t in texts)
    # Every journal fill told before the stop is in exactly one message, with its details.
    db = sqlite3.connect(f"file:{tmp_path / 'var' / 'tradebot.sqlite3'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    fills = db.execute("SELECT * FROM fills ORDER BY at").fetchall()
    db.close()
    assert fills
    told = 0
    for f in fills:
        base, quote = f["market"].split("-")
        verb = "bought" if f["side"] == "buy" else "sold"
        line = (f"{f['instance']} {verb} {num(Decimal(f['amount']))} {base} @ {num(Decimal(f['price']))} {quote} "
                f"on {f['market']}, fee {num(Decimal(f['fee']))} {f['fee_coin']}")
        hits = sum(t.count(line) for t in texts)
        assert hits <= 1, line
        told += hits
    assert told == len(fills)  # the stop flushed what was gathering
    assert 'tradebot_notify_sent_total{target="0"}' in metrics.decode()
    assert status["notify"]["targets"][0]["service"] == "json"
    # No secret in a message, a log line, stderr, /status or /metrics.
    everything = "\n".join(texts) + json.dumps(d.lines) + d.stderr() + json.dumps(status) + metrics.decode()
    assert TOKEN not in everything and receiver.url not in everything
