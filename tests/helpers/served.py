"""The real app under uvicorn in a process of its own, on a loopback socket it inherits."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from keel.settings import Settings
from tests.helpers.environment import settings_env

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Served:
    base: str
    process: subprocess.Popen[bytes]


@contextmanager
def served_app(
    settings: Settings, log: Path, environment: dict[str, str] | None = None
) -> Iterator[Served]:
    """keel.main.create_app with `settings` (through the environment, plus `environment`),
    until the block ends."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    env = {
        **settings_env(settings),
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        **(environment or {}),
    }
    command = [sys.executable, "-m", "uvicorn", "keel.main:create_app", "--factory"]
    # feature: realtime
    command += [
        "--ws",
        "websockets-sansio",
        "--ws-per-message-deflate",
        "false",
    ]
    # end feature: realtime
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--fd", str(listener.fileno()), "--no-access-log"],
            cwd=ROOT,
            env=env,
            pass_fds=[listener.fileno()],
            stdout=output,
            stderr=output,
        )
    listener.close()
    try:
        _wait_until_live(base, process, log)
        yield Served(base, process)
    finally:
        process.terminate()
        process.wait(timeout=15)


def _wait_until_live(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{base}/livez", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"uvicorn did not start:\n{log.read_text()}")
