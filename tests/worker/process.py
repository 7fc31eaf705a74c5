"""A long-running `keel worker` subprocess (not burst) for signal, outage and metrics tests.

The environment carries every setting of the test's `Settings` the worker and its jobs read,
so the worker behaves exactly as configured there. `__exit__` kills whatever is still running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from redis.asyncio import Redis

from keel.settings import Settings
from keel.worker import health_check_key
from tests.helpers.environment import settings_env

# Settings a worker process must share with the test (beyond settings_env's).
SHARED_FIELDS = (
    "arq_job_completion_wait",
    "arq_job_timeout",
    "arq_max_tries",
    "arq_max_jobs",
    "arq_poll_delay",
    "arq_keep_result_seconds",
    "arq_health_check_interval",
    "worker_metrics_host",
    "worker_metrics_port",
    "redis_socket_timeout",
    "redis_connect_timeout",
    # feature: webhooks
    "webhook_allowed_networks",
    "webhook_require_https",
    "webhook_timeout_seconds",
    "webhook_attempts_per_run",
    "webhook_retry_base_seconds",
    "webhook_retry_max_seconds",
    "webhook_max_attempts",
    "webhook_run_backoff_base_seconds",
    "webhook_run_backoff_max_seconds",
    "webhook_breaker_threshold",
    "webhook_breaker_cooldown_seconds",
    "webhook_relay_interval_seconds",
    "webhook_relay_batch_size",
    # end feature: webhooks
)


def worker_env(settings: Settings) -> dict[str, str]:
    env = settings_env(settings)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    for name in SHARED_FIELDS:
        value = getattr(settings, name)
        if value is None:
            env.pop(name.upper(), None)
        elif isinstance(value, list):
            env[name.upper()] = ",".join(value)
        elif isinstance(value, bool):
            env[name.upper()] = "true" if value else "false"
        else:
            env[name.upper()] = str(value)
    return env


class WorkerProcess:
    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "keel.cli", "worker"],
                env=worker_env(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[2],
            )
        return self

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Kill the process if it is still running (a test's `finally`)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def ready(self, redis: Redis, within: float = 20.0) -> None:
        """Until the worker has recorded its health (it polls the queue), or fail with its log."""
        key = health_check_key(self.settings)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"worker exited early:\n{self.log()[-3000:]}")
            if await redis.exists(key):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"worker not ready in {within}s:\n{self.log()[-3000:]}")

    def signal(self, signum: signal.Signals) -> None:
        os.kill(self.pid, signum)

    async def wait(self, within: float) -> int:
        """The exit code, waiting without blocking the test's event loop."""
        assert self.proc is not None
        deadline = time.monotonic() + within
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"worker still running after {within}s")
            await asyncio.sleep(0.05)
        return self.proc.returncode
