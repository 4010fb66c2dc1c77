"""Resources of a version (issue 14): attach or replace named components,
which creates the next version (a ready version never changes)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.deps import actor, services
from modelyard.api.responses import JSONResponse
from modelyard.api.schemas import ResourcesAttach
from modelyard.api.v1.versions import version_ref
from modelyard.wire import render

router = APIRouter(prefix="/api/v1", tags=["versions"])


@router.post("/models/{namespace}/{name}/versions/{version}/resources", status_code=201)
@access("write")
async def attach_resources(
    namespace: str, name: str, version: str, body: ResourcesAttach, request: Request
) -> Response:
    """Attach or replace resources (upload their blobs first via /blobs).

    Creates the next version: the source's files shared by digest plus the
    resources under ``resources/``, ``parent`` = the source, relation
    ``retuned``; ``alias`` moves to it in the same transaction, under the
    production policy.
    """
    svc, call = services(request)
    ver = await call(
        svc.attach_resources,
        version_ref(namespace, name, version),
        [r.model_dump(exclude_none=True) for r in body.resources],
        alias=body.alias,
        reason=body.reason,
        description=body.description,
        actor=actor(request),
    )
    return JSONResponse(render.version(ver), status_code=201)
