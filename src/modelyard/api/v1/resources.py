"""Resources of a version (issue 14): attach or replace named components,
which creates the next version (a ready version never changes)."""

from __future__ import annotations

from fastapi import APIRouter, Header, Request
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
    namespace: str,
    name: str,
    version: str,
    body: ResourcesAttach,
    request: Request,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
) -> Response:
    """Attach or replace resources (upload their blobs first via /blobs).

    Creates the next version: the source's files shared by digest plus the
    resources under ``resources/``, ``parent`` = the source, relation
    ``retuned``; ``alias`` moves to it in the same transaction, under the
    production policy. An ``Idempotency-Key`` makes a retry answer the
    version the first call created (409 ``IDEMPOTENCY_KEY_REUSED`` for the
    same key with another body).
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
        idempotency_key=idempotency_key,
    )
    return JSONResponse(render.version(ver), status_code=201)
