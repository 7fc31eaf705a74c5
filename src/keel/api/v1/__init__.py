"""Version 1 of the public API: thin routers over the service layer."""

from fastapi import APIRouter

from keel.api.v1 import auth, items, jobs, users, webhooks

router = APIRouter(prefix="/api/v1")
router.include_router(auth.router)
router.include_router(users.router)
router.include_router(users.admin_router)
router.include_router(items.router)
router.include_router(webhooks.router)
router.include_router(jobs.router)
