"""File storage on S3-compatible object storage (docs/files.md)."""

from keel.storage.failures import StorageUnavailable
from keel.storage.store import (
    ObjectStore,
    ObjectStream,
    ObjectTooLarge,
    PresignedPost,
    PresignedUrl,
    StoredObject,
)

__all__ = [
    "ObjectStore",
    "ObjectStream",
    "ObjectTooLarge",
    "PresignedPost",
    "PresignedUrl",
    "StorageUnavailable",
    "StoredObject",
]
