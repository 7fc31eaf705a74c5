"""Account schemas at the edge. Inputs forbid unknown fields: `is_admin` & co. are refused."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from keel.kit.schemas import NOT_BLANK, STRIP, InputModel, PartialUpdate

FullName = Annotated[str, Field(min_length=1, max_length=200, pattern=NOT_BLANK), STRIP]
# Length rules live in the password policy (settings-driven, one clear 422 message); this bound
# only stops absurd bodies before any hashing.
Password = Annotated[str, Field(min_length=1, max_length=1024)]


class UserCreate(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "password": "correct horse battery staple",
                    "full_name": "Ada Lovelace",
                }
            ]
        },
    )

    email: EmailStr
    password: Password
    full_name: FullName | None = None


class UserUpdate(PartialUpdate):
    """PATCH /users/me: only the fields sent change; `email` and `full_name` only."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"full_name": "Ada Lovelace"}]})
    not_null: ClassVar[frozenset[str]] = frozenset({"email"})

    email: EmailStr | None = None
    full_name: FullName | None = None


class PasswordChange(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "current_password": "correct horse battery staple",
                    "new_password": "a longer passphrase than before",
                }
            ]
        },
    )

    current_password: Password
    new_password: Password


class UserRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "0b9e2a52-5f1e-4bb4-9a47-7c1f3f0d2c11",
                    "email": "ada@example.com",
                    "full_name": "Ada Lovelace",
                    "is_active": True,
                    "is_admin": False,
                    "created_at": "2026-01-15T09:30:00Z",
                    "updated_at": "2026-01-15T09:30:00Z",
                }
            ]
        },
    )

    id: uuid.UUID
    email: str
    full_name: str | None
    is_active: bool
    is_admin: bool
    created_at: datetime
    updated_at: datetime
