"""Keep the test process's own garbage collection out of timing measurements."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_heap() -> Iterator[None]:
    """The test process's heap (pytest, alembic, every app built so far) is not the code under
    test: collected once now (in the fixture), then parked outside the collector, as a
    preforking server does after import. Otherwise a full collection of it (~300 ms here) can
    land in the middle of the test and be counted as the app blocking its loop."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
