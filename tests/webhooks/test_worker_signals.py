"""Stopping the worker mid-delivery: SIGTERM lets the job finish once; SIGKILL loses nothing."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from keel.webhooks.delivery import INTERRUPTED
from keel.webhooks.signing import verify
from tests.helpers.receiver import Receiver, Reply
from tests.webhooks.conftest import DeliveryWaiter, Live
from tests.worker.process import WorkerProcess

pytestmark = pytest.mark.slow

StartWorker = Callable[..., WorkerProcess]


async def test_sigterm_mid_delivery_finishes_the_job_once_and_exits_cleanly(
    live: Live, start_worker: StartWorker, redis: Redis, wait_delivery: DeliveryWaiter
) -> None:
    async with Receiver(Reply(200, delay=1.5)) as receiver:
        account = await live.account()
        endpoint = await live.endpoint(account, receiver.url)
        worker = start_worker()
        await worker.ready(redis)
        accepted = await live.ping(account, endpoint["id"])
        await receiver.wait_for_requests(1, within=15)

        worker.signal(signal.SIGTERM)  # while the receiver is still holding the request
        assert await worker.wait(within=15) == 0, worker.log()[-3000:]

        row = await wait_delivery(accepted["delivery_id"], "succeeded", within=1)
        assert row["attempts"] == 1
        assert len(receiver.requests) == 1
        assert "shutdown on SIGTERM" in worker.log()


async def test_sigkill_mid_delivery_is_delivered_again_after_restart_with_the_same_id(
    live: Live, start_worker: StartWorker, redis: Redis, wait_delivery: DeliveryWaiter
) -> None:
    # A killed job is picked up again when its in-progress mark expires: ARQ_JOB_TIMEOUT + 11 s.
    settings = live.settings.model_copy(
        update={"arq_job_timeout": 2, "webhook_timeout_seconds": 1.5}
    )
    async with Receiver(Reply(200, delay=5.0)) as receiver:
        account = await live.account()
        endpoint = await live.endpoint(account, receiver.url)
        first = start_worker(settings)
        await first.ready(redis)
        accepted = await live.ping(account, endpoint["id"])
        await receiver.wait_for_requests(1, within=15)

        first.signal(signal.SIGKILL)
        assert await first.wait(within=5) == -signal.SIGKILL
        second = start_worker(settings)
        await second.ready(redis)

        await receiver.wait_for_requests(2, within=25)
        row = await wait_delivery(accepted["delivery_id"], "succeeded", within=10)
        # At least once: two requests, one logical delivery for a receiver deduplicating on
        # Webhook-Id, each request correctly signed.
        assert len(receiver.requests) == 2
        assert receiver.unique_ids() == {accepted["delivery_id"]}
        for request in receiver.requests:
            assert verify(endpoint["secret"], request.headers, request.body) == row["id"].__str__()
        assert row["attempts"] == 2
        detail = await live.client.get(
            f"/api/v1/webhooks/{endpoint['id']}/deliveries/{accepted['delivery_id']}",
            headers=account.headers,
        )
        log = detail.json()["attempt_log"]
        assert [a["status_code"] for a in log] == [None, 200]
        assert log[0]["error"] == INTERRUPTED
