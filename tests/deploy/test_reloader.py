"""`keel worker --reload` (keel.reloader): the compose dev loop's worker restarts on a change."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from keel.cli import build_parser
from keel.reloader import run_with_reload, snapshot

# A stand-in worker: records its pid, then waits to be terminated.
CHILD = "import os, sys, time; open(sys.argv[1], 'a').write(f'{os.getpid()}\\n'); time.sleep(60)"


def started_pids(record: Path) -> list[int]:
    return [int(line) for line in record.read_text().split()] if record.exists() else []


def wait_until(predicate: object, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_snapshot_sees_an_edit_an_added_and_a_removed_file(tmp_path: Path) -> None:
    module = tmp_path / "pkg" / "jobs.py"
    module.parent.mkdir()
    module.write_text("A = 1\n")
    (tmp_path / "notes.txt").write_text("ignored")
    first = snapshot(tmp_path)
    assert set(first) == {module}
    os.utime(module, ns=(0, first[module] + 1_000_000))
    assert snapshot(tmp_path) != first
    added = tmp_path / "pkg" / "new.py"
    added.write_text("")
    assert added in snapshot(tmp_path)
    added.unlink()
    assert added not in snapshot(tmp_path)


def test_a_change_restarts_the_child_and_stopping_terminates_it(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    module = source / "jobs.py"
    module.write_text("A = 1\n")
    record = tmp_path / "pids"
    stopping = threading.Event()
    runner = threading.Thread(
        target=run_with_reload,
        args=([sys.executable, "-c", CHILD, str(record)], source),
        kwargs={"stopping": stopping, "poll": 0.1},
    )
    runner.start()
    try:
        assert wait_until(lambda: len(started_pids(record)) == 1)
        time.sleep(0.3)  # a few polls without a change: no restart
        assert len(started_pids(record)) == 1
        module.write_text("A = 2\n")
        os.utime(module, ns=(0, time.time_ns() + 1_000_000_000))  # coarse mtime clocks
        assert wait_until(lambda: len(started_pids(record)) == 2)
    finally:
        stopping.set()
        runner.join(timeout=20)
    assert not runner.is_alive()
    first, second = started_pids(record)
    for pid in (first, second):  # both terminated and reaped by the reloader
        assert not Path(f"/proc/{pid}").exists(), pid


def test_worker_reload_flag_is_parsed() -> None:
    args = build_parser().parse_args(["worker", "--reload"])
    assert args.reload is True
    assert build_parser().parse_args(["worker"]).reload is False
