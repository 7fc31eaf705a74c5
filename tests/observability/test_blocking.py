from __future__ import annotations

import asyncio
import gc
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from keel.observability.blocking import LoopBlock, LoopBlockDetector

ROOT = Path(__file__).resolve().parents[2]


def _blocking_sleep(seconds: float) -> None:
    time.sleep(seconds)  # the line the stack must point at


@pytest.mark.allow_loop_block
async def test_a_blocked_loop_is_reported_with_the_blocking_stack() -> None:
    blocks: list[LoopBlock] = []
    detector = LoopBlockDetector(0.05, on_block=blocks.append)
    detector.start()
    try:
        await asyncio.sleep(0.1)  # idle loop: nothing to report
        assert blocks == []
        _blocking_sleep(0.3)
        await asyncio.sleep(0.05)
    finally:
        detector.stop()
    assert len(blocks) == 1, "one report per blocking episode"
    assert blocks[0].blocked_ms >= 50
    assert "_blocking_sleep" in blocks[0].stack
    assert "time.sleep(seconds)" in blocks[0].stack


def _busy(seconds: float) -> None:
    deadline = time.thread_time() + seconds
    while time.thread_time() < deadline:  # CPU-bound: burns the loop thread's own CPU
        pass


@pytest.mark.allow_loop_block
async def test_cpu_bound_work_on_the_loop_is_reported() -> None:
    blocks: list[LoopBlock] = []
    detector = LoopBlockDetector(0.05, on_block=blocks.append)
    detector.start()
    try:
        await asyncio.sleep(0.05)
        _busy(0.4)
        await asyncio.sleep(0.05)
    finally:
        detector.stop()
    assert len(blocks) == 1
    assert "_busy" in blocks[0].stack


async def test_short_work_and_awaiting_are_not_reported() -> None:
    blocks: list[LoopBlock] = []
    detector = LoopBlockDetector(0.1, on_block=blocks.append)
    detector.start()
    try:
        for _ in range(20):
            _blocking_sleep(0.01)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
    finally:
        detector.stop()
    assert blocks == []


def test_a_stopped_loop_is_not_a_blocked_loop() -> None:
    loop = asyncio.new_event_loop()
    blocks: list[LoopBlock] = []
    detector = LoopBlockDetector(0.05, on_block=blocks.append)
    try:
        loop.run_until_complete(_start(detector))
        time.sleep(0.3)  # the loop is not running: nothing is blocked
        loop.run_until_complete(asyncio.sleep(0.1))
    finally:
        detector.stop()
        loop.close()
    assert blocks == []


async def _start(detector: LoopBlockDetector) -> None:
    detector.start()


def test_the_suite_fails_a_test_that_blocks_its_loop(tmp_path: Path) -> None:
    """Runs pytest on a tiny suite with the same plugin: the blocking test must fail."""
    (tmp_path / "test_blocker.py").write_text(
        textwrap.dedent(
            """
            import asyncio
            import time

            import pytest


            async def test_blocks():
                time.sleep(0.3)
                await asyncio.sleep(0)


            async def test_awaits():
                await asyncio.sleep(0.3)


            @pytest.mark.allow_loop_block
            async def test_blocks_on_purpose():
                time.sleep(0.3)
            """
        )
    )
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.observability.loop_guard",
            "-c",
            str(tmp_path / "pytest.ini"),
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_blocker.py"),
        ],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert re.search(r"^ERROR \S*test_blocker\.py::test_blocks$", output, re.MULTILINE), output
    assert "blocked its event loop" in output, output
    assert "time.sleep(0.3)" in output, output  # the stack names the blocking line
    assert "3 passed, 1 error" in output, output


class _Node:
    def __init__(self) -> None:
        self.peer: _Node = self


@pytest.mark.allow_loop_block
async def test_a_long_garbage_collection_is_not_reported() -> None:
    # A full collection of a large heap is the interpreter's work, not a blocking call.
    heap = [_Node() for _ in range(600_000)]
    blocks: list[LoopBlock] = []
    detector = LoopBlockDetector(0.05, on_block=blocks.append)
    detector.start()
    try:
        await asyncio.sleep(0.05)
        started = time.monotonic()
        gc.collect()
        collected_for = time.monotonic() - started
        await asyncio.sleep(0.05)
    finally:
        detector.stop()
        del heap
    assert collected_for > 0.05, "the collection must outlast the threshold to prove anything"
    assert blocks == []


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="/proc names what a thread waits on"
)
@pytest.mark.allow_loop_block
async def test_a_loop_asleep_on_a_futex_is_judged_by_its_cpu() -> None:
    # Waiting for the GIL that another thread holds (a parse or a hash handed to a thread, a
    # busy test client) is a sleep on a futex, like waiting for a lock: late and asleep, but
    # not in a call of its own. The kernel cannot tell the two apart, so both are judged by
    # the CPU rule; this test takes the lock, which it can hold for a known time.
    lock = threading.Lock()
    lock.acquire()
    releaser = threading.Timer(0.3, lock.release)
    blocks: list[LoopBlock] = []
    detector = LoopBlockDetector(0.05, on_block=blocks.append)
    detector.start()
    try:
        await asyncio.sleep(0.05)
        releaser.start()
        started = time.monotonic()
        lock.acquire()  # the futex wait
        waited = time.monotonic() - started
        await asyncio.sleep(0.05)
    finally:
        detector.stop()
    assert waited > 0.2, "the wait must outlast the threshold to prove anything"
    assert blocks == []
