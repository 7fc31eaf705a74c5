"""Version 1 of the public API: thin routers over the service layer, under `/api/v1`.

Add a domain's router to `router` here (`keel new-domain` does it for you).
"""

from fastapi import APIRouter

from keel.api.deps import bearer_auth
from keel.api.surface import ApiSurface
from keel.api.v1 import (
    attachments,  # feature: files
    auth,
    events,  # feature: realtime
    items,  # feature: items
    jobs,  # feature: worker
    users,
    webhooks,  # feature: webhooks
)

router = APIRouter()
# `Authorization: Bearer <access token>`; errors as application/problem+json.
surface = ApiSurface(prefix="/api/v1", router=router, auth=bearer_auth)
router.include_router(items.router)  # feature: items
router.include_router(attachments.router)  # feature: files
router.include_router(auth.router)
router.include_router(users.router)
router.include_router(users.admin_router)
router.include_router(webhooks.router)  # feature: webhooks
router.include_router(jobs.router)  # feature: worker
router.include_router(events.router)  # feature: realtime
