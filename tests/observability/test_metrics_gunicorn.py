"""Prometheus multiprocess mode under real gunicorn with two workers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from keel.settings import Settings
from tests.helpers.environment import settings_env
from tests.middleware.rawhttp import ConnectionLost, KeepAliveConnection

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 300
# The workers run with the test settings, which keep METRICS_FLUSH_INTERVAL's default.
FLUSH_INTERVAL: float = Settings.model_fields["metrics_flush_interval"].default
# Each worker flushes its counts every FLUSH_INTERVAL; a scrape answered by one worker sees the
# other's within that, plus this margin for a loaded machine.
MARGIN = 5.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _get(port: int, path: str) -> tuple[int, bytes]:
    connection = KeepAliveConnection(port, timeout=5)
    try:
        status, _, body = connection.request("GET", path)
    finally:
        connection.close()
    return status, body


@pytest.fixture
def gunicorn(settings: Settings, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port = _free_port()
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = {
        **settings_env(settings),
        "PYTHONPATH": str(ROOT),
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "LOG_LEVEL": "WARNING",
        "DB_POOL_MAX_SIZE": "2",
        "DB_MAX_CONNECTIONS": "100",
    }
    command = [sys.executable, "-m", "gunicorn"]
    if (ROOT / "gunicorn.conf.py").is_file():
        command += ["-c", str(ROOT / "gunicorn.conf.py")]
    else:  # before the deployment configuration exists: the same essentials, as flags
        command += ["-w", "2", "-k", "uvicorn_worker.UvicornWorker", "-b", f"127.0.0.1:{port}"]
    command.append("keel.main:create_app()")
    log = (tmp_path / "gunicorn.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(port, "/livez")[0] == 200:
                    break
            except (OSError, ConnectionLost):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "gunicorn.log").read_text())
            time.sleep(0.2)
        yield port, multiproc
    finally:
        process.terminate()
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _livez_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "http_requests_total"
                and sample.labels.get("route") == "/livez"
                and sample.labels.get("status") == "200"
            ):
                return sample.value
    return 0.0


def _scrape(port: int) -> str:
    status, body = _get(port, "/metrics")
    assert status == 200
    return body.decode()


def _files_count(multiproc: Path) -> float:
    """What the workers' files hold, merged here: read without a scrape, so without the flush a
    scrape makes in the worker that answers it."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(multiproc))  # type: ignore[no-untyped-call]
    return _livez_count(generate_latest(registry).decode())


def _settled_count(port: int) -> float:
    """The count once no worker has any left to flush: unchanged for two flush intervals."""
    deadline = time.monotonic() + 2 * FLUSH_INTERVAL + MARGIN
    count, since = _livez_count(_scrape(port)), time.monotonic()
    while time.monotonic() - since < 2 * FLUSH_INTERVAL:
        assert time.monotonic() < deadline, "the /livez count never settled"
        time.sleep(FLUSH_INTERVAL / 4)
        latest = _livez_count(_scrape(port))
        if latest != count:
            count, since = latest, time.monotonic()
    return count


@pytest.mark.slow
def test_two_workers_count_every_request_once(gunicorn: tuple[int, Path]) -> None:
    port, multiproc = gunicorn
    # Readiness probing above sent some /livez requests already: measure from a baseline.
    before = _settled_count(port)

    # New connections, concurrently: the kernel hands them to either worker. Keep going until
    # both workers have served some (their counter files exist), so the sum proves the merge.
    sent = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        while sent < REQUESTS or len(list(multiproc.glob("counter_*.db"))) < 2:
            assert sent < 20 * REQUESTS, "one worker never got a connection"
            statuses = list(pool.map(lambda _: _get(port, "/livez")[0], range(100)))
            assert statuses == [200] * 100
            sent += 100
    assert len(list(multiproc.glob("counter_*.db"))) == 2
    # Each worker moves its counts into its file within a flush interval, with nobody scraping:
    # poll the files until they hold every request, never more.
    expected = before + sent
    deadline = time.monotonic() + FLUSH_INTERVAL + MARGIN
    while (count := _files_count(multiproc)) != expected:
        assert count < expected, (count, expected)
        assert time.monotonic() < deadline, f"{count} of {expected} after the flush interval"
        time.sleep(0.1)
    for _ in range(3):  # any worker answers the scrape, with the sum of both
        text = _scrape(port)
        assert _livez_count(text) == expected
    workers = {
        sample.labels["pid"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "keel_process_resident_memory_bytes"
    }
    assert len(workers) == 2
