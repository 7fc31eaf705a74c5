"""GC tuning while serving (keel.gc_tuning): the start-up heap frozen, a larger young generation."""

from __future__ import annotations

import asyncio
import gc
from typing import Any  # feature: worker

import pytest

from keel.gc_tuning import tuned_collector
from keel.main import create_app
from keel.settings import Settings
from keel.worker import worker_settings  # feature: worker
from tests.helpers.lifespan import LifespanManager


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_the_heap_is_frozen_and_the_threshold_raised_then_both_undone() -> None:
    before = gc.get_threshold()
    # Not necessarily 0 here: Python 3.12 starts with a few hundred objects frozen (375 in 3.12.1).
    assert gc.get_freeze_count() < 1_000
    with tuned_collector(freeze=True, young_threshold=50_000):
        assert gc.get_freeze_count() > 10_000  # the whole test process's heap
        assert gc.get_threshold() == (50_000, before[1], before[2])
        Cycle()  # garbage made after the freeze is still collected
        assert gc.collect() >= 1
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_switched_off_it_changes_nothing() -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()  # 0, or what Python 3.12 starts with
    with tuned_collector(freeze=False, young_threshold=0):
        assert gc.get_freeze_count() == frozen
        assert gc.get_threshold() == before
    assert gc.get_threshold() == before


@pytest.mark.allow_loop_block  # the lifespan's full collection runs on the test's loop
async def test_the_api_serves_with_the_tuned_collector(settings: Settings) -> None:
    before = gc.get_threshold()
    tuned = {"gc_freeze": True, "gc_young_threshold": 12_345}
    # Built off the loop: create_app is start-up work (it tripped the 100 ms loop guard).
    app = await asyncio.to_thread(create_app, settings.model_copy(update=tuned))
    async with LifespanManager(app):
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == 12_345
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
    untuned = settings.model_copy(update={"gc_freeze": False, "gc_young_threshold": 0})
    async with LifespanManager(await asyncio.to_thread(create_app, untuned)):
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == before


# feature: worker
# The worker's start-up and shutdown hooks run in the test's call phase; both collect the whole
# test process's heap on its loop (gc.collect before freezing), past 100 ms on a busy machine.
@pytest.mark.allow_loop_block
async def test_the_worker_runs_its_jobs_with_the_tuned_collector(settings: Settings) -> None:
    before = gc.get_threshold()
    hooks = worker_settings(
        settings.model_copy(
            update={"gc_freeze": True, "gc_young_threshold": 23_456, "worker_metrics_port": 0}
        )
    )
    ctx: dict[str, Any] = {}
    await hooks["on_startup"](ctx)
    try:
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == 23_456
    finally:
        await hooks["on_shutdown"](ctx)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


# end feature: worker
def test_two_holders_in_one_process_do_not_undo_each_other() -> None:
    before = gc.get_threshold()
    first = tuned_collector(freeze=True, young_threshold=50_000)
    second = tuned_collector(freeze=True, young_threshold=40_000)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first app stops while the second still serves
    assert gc.get_freeze_count() > 10_000
    assert gc.get_threshold()[0] == 40_000
    second.__exit__(None, None, None)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before  # what the first holder saw, not the first's own
