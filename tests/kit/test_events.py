"""keel.kit.events: registered types only, handed to each subscriber in the writer's transaction."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from pydantic import BaseModel

from keel.db.database import Writer
from keel.kit import events
from tests.auth.accounts import Account


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Types registered here are gone after the test (the registry is global, one per process)."""
    monkeypatch.setattr(events, "_types", dict(events._types))
    events.register("note.pinned", "note.unpinned")


class Note(BaseModel):
    id: uuid.UUID
    body: str


def test_types_are_registered_once_and_named_resource_dot_event() -> None:
    assert events.register("note.pinned") == ("note.pinned",)
    assert events.registered().count("note.pinned") == 1
    # feature: items
    assert {"item.created", "item.updated", "item.deleted"} <= set(events.registered())
    # end feature: items
    for bad in ("pinned", "note.", ".pinned", ""):
        with pytest.raises(ValueError, match="event types look like"):
            events.register(bad)


async def test_record_hands_the_event_to_subscribers_inside_the_transaction(
    db_connection: asyncpg.Connection, account: Account
) -> None:
    received: list[tuple[events.Event, bool]] = []

    async def subscriber(db: Writer, event: events.Event) -> None:
        in_transaction: bool = db_connection.is_in_transaction()
        received.append((event, in_transaction and db is db_connection))

    events.subscribe(subscriber)
    events.subscribe(subscriber)  # once is enough
    owner = account.id  # an event concerns a user: the event log refers to them
    note = Note(id=uuid.uuid4(), body="hello")
    try:
        recorded = await events.record(db_connection, "note.pinned", owner_id=owner, data=note)
    finally:
        events.unsubscribe(subscriber)
    assert recorded.data == {"id": str(note.id), "body": "hello"}
    assert received == [(recorded, True)]
    with pytest.raises(LookupError, match="unregistered event type"):
        await events.record(db_connection, "note.deleted", owner_id=owner, data={})
