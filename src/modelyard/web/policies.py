"""Policy pages: a namespace's production policy and a model's own (read;
edit and remove for the namespace's admins).

A model's page shows the three policies the API's ``GET .../policy`` gives:
the namespace's, the model's own (which extends and overrides it), and the
effective one that gates the model's versions. Same service calls as REST
v1's policy routes, refused by the same rules.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from modelyard.domain.access import access
from modelyard.domain.errors import InvalidInput
from modelyard.domain.identity import Permission
from modelyard.domain.names import validate_name
from modelyard.domain.policies import Policy
from modelyard.web.actions import form_of, text_of
from modelyard.web.calls import door
from modelyard.web.render import page, query, seg

router = APIRouter(include_in_schema=False)


def editable(policy: Policy | None) -> str:
    """A policy as the JSON an admin edits (thresholds as their text)."""
    if policy is None:
        return "{}"
    rules = {k: v for k, v in policy.to_dict().items() if v is not None}
    if "metric_thresholds" in rules:
        rules["metric_thresholds"] = [m["text"] for m in rules["metric_thresholds"]]
    return json.dumps(rules, indent=2, sort_keys=True, ensure_ascii=False)


def _rules(policy: Policy | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    found = {k: v for k, v in policy.to_dict().items() if v is not None}
    return found or None


def _url(namespace: str, model: str | None) -> str:
    if model is None:
        return f"/namespaces/{seg(namespace)}/policy"
    return f"/models/{seg(namespace)}/{seg(model)}/policy"


async def _policy_page(
    request: Request,
    namespace: str,
    model: str | None = None,
    draft: str | None = None,
    error: Exception | None = None,
) -> Response:
    d = door(request)
    if model is not None:
        validate_name(model)
        # The model must exist (MODEL_NOT_FOUND), as on the API.
        await d.call(d.registry.get_model, model, namespace=namespace, actor=d.who)
    record = await d.call(d.governance.get_policy, namespace, model, actor=d.who)
    context: dict[str, Any] = {
        "namespace": namespace,
        "model": model,
        "action": _url(namespace, model),
        "record": record,
        "rules": _rules(record.policy),
        "inherited": None,
        "effective": None,
        "draft": editable(record.policy) if draft is None else draft,
        "can_edit": d.who.can(Permission.ADMIN, namespace),
        "error": error,
        "done": request.query_params.get("done") or "",
    }
    if model is not None:
        ns = await d.call(d.governance.get_policy, namespace, actor=d.who)
        effective = await d.call(d.governance.effective_policy, namespace, model, actor=d.who)
        context.update(inherited=_rules(ns.policy), effective=_rules(effective))
    return page(request, "policy.html", context, status=400 if error else 200)


async def _save(request: Request, namespace: str, model: str | None) -> Response:
    form = await form_of(request)
    d = door(request)
    draft = text_of(form, "rules") or "{}"
    try:
        try:
            rules = json.loads(draft)
        except ValueError as exc:
            raise InvalidInput(f"not JSON: {exc}", code="INVALID_POLICY") from None
        await d.call(d.governance.set_policy, namespace, rules, model=model, actor=d.who)
    except InvalidInput as exc:
        return await _policy_page(request, namespace, model, draft, exc)
    return RedirectResponse(
        _url(namespace, model) + query({"done": "policy saved"}), status_code=303
    )


async def _remove(request: Request, namespace: str, model: str | None) -> Response:
    await form_of(request)
    d = door(request)
    await d.call(d.governance.delete_policy, namespace, model=model, actor=d.who)
    return RedirectResponse(
        _url(namespace, model) + query({"done": "policy removed"}), status_code=303
    )


@router.get("/namespaces/{namespace}/policy")
@access("read")
async def policy_page(request: Request, namespace: str) -> Response:
    """The namespace's production policy; admins get an editor."""
    return await _policy_page(request, namespace)


@router.post("/namespaces/{namespace}/policy")
@access("admin")
async def save_policy(request: Request, namespace: str) -> Response:
    """Replace the namespace's policy with the edited JSON."""
    return await _save(request, namespace, None)


@router.post("/namespaces/{namespace}/policy/delete")
@access("admin")
async def delete_policy(request: Request, namespace: str) -> Response:
    """Remove the namespace's policy."""
    return await _remove(request, namespace, None)


@router.get("/models/{namespace}/{name}/policy")
@access("read")
async def model_policy_page(request: Request, namespace: str, name: str) -> Response:
    """The model's own policy, its namespace's and the effective one; admins edit its own."""
    return await _policy_page(request, namespace, name)


@router.post("/models/{namespace}/{name}/policy")
@access("admin")
async def save_model_policy(request: Request, namespace: str, name: str) -> Response:
    """Replace the model's own policy (it extends and overrides the namespace's)."""
    return await _save(request, namespace, name)


@router.post("/models/{namespace}/{name}/policy/delete")
@access("admin")
async def delete_model_policy(request: Request, namespace: str, name: str) -> Response:
    """Remove the model's own policy (the namespace's still applies)."""
    return await _remove(request, namespace, name)
