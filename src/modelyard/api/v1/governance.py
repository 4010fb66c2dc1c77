"""Governance routes (issue 3): policies, dry runs, approvals, rollback,
alias at a time, and the audit log."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.deps import ServiceCall, actor, service_call
from modelyard.api.responses import JSONResponse
from modelyard.api.schemas import ApprovalRequest, PolicyRules, Review, Rollback
from modelyard.api.v1.versions import version_ref
from modelyard.service.approvals import ApprovalService
from modelyard.service.governance import GovernanceService
from modelyard.wire import governance as rg
from modelyard.wire import render

router = APIRouter(prefix="/api/v1", tags=["governance"])


def governance(request: Request) -> tuple[GovernanceService, ServiceCall]:
    """The governance service built by ``create_app`` and how to call it."""
    return request.app.state.governance, service_call(request)


def approvals(request: Request) -> tuple[ApprovalService, ServiceCall]:
    """The approval service built by ``create_app`` and how to call it."""
    return request.app.state.approvals, service_call(request)


# -- policies -----------------------------------------------------------------


@router.get("/namespaces/{namespace}/policy", summary="Get a namespace's production policy")
@access("read")
async def get_namespace_policy(request: Request, namespace: str) -> Response:
    """The namespace's production policy (``policy`` is null when none is set)."""
    gs, call = governance(request)
    return JSONResponse(
        rg.policy_record(await call(gs.get_policy, namespace, actor=actor(request)))
    )


@router.put("/namespaces/{namespace}/policy", summary="Set a namespace's production policy")
@access("admin")
async def put_namespace_policy(request: Request, namespace: str, body: PolicyRules) -> Response:
    """Replace the namespace's production policy (writes ``policy.updated``)."""
    gs, call = governance(request)
    rec = await call(
        gs.set_policy, namespace, body.model_dump(exclude_unset=True), actor=actor(request)
    )
    return JSONResponse(rg.policy_record(rec))


@router.delete(
    "/namespaces/{namespace}/policy",
    status_code=204,
    summary="Remove a namespace's production policy",
)
@access("admin")
async def delete_namespace_policy(request: Request, namespace: str) -> Response:
    """Remove the namespace's production policy (writes ``policy.deleted``)."""
    gs, call = governance(request)
    await call(gs.delete_policy, namespace, actor=actor(request))
    return Response(status_code=204)


@router.get("/models/{namespace}/{name}/policy", summary="Get a model's production policy")
@access("read")
async def get_model_policy(request: Request, namespace: str, name: str) -> Response:
    """The model's own policy, its namespace's, and the effective (merged) one."""
    gs, call = governance(request)
    who = actor(request)
    ns = await call(gs.get_policy, namespace, actor=who)
    own = await call(gs.get_policy, namespace, name, actor=who)
    effective = await call(gs.effective_policy, namespace, name, actor=who)
    return JSONResponse(rg.model_policy(ns, own, effective))


@router.put("/models/{namespace}/{name}/policy", summary="Set a model's production policy")
@access("admin")
async def put_model_policy(
    request: Request, namespace: str, name: str, body: PolicyRules
) -> Response:
    """Replace the model's own policy; it extends and overrides the namespace's."""
    gs, call = governance(request)
    rec = await call(
        gs.set_policy,
        namespace,
        body.model_dump(exclude_unset=True),
        model=name,
        actor=actor(request),
    )
    return JSONResponse(rg.policy_record(rec))


@router.delete(
    "/models/{namespace}/{name}/policy", status_code=204, summary="Remove a model's own policy"
)
@access("admin")
async def delete_model_policy(request: Request, namespace: str, name: str) -> Response:
    """Remove the model's own policy (the namespace's still applies)."""
    gs, call = governance(request)
    await call(gs.delete_policy, namespace, model=name, actor=actor(request))
    return Response(status_code=204)


@router.get(
    "/models/{namespace}/{name}/versions/{version}/policy-check",
    summary="Dry run: what a version still lacks",
)
@access("read")
async def policy_check(
    request: Request,
    namespace: str,
    name: str,
    version: str,
    action: str = Query("publish", description="publish or alias"),
    alias: str | None = Query(None, description="Alias to move (action=alias)."),
) -> Response:
    """Every unmet rule of the production policy for publishing this version or
    moving ``alias`` to it; 200 with ``ok`` true when nothing is missing."""
    gs, call = governance(request)
    result = await call(
        gs.check,
        version_ref(namespace, name, version),
        action=action,
        alias=alias,
        actor=actor(request),
    )
    return JSONResponse(rg.policy_check(result))


# -- aliases: rollback and time travel ---------------------------------------


@router.post(
    "/models/{namespace}/{name}/aliases/{alias}/rollback",
    summary="Move an alias back to its previous target",
)
@access("write")
async def rollback_alias(
    request: Request, namespace: str, name: str, alias: str, body: Rollback | None = None
) -> Response:
    """Undo the alias's last move (409 ``NO_PREVIOUS_TARGET`` when there is none)."""
    gs, call = governance(request)
    body = body or Rollback()
    ver = await call(
        gs.rollback_alias,
        name,
        alias,
        namespace=namespace,
        actor=actor(request),
        reason=body.reason,
        expected_version=body.expected_version,
    )
    return JSONResponse(render.version(ver))


@router.get(
    "/models/{namespace}/{name}/aliases/{alias}",
    summary="Where an alias points, now or at a past time",
)
@access("read")
async def get_alias(
    request: Request,
    namespace: str,
    name: str,
    alias: str,
    at: str | None = Query(
        None, description="RFC 3339 time or integer microseconds; default: now."
    ),
) -> Response:
    """The version ``alias`` pointed at, at time ``at`` (null if it did not exist)."""
    gs, call = governance(request)
    when: str | int = at if at is not None else time.time_ns() // 1000
    return JSONResponse(
        rg.alias_at(
            await call(gs.alias_at, name, alias, when, namespace=namespace, actor=actor(request))
        )
    )


# -- approvals ----------------------------------------------------------------


@router.post(
    "/models/{namespace}/{name}/versions/{version}/approvals",
    status_code=201,
    summary="Request approval of a gated transition",
)
@access("write")
async def request_approval(
    request: Request, namespace: str, name: str, version: str, body: ApprovalRequest
) -> Response:
    """Ask reviewers to publish this version and/or move an alias to it."""
    gs, call = approvals(request)
    a = await call(
        gs.request_approval,
        version_ref(namespace, name, version),
        action=body.action,
        alias=body.alias,
        archive_previous=body.archive_previous,
        comment=body.comment,
        actor=actor(request),
    )
    return JSONResponse(rg.approval(a), status_code=201)


@router.get("/namespaces/{namespace}/approvals", summary="List a namespace's approval requests")
@access("read")
async def list_approvals(
    request: Request,
    namespace: str,
    state: str = Query("pending", description="pending, applied, rejected, cancelled or all"),
    page_size: int = Query(100, ge=1, le=1000),
    page_token: str | None = None,
) -> Response:
    """Requests of the namespace, newest first (pending ones by default)."""
    gs, call = approvals(request)
    page = await call(
        gs.list_approvals,
        namespace,
        state=None if state == "all" else state,
        page_size=page_size,
        page_token=page_token,
        actor=actor(request),
    )
    return JSONResponse(
        {
            "approvals": [rg.approval(a) for a in page.items],
            "next_page_token": page.next_page_token,
        }
    )


@router.get("/approvals/{approval_id}", summary="Get one approval request")
@access("read")
async def get_approval(request: Request, approval_id: int) -> Response:
    """One request with its reviews."""
    gs, call = approvals(request)
    return JSONResponse(rg.approval(await call(gs.get_approval, approval_id, actor=actor(request))))


@router.post("/approvals/{approval_id}/approve", summary="Approve a request")
@access("review", "Never one's own request.")
async def approve(request: Request, approval_id: int, body: Review | None = None) -> Response:
    """Approve; the transition applies atomically at the N-th distinct approval."""
    gs, call = approvals(request)
    a = await call(
        gs.approve, approval_id, actor=actor(request), comment=(body or Review()).comment
    )
    return JSONResponse(rg.approval(a))


@router.post("/approvals/{approval_id}/reject", summary="Reject a request")
@access("review", "Never one's own request.")
async def reject(request: Request, approval_id: int, body: Review | None = None) -> Response:
    """Reject (final)."""
    gs, call = approvals(request)
    a = await call(gs.reject, approval_id, actor=actor(request), comment=(body or Review()).comment)
    return JSONResponse(rg.approval(a))


@router.post("/approvals/{approval_id}/cancel", summary="Cancel one's own request")
@access("write", "The requester only.")
async def cancel(request: Request, approval_id: int) -> Response:
    """Withdraw a pending request (the requester only)."""
    gs, call = approvals(request)
    return JSONResponse(rg.approval(await call(gs.cancel, approval_id, actor=actor(request))))


# -- audit --------------------------------------------------------------------


@router.get("/audit", summary="The audit log")
@access("authenticated", "Read on the namespace; without one, only namespaces the caller reads.")
async def audit(
    request: Request,
    actor_: str | None = Query(None, alias="actor", description="Who acted."),
    model: str | None = Query(None, description="name or namespace/name"),
    namespace: str | None = None,
    action: str | None = Query(None, description="alias.moved, or a prefix: alias.* / alias."),
    since: str | None = Query(None, description="RFC 3339 or µs, inclusive"),
    until: str | None = Query(None, description="RFC 3339 or µs, exclusive"),
    page_size: int = Query(100, ge=1, le=1000),
    page_token: str | None = None,
) -> Response:
    """Every mutation, newest first: actor, time, action, target, before/after."""
    gs, call = governance(request)
    page = await call(
        gs.audit,
        actor=actor(request),
        by=actor_,
        model=model,
        namespace=namespace,
        action=action,
        since=since,
        until=until,
        page_size=page_size,
        page_token=page_token,
    )
    return JSONResponse(
        {
            "entries": [rg.audit_entry(e) for e in page.items],
            "next_page_token": page.next_page_token,
        }
    )
