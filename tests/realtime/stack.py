"""The real deployment shape on loopback: gunicorn (gunicorn.conf.py, KeelUvicornWorker) serving
keel.main with 2 workers, and one `keel worker` (the relay). Each process runs in a session of
its own and is killed as a group at the end."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from keel.settings import Settings
from tests.worker.process import WorkerProcess, worker_env

REPO = Path(__file__).resolve().parents[2]
BOOT_TIMEOUT = 40.0
PASSWORD = "correct horse battery staple"
EMAIL_DOMAIN = "streams.example.com"  # every user a stack's tests sign up: deleted after it


@dataclass
class Stack:
    gunicorn: subprocess.Popen[bytes]
    worker: WorkerProcess
    log: Path
    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/events"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate_gunicorn(self) -> None:
        os.kill(self.gunicorn.pid, signal.SIGTERM)


def stack_env(settings: Settings, tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    return {
        **worker_env(settings),
        "BIND": "127.0.0.1:0",  # the kernel picks the port; read back from the log
        "WEB_CONCURRENCY": "2",
        "DRAIN_TIMEOUT": "10",
        "LOG_LEVEL": "INFO",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "DB_MAX_CONNECTIONS": "100000",
        # feature: ratelimit
        # Every test signs up users from 127.0.0.1: the per-IP auth limits would refuse them.
        "RATE_LIMIT_REGISTER": "1000/minute",
        "RATE_LIMIT_LOGIN": "1000/minute",
        # end feature: ratelimit
        "WORKER_METRICS_PORT": "0",  # nothing scrapes it here, and its fixed port may be taken
        "REALTIME_SESSION_CHECK_SECONDS": "0.5",
        "REALTIME_AUTH_TIMEOUT_SECONDS": "1",
        "REALTIME_MAX_CONNECTIONS_PER_USER": "2",
        "REALTIME_RELAY_INTERVAL_SECONDS": "0.5",
        **extra,
    }


@contextmanager
def running_stack(settings: Settings, tmp_path: Path, **extra: str) -> Iterator[Stack]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    env = stack_env(settings, tmp_path, extra)
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                str(REPO / "gunicorn.conf.py"),
                "keel.main:create_app()",
            ],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    relay = settings.model_copy(
        update={"realtime_relay_interval_seconds": 0.5, "worker_metrics_port": 0}
    )
    worker = WorkerProcess(relay, tmp_path / "worker.log")
    stack = Stack(gunicorn=proc, worker=worker, log=log)
    try:
        worker.start()
        stack.port = _wait_for_workers(stack, int(env["WEB_CONCURRENCY"]))
        yield stack
    finally:
        worker.stop()
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


async def delete_users(database_url: str) -> None:
    """The users `sign_up` made (and with them their items and events): they were committed."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("DELETE FROM users WHERE email LIKE $1", f"%@{EMAIL_DOMAIN}")
    finally:
        await connection.close()


async def wait_until_numbered(database_url: str, owner: uuid.UUID, count: int) -> None:
    """Until the relay has given `count` of the owner's events their sequence (bounded)."""
    connection = await asyncpg.connect(database_url)
    try:
        for _ in range(100):
            numbered = await connection.fetchval(
                "SELECT count(*) FROM realtime_events WHERE owner_id = $1 AND sequence IS NOT NULL",
                owner,
            )
            if numbered >= count:
                return
            await asyncio.sleep(0.1)
    finally:
        await connection.close()
    raise AssertionError(f"the relay numbered {numbered} of {count} events in 10 s")


def _wait_for_workers(stack: Stack, workers: int) -> int:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        text = stack.log_text()
        match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
        if match and text.count("Application startup complete") >= workers:
            return int(match.group(1))
        if stack.gunicorn.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"gunicorn did not start:\n{stack.log_text()[-4000:]}")


async def sign_up(client: httpx.AsyncClient, label: str = "stream") -> dict[str, str]:
    """A new user, signed in: their Authorization header."""
    email = f"{label}-{uuid.uuid4().hex[:10]}@{EMAIL_DOMAIN}"
    registered = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    token = await client.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


@asynccontextmanager
async def serving(settings: Settings, tmp_path: Path, **extra: str) -> AsyncIterator[Stack]:
    """`running_stack` for a test's event loop: booting and stopping run off the loop."""
    manager = running_stack(settings, tmp_path, **extra)
    stack = await asyncio.to_thread(manager.__enter__)
    try:
        yield stack
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)
