"""`/api/v1/webhooks`: the caller's webhook endpoints, their deliveries, redelivery."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from keel.api.deps import AppSettings, CurrentUser, Db, PageQuery, ReadDb, RedisDep
from keel.api.v1.openapi import links, problems
from keel.kit.pagination import Page
from keel.webhooks import service as webhooks_service
from keel.webhooks.repository import EndpointSecret
from keel.webhooks.schemas import (
    AttemptRead,
    DeliveryAccepted,
    DeliveryDetail,
    DeliveryRead,
    DeliveryStatus,
    EndpointCreate,
    EndpointRead,
    EndpointUpdate,
    EndpointWithSecret,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def _with_secret(created: EndpointSecret) -> EndpointWithSecret:
    return EndpointWithSecret(**created.endpoint.model_dump(), secret=created.secret)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_webhook_endpoint",
    summary="Register a webhook endpoint",
    responses={
        201: links(
            "endpoint",
            "endpoint_id",
            GetEndpoint="get_webhook_endpoint",
            UpdateEndpoint="update_webhook_endpoint",
            DeleteEndpoint="delete_webhook_endpoint",
            RotateSecret="rotate_webhook_secret",
            PingEndpoint="ping_webhook_endpoint",
            ListDeliveries="list_webhook_deliveries",
        ),
        **problems(400, 413, 401, 422),
    },
)
async def create_endpoint(
    body: EndpointCreate, user: CurrentUser, db: Db, settings: AppSettings
) -> EndpointWithSecret:
    """Register an endpoint. The URL must not lead to a private or internal address; the
    signing secret is in this answer only (rotate it to get a new one)."""
    return _with_secret(await webhooks_service.create_endpoint(db, settings, user, body))


@router.get(
    "",
    operation_id="list_webhook_endpoints",
    summary="List my webhook endpoints",
    responses=problems(400, 401, 422),
)
async def list_endpoints(user: CurrentUser, db: ReadDb, page: PageQuery) -> Page[EndpointRead]:
    endpoints = await webhooks_service.list_endpoints(db, user, page)
    return Page[EndpointRead].model_validate(endpoints, from_attributes=True)


@router.get(
    "/{endpoint_id}",
    operation_id="get_webhook_endpoint",
    summary="Read a webhook endpoint",
    responses=problems(401, 404, 422),
)
async def get_endpoint(endpoint_id: uuid.UUID, user: CurrentUser, db: Db) -> EndpointRead:
    return await webhooks_service.get_endpoint(db, user, endpoint_id)


@router.patch(
    "/{endpoint_id}",
    operation_id="update_webhook_endpoint",
    summary="Update a webhook endpoint",
    responses=problems(400, 413, 401, 404, 422),
)
async def update_endpoint(
    endpoint_id: uuid.UUID,
    body: EndpointUpdate,
    user: CurrentUser,
    db: Db,
    settings: AppSettings,
) -> EndpointRead:
    return await webhooks_service.update_endpoint(db, settings, user, endpoint_id, body)


@router.delete(
    "/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_webhook_endpoint",
    summary="Delete a webhook endpoint",
    responses=problems(401, 404, 422),
)
async def delete_endpoint(endpoint_id: uuid.UUID, user: CurrentUser, db: Db) -> None:
    await webhooks_service.delete_endpoint(db, user, endpoint_id)


@router.post(
    "/{endpoint_id}/rotate-secret",
    operation_id="rotate_webhook_secret",
    summary="Rotate a webhook endpoint's signing secret",
    responses=problems(401, 404, 422),
)
async def rotate_secret(
    endpoint_id: uuid.UUID, user: CurrentUser, db: Db, settings: AppSettings
) -> EndpointWithSecret:
    """A new secret, shown once. The previous one keeps signing as a second signature for
    WEBHOOK_SECRET_ROTATION_GRACE_SECONDS, so receivers can switch without dropping requests."""
    return _with_secret(await webhooks_service.rotate_secret(db, settings, user, endpoint_id))


@router.post(
    "/{endpoint_id}/ping",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="ping_webhook_endpoint",
    summary="Send a test delivery",
    responses=problems(401, 404, 422),
)
async def ping_endpoint(
    endpoint_id: uuid.UUID, user: CurrentUser, db: Db, redis: RedisDep, settings: AppSettings
) -> DeliveryAccepted:
    """Queue a `webhook.ping` delivery to check the receiver; follow it at /api/v1/jobs/{id}."""
    delivery_id, job_id = await webhooks_service.ping(db, redis, settings, user, endpoint_id)
    return DeliveryAccepted(delivery_id=delivery_id, job_id=job_id)


@router.get(
    "/{endpoint_id}/deliveries",
    operation_id="list_webhook_deliveries",
    summary="List an endpoint's deliveries",
    responses=problems(400, 401, 404, 422),
)
async def list_deliveries(
    endpoint_id: uuid.UUID,
    user: CurrentUser,
    db: Db,
    page: PageQuery,
    delivery_status: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
) -> Page[DeliveryRead]:
    """Newest first, with status, attempts and the last error."""
    deliveries = await webhooks_service.list_deliveries(
        db, user, endpoint_id, page, status=delivery_status
    )
    return Page[DeliveryRead].model_validate(deliveries, from_attributes=True)


@router.get(
    "/{endpoint_id}/deliveries/{delivery_id}",
    operation_id="get_webhook_delivery",
    summary="Read a delivery and its attempts",
    responses=problems(401, 404, 422),
)
async def get_delivery(
    endpoint_id: uuid.UUID, delivery_id: uuid.UUID, user: CurrentUser, db: Db
) -> DeliveryDetail:
    """One delivery with its payload and every attempt (status code, duration, error)."""
    delivery, attempts = await webhooks_service.get_delivery(db, user, endpoint_id, delivery_id)
    return DeliveryDetail(
        **DeliveryRead.model_validate(delivery).model_dump(),
        payload=delivery.payload,
        attempt_log=[AttemptRead.model_validate(a) for a in attempts],
    )


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="redeliver_webhook",
    summary="Send a delivery again",
    responses=problems(401, 404, 409, 422),
)
async def redeliver(
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
    user: CurrentUser,
    db: Db,
    redis: RedisDep,
    settings: AppSettings,
) -> DeliveryAccepted:
    """Send a succeeded or failed delivery again, with the same Webhook-Id (409 while it is
    still pending)."""
    job_id = await webhooks_service.redeliver(db, redis, settings, user, endpoint_id, delivery_id)
    return DeliveryAccepted(delivery_id=delivery_id, job_id=job_id)
