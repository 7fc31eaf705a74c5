"""pytest plugin: a test that blocks its event loop past the threshold fails.

Every async test runs with a `LoopBlockDetector` on its loop (threshold: the app's default
`LOOP_BLOCK_THRESHOLD_MS`, 100 ms). Only the test's call phase counts: fixture set-up and
tear-down (building apps, migrations) are not the code under test. A test that blocks on
purpose says so with `@pytest.mark.allow_loop_block`. Registered by tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Generator

import pytest

from keel.observability.blocking import LoopBlock, LoopBlockDetector
from keel.settings import Settings

THRESHOLD_SECONDS = Settings.model_fields["loop_block_threshold_ms"].default / 1000
GUARD_FIXTURE = "_loop_block_guard"


class _Guard:
    def __init__(self) -> None:
        self.armed = False
        self.blocks: list[LoopBlock] = []
        self.detector = LoopBlockDetector(THRESHOLD_SECONDS, on_block=self._record)

    def _record(self, block: LoopBlock) -> None:
        if self.armed:
            self.blocks.append(block)


_guards: dict[str, _Guard] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_loop_block: the test blocks its event loop on purpose"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if inspect.iscoroutinefunction(metafunc.function):
        metafunc.fixturenames.append(GUARD_FIXTURE)


@pytest.fixture
async def _loop_block_guard(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    guard = _Guard()
    guard.detector.start(asyncio.get_running_loop())
    _guards[request.node.nodeid] = guard
    try:
        yield
    finally:
        guard.detector.stop()
        _guards.pop(request.node.nodeid, None)
    if guard.blocks and request.node.get_closest_marker("allow_loop_block") is None:
        worst = max(guard.blocks, key=lambda block: block.blocked_ms)
        pytest.fail(
            f"the test blocked its event loop for more than {THRESHOLD_SECONDS * 1000:.0f} ms "
            f"({len(guard.blocks)} time(s), caught at {worst.blocked_ms} ms); it was here:\n"
            f"{worst.stack}",
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    guard = _guards.get(item.nodeid)
    if guard is not None:
        guard.armed = True
    try:
        return (yield)
    finally:
        if guard is not None:
            guard.armed = False
