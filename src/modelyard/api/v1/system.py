"""Health and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from modelyard import __version__
from modelyard.api.access import access
from modelyard.api.deps import services
from modelyard.api.responses import JSONResponse

router = APIRouter(tags=["system"])


@router.get("/health")
@access("public")
async def health(request: Request) -> Response:
    """Liveness and readiness: the database answers a query."""
    svc, call = services(request)
    await call(svc.ping)
    return JSONResponse({"status": "ok", "version": __version__})


@router.get("/metrics", include_in_schema=False)
@access("public", "Prometheus scrapes without a token.")
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of this process's registry."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
