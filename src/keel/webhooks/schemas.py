"""Webhook schemas at the edge: strict inputs, read models, the one-time secret."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StrictBool,
)
from pydantic.config import JsonDict
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from keel.kit import events
from keel.kit.schemas import NO_NUL, NOT_BLANK, STRIP, InputModel, PartialUpdate


def _registered_event_type(name: str) -> str:
    if name not in events.registered():
        raise ValueError(f"unknown event type; one of: {', '.join(events.registered())}")
    return name


class _RegisteredEventTypes:
    """JSON Schema of an event type: the enum of the types the domains registered (read when
    the schema is built, after every domain is imported)."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"enum": events.registered(), "type": "string"}


# Events a user can subscribe to: every type a domain registered (keel.kit.events).
# `webhook.ping` is sent by the ping operation only.
EventType = Annotated[str, AfterValidator(_registered_event_type), _RegisteredEventTypes]
PING_EVENT = "webhook.ping"
DeliveryStatus = Literal["pending", "succeeded", "failed"]

Url = Annotated[str, Field(min_length=1, max_length=2048, pattern=NOT_BLANK), STRIP]
Description = Annotated[str, Field(max_length=500, pattern=NO_NUL)]
Events = Annotated[list[EventType], Field(min_length=1, max_length=16)]

# OpenAPI examples (also the first requests schemathesis sends).
_ENDPOINT_EXAMPLE: JsonDict = {
    "id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "url": "https://hooks.example.com/keel",
    "events": ["item.created", "item.updated"],
    "description": "Sync to the CRM",
    "is_active": True,
    "created_at": "2026-01-15T09:30:00Z",
    "updated_at": "2026-01-15T09:30:00Z",
}
_DELIVERY_EXAMPLE: JsonDict = {
    "id": "7d444840-9dc0-11d1-b245-5ffdce74fad2",
    "endpoint_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "event": "item.created",
    "status": "succeeded",
    "attempts": 1,
    "last_status_code": 200,
    "last_error": None,
    "next_attempt_at": None,
    "job_id": "webhook:7d444840-9dc0-11d1-b245-5ffdce74fad2:1",
    "created_at": "2026-01-15T09:30:00Z",
    "delivered_at": "2026-01-15T09:30:01Z",
}


class EndpointCreate(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "https://hooks.example.com/keel",
                    "events": ["item.created", "item.updated"],
                    "description": "Sync to the CRM",
                }
            ]
        },
    )

    url: Url
    events: Events
    description: Description | None = None


class EndpointUpdate(PartialUpdate):
    """PATCH: only the fields sent change."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"is_active": False}]})
    not_null: ClassVar[frozenset[str]] = frozenset({"url", "events", "is_active"})

    url: Url | None = None
    events: Events | None = None
    description: Description | None = None
    is_active: StrictBool | None = None


class EndpointRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_ENDPOINT_EXAMPLE]}
    )

    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    is_active: bool
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointRead):
    """Returned by create and rotate only: the signing secret is never shown again."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**_ENDPOINT_EXAMPLE, "secret": "whsec_9mZ2oQ0l3Xb7YtKc4v1RnE8sHdJ6aUwP"}]
        }
    )

    secret: str = Field(description="Signing secret (whsec_...). Store it now: shown once.")


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None


class DeliveryRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_DELIVERY_EXAMPLE]}
    )

    id: uuid.UUID = Field(description="Also the Webhook-Id header: the receiver's dedupe key")
    endpoint_id: uuid.UUID
    event: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None = Field(description="When the next attempt is due (pending)")
    job_id: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryDetail(DeliveryRead):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_DELIVERY_EXAMPLE,
                    "payload": {"type": "item.created", "data": {"title": "Write the notes"}},
                    "attempt_log": [
                        {
                            "attempt": 1,
                            "started_at": "2026-01-15T09:30:00Z",
                            "duration_ms": 84,
                            "status_code": 200,
                            "error": None,
                        }
                    ],
                }
            ]
        }
    )

    payload: dict[str, object]
    attempt_log: list[AttemptRead]


class DeliveryAccepted(BaseModel):
    """202: the delivery is queued; follow it with `GET /api/v1/jobs/{job_id}`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "delivery_id": _DELIVERY_EXAMPLE["id"],
                    "job_id": _DELIVERY_EXAMPLE["job_id"],
                }
            ]
        }
    )

    delivery_id: uuid.UUID
    job_id: str
