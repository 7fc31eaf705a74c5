"""Webhook schemas at the edge: strict inputs, read models, the one-time secret."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

# Events a user can subscribe to. `webhook.ping` is sent by the ping operation only.
EventType = Literal["item.created", "item.updated", "item.deleted"]
PING_EVENT = "webhook.ping"
DeliveryStatus = Literal["pending", "succeeded", "failed"]

Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]
Description = Annotated[str, StringConstraints(max_length=500)]
Events = Annotated[list[EventType], Field(min_length=1, max_length=16)]


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: Url
    events: Events
    description: Description | None = None


class EndpointUpdate(BaseModel):
    """PATCH: only the fields sent change."""

    model_config = ConfigDict(extra="forbid", strict=True)

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
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    is_active: bool
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointRead):
    """Returned by create and rotate only: the signing secret is never shown again."""

    secret: str = Field(description="Signing secret (whsec_...). Store it now: shown once.")


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

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
    payload: dict[str, object]
    attempt_log: list[AttemptRead]


class DeliveryAccepted(BaseModel):
    """202: the delivery is queued; follow it with `GET /api/v1/jobs/{job_id}`."""

    delivery_id: uuid.UUID
    job_id: str
