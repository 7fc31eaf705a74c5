"""Attachment rules: who may see a file, what may be stored, how much. No HTTP in here.

A file reaches storage in one of two ways. Through the API (`upload`): streamed to storage
while it arrives, then recorded. Directly (`start_direct_upload`, then `confirm_direct_upload`):
the client sends it to the storage with a presigned form that binds its size and type, and it
becomes visible only once its size, type and hash are checked here.

An upload runs for as long as the file takes to arrive, so it never holds a transaction open
meanwhile: it checks with single reads, and records the file in a short transaction at the end.
"""

from __future__ import annotations

import uuid

from keel.attachments import repository as attachments_repo
from keel.attachments.schemas import Attachment, DirectUploadCreate
from keel.auth.service import Principal
from keel.db.database import Database, Reader, Writer
from keel.errors import Conflict, NotFound, PayloadTooLarge, Unprocessable, UnsupportedMediaType
from keel.items import repository as items_repo
from keel.items.schemas import ItemRead
from keel.kit.pagination import PageRequest, Slice
from keel.kit.uploads import FilePart, content_disposition, safe_filename, sniff
from keel.settings import Settings
from keel.storage import ObjectStore, PresignedPost, PresignedUrl, StoredObject

NOT_FOUND = "No such attachment."
NO_ITEM = "No such item."
NOT_UPLOADED = "The file has not been uploaded to the storage yet."


class QuotaExceeded(PayloadTooLarge):
    def __init__(self, quota: int) -> None:
        super().__init__(f"This would take your files past your quota of {quota} bytes.")


def object_key(attachment_id: uuid.UUID) -> str:
    """Where the bytes live: generated, never derived from anything the user sent."""
    return f"attachments/{attachment_id}"


async def upload(
    database: Database,
    storage: ObjectStore,
    settings: Settings,
    actor: Principal,
    item_id: uuid.UUID,
    file: FilePart,
) -> Attachment:
    item = await _visible_item(database, actor, item_id)
    room = settings.file_quota_bytes - await attachments_repo.used_bytes(database, item.owner_id)
    if room <= 0:
        raise QuotaExceeded(settings.file_quota_bytes)
    attachment_id = uuid.uuid4()
    stored = await storage.receive(
        object_key(attachment_id),
        file.chunks,
        limit=min(settings.file_max_size, room),
        allowed_types=settings.file_allowed_types,
        declared_type=file.content_type,
    )
    return await _record(database, storage, settings, item, attachment_id, stored, file.filename)


async def _record(
    database: Database,
    storage: ObjectStore,
    settings: Settings,
    item: ItemRead,
    attachment_id: uuid.UUID,
    stored: StoredObject,
    filename: str | None,
) -> Attachment:
    """The row of a stored file; if it cannot be written, the file goes too."""
    fields = {
        "id": attachment_id,
        "item_id": item.id,
        "object_key": stored.key,
        "filename": safe_filename(filename),
        "content_type": stored.content_type,
        "sha256": stored.sha256,
        "state": "ready",
    }
    attachment = None
    try:
        async with database.transaction() as db:
            attachment = await attachments_repo.insert_within_quota(
                db, settings.file_quota_bytes, item.owner_id, stored.size, fields
            )
    finally:
        if attachment is None:
            await storage.discard(stored.key)
    if attachment is None:
        raise QuotaExceeded(settings.file_quota_bytes)
    return attachment


async def start_direct_upload(
    db: Writer,
    storage: ObjectStore,
    settings: Settings,
    actor: Principal,
    item_id: uuid.UUID,
    data: DirectUploadCreate,
) -> tuple[Attachment, PresignedPost]:
    """A pending attachment, and the presigned form that uploads exactly its bytes."""
    item = await _visible_item(db, actor, item_id)
    if data.content_type not in settings.file_allowed_types:
        accepted = ", ".join(settings.file_allowed_types)
        raise UnsupportedMediaType(f"content_type must be one of: {accepted}.")
    if data.size > settings.file_max_size:
        raise PayloadTooLarge(f"The file may be at most {settings.file_max_size} bytes.")
    attachment_id = uuid.uuid4()
    fields = {
        "id": attachment_id,
        "item_id": item.id,
        "object_key": object_key(attachment_id),
        "filename": safe_filename(data.filename),
        "content_type": data.content_type,
        "sha256": data.sha256,
        "state": "pending",
    }
    attachment = await attachments_repo.insert_within_quota(
        db, settings.file_quota_bytes, item.owner_id, data.size, fields
    )
    if attachment is None:
        raise QuotaExceeded(settings.file_quota_bytes)
    form = await storage.presign_post(
        attachment.object_key,
        size=attachment.size,
        content_type=attachment.content_type,
        expires=settings.file_presign_expiry_seconds,
    )
    return attachment, form


async def confirm_direct_upload(
    database: Database,
    storage: ObjectStore,
    actor: Principal,
    item_id: uuid.UUID,
    attachment_id: uuid.UUID,
) -> Attachment:
    """Check the uploaded file against what was announced, then make it visible.

    A file that differs is refused (422) and deleted with its attachment; one that has not
    arrived yet is a 409, and the upload may still be made and confirmed. Confirming again
    returns the attachment.
    """
    attachment = await attachments_repo.get_visible(
        database, attachment_id, item_id, actor, state=None
    )
    if attachment is None:
        raise NotFound(NOT_FOUND)
    if attachment.state == "ready":
        return attachment
    problem = await _differences(storage, attachment)
    if problem is not None:
        async with database.transaction() as db:
            await attachments_repo.delete(db, attachment_id, item_id, actor)
        raise Unprocessable(f"{problem} The upload is discarded; start a new one.")
    async with database.transaction() as db:
        confirmed = await attachments_repo.mark_ready(db, attachment_id)
    if confirmed is None:  # deleted meanwhile
        raise NotFound(NOT_FOUND)
    return confirmed


async def _differences(storage: ObjectStore, attachment: Attachment) -> str | None:
    """How the stored object differs from what its upload announced, or None."""
    size = await storage.size_of(attachment.object_key)
    if size is None:
        raise Conflict(NOT_UPLOADED)
    if size != attachment.size:
        return f"The file has {size} bytes, not the {attachment.size} announced."
    content_type = sniff(await storage.read_head(attachment.object_key))
    if content_type != attachment.content_type:
        return f"The file's content is {content_type or 'unknown'}, not {attachment.content_type}."
    if await storage.sha256(attachment.object_key, attachment.size) != attachment.sha256:
        return "The file's SHA-256 is not the one announced."
    return None


async def get_attachment(
    db: Reader, actor: Principal, item_id: uuid.UUID, attachment_id: uuid.UUID
) -> Attachment:
    attachment = await attachments_repo.get_visible(db, attachment_id, item_id, actor)
    if attachment is None:
        raise NotFound(NOT_FOUND)
    return attachment


async def list_attachments(
    db: Reader, actor: Principal, item_id: uuid.UUID, page: PageRequest
) -> Slice[Attachment]:
    await _visible_item(db, actor, item_id)
    return await attachments_repo.list_page(db, item_id, page)


async def delete_attachment(
    db: Writer, actor: Principal, item_id: uuid.UUID, attachment_id: uuid.UUID
) -> None:
    """Delete the attachment now; the worker deletes its file (keel.storage.deletions)."""
    if await attachments_repo.delete(db, attachment_id, item_id, actor) is None:
        raise NotFound(NOT_FOUND)


async def download_link(
    storage: ObjectStore, settings: Settings, attachment: Attachment
) -> PresignedUrl:
    """A presigned URL that downloads the file as an attachment."""
    return await storage.presign_get(
        attachment.object_key,
        content_disposition=content_disposition(attachment.filename),
        content_type=attachment.content_type,
        expires=settings.file_presign_expiry_seconds,
    )


async def _visible_item(db: Reader, actor: Principal, item_id: uuid.UUID) -> ItemRead:
    item = await items_repo.get_visible(db, item_id, actor)
    if item is None:
        raise NotFound(NO_ITEM)
    return item
