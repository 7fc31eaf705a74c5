"""`make dev` (`python -m keel_dev`) from a fresh folder: embedded servers, migrations, the
service's processes, clean shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any  # feature: files

import asyncpg
import httpx
import psutil
import pytest

from keel.db.migrations import project_root
from keel_dev.embedded import (
    S3_DEV_ACCESS_KEY_ID,  # feature: files
    S3_DEV_SECRET_ACCESS_KEY,  # feature: files
    free_port,
    s3_client,  # feature: files
)

pytestmark = pytest.mark.slow

READY_BUDGET = 60.0
STOP_BUDGET = 30.0
EMBEDDED_URL = re.compile(r"embedded PostgreSQL at (\S+)")
EMBEDDED_S3 = re.compile(r"embedded S3 \(SeaweedFS\) at (\S+)")  # feature: files


def fresh_project(tmp_path: Path) -> Path:
    """A folder that looks like a fresh clone to the dev loop: alembic.ini and migrations only."""
    root = project_root()
    shutil.copy(root / "alembic.ini", tmp_path / "alembic.ini")
    shutil.copytree(root / "migrations", tmp_path / "migrations")
    return tmp_path


def dev_env() -> dict[str, str]:
    yours = {"DATABASE_URL", "REDIS_URL"}
    yours.add("S3_ENDPOINT_URL")  # feature: files
    env = {k: v for k, v in os.environ.items() if k not in yours}
    return {**env, "ENVIRONMENT": "development", "LOG_JSON": "true"}


def session_processes(session_id: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session_id:
                found.append(process)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def processes_using(folder: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(folder) in cmdline or str(folder) == (process.info["cwd"] or ""):
            found.append(process)
    return found


def wait_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_BUDGET
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                assert httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"not ready within {READY_BUDGET}s:\n{log.read_text()}")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    folder = fresh_project(tmp_path)
    yield folder
    for leftover in processes_using(folder):  # never leave servers behind, even on failure
        leftover.kill()


def start_dev(project: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "keel_dev", "--port", str(port)],
            cwd=project,
            env=dev_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # like a terminal: Ctrl-C goes to the whole group
        )


def stop_and_check(process: subprocess.Popen[bytes], sig: signal.Signals, project: Path) -> None:
    if sig is signal.SIGINT:
        os.killpg(process.pid, sig)  # what Ctrl-C in a terminal does
    else:
        process.send_signal(sig)  # what a supervisor does
    process.wait(timeout=STOP_BUDGET)
    deadline = time.monotonic() + 5
    while session_processes(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session_processes(process.pid) == []
    assert processes_using(project) == []


async def insert_marker(url: str, email: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "INSERT INTO users (email, password_hash) VALUES ($1, 'not-a-hash')", email
        )
    finally:
        await connection.close()


async def marker_exists(url: str, email: str) -> bool:
    connection = await asyncpg.connect(url)
    try:
        found: bool = await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)", email
        )
    finally:
        await connection.close()
    return found


def embedded_url(log: Path) -> str:
    match = EMBEDDED_URL.search(log.read_text())
    assert match, log.read_text()
    return match.group(1)


# feature: files
def embedded_s3(log: Path) -> Any:
    match = EMBEDDED_S3.search(log.read_text())
    assert match, log.read_text()
    return s3_client(match.group(1), S3_DEV_ACCESS_KEY_ID, S3_DEV_SECRET_ACCESS_KEY)


def api_env(session_id: int) -> dict[str, str]:
    for process in session_processes(session_id):
        if "serve" in process.cmdline():
            return process.environ()
    raise AssertionError("no API process")


# end feature: files


def test_dev_loop_serves_stops_cleanly_and_keeps_data(project: Path, tmp_path: Path) -> None:
    port = free_port()
    first_log = tmp_path / "first.log"
    first = start_dev(project, port, first_log)
    try:
        wait_ready(port, first, first_log)
        asyncio.run(insert_marker(embedded_url(first_log), "kept@example.com"))
        # feature: files
        storage = embedded_s3(first_log)
        storage.create_bucket(Bucket="dev-marker")
        storage.put_object(Bucket="dev-marker", Key="kept", Body=b"kept")
        env = api_env(first.pid)
        assert env["S3_ENDPOINT_URL"] == storage.meta.endpoint_url
        assert env["S3_ACCESS_KEY_ID"] == S3_DEV_ACCESS_KEY_ID
        assert env["S3_CREATE_BUCKET"] == "true"
        # end feature: files
    finally:
        stop_and_check(first, signal.SIGINT, project)

    second_log = tmp_path / "second.log"
    second = start_dev(project, port, second_log)
    try:
        wait_ready(port, second, second_log)
        assert asyncio.run(marker_exists(embedded_url(second_log), "kept@example.com"))
        kept = embedded_s3(second_log).get_object(Bucket="dev-marker", Key="kept")  # feature: files
        assert kept["Body"].read() == b"kept"  # feature: files
    finally:
        stop_and_check(second, signal.SIGTERM, project)
    assert (project / ".keel" / "postgres").is_dir()
    assert (project / ".keel" / "s3").is_dir()  # feature: files
