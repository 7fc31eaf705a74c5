"""The garbage collector in a long-running process: the start-up heap parked, collections short.

After start-up a process holds a large heap that lives as long as it does: every module,
FastAPI's routes and OpenAPI schema, pydantic's validators, SQLAlchemy's metadata, the pools.
CPython's full (generation 2) collection walks every tracked object, so each one took ~90 ms
here, and under load one ran every ~0.5 s (long-lived request objects keep promoting into
generation 2): 15% of the API process's time and a ~100 ms p99 (measured). `gc.freeze()`
moves the heap as it is after start-up into the permanent generation, which no collection walks;
full collections then cost ~1 ms. This is what preforking servers do after import.

The young generation's threshold (700 allocations by default) is raised too: a request
allocates a few thousand objects, so the default ran a collection every fraction of a request
and promoted objects of requests still in flight; collections of a larger young generation are
fewer and promote less (`GC_YOUNG_THRESHOLD`, measured too). `GC_FREEZE=false`
turns the freeze off.

What this costs: a cycle of objects created before the freeze and dropped later is never
reclaimed (refcounting still frees everything that is not a cycle). A full collection runs
first, so only what start-up built and later drops in a cycle stays (say, a pooled connection
replaced after `max_inactive_connection_lifetime`: a few kilobytes); at shutdown everything is
handed back to the collector.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Tuning:
    """The collector's settings are the process's, not one app's: what the first holder saw is
    put back when the last one leaves, and the heap thaws only when no holder wants it frozen
    (two apps in one process, say a test that runs two lifespans, must not undo each other)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holders = 0
        self.freezers = 0
        self.original: tuple[int, int, int] = gc.get_threshold()

    def enter(self, freeze: bool, young_threshold: int) -> None:
        with self.lock:
            if self.holders == 0:
                self.original = gc.get_threshold()
            self.holders += 1
            if freeze:
                self.freezers += 1
                gc.collect()
                gc.freeze()  # again for a later holder: its own start-up heap joins the frozen
            if young_threshold:
                gc.set_threshold(young_threshold, self.original[1], self.original[2])

    def exit(self, freeze: bool) -> None:
        with self.lock:
            self.holders -= 1
            if freeze:
                self.freezers -= 1
                if self.freezers == 0:
                    gc.unfreeze()
            if self.holders == 0:
                gc.set_threshold(*self.original)


_tuning = _Tuning()


@contextmanager
def tuned_collector(*, freeze: bool, young_threshold: int) -> Iterator[None]:
    """For the process's serving life: freeze what start-up built (after one full collection)
    and set the young generation's threshold (0: the interpreter's); undone when the last
    holder in the process exits."""
    _tuning.enter(freeze, young_threshold)
    try:
        yield
    finally:
        _tuning.exit(freeze)
