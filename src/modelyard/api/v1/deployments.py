"""Deployments (issue 12): what runs where. Operators record deployments,
model servers send heartbeats, everyone with read sees them and their history.

The reference a deployment follows is part of its identity and contains
``/`` and ``@``, so it travels in the body (writes) or as the last path
segments (``GET /deployments/{environment}/{reference}``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.deps import actor, services
from modelyard.api.responses import JSONResponse
from modelyard.api.schemas import DeploymentAlert, DeploymentPut, Heartbeat
from modelyard.api.v1.versions import version_ref
from modelyard.wire import deployments as wire

router = APIRouter(prefix="/api/v1", tags=["deployments"])


@router.get("/deployments")
@access("authenticated", "Only deployments in namespaces the caller reads are listed.")
async def list_deployments(
    request: Request,
    environment: Annotated[str | None, Query(max_length=64)] = None,
    follows: Annotated[
        str | None,
        Query(
            max_length=400,
            description="`fraud@production`: deployments following that alias; "
            "`fraud`: any of the model; `fraud/7`: those running version 7.",
        ),
    ] = None,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
    page_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response:
    """Deployments, by environment and reference, with replicas and status,
    in pages: follow ``next_page_token`` (null after the last page)."""
    svc, call = services(request)
    page = await call(
        svc.page_deployments,
        environment=environment,
        follows=follows,
        page_size=page_size,
        page_token=page_token,
        actor=actor(request),
    )
    return JSONResponse(
        {
            "deployments": [wire.deployment(d) for d in page.items],
            "next_page_token": page.next_page_token,
        }
    )


@router.put("/deployments")
@access("write", "On the namespace of the model the reference names.")
async def put_deployment(body: DeploymentPut, request: Request) -> Response:
    """Record or update a deployment (desired replicas, endpoint)."""
    svc, call = services(request)
    made = await call(
        svc.put_deployment,
        body.environment,
        body.reference,
        replicas=body.replicas,
        endpoint=body.endpoint,
        monitoring=(
            None
            if body.monitoring is None
            else {k: v for k, v in body.monitoring.model_dump().items() if v is not None}
        ),
        actor=actor(request),
    )
    return JSONResponse(wire.deployment(made))


@router.post("/deployments/heartbeats")
@access(
    "consume",
    "On the model's namespace; every reported version must be readable by the caller "
    "(a consumer: in the production view).",
)
async def heartbeat(body: Heartbeat, request: Request) -> Response:
    """A model server's heartbeat: status, loaded version, a failed load."""
    svc, call = services(request)
    found = await call(
        svc.report_heartbeat,
        body.environment,
        body.reference,
        replica=body.replica,
        status=body.status,
        version=body.version,
        endpoint=body.endpoint,
        failed_version=body.failed_version,
        error=body.error,
        measures=body.measures,
        actor=actor(request),
    )
    return JSONResponse(wire.deployment(found))


@router.post("/deployments/alerts")
@access(
    "consume",
    "On the model's namespace, with the version readable by the caller (as a heartbeat). "
    "A `degraded` alert may roll the alias back when the deployment opted in "
    "(`monitoring.rollback`, set by a writer).",
)
async def alert(body: DeploymentAlert, request: Request) -> Response:
    """A model server's alert (`drift`, `degraded`): recorded in the history with its
    event; an automatic rollback when due."""
    svc, call = services(request)
    found = await call(
        svc.report_alert,
        body.environment,
        body.reference,
        replica=body.replica,
        kind=body.kind,
        version=body.version,
        sustained_seconds=body.sustained_seconds,
        detail=body.detail,
        actor=actor(request),
    )
    return JSONResponse(found)


@router.get("/deployments/{environment}/history")
@access("authenticated", "Entries of namespaces the caller does not read are left out.")
async def deployment_history(
    environment: str,
    request: Request,
    reference: Annotated[str | None, Query(max_length=400)] = None,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """An environment's deployment history, newest first; page on with ``before``."""
    svc, call = services(request)
    found = await call(
        svc.deployment_history,
        environment,
        reference=reference,
        before=before,
        limit=limit,
        actor=actor(request),
    )
    entries = [wire.history_entry(h) for h in found]
    more = len(entries) == limit
    return JSONResponse(
        {"history": entries, "next_before": entries[-1]["id"] if more and entries else None}
    )


@router.delete("/deployments/{environment}/{reference:path}")
@access("write", "On the namespace of the model the reference names.")
async def delete_deployment(
    environment: str,
    reference: str,
    request: Request,
    force: Annotated[
        bool, Query(description="Delete even while replicas still send heartbeats.")
    ] = False,
) -> Response:
    """Delete a deployment (its history stays); ``DEPLOYMENT_ACTIVE`` (409)
    while replicas are alive unless ``force``. Answers the deployment as it was."""
    svc, call = services(request)
    gone = await call(
        svc.delete_deployment, environment, reference, force=force, actor=actor(request)
    )
    return JSONResponse(wire.deployment(gone))


@router.get("/deployments/{environment}/{reference:path}")
@access("read", "On the namespace of the model the reference names.")
async def get_deployment(environment: str, reference: str, request: Request) -> Response:
    """One deployment (``reference``: ``ns/fraud@production``, ``ns/fraud/7``)."""
    svc, call = services(request)
    found = await call(svc.get_deployment, environment, reference, actor=actor(request))
    return JSONResponse(wire.deployment(found))


@router.get("/models/{namespace}/{name}/versions/{version}/serving-policy")
@access("consume", "For a version the caller can see (a consumer: in the production view).")
async def serving_policy(namespace: str, name: str, version: str, request: Request) -> Response:
    """What a model server takes from its model's production policy: whether
    it may run the version's own code (format ``python``), and the drift
    thresholds (``{"psi", "ks"}``, either may be missing; null: none set)."""
    svc, call = services(request)
    policy = await call(
        svc.serving_policy, version_ref(namespace, name, version), actor=actor(request)
    )
    return JSONResponse(wire.serving_policy(policy))
