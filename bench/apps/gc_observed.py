"""Keel under uvicorn (as bench/harness.py starts it), timing every garbage collection.

    python -m bench.apps.gc_observed PORT STATS_FILE

On SIGUSR1 it writes one JSON object to STATS_FILE (the bench asks before it stops the server):
per generation, the number of collections, the longest pause and the total, in milliseconds
(measured with `gc.callbacks`).
"""

from __future__ import annotations

import gc
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import uvicorn

_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
_started = [0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        _pauses[info["generation"]].append((time.perf_counter() - _started[0]) * 1000)


def _write(path: Path) -> None:
    stats = {
        str(generation): {
            "collections": len(pauses),
            "max_ms": max(pauses, default=0.0),
            "total_ms": sum(pauses),
        }
        for generation, pauses in _pauses.items()
    }
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(stats))
    partial.rename(path)  # the reader never sees half a file


def main() -> None:
    port, stats = int(sys.argv[1]), Path(sys.argv[2])
    gc.callbacks.append(_on_gc)
    signal.signal(signal.SIGUSR1, lambda *_: _write(stats))
    uvicorn.run(
        "keel.main:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
