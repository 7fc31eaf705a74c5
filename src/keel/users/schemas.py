"""Account schemas at the edge. Inputs forbid unknown fields: `is_admin` & co. are refused."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, model_validator

FullName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# Length rules live in the password policy (settings-driven, one clear 422 message); this bound
# only stops absurd bodies before any hashing.
Password = Annotated[str, Field(min_length=1, max_length=1024)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    email: EmailStr
    password: Password
    full_name: FullName | None = None


class UserUpdate(BaseModel):
    """PATCH /users/me: only the fields sent change; `email` and `full_name` only."""

    model_config = ConfigDict(extra="forbid", strict=True)

    email: EmailStr | None = None
    full_name: FullName | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("send at least one of: email, full_name")
        if "email" in self.model_fields_set and self.email is None:
            raise ValueError("email cannot be null")
        return self


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    current_password: Password
    new_password: Password


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str | None
    is_active: bool
    is_admin: bool
    created_at: datetime
    updated_at: datetime
