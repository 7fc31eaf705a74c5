"""GET /metrics: the Prometheus exposition of every worker of this instance."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from keel.observability.metrics import CONTENT_TYPE_LATEST, Metrics

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False, operation_id="metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text format; scrape it from inside the cluster only (see docs/edge.md)."""
    registry: Metrics = request.app.state.metrics
    resources = getattr(request.state, "resources", None)
    return Response(await registry.exposition(resources), media_type=CONTENT_TYPE_LATEST)
