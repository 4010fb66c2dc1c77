"""Bundles (issue 14): named sets of roles bound to references, with edges
checked against signatures; bundle versions pin concrete versions."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.deps import actor, services
from modelyard.api.responses import JSONResponse
from modelyard.api.schemas import (
    BundleAliasSet,
    BundleApprovalCreate,
    BundleCreate,
    BundleUpdate,
    BundleVersionCreate,
    Review,
)
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


@router.delete("/bundles/{namespace}/{name}", status_code=204)
@access("admin")
async def delete_bundle(
    namespace: str, name: str, request: Request, force: bool = False, reason: str = ""
) -> Response:
    """Delete a bundle with its versions, aliases and their history (the member
    versions stay); 409 ``BUNDLE_HAS_ALIASES`` while an alias names one of
    its versions, unless ``force``."""
    svc, call = services(request)
    await call(
        svc.delete_bundle,
        name,
        namespace=namespace,
        force=force,
        reason=reason,
        actor=actor(request),
    )
    return Response(status_code=204)


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
    """A bundle version (a number, ``latest`` or a bundle alias) with every
    member's manifest."""
    number: int | None = None
    alias: str | None = None
    if version.isascii() and version.isdigit() and len(version) < 10:
        number = int(version)
    elif version != "latest":
        alias = version  # checked as an alias name by the service
    svc, call = services(request)
    found = await call(
        svc.get_bundle_version,
        name,
        namespace=namespace,
        number=number,
        alias=alias,
        actor=actor(request),
    )
    return JSONResponse(render.bundle_version(found))


@router.patch("/bundles/{namespace}/{name}")
@access("write")
async def update_bundle(
    namespace: str, name: str, body: BundleUpdate, request: Request
) -> Response:
    """Edit roles, edges or description; answers the bundle version it pins
    (409 ``BUNDLE_INCOMPATIBLE`` and nothing changed if it does not fit)."""
    svc, call = services(request)
    made = await call(
        svc.update_bundle,
        name,
        namespace=namespace,
        roles=body.roles,
        edges=None if body.edges is None else [e.model_dump(by_alias=True) for e in body.edges],
        description=body.description,
        accept_breaking=body.accept_breaking,
        actor=actor(request),
    )
    return JSONResponse(render.bundle_version(made))


@router.put("/bundles/{namespace}/{name}/aliases/{alias}")
@access("write")
async def set_bundle_alias(
    namespace: str, name: str, alias: str, body: BundleAliasSet, request: Request
) -> Response:
    """Point a bundle alias at a bundle version (history kept; protected
    aliases gated by the production policy)."""
    svc, call = services(request)
    found = await call(
        svc.set_bundle_alias,
        name,
        alias,
        version=body.version,
        namespace=namespace,
        reason=body.reason,
        expected_version=body.expected_version,
        actor=actor(request),
    )
    return JSONResponse(render.bundle_version(found))


@router.delete("/bundles/{namespace}/{name}/aliases/{alias}", status_code=204)
@access("write")
async def delete_bundle_alias(
    namespace: str, name: str, alias: str, request: Request, reason: str = ""
) -> Response:
    """Remove a bundle alias (history kept; 409 ``ALIAS_PROTECTED`` if protected)."""
    svc, call = services(request)
    await call(
        svc.delete_bundle_alias,
        name,
        alias,
        namespace=namespace,
        reason=reason,
        actor=actor(request),
    )
    return Response(status_code=204)


@router.get("/bundles/{namespace}/{name}/aliases/history")
@access("read")
async def bundle_alias_history(
    request: Request, namespace: str, name: str, alias: str | None = None
) -> Response:
    """Every recorded move of the bundle's aliases, oldest first."""
    svc, call = services(request)
    moves = await call(
        svc.bundle_alias_history, name, namespace=namespace, alias=alias, actor=actor(request)
    )
    return JSONResponse({"history": [render.bundle_alias_move(m) for m in moves]})


# -- approval requests for bundle aliases ------------------------------------


@router.post("/bundles/{namespace}/{name}/approvals", status_code=201)
@access("write")
async def request_bundle_approval(
    namespace: str, name: str, body: BundleApprovalCreate, request: Request
) -> Response:
    """Ask reviewers to move a (protected) bundle alias to a bundle version."""
    svc, call = services(request)
    made = await call(
        svc.request_bundle_approval,
        name,
        body.alias,
        version=body.version,
        namespace=namespace,
        comment=body.comment,
        actor=actor(request),
    )
    return JSONResponse(render.bundle_approval(made), status_code=201)


@router.get("/bundles/{namespace}/{name}/approvals")
@access("read")
async def list_bundle_approvals(
    namespace: str,
    name: str,
    request: Request,
    state: Literal["pending", "applied", "rejected", "cancelled", "all"] = Query(
        "pending", description="pending, applied, rejected, cancelled or all"
    ),
) -> Response:
    """The bundle's requests, newest first (pending ones by default)."""
    svc, call = services(request)
    found = await call(
        svc.list_bundle_approvals,
        name,
        namespace=namespace,
        state=None if state == "all" else state,
        actor=actor(request),
    )
    return JSONResponse({"approvals": [render.bundle_approval(a) for a in found]})


@router.get("/bundles/{namespace}/{name}/approvals/{approval_id}")
@access("read")
async def get_bundle_approval(
    namespace: str, name: str, approval_id: int, request: Request
) -> Response:
    """One request with its reviews."""
    svc, call = services(request)
    found = await call(
        svc.get_bundle_approval, name, approval_id, namespace=namespace, actor=actor(request)
    )
    return JSONResponse(render.bundle_approval(found))


@router.post("/bundles/{namespace}/{name}/approvals/{approval_id}/approve")
@access("review", "Never one's own request.")
async def approve_bundle_approval(
    namespace: str, name: str, approval_id: int, request: Request, body: Review | None = None
) -> Response:
    """Approve; the move applies atomically at the N-th distinct approval."""
    svc, call = services(request)
    done = await call(
        svc.approve_bundle_approval,
        name,
        approval_id,
        namespace=namespace,
        comment=(body or Review()).comment,
        actor=actor(request),
    )
    return JSONResponse(render.bundle_approval(done))


@router.post("/bundles/{namespace}/{name}/approvals/{approval_id}/reject")
@access("review", "Never one's own request.")
async def reject_bundle_approval(
    namespace: str, name: str, approval_id: int, request: Request, body: Review | None = None
) -> Response:
    """Reject (final)."""
    svc, call = services(request)
    done = await call(
        svc.reject_bundle_approval,
        name,
        approval_id,
        namespace=namespace,
        comment=(body or Review()).comment,
        actor=actor(request),
    )
    return JSONResponse(render.bundle_approval(done))


@router.post("/bundles/{namespace}/{name}/approvals/{approval_id}/cancel")
@access("write", "The requester only.")
async def cancel_bundle_approval(
    namespace: str, name: str, approval_id: int, request: Request
) -> Response:
    """Withdraw a pending request (the requester only)."""
    svc, call = services(request)
    done = await call(
        svc.cancel_bundle_approval, name, approval_id, namespace=namespace, actor=actor(request)
    )
    return JSONResponse(render.bundle_approval(done))
