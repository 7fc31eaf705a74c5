"""Version 1 of the public API: thin routers over the service layer.

The app registers each router's routes under PREFIX itself (keel.main._include_flat): flat
routes are matched in one scan, where nested `include_router` routers cost a second pass.
"""

from fastapi import APIRouter

from keel.api.v1 import auth, items, jobs, users, webhooks

PREFIX = "/api/v1"
# Items first: the hottest routes are matched earliest by the app's linear route scan.
routers: tuple[APIRouter, ...] = (
    items.router,
    auth.router,
    users.router,
    users.admin_router,
    webhooks.router,
    jobs.router,
)
