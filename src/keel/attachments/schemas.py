"""Attachment schemas at the edge: the read model, and the two bodies of a direct upload."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from keel.kit.schemas import NO_NUL, NOT_BLANK, InputModel, WholeNumber

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="Lower-case hex SHA-256")]
State = Literal["pending", "ready"]

_EXAMPLE: dict[str, Any] = {
    "id": "7d0c3e4a-2b1f-4c56-9f0e-1a2b3c4d5e6f",
    "item_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "filename": "invoice-2026-01.pdf",
    "content_type": "application/pdf",
    "size": 48213,
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "state": "ready",
    "created_at": "2026-01-15T09:30:00Z",
}


@dataclass(frozen=True, slots=True)
class Attachment:
    """A row of `attachments`: what the API shows, plus where the bytes are."""

    id: uuid.UUID
    owner_id: uuid.UUID
    item_id: uuid.UUID
    object_key: str
    filename: str
    content_type: str
    size: int
    sha256: str
    state: str
    created_at: datetime
    updated_at: datetime

    @property
    def etag(self) -> str:
        # The content's hash: the same bytes have the same ETag, and it changes with them.
        return f'"{self.sha256}"'


class AttachmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_EXAMPLE]})

    id: uuid.UUID
    item_id: uuid.UUID
    filename: str
    content_type: str
    size: int
    sha256: str
    state: State
    created_at: datetime


class DirectUploadCreate(InputModel):
    """A file the client will send straight to the storage: its size and type are signed into
    the upload, and its hash is checked when the upload is confirmed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "filename": "scan.pdf",
                    "content_type": "application/pdf",
                    "size": 5_242_880,
                    "sha256": _EXAMPLE["sha256"],
                }
            ]
        }
    )

    filename: Annotated[str, Field(min_length=1, max_length=255, pattern=NOT_BLANK)]
    content_type: Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL)]
    # Not Annotated[WholeNumber, Field(ge=1)]: pydantic would publish `ge`, not `minimum`.
    size: WholeNumber = Field(ge=1)
    sha256: Sha256


class PresignedForm(BaseModel):
    """POST `fields` as multipart/form-data to `url`, then the file as the last field, `file`."""

    url: str
    fields: dict[str, str]
    expires_at: datetime


class DirectUpload(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "attachment": {**_EXAMPLE, "state": "pending"},
                    "upload": {
                        "url": "https://storage.example.com/keel-files",
                        "fields": {
                            "key": "attachments/7d0c3e4a-2b1f-4c56-9f0e-1a2b3c4d5e6f",
                            "Content-Type": "application/pdf",
                            "policy": "eyJleHBpcmF0aW9uIjogIjIwMjYtMDEtMTVUMDk6MzU6MDBaIn0=",
                            "x-amz-algorithm": "AWS4-HMAC-SHA256",
                            "x-amz-signature": "…",
                        },
                        "expires_at": "2026-01-15T09:35:00Z",
                    },
                }
            ]
        }
    )

    attachment: AttachmentRead
    upload: PresignedForm


class DownloadLink(BaseModel):
    """A short-lived URL of the file itself, served by the storage as an attachment."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "https://storage.example.com/keel-files/attachments/7d0c3e4a-2b1f-"
                    "4c56-9f0e-1a2b3c4d5e6f?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=…",
                    "expires_at": "2026-01-15T09:35:00Z",
                }
            ]
        }
    )

    url: str
    expires_at: datetime
