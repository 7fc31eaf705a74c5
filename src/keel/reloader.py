"""`keel worker --reload`: restart the worker when a Python file of the keel package changes.

For the compose dev loop, where the source is bind-mounted into the container: the API reloads
through uvicorn (`keel serve --reload`), and the worker must pick up a changed job the same way
without anyone restarting its container. Polling file times rather than inotify: bind mounts from
a VM (Docker Desktop, podman machine) do not always deliver file events, and the image has no
watcher library. A development tool only: production runs `keel worker` itself.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

POLL_SECONDS = 1.0
# The worker waits ARQ_JOB_COMPLETION_WAIT for its running jobs on SIGTERM; a restart waits as long
# as compose's stop_grace_period would, then kills.
STOP_TIMEOUT_SECONDS = 45.0

Snapshot = dict[Path, int]


def snapshot(root: Path) -> Snapshot:
    """Modification time of every .py file under root (a file added or removed changes it too)."""
    times: Snapshot = {}
    for path in root.rglob("*.py"):
        try:
            times[path] = path.stat().st_mtime_ns
        except OSError:  # removed between listing and stat: the next poll sees it gone
            continue
    return times


def stop(child: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    if child.poll() is None:
        child.terminate()
    try:
        child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def run_with_reload(
    command: Sequence[str],
    root: Path,
    *,
    stopping: threading.Event,
    poll: float = POLL_SECONDS,
) -> int:
    """Run `command`, restarted whenever the .py files under root change, until `stopping` is set.

    A child that exits on its own (a syntax error just saved) is not restarted until the next
    change, as uvicorn's reloader does: the error stays on screen instead of looping.
    """
    seen = snapshot(root)
    child = subprocess.Popen(list(command))  # noqa: S603  # our own command line
    try:
        while not stopping.wait(poll):
            current = snapshot(root)
            if current == seen:
                continue
            seen = current
            print("keel: source changed, restarting the worker", file=sys.stderr, flush=True)
            stop(child)
            child = subprocess.Popen(list(command))  # noqa: S603
    finally:
        stop(child)
    return 0


def main(command: Sequence[str], root: Path) -> int:
    """Run with reload until SIGTERM or SIGINT, which stop the child gracefully first."""
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return run_with_reload(command, root, stopping=stopping)
