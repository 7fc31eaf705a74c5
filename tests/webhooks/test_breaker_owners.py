"""Circuit breakers and receivers shared by several owners, with the real delivery code (run
here, on the worker's resources) against a real HTTP receiver on 127.0.0.1.

One receiver serves every owner's endpoint (one path each), as a shared SaaS receiver would:
one owner's failing endpoint must not stop the others' deliveries, and a receiver failing for
several owners must still be left alone for a while.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import cast

import asyncpg
import pytest
from redis.asyncio import Redis

from keel.db.database import PoolDatabase
from keel.resources import Resources
from keel.settings import Settings
from keel.webhooks import repository as repo
from keel.webhooks.breaker import SHARED_OWNERS, CircuitBreaker
from keel.webhooks.delivery import Outcome, deliver
from tests.auth.accounts import Account, AccountFactory
from tests.helpers.database import TransactionBoundDatabase
from tests.helpers.receiver import Receiver, Reply


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as server:
        yield server


@dataclasses.dataclass
class Deliveries:
    """Deliveries to the receiver, each to its owner's endpoint at one path."""

    resources: Resources
    db: asyncpg.Connection
    receiver: Receiver
    breaker: CircuitBreaker

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.receiver.port}"

    async def send(self, owner: Account, path: str) -> Outcome:
        """One run of the delivery job for a new delivery to `owner`'s endpoint at `path`."""
        url = self.receiver.url_for(path)
        endpoint = await repo.insert_endpoint(self.db, owner.id, url, ["item.created"], None, "w")
        delivery = await repo.insert_delivery(self.db, endpoint.id, "webhook.ping", {"a": 1})
        return await deliver(self.resources, delivery.id, delivery.enqueue_count, self.breaker)


@pytest.fixture
def deliveries(
    resources: Resources,
    db_connection: asyncpg.Connection,
    receiver: Receiver,
    redis: Redis,
    settings: Settings,
) -> Deliveries:
    bound = dataclasses.replace(
        resources, db=cast(PoolDatabase, TransactionBoundDatabase(db_connection))
    )
    breaker = CircuitBreaker(
        resources.redis,
        settings.webhook_breaker_threshold,
        settings.webhook_breaker_cooldown_seconds,
    )
    return Deliveries(bound, db_connection, receiver, breaker)


async def test_one_owners_failing_endpoint_does_not_stop_another_owners_deliveries(
    deliveries: Deliveries, account_factory: AccountFactory, settings: Settings
) -> None:
    receiver = deliveries.receiver
    receiver.routes["/failing"] = Reply(500, b"broken")
    tenant_a, tenant_b = await account_factory(), await account_factory()
    # One run's attempts are exactly enough to open a breaker.
    assert settings.webhook_attempts_per_run == settings.webhook_breaker_threshold

    # A's endpoint fails every attempt of a run: A's breaker opens.
    failed = await deliveries.send(tenant_a, "/failing")
    assert failed.status == "rescheduled"
    assert receiver.paths() == ["/failing"] * settings.webhook_breaker_threshold
    assert await deliveries.breaker.is_open(deliveries.host, tenant_a.id)
    assert not await deliveries.breaker.is_open(deliveries.host)

    # B's healthy endpoint on the same host still gets its deliveries, at once.
    for _ in range(3):
        delivered = await deliveries.send(tenant_b, "/healthy")
        assert delivered.status == "succeeded", delivered
    assert receiver.paths().count("/healthy") == 3

    # A itself stays stopped: nothing is sent for A while its breaker is open.
    sent = len(receiver.requests)
    held = await deliveries.send(tenant_a, "/failing")
    assert held.status == "rescheduled"
    assert held.detail is not None
    assert len(receiver.requests) == sent
    assert await deliveries.breaker.is_open(deliveries.host, tenant_a.id)


async def test_a_receiver_failing_for_several_owners_is_left_alone_for_everyone(
    deliveries: Deliveries, account_factory: AccountFactory, settings: Settings
) -> None:
    receiver = deliveries.receiver
    receiver.down()  # every connection reset: the receiver is down for everybody
    owners = [await account_factory() for _ in range(SHARED_OWNERS)]

    for count, owner in enumerate(owners, start=1):
        outcome = await deliveries.send(owner, f"/owner-{count}")
        assert outcome.status == "rescheduled"
        assert receiver.connections > (count - 1) * settings.webhook_breaker_threshold
        # Open once the failures came from enough distinct owners, not before.
        shared_open = await deliveries.breaker.is_open(deliveries.host)
        assert shared_open is (count == SHARED_OWNERS), count

    # A newcomer, whose own breaker never saw a failure, does not connect either.
    connections = receiver.connections
    newcomer = await account_factory()
    held = await deliveries.send(newcomer, "/newcomer")
    assert held.status == "rescheduled"
    assert receiver.connections == connections
    assert not await deliveries.breaker.is_open(deliveries.host, newcomer.id)


async def test_fewer_owners_than_the_shared_threshold_never_open_it_whatever_they_send(
    deliveries: Deliveries, account_factory: AccountFactory, settings: Settings
) -> None:
    """Many failing endpoints of one account (or of a few) are still that account's."""
    receiver = deliveries.receiver
    receiver.routes.update({f"/bad-{n}": Reply(503) for n in range(4)})
    owners = [await account_factory() for _ in range(SHARED_OWNERS - 1)]
    for owner in owners:
        await deliveries.send(owner, "/bad-0")
        # Past its own breaker, more endpoints of the same owner add nothing.
        await deliveries.send(owner, "/bad-1")
    assert not await deliveries.breaker.is_open(deliveries.host)
    bystander = await account_factory()
    assert (await deliveries.send(bystander, "/fine")).status == "succeeded"


async def test_a_302_is_not_followed_and_fails_the_delivery_at_once(
    deliveries: Deliveries, account: Account
) -> None:
    """Redirects are never followed (docs/jobs.md): the delivery fails on the 3xx, with no
    retry, and nothing reaches the address it points to (which the SSRF guard never checked)."""
    async with Receiver() as elsewhere:
        deliveries.receiver.routes["/moved"] = Reply(
            302, b"", headers=(("location", elsewhere.url_for("/target")),)
        )
        outcome = await deliveries.send(account, "/moved")
        assert outcome.status == "failed"
        assert outcome.attempts == 1
        assert deliveries.receiver.paths() == ["/moved"]
        assert elsewhere.connections == 0
    row = await deliveries.db.fetchrow(
        "SELECT status, attempts, last_status_code, last_error FROM webhook_deliveries"
        " WHERE id = $1",
        uuid.UUID(outcome.delivery_id),
    )
    assert row is not None
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("failed", 1, 302)
    assert row["last_error"].startswith("HTTP 302")
    # The host answered: for the breaker it is up.
    assert not await deliveries.breaker.is_open(deliveries.host, account.id)
