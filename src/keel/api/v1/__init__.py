"""Version 1 of the public API: thin routers over the service layer."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
