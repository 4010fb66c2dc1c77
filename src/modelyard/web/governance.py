"""Governance pages: the approvals queue (approve / reject with a comment),
the audit log with its filters, and a namespace's production policy (read;
edit for admins).

Same service calls as REST v1's governance routes; the requester's own
request shows no approve button (the service would refuse it anyway with
``SELF_APPROVAL``).
"""

from __future__ import annotations

import json
from typing import Any, Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from modelyard.domain.access import access
from modelyard.domain.approvals import ApprovalState
from modelyard.domain.errors import InvalidInput
from modelyard.domain.identity import Permission
from modelyard.domain.policies import Policy
from modelyard.web.actions import form_of, path_id, text_of
from modelyard.web.calls import door
from modelyard.web.render import page, query, seg

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


def editable(policy: Policy | None) -> str:
    """A policy as the JSON an admin edits (thresholds as their text)."""
    if policy is None:
        return "{}"
    rules = {k: v for k, v in policy.to_dict().items() if v is not None}
    if "metric_thresholds" in rules:
        rules["metric_thresholds"] = [m["text"] for m in rules["metric_thresholds"]]
    return json.dumps(rules, indent=2, sort_keys=True, ensure_ascii=False)


async def _policy_page(
    request: Request, namespace: str, draft: str | None = None, error: Exception | None = None
) -> Response:
    d = door(request)
    record = await d.call(d.governance.get_policy, namespace, actor=d.who)
    context: dict[str, Any] = {
        "namespace": namespace,
        "record": record,
        "rules": None if record.policy is None else record.policy.to_dict(),
        "draft": editable(record.policy) if draft is None else draft,
        "can_edit": d.who.can(Permission.ADMIN, namespace),
        "error": error,
        "done": request.query_params.get("done") or "",
    }
    return page(request, "policy.html", context, status=400 if error else 200)


@router.get("/namespaces/{namespace}/policy")
@access("read")
async def policy_page(request: Request, namespace: str) -> Response:
    """The namespace's production policy; admins get an editor."""
    return await _policy_page(request, namespace)


@router.post("/namespaces/{namespace}/policy")
@access("admin")
async def save_policy(request: Request, namespace: str) -> Response:
    """Replace the namespace's policy with the edited JSON."""
    form = await form_of(request)
    d = door(request)
    draft = text_of(form, "rules") or "{}"
    try:
        try:
            rules = json.loads(draft)
        except ValueError as exc:
            raise InvalidInput(f"not JSON: {exc}", code="INVALID_POLICY") from None
        await d.call(d.governance.set_policy, namespace, rules, actor=d.who)
    except InvalidInput as exc:
        return await _policy_page(request, namespace, draft, exc)
    target = f"/namespaces/{seg(namespace)}/policy" + query({"done": "policy saved"})
    return RedirectResponse(target, status_code=303)
