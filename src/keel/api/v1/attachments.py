"""`/api/v1/items/{item_id}/attachments`: files attached to the caller's items (docs/files.md)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status

from keel.api.deps import AppSettings, CurrentUser, DatabaseDep, Db, PageQuery, ReadDb
from keel.api.files import (
    FILE_DOWNLOAD_RESPONSES,
    FILE_UPLOAD_BODY,
    FileUpload,
    Storage,
    TransferDeadline,
    stream_file,
    streams_body,
)
from keel.api.v1.openapi import problems
from keel.attachments import service as attachments_service
from keel.attachments.schemas import (
    AttachmentRead,
    DirectUpload,
    DirectUploadCreate,
    DownloadLink,
    PresignedForm,
)
from keel.kit.pagination import Page

router = APIRouter(prefix="/items/{item_id:uuid}/attachments", tags=["attachments"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    operation_id="upload_attachment",
    summary="Upload a file to an item",
    openapi_extra=FILE_UPLOAD_BODY,
    responses=problems(400, 401, 404, 413, 415, 422),
)
@streams_body
async def upload_attachment(
    item_id: uuid.UUID,
    user: CurrentUser,
    database: DatabaseDep,
    storage: Storage,
    settings: AppSettings,
    file: FileUpload,
    request: Request,
    response: Response,
) -> AttachmentRead:
    """Streamed to storage as it arrives. Its type is decided by its content (FILE_ALLOWED_TYPES);
    the declared Content-Type only has to agree. 413 past FILE_MAX_SIZE or the owner's quota."""
    attachment = await attachments_service.upload(database, storage, settings, user, item_id, file)
    response.headers["Location"] = str(
        request.url_for("get_attachment", item_id=item_id, attachment_id=attachment.id)
    )
    return AttachmentRead.model_validate(attachment)


@router.get(
    "",
    operation_id="list_attachments",
    summary="List an item's files",
    responses=problems(400, 401, 404, 422),
)
async def list_attachments(
    item_id: uuid.UUID, user: CurrentUser, db: Db, page: PageQuery
) -> Page[AttachmentRead]:
    attachments = await attachments_service.list_attachments(db, user, item_id, page)
    return Page[AttachmentRead].model_validate(attachments, from_attributes=True)


@router.post(
    "/direct",
    status_code=status.HTTP_201_CREATED,
    operation_id="start_direct_upload",
    summary="Upload a large file straight to storage",
    responses=problems(400, 401, 404, 413, 415, 422),
)
async def start_direct_upload(
    item_id: uuid.UUID,
    body: DirectUploadCreate,
    user: CurrentUser,
    db: Db,
    storage: Storage,
    settings: AppSettings,
) -> DirectUpload:
    """A pending attachment and a presigned form for the storage, valid for
    FILE_PRESIGN_EXPIRY_SECONDS: it accepts exactly `size` bytes of `content_type`. Then call
    `confirm_direct_upload`; until then the attachment is not listed."""
    attachment, form = await attachments_service.start_direct_upload(
        db, storage, settings, user, item_id, body
    )
    return DirectUpload(
        attachment=AttachmentRead.model_validate(attachment),
        upload=PresignedForm(url=form.url, fields=form.fields, expires_at=form.expires_at),
    )


@router.post(
    "/{attachment_id:uuid}/confirm",
    operation_id="confirm_direct_upload",
    summary="Confirm a direct upload",
    dependencies=[TransferDeadline],
    responses=problems(401, 404, 409, 422),
)
async def confirm_direct_upload(
    item_id: uuid.UUID,
    attachment_id: uuid.UUID,
    user: CurrentUser,
    database: DatabaseDep,
    storage: Storage,
) -> AttachmentRead:
    """Checks the stored file's size, type (from its content) and SHA-256 against the ones
    announced; 422 (and the upload discarded) when they differ, 409 when nothing arrived yet."""
    attachment = await attachments_service.confirm_direct_upload(
        database, storage, user, item_id, attachment_id
    )
    return AttachmentRead.model_validate(attachment)


@router.get(
    "/{attachment_id:uuid}",
    operation_id="get_attachment",
    summary="Read a file's details",
    responses=problems(401, 404, 422),
)
async def get_attachment(
    item_id: uuid.UUID, attachment_id: uuid.UUID, user: CurrentUser, db: ReadDb
) -> AttachmentRead:
    attachment = await attachments_service.get_attachment(db, user, item_id, attachment_id)
    return AttachmentRead.model_validate(attachment)


@router.get(
    "/{attachment_id:uuid}/content",
    operation_id="download_attachment",
    summary="Download a file",
    dependencies=[TransferDeadline],
    # It returns its own streamed Response: this only keeps application/json out of its docs.
    response_class=Response,
    responses={**FILE_DOWNLOAD_RESPONSES, **problems(401, 404, 416, 422)},
)
async def download_attachment(
    item_id: uuid.UUID,
    attachment_id: uuid.UUID,
    user: CurrentUser,
    db: ReadDb,
    storage: Storage,
    request: Request,
) -> Response:
    """Streamed from storage with Content-Disposition: attachment. Supports one Range."""
    attachment = await attachments_service.get_attachment(db, user, item_id, attachment_id)
    return await stream_file(
        request,
        storage,
        key=attachment.object_key,
        size=attachment.size,
        etag=attachment.etag,
        filename=attachment.filename,
        content_type=attachment.content_type,
    )


@router.get(
    "/{attachment_id:uuid}/link",
    operation_id="attachment_download_link",
    summary="Get a short-lived download URL",
    responses=problems(401, 404, 422),
)
async def attachment_download_link(
    item_id: uuid.UUID,
    attachment_id: uuid.UUID,
    user: CurrentUser,
    db: ReadDb,
    storage: Storage,
    settings: AppSettings,
) -> DownloadLink:
    """A presigned URL of the storage, valid for FILE_PRESIGN_EXPIRY_SECONDS."""
    attachment = await attachments_service.get_attachment(db, user, item_id, attachment_id)
    link = await attachments_service.download_link(storage, settings, attachment)
    return DownloadLink(url=link.url, expires_at=link.expires_at)


@router.delete(
    "/{attachment_id:uuid}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_attachment",
    summary="Delete a file",
    responses=problems(401, 404, 422),
)
async def delete_attachment(
    item_id: uuid.UUID, attachment_id: uuid.UUID, user: CurrentUser, db: Db
) -> None:
    """The file leaves storage shortly after, through the worker."""
    await attachments_service.delete_attachment(db, user, item_id, attachment_id)
