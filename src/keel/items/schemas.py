"""Item schemas at the edge: strict inputs that forbid unknown fields, one read model."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=10_000)]
# Each sort is served by an index on (owner_id, <column>, id); "-" means descending.
ItemSort = Literal["-created_at", "created_at", "title", "-title"]


class ItemCreate(BaseModel):
    # strict: `"done": 1` or `"title": 5` are errors, not silently coerced.
    model_config = ConfigDict(extra="forbid", strict=True)

    title: Title
    description: Description | None = None
    done: bool = False


class ItemUpdate(BaseModel):
    """PATCH: only the fields sent change. `description` may be set to null; the others not."""

    model_config = ConfigDict(extra="forbid", strict=True)

    title: Title | None = None
    description: Description | None = None
    done: bool | None = None

    @model_validator(mode="after")
    def _check_fields(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("send at least one of: title, description, done")
        for name in ("title", "done"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class ItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    title: str
    description: str | None
    done: bool
    version: int
    created_at: datetime
    updated_at: datetime


class ItemStats(BaseModel):
    """The caller's items in numbers (cached; every write to the caller's items refreshes it)."""

    total: int
    done: int
    open: int
    last_updated_at: datetime | None
