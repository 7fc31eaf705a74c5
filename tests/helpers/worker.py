"""Run a real ARQ worker in its own process, in burst mode (it exits when the queue is empty)."""

from __future__ import annotations

import subprocess
import sys

from keel.settings import Settings
from tests.helpers.environment import settings_env

WORKER_TIMEOUT = 60.0


def run_burst_worker(settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keel.cli", "worker", "--burst"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT,
        check=False,
    )
