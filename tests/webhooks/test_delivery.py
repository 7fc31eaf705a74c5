"""Deliveries through a real `keel worker` process to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from keel.webhooks.breaker import CircuitBreaker
from keel.webhooks.signing import InvalidSignature, verify
from tests.helpers.receiver import Receiver, Reply
from tests.webhooks.conftest import DeliveryWaiter, Live
from tests.worker.process import WorkerProcess

pytestmark = pytest.mark.slow

StartWorker = Callable[..., WorkerProcess]


async def _detail(live: Live, account: Any, endpoint_id: str, delivery_id: str) -> dict[str, Any]:
    response = await live.client.get(
        f"/api/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}", headers=account.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _job(live: Live, account: Any, job_id: str, until: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        response = await live.client.get(f"/api/v1/jobs/{job_id}", headers=account.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] == until or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.05)


async def test_item_change_is_delivered_signed_and_the_receiver_verifies_it(
    live: Live, start_worker: StartWorker, redis: Redis, wait_delivery: DeliveryWaiter
) -> None:
    async with Receiver() as receiver:
        account = await live.account()
        endpoint = await live.endpoint(account, receiver.url, ["item.created"])
        worker = start_worker()
        await worker.ready(redis)

        created = await live.client.post(
            "/api/v1/items", json={"title": "ship it"}, headers=account.headers
        )
        assert created.status_code == 201, created.text

        [request] = await receiver.wait_for_requests(1, within=15)
        # The shipped helper accepts it with the endpoint's secret, and only with it.
        webhook_id = verify(endpoint["secret"], request.headers, request.body)
        with pytest.raises(InvalidSignature):
            verify(endpoint["secret"], request.headers, request.body + b" ")
        with pytest.raises(InvalidSignature):
            verify("whsec_not-the-secret", request.headers, request.body)
        event = orjson.loads(request.body)
        assert event["type"] == "item.created"
        assert event["data"]["id"] == created.json()["id"]
        assert event["data"]["title"] == "ship it"

        row = await wait_delivery(webhook_id, "succeeded")
        assert row["attempts"] == 1
        assert row["last_status_code"] == 200
        # The job's owner follows it; anyone else gets 404.
        job = await _job(live, account, row["job_id"], "complete")
        assert job["status"] == "complete"
        assert job["success"] is True
        assert job["result"]["status"] == "succeeded"
        stranger = await live.account()
        hidden = await live.client.get(f"/api/v1/jobs/{row['job_id']}", headers=stranger.headers)
        assert hidden.status_code == 404
        assert len(receiver.requests) == 1
        # The job's log lines carry the id of the request that changed the item.
        request_id = created.headers["x-request-id"]
        lines = [orjson.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
        attempts = [line for line in lines if line.get("event") == "webhook attempt"]
        assert attempts
        assert all(line["request_id"] == request_id for line in attempts)


async def test_500_500_200_is_delivered_on_the_third_attempt(
    live: Live, start_worker: StartWorker, redis: Redis, wait_delivery: DeliveryWaiter
) -> None:
    async with Receiver(Reply(500, b"boom"), Reply(500, b"boom"), Reply(200)) as receiver:
        account = await live.account()
        endpoint = await live.endpoint(account, receiver.url)
        worker = start_worker()
        await worker.ready(redis)
        accepted = await live.ping(account, endpoint["id"])

        row = await wait_delivery(accepted["delivery_id"], "succeeded")
        assert row["attempts"] == 3
        detail = await _detail(live, account, endpoint["id"], accepted["delivery_id"])
        log = detail["attempt_log"]
        assert [a["attempt"] for a in log] == [1, 2, 3]
        assert [a["status_code"] for a in log] == [500, 500, 200]
        assert log[0]["error"] == "HTTP 500: boom"
        assert log[2]["error"] is None
        assert all(a["duration_ms"] >= 0 for a in log)
        # Three requests, one logical delivery.
        assert len(receiver.requests) == 3
        assert receiver.unique_ids() == {accepted["delivery_id"]}


async def test_400_fails_after_one_attempt_without_retry(
    live: Live, start_worker: StartWorker, redis: Redis, wait_delivery: DeliveryWaiter
) -> None:
    async with Receiver(default=Reply(400, b"bad payload")) as receiver:
        account = await live.account()
        endpoint = await live.endpoint(account, receiver.url)
        worker = start_worker()
        await worker.ready(redis)
        accepted = await live.ping(account, endpoint["id"])

        row = await wait_delivery(accepted["delivery_id"], "failed")
        assert row["attempts"] == 1
        assert row["last_status_code"] == 400
        assert row["last_error"] == "HTTP 400: bad payload"
        await asyncio.sleep(1.0)  # longer than every retry delay of these settings
        assert len(receiver.requests) == 1
        listed = await live.client.get(
            f"/api/v1/webhooks/{endpoint['id']}/deliveries",
            params={"status": "failed"},
            headers=account.headers,
        )
        assert [d["id"] for d in listed.json()["items"]] == [accepted["delivery_id"]]
        assert listed.json()["items"][0]["attempts"] == 1


async def test_breaker_opens_on_a_down_receiver_and_closes_when_it_returns(
    live: Live, start_worker: StartWorker, redis: Redis, wait_delivery: DeliveryWaiter
) -> None:
    settings = live.settings
    threshold = settings.webhook_breaker_threshold
    async with Receiver() as receiver:
        receiver.down()
        account = await live.account()
        endpoint = await live.endpoint(account, receiver.url)
        host = f"127.0.0.1:{receiver.port}"
        breaker = CircuitBreaker(redis, threshold, settings.webhook_breaker_cooldown_seconds)
        worker = start_worker()
        await worker.ready(redis)

        first = await live.ping(account, endpoint["id"])
        deadline = time.monotonic() + 10
        while not await breaker.is_open(host, account.id):
            assert time.monotonic() < deadline, "the breaker never opened"
            await asyncio.sleep(0.02)
        # Exactly `threshold` connection attempts opened it (each was accepted and reset).
        assert receiver.connections == threshold

        # While open: more deliveries, and not one connection to the receiver.
        more = [await live.ping(account, endpoint["id"]) for _ in range(3)]
        connections_while_open = receiver.connections
        await asyncio.sleep(settings.webhook_breaker_cooldown_seconds * 0.6)
        assert await breaker.is_open(host, account.id)
        assert receiver.connections == connections_while_open == threshold

        # The receiver returns: after the cool-down a probe succeeds, the breaker closes and
        # every pending delivery goes out.
        receiver.up()
        for accepted in (first, *more):
            await wait_delivery(accepted["delivery_id"], "succeeded", within=20)
        assert not await breaker.is_open(host, account.id)
        assert receiver.unique_ids() == {a["delivery_id"] for a in (first, *more)}


async def test_redeliver_sends_the_same_webhook_id_again(
    live: Live, start_worker: StartWorker, redis: Redis, wait_delivery: DeliveryWaiter
) -> None:
    async with Receiver() as receiver:
        account = await live.account()
        endpoint = await live.endpoint(account, receiver.url)
        worker = start_worker()
        await worker.ready(redis)
        accepted = await live.ping(account, endpoint["id"])
        await wait_delivery(accepted["delivery_id"], "succeeded")

        again = await live.client.post(
            f"/api/v1/webhooks/{endpoint['id']}/deliveries/{accepted['delivery_id']}/redeliver",
            headers=account.headers,
        )
        assert again.status_code == 202, again.text
        assert again.json()["job_id"] != accepted["job_id"]
        await receiver.wait_for_requests(2, within=15)
        await wait_delivery(accepted["delivery_id"], "succeeded")
        assert [r.headers["webhook-id"] for r in receiver.requests] == [accepted["delivery_id"]] * 2
        job = await _job(live, account, again.json()["job_id"], "complete")
        assert job["status"] == "complete"
        assert uuid.UUID(again.json()["delivery_id"]) == uuid.UUID(accepted["delivery_id"])
