"""JSON log lines, as a production process writes them to stderr.

Run in a child process: logging is configured once per process, and the test session's own
configuration (uncached loggers for `capture_logs`) must not be what is tested.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from keel.observability import logging as keel_logging

EMIT = textwrap.dedent(
    """
    import datetime, logging, uuid
    import structlog
    from keel.observability.context import request_id_var
    from keel.observability.logging import configure_logging
    from keel.settings import Settings

    configure_logging(Settings(environment="development", log_json=True, _env_file=None))
    request_id_var.set("req-1")
    log = structlog.get_logger("keel.test")
    log.info(
        "typed values",
        user_id=uuid.UUID(int=7),
        at=datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        raw=b"bytes \\xc3\\xa9",
        counts={1: "one"},
        odd=object,
    )
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("it failed")
    log.info("where from", stack_info=True)
    logging.getLogger("uvicorn.error").warning("from the %s library", "stdlib")
    """
)


def emitted_lines() -> list[dict[str, Any]]:
    finished = subprocess.run(
        [sys.executable, "-c", EMIT], capture_output=True, text=True, timeout=60, check=True
    )
    return [json.loads(line) for line in finished.stderr.splitlines() if line.strip()]


def test_structlog_and_stdlib_lines_are_one_json_object_each() -> None:
    typed, failed, stacked, library = emitted_lines()

    assert typed["event"] == "typed values"
    assert typed["level"] == "info"
    assert typed["request_id"] == "req-1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", typed["timestamp"])
    written = datetime.strptime(typed["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(time.time() - written.timestamp()) < 60
    assert typed["user_id"] == str(uuid.UUID(int=7))
    assert typed["at"] == "2026-01-02T03:04:05+00:00"
    assert typed["raw"] == "bytes é"  # decoded, not b'...'
    assert typed["counts"] == {"1": "one"}
    assert "object" in typed["odd"]  # unknown types fall back to repr, never an error

    assert failed["level"] == "error"
    assert "ZeroDivisionError" in failed["exception"]
    assert "exception" not in typed
    assert "stack" not in typed
    assert "<string>" in stacked["stack"]  # where the line was logged from

    assert library["event"] == "from the stdlib library"
    assert library["level"] == "warning"
    assert library["logger"] == "uvicorn.error"
    assert library["request_id"] == "req-1"


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (1767323045_000123_456, "2026-01-02T03:04:05.000123Z"),
        (1767323045_999999_999, "2026-01-02T03:04:05.999999Z"),
        (1767323046_500000_000, "2026-01-02T03:04:06.500000Z"),  # next second: renewed
        (1767323045_250000_000, "2026-01-02T03:04:05.250000Z"),  # and back (a clock step)
    ],
)
def test_timestamps_are_iso_utc_with_microseconds(
    monkeypatch: pytest.MonkeyPatch, now: int, expected: str
) -> None:
    stamp = keel_logging.UtcTimestamper()
    monkeypatch.setattr(time, "time_ns", lambda: 1767323045_000000_000)
    assert stamp(None, "info", {})["timestamp"] == "2026-01-02T03:04:05.000000Z"
    monkeypatch.setattr(time, "time_ns", lambda: now)
    assert stamp(None, "info", {})["timestamp"] == expected
