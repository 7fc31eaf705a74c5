"""Webhook schemas at the edge: strict inputs, read models, the one-time secret."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from keel.openapi_schemas import NO_NUL, NOT_BLANK, STRIP, partial_update

# Events a user can subscribe to. `webhook.ping` is sent by the ping operation only.
EventType = Literal["item.created", "item.updated", "item.deleted"]
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


class EndpointCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
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


class EndpointUpdate(BaseModel):
    """PATCH: only the fields sent change."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra=partial_update(
            "url", "events", "is_active", example={"is_active": False}
        ),
    )

    url: Url | None = None
    events: Events | None = None
    description: Description | None = None
    is_active: bool | None = None

    @model_validator(mode="after")
    def _check_fields(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("send at least one of: url, events, description, is_active")
        for name in ("url", "events", "is_active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


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
