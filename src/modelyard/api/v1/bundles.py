"""Bundles (issue 14): named sets of roles bound to references, with edges
checked against signatures; bundle versions pin concrete versions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.deps import actor, services
from modelyard.api.responses import JSONResponse
from modelyard.api.schemas import BundleCreate, BundleVersionCreate
from modelyard.domain.errors import InvalidInput
from modelyard.wire import render

router = APIRouter(prefix="/api/v1", tags=["bundles"])


@router.post("/bundles/{namespace}", status_code=201)
@access("write")
async def create_bundle(namespace: str, body: BundleCreate, request: Request) -> Response:
    """Create a bundle in a namespace."""
    svc, call = services(request)
    made = await call(
        svc.create_bundle,
        body.name,
        namespace=namespace,
        roles=body.roles,
        edges=[e.model_dump(by_alias=True) for e in body.edges],
        description=body.description,
        actor=actor(request),
    )
    return JSONResponse(render.bundle(made), status_code=201)


@router.get("/bundles/{namespace}")
@access("consume")
async def list_bundles(namespace: str, request: Request) -> Response:
    """A namespace's bundles."""
    svc, call = services(request)
    found = await call(svc.list_bundles, namespace=namespace, actor=actor(request))
    return JSONResponse({"bundles": [render.bundle(b) for b in found]})


@router.get("/bundles/{namespace}/{name}")
@access("consume")
async def get_bundle(namespace: str, name: str, request: Request) -> Response:
    """One bundle: roles, edges, newest version number."""
    svc, call = services(request)
    found = await call(svc.get_bundle, name, namespace=namespace, actor=actor(request))
    return JSONResponse(render.bundle(found))


@router.post("/bundles/{namespace}/{name}/versions", status_code=201)
@access("write")
async def create_bundle_version(
    namespace: str, name: str, body: BundleVersionCreate, request: Request
) -> Response:
    """Pin a bundle version; 409 ``BUNDLE_INCOMPATIBLE`` lists every mismatch."""
    svc, call = services(request)
    made = await call(
        svc.create_bundle_version,
        name,
        namespace=namespace,
        accept_breaking=body.accept_breaking,
        actor=actor(request),
    )
    return JSONResponse(render.bundle_version(made), status_code=201)


@router.get("/bundles/{namespace}/{name}/versions/{version}")
@access("consume")
async def get_bundle_version(namespace: str, name: str, version: str, request: Request) -> Response:
    """A bundle version (a number or ``latest``) with every member's manifest."""
    if version == "latest":
        number = None
    elif version.isascii() and version.isdigit() and len(version) < 10:
        number = int(version)
    else:
        raise InvalidInput(
            f"invalid bundle version {version[:40]!r}: a number or latest",
            code="INVALID_REFERENCE",
        )
    svc, call = services(request)
    found = await call(
        svc.get_bundle_version, name, namespace=namespace, number=number, actor=actor(request)
    )
    return JSONResponse(render.bundle_version(found))
