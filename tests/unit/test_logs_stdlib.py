"""Standard `logging` records (apscheduler, aiohttp, asyncio, warnings) take the same path as our own logs:
one JSON line each when not on a terminal, secrets masked, tracebacks included and masked."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import logs

SECRET = "sk-live-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    logs.configure(level="info", secrets=[SECRET], json=True, stream=buf)
    yield buf
    logs.reset()


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]  # every line is one JSON object


async def test_apscheduler_job_failure_is_one_masked_json_line_with_its_traceback(out: io.StringIO) -> None:
    async def job() -> None:
        raise RuntimeError(f"login refused for key {SECRET}")

    failed = asyncio.Event()

    def on_error(event: JobExecutionEvent) -> None:
        failed.set()

    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.add_listener(on_error, EVENT_JOB_ERROR)
    scheduler.add_job(job, id="poll")  # no trigger: runs once, as soon as the scheduler starts
    scheduler.start()
    try:
        await asyncio.wait_for(failed.wait(), timeout=10)
    finally:
        scheduler.shutdown(wait=False)
    text = out.getvalue()
    assert SECRET not in text
    records = lines(out)
    failures = [r for r in records if "raised an exception" in r["event"]]
    assert len(failures) == 1, text
    (line,) = failures
    assert line["level"] == "error" and line["component"].startswith("apscheduler.executors")
    assert line["timestamp"]
    assert line["exception"].startswith("Traceback (most recent call last)")
    assert "RuntimeError: login refused for key ***" in line["exception"]
    assert 'raise RuntimeError(f"login refused for key {SECRET}")' in line["exception"]  # source line kept
    assert not [r for r in records if r["level"] == "info" and r["component"].startswith("apscheduler")]


def test_stdlib_message_args_and_extra_loggers_are_masked(out: io.StringIO) -> None:
    logging.getLogger("aiohttp.client").warning("GET https://x/?key=%s failed", SECRET)
    try:
        raise ValueError(SECRET)
    except ValueError:
        logging.getLogger("some.lib").exception("boom")
    first, second = lines(out)
    assert first == {**first, "event": "GET https://x/?key=*** failed", "level": "warning",
                     "component": "aiohttp.client"}
    assert second["event"] == "boom" and "ValueError: ***" in second["exception"]
    assert SECRET not in out.getvalue()


def test_stdlib_level_follows_the_configured_level(out: io.StringIO) -> None:
    logging.getLogger("x").debug("hidden")
    logging.getLogger("apscheduler.scheduler").info("Added job")  # chatty at info: hidden
    logging.getLogger("x").info("shown")
    assert [r["event"] for r in lines(out)] == ["shown"]


def test_configure_twice_keeps_one_handler(out: io.StringIO) -> None:
    logs.configure(level="info", secrets=[SECRET], json=True, stream=out)
    logging.getLogger("x").warning("once")
    assert [r["event"] for r in lines(out)] == ["once"]


def test_console_mode_formats_stdlib_records_too() -> None:
    buf = io.StringIO()
    logs.configure(level="info", secrets=[SECRET], json=False, stream=buf)
    try:
        logging.getLogger("aiohttp.client").warning("token %s rejected", SECRET)
    finally:
        logs.reset()
    text = buf.getvalue()
    assert "token *** rejected" in text and "aiohttp.client" in text and SECRET not in text
    assert not text.lstrip().startswith("{")


def test_reset_removes_the_handler() -> None:
    buf = io.StringIO()
    logs.configure(level="info", json=True, stream=buf)
    logs.reset()
    assert not [h for h in logging.getLogger().handlers if h.formatter is not None
                and isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)]


ASYNCIO_AND_WARNINGS = textwrap.dedent(
    f"""
    import asyncio, warnings
    from bot import logs
    logs.configure(level="info", secrets=["{SECRET}"])   # stdout is a pipe: JSON

    async def main():
        loop = asyncio.get_running_loop()
        # What aiohttp does for a session that was never closed.
        loop.call_exception_handler({{"message": "Unclosed client session", "client_session": "{SECRET}"}})
        warnings.warn("deprecated call with {SECRET}", DeprecationWarning)  # default filter: shown in __main__
        warnings.warn("unclosed file", ResourceWarning)  # ignored by the default filters: stays ignored

    asyncio.run(main())
    """
)


def test_asyncio_and_warnings_no_longer_bypass_the_formatting() -> None:
    r = subprocess.run([sys.executable, "-c", ASYNCIO_AND_WARNINGS], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env={k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"})
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # nothing printed around the handler (lastResort, showwarning)
    records = [json.loads(line) for line in r.stdout.splitlines()]
    by_component = {rec["component"]: rec for rec in records}
    assert set(by_component) == {"asyncio", "py.warnings"}
    assert by_component["asyncio"]["event"].startswith("Unclosed client session")
    assert by_component["asyncio"]["level"] == "error"
    assert "DeprecationWarning: deprecated call with ***" in by_component["py.warnings"]["event"]
    assert SECRET not in r.stdout
