"""Domain events: what changed, recorded in the same transaction as the change.

A domain registers the types of events it records, once, and records each change (here a
`tasks` domain):

    TASK_CREATED, TASK_DELETED = events.register("task.created", "task.deleted")
    ...
    await events.record(db, TASK_CREATED, owner_id=owner, data=TaskRead.model_validate(task))

`record` hands the event to every subscriber inside the caller's transaction, so whatever a
subscriber writes exists if and only if the change commits. Subscribers know event types, never
domains.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from keel.db.database import Writer


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    owner_id: uuid.UUID  # the user the event concerns: whose subscriptions receive it
    data: dict[str, Any]  # JSON-ready
    occurred_at: datetime


Subscriber = Callable[[Writer, Event], Awaitable[None]]

_types: dict[str, None] = {}  # in registration order, as `registered()` lists them
# feature: webhooks
# `keel.webhooks` subscribes when it is imported (the API and the worker both import it): each
# event becomes a delivery row (its outbox) for the owner's endpoints that asked for its type,
# and the webhooks API offers exactly the registered types.
# end feature: webhooks
_subscribers: list[Subscriber] = []


def register(*types: str) -> tuple[str, ...]:
    """Declare event types (`<resource>.<what happened>`); returns them for use as constants."""
    for name in types:
        resource, dot, happened = name.partition(".")
        if not (resource and dot and happened):
            raise ValueError(f"event types look like 'task.created', not {name!r}")
        _types.setdefault(name, None)
    return types


def registered() -> list[str]:
    return list(_types)


def subscribe(subscriber: Subscriber) -> None:
    """Called with every recorded event, in the recording transaction (once per subscriber)."""
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)


def unsubscribe(subscriber: Subscriber) -> None:
    if subscriber in _subscribers:
        _subscribers.remove(subscriber)


async def record(
    db: Writer, event_type: str, *, owner_id: uuid.UUID, data: BaseModel | dict[str, Any]
) -> Event:
    """Hand the event to every subscriber, inside the caller's transaction."""
    if event_type not in _types:
        raise LookupError(f"unregistered event type {event_type!r}: register it first")
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    event = Event(event_type, owner_id, payload, datetime.now(UTC))
    for subscriber in _subscribers:
        await subscriber(db, event)
    return event
