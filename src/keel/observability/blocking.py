"""Event-loop block detector for development and tests.

A heartbeat callback runs on the loop every `interval`; a watchdog thread checks that it is not
late. When it is late by more than `threshold`, the loop is blocked *right now*, so the watchdog
takes the loop thread's current stack (`sys._current_frames`) and reports it: the warning points
at the line that blocks, not at some callback afterwards (asyncio's debug mode only names the
slow callback, once it has finished).

No false alarms from:
* a loop that is not running (between `run_until_complete` calls): the heartbeat's lateness only
  counts from the moment the watchdog saw the loop running again;
* a loop that is merely idle but was not scheduled by the OS: if the loop thread sits in the
  selector's `select`, it is waiting for I/O, not blocked;
* a garbage collection: a full collection of a large heap can take 100+ ms; it is the
  interpreter's work, not a blocking call in the code under watch, so its time is not counted;
* a busy machine (Linux): a loop thread that is runnable but not getting a CPU is late without
  being blocked by its own code. So a late loop counts as blocked when its thread is asleep in a
  call (sync I/O, `time.sleep`: state S/D in /proc) or when it has itself burnt more than
  `threshold` of CPU since the heartbeat was due;
* another thread holding the GIL (a parse or a hash handed to a thread, a busy test client):
  the loop thread then sleeps on a futex. So does a loop blocked on a `threading.Lock`, and
  the two cannot be told apart from outside, so a futex wait is judged by the CPU rule alone:
  a loop that waits on a lock is not reported, a loop that spins is.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

# Where the loop thread is when it waits for I/O rather than running a callback: in the
# selector (asyncio's loop), in the loop's own scheduling code, or, with uvloop (whose loop is
# compiled), in the Python frame that called run_until_complete.
_IDLE_FRAMES = (
    ("selectors.py", "select"),
    ("base_events.py", "_run_once"),
    ("base_events.py", "run_forever"),
    ("runners.py", "run"),
)


def _is_idle(code_file: str, code_name: str) -> bool:
    return any(code_name == name and code_file.endswith(suffix) for suffix, name in _IDLE_FRAMES)


@dataclass(frozen=True, slots=True)
class LoopBlock:
    """One episode: how long the loop had been blocked when caught, and where it was."""

    blocked_ms: float
    stack: str


class LoopBlockDetector:
    def __init__(
        self,
        threshold: float = 0.1,
        *,
        on_block: Callable[[LoopBlock], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.interval = threshold / 4
        self.on_block = on_block or _log_block
        self.blocks: list[LoopBlock] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0  # monotonic time the next heartbeat should run at
        self._beat_cpu = 0.0  # the loop thread's CPU time at the last heartbeat
        self._cpu_clock: int | None = None
        self._stat_path: Path | None = None
        self._wchan_path: Path | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gc_started: float | None = None  # monotonic start of the collection under way
        self._gc_seconds = 0.0  # total time spent in collections since start()
        self._beat_gc = 0.0  # _gc_seconds at the last heartbeat

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start watching `loop` (default: the running loop). Call from the loop's thread."""
        self._loop = loop or asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        try:
            self._cpu_clock = time.pthread_getcpuclockid(self._loop_thread)
            task = Path(f"/proc/self/task/{threading.get_native_id()}")
            self._stat_path = task / "stat"
            self._stat_path.read_bytes()
            self._wchan_path = task / "wchan"
        except (AttributeError, OSError):  # not Linux: wall-clock lateness alone
            self._cpu_clock = self._stat_path = self._wchan_path = None
        gc.callbacks.append(self._on_gc)
        self._beat()
        self._thread = threading.Thread(
            target=self._watch, name="keel-loop-block-detector", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._handle is not None:
            self._handle.cancel()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def _beat(self) -> None:
        assert self._loop is not None
        self._due = time.monotonic() + self.interval
        self._beat_cpu = time.thread_time()
        self._beat_gc = self._gc_seconds
        self._handle = self._loop.call_later(self.interval, self._beat)

    def _on_gc(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.monotonic()
        elif self._gc_started is not None:
            self._gc_seconds += time.monotonic() - self._gc_started
            self._gc_started = None

    def _watch(self) -> None:
        loop = self._loop
        assert loop is not None
        reported_for = 0.0  # the heartbeat deadline already reported: one report per episode
        running_since = time.monotonic()
        was_running = True
        while not self._stop.wait(self.interval / 2):
            now = time.monotonic()
            if not loop.is_running():
                was_running = False
                continue
            if not was_running:
                was_running = True
                running_since = now
            if self._gc_started is not None:
                continue  # a collection is running: not the code under watch
            due = self._due
            gc_seconds = self._gc_seconds - self._beat_gc
            late = now - max(due, running_since) - gc_seconds
            if late <= self.threshold or due == reported_for:
                continue
            frame = sys._current_frames().get(self._loop_thread or 0)
            if frame is None or _is_idle(frame.f_code.co_filename, frame.f_code.co_name):
                continue
            if not self._blocked_by_its_own_code(gc_seconds):
                continue
            reported_for = due
            block = LoopBlock(
                blocked_ms=round(late * 1000, 1),
                stack="".join(traceback.format_stack(frame)),
            )
            self.blocks.append(block)
            self.on_block(block)

    def _blocked_by_its_own_code(self, gc_seconds: float) -> bool:
        if self._cpu_clock is None or self._stat_path is None:
            return True
        try:
            # "pid (comm) state ...": comm may hold spaces, the state follows the last ")".
            state = self._stat_path.read_bytes().rpartition(b")")[2].split()[0]
            cpu = time.clock_gettime(self._cpu_clock)
        except (OSError, IndexError):
            return True
        if state in (b"S", b"D") and not self._waiting_on_a_futex():
            return True  # asleep in a call made from the loop: a blocking call
        # Running or runnable: blocked only if it really used the CPU all that time (up to one
        # interval of that may have been legitimate work before the heartbeat was due).
        return cpu - self._beat_cpu - self.interval - gc_seconds > self.threshold

    def _waiting_on_a_futex(self) -> bool:
        """The GIL or a lock. "0" when the kernel does not say: then not a futex."""
        try:
            return self._wchan_path is not None and self._wchan_path.read_bytes().startswith(
                b"futex"
            )
        except OSError:
            return False


def _log_block(block: LoopBlock) -> None:
    log.warning(
        "event loop blocked",
        blocked_ms=block.blocked_ms,
        stack=block.stack,
    )
