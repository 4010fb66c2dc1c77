"""Governance pages: the approvals queue (approve / reject with a comment),
a request's own page (its reviews, what the version still lacks, cancel for
the requester), and the audit log with its filters. Policies are
``web/policies.py``.

Same service calls as REST v1's governance routes; the requester's own
request shows no approve button (the service would refuse it anyway with
``SELF_APPROVAL``).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from modelyard.domain.access import access
from modelyard.domain.approvals import ApprovalState
from modelyard.domain.errors import InvalidInput
from modelyard.domain.identity import Permission
from modelyard.web.actions import form_of, path_id, text_of
from modelyard.web.calls import door
from modelyard.web.render import page, query

router = APIRouter(include_in_schema=False)

PAGE_SIZE: Final = 25
AUDIT_FILTERS: Final = ("actor", "model", "namespace", "action", "since", "until")


@router.get("/approvals")
@access("authenticated", "Read on the namespace chosen.")
async def approvals_page(request: Request) -> Response:
    """A namespace's approval requests, newest first (pending by default)."""
    d = door(request)
    params = request.query_params
    namespaces = await d.call(d.registry.list_namespaces, actor=d.who)
    namespace = params.get("namespace") or (namespaces[0].name if namespaces else "default")
    state = params.get("state") or "pending"
    found = await d.call(
        d.approvals.list_approvals,
        namespace,
        state=None if state == "all" else state,
        page_size=PAGE_SIZE,
        page_token=params.get("page") or None,
        actor=d.who,
    )
    context: dict[str, Any] = {
        "namespaces": namespaces,
        "namespace": namespace,
        "state": state,
        "states": ["all", *(s.value for s in ApprovalState)],
        "items": found.items,
        "next_page": found.next_page_token,
        "page_token": params.get("page") or None,
        "can_review": d.who.can(Permission.REVIEW, namespace),
        "done": params.get("done") or "",
    }
    return page(request, "approvals.html", context)


async def _decide(request: Request, approval_id: str, approve: bool) -> Response:
    form = await form_of(request)
    d = door(request)
    decide = d.approvals.approve if approve else d.approvals.reject
    found = await d.call(
        decide, path_id(approval_id, "approval"), actor=d.who, comment=text_of(form, "comment")
    )
    verb = "approved" if approve else "rejected"
    done = f"request #{found.id} {verb}; it is now {found.state.value}"
    target = {"namespace": found.namespace, "done": done}
    return RedirectResponse("/approvals" + query(target), status_code=303)


@router.post("/approvals/{approval_id}/approve")
@access("review", "Never one's own request.")
async def approve(request: Request, approval_id: str) -> Response:
    """Approve (applies the transition at the required number of approvals)."""
    return await _decide(request, approval_id, True)


@router.post("/approvals/{approval_id}/reject")
@access("review", "Never one's own request.")
async def reject(request: Request, approval_id: str) -> Response:
    """Reject (final)."""
    return await _decide(request, approval_id, False)


@router.get("/audit")
@access("authenticated", "Read on the namespace; without one, the namespaces the caller reads.")
async def audit_page(request: Request) -> Response:
    """Every mutation, newest first, filtered; one cursor page at a time."""
    d = door(request)
    params = request.query_params
    filters = {k: (params.get(k) or "").strip() for k in AUDIT_FILTERS}
    context: dict[str, Any] = {"filters": filters, "entries": [], "next_page": None}
    context["page_token"] = params.get("page") or None
    try:
        found = await d.call(
            d.governance.audit,
            actor=d.who,
            by=filters["actor"] or None,
            model=filters["model"] or None,
            namespace=filters["namespace"] or None,
            action=filters["action"] or None,
            since=filters["since"] or None,
            until=filters["until"] or None,
            page_size=PAGE_SIZE,
            page_token=context["page_token"],
        )
    except InvalidInput as exc:
        context["error"] = exc
        return page(request, "audit.html", context, status=400)
    context.update(entries=found.items, next_page=found.next_page_token, error=None)
    return page(request, "audit.html", context)


@router.get("/approvals/{approval_id}")
@access("read", "On the request's namespace (else APPROVAL_NOT_FOUND).")
async def approval_page(request: Request, approval_id: str) -> Response:
    """One request: what it asks, its reviews, what the version still lacks."""
    d = door(request)
    found = await d.call(d.approvals.get_approval, path_id(approval_id, "approval"), actor=d.who)
    check = None
    if found.state is ApprovalState.PENDING:
        # The API's dry run (GET .../policy-check): what applying it still needs.
        check = await d.call(
            d.governance.check,
            found.ref,
            action=found.action.value,
            alias=found.alias,
            actor=d.who,
        )
    context: dict[str, Any] = {
        "a": found,
        "check": check,
        "can_review": d.who.can(Permission.REVIEW, found.namespace),
        "done": request.query_params.get("done") or "",
    }
    return page(request, "approval.html", context)


@router.post("/approvals/{approval_id}/cancel")
@access("write", "The requester only (NOT_REQUESTER for anyone else).")
async def cancel(request: Request, approval_id: str) -> Response:
    """Withdraw one's own pending request."""
    await form_of(request)
    d = door(request)
    found = await d.call(d.approvals.cancel, path_id(approval_id, "approval"), actor=d.who)
    done = f"request #{found.id} cancelled"
    return RedirectResponse(f"/approvals/{found.id}" + query({"done": done}), status_code=303)
