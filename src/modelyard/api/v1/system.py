"""Health, Prometheus metrics and the raw event list."""

from __future__ import annotations

from fastapi import APIRouter, Query
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from modelyard import __version__
from modelyard.api import render
from modelyard.api.access import access
from modelyard.api.deps import actor, services
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


@router.get("/api/v1/events", tags=["events"])
@access("authenticated", "Only events of namespaces the caller reads.")
async def list_events(
    request: Request,
    after: int = Query(0, ge=0, description="Return events with id greater than this."),
    limit: int = Query(100, ge=1, le=1000),
) -> Response:
    """Outbox events, oldest first: every mutation, in commit order of ids."""
    svc, call = services(request)
    events = await call(svc.list_events, after=after, limit=limit, actor=actor(request))
    for ev in events:
        ev["at"] = render.iso(ev["at"])
    return JSONResponse({"events": events, "next_after": events[-1]["id"] if events else after})
