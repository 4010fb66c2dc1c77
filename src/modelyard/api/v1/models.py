"""Namespaces and models."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.deps import actor, services
from modelyard.api.responses import JSONResponse
from modelyard.api.schemas import ModelCreate, NamespaceCreate, TagChanges
from modelyard.wire import render

router = APIRouter(prefix="/api/v1", tags=["models"])


@router.get("/namespaces")
@access("authenticated", "Lists the namespaces the caller holds a role in.")
async def list_namespaces(request: Request) -> Response:
    """The namespaces the caller may see."""
    svc, call = services(request)
    found = await call(svc.list_namespaces, actor=actor(request))
    return JSONResponse({"namespaces": [render.namespace(n) for n in found]})


@router.post("/namespaces", status_code=201)
@access("instance-admin")
async def create_namespace(body: NamespaceCreate, request: Request) -> Response:
    """Create a namespace."""
    svc, call = services(request)
    ns = await call(
        svc.create_namespace, body.name, description=body.description, actor=actor(request)
    )
    return JSONResponse(render.namespace(ns), status_code=201)


@router.post("/models", status_code=201)
@access("write")
async def create_model(body: ModelCreate, request: Request) -> Response:
    """Register a model name in a namespace."""
    svc, call = services(request)
    m = await call(
        svc.create_model,
        body.name,
        namespace=body.namespace,
        description=body.description,
        tags=body.tags,
        metadata=body.metadata,
        actor=actor(request),
    )
    return JSONResponse(render.model(m), status_code=201)


@router.get("/models")
@access("authenticated", "Filtered to what the caller may see.")
async def list_models(
    request: Request,
    filter: str | None = Query(None, description="Filter expression, e.g. tags.team = 'x'"),
    order_by: str | None = None,
    page_size: int = Query(100, ge=1, le=1000),
    page_token: str | None = None,
    namespace: str | None = None,
) -> Response:
    """List or search models (the same filter language as ``/search/models``)."""
    svc, call = services(request)
    page = await call(
        svc.search_models,
        filter,
        order_by=order_by,
        page_size=page_size,
        page_token=page_token,
        namespace=namespace,
        actor=actor(request),
    )
    return JSONResponse(
        {"models": [render.model(m) for m in page.items], "next_page_token": page.next_page_token}
    )


@router.get("/models/{namespace}/{name}")
@access("consume")
async def get_model(request: Request, namespace: str, name: str) -> Response:
    """One model."""
    svc, call = services(request)
    return JSONResponse(
        render.model(await call(svc.get_model, name, namespace=namespace, actor=actor(request)))
    )


@router.patch("/models/{namespace}/{name}")
@access("write")
async def update_model(namespace: str, name: str, body: TagChanges, request: Request) -> Response:
    """Change description, tags (merge / delete) or metadata (replace)."""
    svc, call = services(request)
    m = await call(
        svc.update_model,
        name,
        namespace=namespace,
        description=body.description,
        set_tags=body.tags,
        delete_tags=body.delete_tags,
        metadata=body.metadata,
        actor=actor(request),
    )
    return JSONResponse(render.model(m))


@router.post("/models/{namespace}/{name}/archive")
@access("write")
async def archive_model(namespace: str, name: str, request: Request) -> Response:
    """Archive a model: it takes no new versions and is marked archived."""
    svc, call = services(request)
    m = await call(
        svc.set_model_archived, name, namespace=namespace, archived=True, actor=actor(request)
    )
    return JSONResponse(render.model(m))


@router.post("/models/{namespace}/{name}/restore")
@access("write")
async def restore_model(namespace: str, name: str, request: Request) -> Response:
    """Undo archiving."""
    svc, call = services(request)
    m = await call(
        svc.set_model_archived, name, namespace=namespace, archived=False, actor=actor(request)
    )
    return JSONResponse(render.model(m))


@router.delete("/models/{namespace}/{name}", status_code=204)
@access("admin")
async def delete_model(
    namespace: str, name: str, request: Request, force: bool = False
) -> Response:
    """Delete a model; refused while it has published versions unless ``force``."""
    svc, call = services(request)
    await call(svc.delete_model, name, namespace=namespace, force=force, actor=actor(request))
    return Response(status_code=204)
