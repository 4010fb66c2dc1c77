"""MLflow 3's webhook endpoints (``MlflowClient.create_webhook`` and friends).

Thin: each route reads MLflow's message, calls the webhook service's MLflow
methods (rules, mapping and validation live in ``service/webhooks.py`` and
``service/mlflow_webhooks.py``) and writes MLflow's ``Webhook`` message.
Webhooks are scoped to the door's namespace (``Settings.mlflow_namespace``)
and need its admin role, as REST v1's webhooks of a namespace do.

``test_webhook`` sends one made-up event synchronously through a
:class:`~modelyard.events.sender.WebhookSender`, the class the dispatcher
delivers with, so the URL passes the same SSRF guard (resolved and pinned
per attempt, no redirects, no proxies); nothing is queued or recorded.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.deps import actor, webhook_services
from modelyard.api.mlflow.params import Params, invalid, ok, paged
from modelyard.api.mlflow.registry import namespace_of
from modelyard.api.mlflow.render import millis
from modelyard.domain.webhooks import Webhook
from modelyard.events.sender import WebhookSender
from modelyard.service.webhooks import Claim

router = APIRouter(prefix="/mlflow/webhooks")

ADMIN_NOTE: Final = "Of the MLflow door's namespace (MODELYARD_MLFLOW_NAMESPACE)."
LIST_MAX: Final = 1000
_STATUS: Final = {"ACTIVE": True, "DISABLED": False}


def _event_name(item: Any) -> str:
    """One MLflow ``WebhookEvent`` message as ``entity.action`` (its enum names
    lower-cased, as MLflow's ``WebhookEvent.from_proto`` does); the service
    decides whether the name is one it delivers."""
    if not isinstance(item, dict):
        raise invalid("Each webhook event is an object with 'entity' and 'action'.")
    entity, action = item.get("entity"), item.get("action")
    if not isinstance(entity, str) or not isinstance(action, str) or not entity or not action:
        raise invalid(
            f"Invalid webhook event {item!r}: 'entity' and 'action' are enum names.",
            parameter="events",
        )
    return f"{entity.lower()}.{action.lower()}"


def _events(p: Params) -> list[str] | None:
    raw = p.raw("events")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise invalid("Invalid value for parameter 'events': expected a list.", parameter="events")
    return [_event_name(e) for e in raw]


def _status(p: Params) -> bool | None:
    raw = p.raw("status")
    if raw is None:
        return None
    if not isinstance(raw, str) or raw.upper() not in _STATUS:
        raise invalid(
            f"Invalid webhook status {raw!r}; expected ACTIVE or DISABLED.", parameter="status"
        )
    return _STATUS[raw.upper()]


def render_webhook(h: Webhook) -> dict[str, Any]:
    """A webhook as MLflow's ``Webhook`` message (never with its secret)."""
    meta = h.mlflow or {}
    body: dict[str, Any] = {
        "webhook_id": str(h.id),
        "name": meta.get("name", ""),
        "url": h.url,
        "events": [
            {"entity": ent.upper(), "action": act.upper()}
            for ent, _, act in (e.partition(".") for e in meta.get("events", []))
        ],
        "status": "ACTIVE" if h.active else "DISABLED",
        "creation_timestamp": millis(h.created_at),
        "last_updated_timestamp": millis(h.updated_at),
    }
    if h.description:
        body["description"] = h.description
    return body


@router.post("")
@access("admin", ADMIN_NOTE)
async def create_webhook(request: Request) -> Response:
    """``MlflowClient.create_webhook``."""
    p = await Params.of(request)
    events = _events(p)
    if events is None:
        raise invalid("Missing value for required parameter 'events'.", parameter="events")
    svc, call = webhook_services(request)
    active = _status(p)
    hook = await call(
        svc.create_mlflow_webhook,
        name=p.required_text("name"),
        url=p.required_text("url"),
        events=events,
        namespace=namespace_of(request),
        description=p.text("description"),
        secret=p.text("secret") or None,
        active=True if active is None else active,
        actor=actor(request),
    )
    return ok({"webhook": render_webhook(hook)})


@router.get("")
@access("authenticated", "Lists the MLflow webhooks the caller administers.")
async def list_webhooks(request: Request) -> Response:
    """``MlflowClient.list_webhooks`` (pages by the webhook id after the token)."""
    p = await Params.of(request)
    size = p.integer("max_results", 100, minimum=1, maximum=LIST_MAX) or 100
    token = p.text("page_token")
    after = 0
    if token:
        if not (token.isascii() and token.isdigit()) or len(token) > 18:
            raise invalid(f"Invalid page token {token!r}.", parameter="page_token")
        after = int(token)
    svc, call = webhook_services(request)
    hooks = [h for h in await call(svc.list_mlflow_webhooks, actor=actor(request)) if h.id > after]
    page = hooks[:size]
    token = str(page[-1].id) if len(hooks) > size else None
    return ok(paged("webhooks", [render_webhook(h) for h in page], token))


@router.get("/{webhook_id}")
@access("admin", ADMIN_NOTE)
async def get_webhook(request: Request, webhook_id: str) -> Response:
    """``MlflowClient.get_webhook``."""
    svc, call = webhook_services(request)
    hook = await call(svc.get_mlflow_webhook, webhook_id, actor=actor(request))
    return ok({"webhook": render_webhook(hook)})


@router.patch("/{webhook_id}")
@access("admin", ADMIN_NOTE)
async def update_webhook(request: Request, webhook_id: str) -> Response:
    """``MlflowClient.update_webhook``: only the fields sent change."""
    p = await Params.of(request)
    changes: dict[str, Any] = {}
    for key in ("name", "description", "url", "secret"):
        if key in p:
            changes[key] = p.text(key)
    events = _events(p)
    if events:
        changes["events"] = events
    active = _status(p)
    if active is not None:
        changes["active"] = active
    svc, call = webhook_services(request)
    hook = await call(svc.update_mlflow_webhook, webhook_id, changes, actor=actor(request))
    return ok({"webhook": render_webhook(hook)})


@router.delete("/{webhook_id}")
@access("admin", ADMIN_NOTE)
async def delete_webhook(request: Request, webhook_id: str) -> Response:
    """``MlflowClient.delete_webhook``."""
    svc, call = webhook_services(request)
    await call(svc.delete_mlflow_webhook, webhook_id, actor=actor(request))
    return ok()


def _send_once(request: Request, claim: Claim) -> dict[str, Any]:
    """Send ``claim`` once through a fresh sender (same SSRF guard and TLS rules
    as the dispatcher's); MLflow's ``WebhookTestResult``."""
    settings = request.app.state.settings
    sender = WebhookSender(
        request.app.state.webhooks.guard,
        timeout=settings.webhook_timeout,
        ca_bundle=settings.webhook_ca_bundle,
    )
    try:
        outcome = sender.send(claim)
    finally:
        sender.close()
    # MLflow counts any answer below 400 as a successful test.
    code = outcome.response_code
    result: dict[str, Any] = {"success": code is not None and code < 400}
    if outcome.response_code is not None:
        result["response_status"] = outcome.response_code
        result["response_body"] = outcome.response_body
    if outcome.error:
        result["error_message"] = f"Failed to test webhook: {outcome.error}"
    return result


@router.post("/{webhook_id}/test")
@access("admin", ADMIN_NOTE)
async def test_webhook(request: Request, webhook_id: str) -> Response:
    """``MlflowClient.test_webhook``: one made-up event, sent now, answered with
    ``{"result": {success, response_status, response_body, error_message}}``."""
    p = await Params.of(request)
    raw = p.raw("event")
    event = _event_name(raw) if raw is not None else None
    svc, call = webhook_services(request)
    claim = await call(svc.mlflow_test_claim, webhook_id, event=event, actor=actor(request))
    result = await run_in_threadpool(_send_once, request, claim)
    return ok({"result": result})
