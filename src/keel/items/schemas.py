"""Item schemas at the edge: strict inputs that forbid unknown fields, one read model."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from keel.kit.schemas import NO_NUL, NOT_BLANK, STRIP, InputModel, PartialUpdate

Title = Annotated[str, Field(min_length=1, max_length=200, pattern=NOT_BLANK), STRIP]
Description = Annotated[str, Field(max_length=10_000, pattern=NO_NUL)]
# Each sort is served by an index on (owner_id, <column>, id); "-" means descending.
ItemSort = Literal["-created_at", "created_at", "title", "-title"]


class ItemCreate(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"title": "Write the release notes", "description": "For 1.4", "done": False}
            ]
        }
    )

    title: Title
    description: Description | None = None
    done: StrictBool = False  # `1` or `"true"` is a 422, not true


class ItemUpdate(PartialUpdate):
    """PATCH: only the fields sent change. `description` may be set to null; the others not."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"done": True}]})
    not_null: ClassVar[frozenset[str]] = frozenset({"title", "done"})

    title: Title | None = None
    description: Description | None = None
    done: StrictBool | None = None


class ItemRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
                    "owner_id": "0b9e2a52-5f1e-4bb4-9a47-7c1f3f0d2c11",
                    "title": "Write the release notes",
                    "description": "For 1.4",
                    "done": False,
                    "version": 1,
                    "created_at": "2026-01-15T09:30:00Z",
                    "updated_at": "2026-01-15T09:30:00Z",
                }
            ]
        },
    )

    id: uuid.UUID
    owner_id: uuid.UUID
    title: str
    description: str | None
    done: bool
    version: int
    created_at: datetime
    updated_at: datetime


class ItemStats(BaseModel):
    """The caller's items in numbers (cached; refreshed by every write to them)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"total": 12, "done": 5, "open": 7, "last_updated_at": "2026-01-15T09:30:00Z"}
            ]
        }
    )

    total: int
    done: int
    open: int
    last_updated_at: datetime | None
