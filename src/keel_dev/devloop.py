"""`make dev` (`python -m keel_dev`): real PostgreSQL and Redis (yours, or embedded ones),
migrations, then the service's processes (the API with reload).

Embedded servers keep their data in `.keel/` (git-ignored), so dev data survives restarts.
Ctrl-C or SIGTERM stops every process this started; nothing is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

from keel.db.migrations import project_root, run_migrations
from keel_dev.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedS3,  # feature: files
    EmbeddedUnavailable,
)

DEV_DATABASE = "keel"
CHILD_STOP_TIMEOUT = 15.0


class _Stop(Exception):
    """Raised from the signal handler to leave the wait loop."""


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    # Once is enough: a second Ctrl-C must not interrupt the orderly shutdown below.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Stop(signal.Signals(signum).name)


@contextlib.contextmanager
def _database_url(data_dir: Path) -> Iterator[str]:
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    server = EmbeddedPostgres(data_dir / "postgres")
    server.start()
    try:
        server.create_database(DEV_DATABASE)
        url = server.url.rsplit("/", 1)[0] + f"/{DEV_DATABASE}"
        print(f"keel_dev: embedded PostgreSQL at {url}", file=sys.stderr)
        yield url
    finally:
        server.stop()


@contextlib.contextmanager
def _redis_url(data_dir: Path) -> Iterator[str]:
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    server = EmbeddedRedis(data_dir / "redis", persist=True)
    server.start()
    try:
        print(f"keel_dev: embedded Redis at {server.url}", file=sys.stderr)
        yield server.url
    finally:
        server.stop()


# feature: files
@contextlib.contextmanager
def _s3_env(data_dir: Path) -> Iterator[dict[str, str]]:
    """What the children need for object storage: nothing when S3_ENDPOINT_URL is yours."""
    if os.environ.get("S3_ENDPOINT_URL"):
        yield {}
        return
    server = EmbeddedS3(data_dir / "s3")
    server.start()
    try:
        print(f"keel_dev: embedded S3 (SeaweedFS) at {server.url}", file=sys.stderr)
        yield {
            "S3_ENDPOINT_URL": server.url,
            "S3_ACCESS_KEY_ID": server.access_key_id,
            "S3_SECRET_ACCESS_KEY": server.secret_access_key,
            # A fresh .keel/ has no bucket yet: the API makes it at start.
            "S3_CREATE_BUCKET": "true",
        }
    finally:
        server.stop()


# end feature: files


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "keel.cli", *args], env=env)  # noqa: S603


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + CHILD_STOP_TIMEOUT
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _wait_for_first_exit(children: list[subprocess.Popen[bytes]]) -> int:
    while True:
        for child in children:
            code = child.poll()
            if code is not None:
                return code
        time.sleep(0.2)


def run_dev(port: int = 8000) -> int:
    data_dir = project_root() / ".keel"
    data_dir.mkdir(exist_ok=True)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    children: list[subprocess.Popen[bytes]] = []
    try:
        with contextlib.ExitStack() as servers:
            database_url = servers.enter_context(_database_url(data_dir))
            redis_url = servers.enter_context(_redis_url(data_dir))
            env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
            env.update(servers.enter_context(_s3_env(data_dir)))  # feature: files
            run_migrations(database_url)
            children.append(_spawn(["serve", "--reload", "--port", str(port)], env))
            children.append(_spawn(["worker"], env))  # feature: worker
            print(f"keel_dev: API on http://127.0.0.1:{port} (Ctrl-C stops everything)")
            try:
                return _wait_for_first_exit(children)
            finally:
                _stop_children(children)
    except _Stop:
        _stop_children(children)
        return 0
    except EmbeddedUnavailable as error:
        print(f"keel_dev: {error}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keel_dev", description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    return run_dev(port=parser.parse_args(argv).port)
