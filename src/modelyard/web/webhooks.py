"""Webhook pages: subscriptions (list, create, delete), their deliveries with
every attempt, redeliver, send a test event, rotate the secret.

The same service calls as REST v1's ``/api/v1/webhooks`` routes, so the same
rules refuse the same things (a namespace admin manages its webhooks, the
instance admin those of every namespace). A new or rotated signing secret is
shown once, in the answer to the form that made it, and never again: the
page that shows it is not a redirect target, so it is in no URL or history
entry.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from modelyard.domain.access import access
from modelyard.domain.errors import InvalidInput
from modelyard.domain.identity import Permission
from modelyard.domain.webhooks import DeliveryStatus, Webhook
from modelyard.web.actions import form_of, path_id, text_of
from modelyard.web.calls import Door, door
from modelyard.web.render import page, query

router = APIRouter(include_in_schema=False)

DELIVERIES_PAGE: Final = 25
ALL_NAMESPACES: Final = "*"


def _patterns(text: str) -> list[str] | None:
    """Event-type patterns from a comma- or space-separated field (None: every event)."""
    found = [p for p in text.replace(",", " ").split() if p]
    return found or None


async def _list_context(d: Door) -> dict[str, Any]:
    hooks = await d.call(d.webhooks.list_webhooks, actor=d.who)
    namespaces = await d.call(d.registry.list_namespaces, actor=d.who)
    return {
        "hooks": hooks,
        # Where the caller may subscribe: namespaces it administers, and every
        # namespace at once for the instance admin.
        "namespaces": [ns.name for ns in namespaces if d.who.can(Permission.ADMIN, ns.name)],
        "instance_admin": d.who.is_instance_admin,
        "form": {"url": "", "event_types": "*", "namespace": "", "model": "", "description": ""},
        "error": None,
    }


@router.get("/webhooks")
@access("authenticated", "Lists the webhooks the caller administers.")
async def webhooks_page(request: Request) -> Response:
    """The subscriptions the caller administers, and a form for a new one."""
    d = door(request)
    context = await _list_context(d)
    context["done"] = request.query_params.get("done") or ""
    return page(request, "webhooks.html", context)


@router.post("/webhooks")
@access("admin", "Of the webhook's namespace; instance admin for a webhook of every namespace.")
async def create_webhook(request: Request) -> Response:
    """Subscribe a URL; the answer shows its signing secret, this once."""
    form = await form_of(request)
    d = door(request)
    fields = {
        k: text_of(form, k) for k in ("url", "event_types", "namespace", "model", "description")
    }
    namespace = fields["namespace"]
    try:
        hook, secret = await d.call(
            d.webhooks.create_webhook,
            fields["url"],
            event_types=_patterns(fields["event_types"]),
            namespace=None if namespace in ("", ALL_NAMESPACES) else namespace,
            model=fields["model"] or None,
            description=fields["description"],
            actor=d.who,
        )
    except InvalidInput as exc:
        # A bad URL or pattern: the form again, filled in, with the API's message.
        context = await _list_context(door(request))
        context.update(form=fields, error=exc)
        return page(request, "webhooks.html", context, status=400)
    return _secret_page(request, hook, secret, created=True)


def _secret_page(request: Request, hook: Webhook, secret: str, *, created: bool) -> Response:
    context = {"hook": hook, "secret": secret, "created": created}
    return page(request, "webhook_secret.html", context)


@router.get("/webhooks/{webhook_id}")
@access("admin", "Of the webhook's namespace; instance admin for a webhook of every namespace.")
async def webhook_page(request: Request, webhook_id: str) -> Response:
    """One subscription: its settings and its deliveries, newest first, with attempts."""
    d = door(request)
    params = request.query_params
    wid = path_id(webhook_id, "webhook")
    hook = await d.call(d.webhooks.get_webhook, wid, actor=d.who)
    status = params.get("status") or None
    found = await d.call(
        d.webhooks.list_deliveries,
        wid,
        status=status,
        page_size=DELIVERIES_PAGE,
        page_token=params.get("page") or None,
        actor=d.who,
    )
    context = {
        "hook": hook,
        "deliveries": found.items,
        "next_page": found.next_page_token,
        "page_token": params.get("page") or None,
        "status": status or "",
        "statuses": [s.value for s in DeliveryStatus],
        "done": params.get("done") or "",
    }
    return page(request, "webhook.html", context)


def _to_hook(wid: int, done: str) -> Response:
    return RedirectResponse(f"/webhooks/{wid}" + query({"done": done}), status_code=303)


@router.post("/webhooks/{webhook_id}/test")
@access("admin", "Of the webhook's namespace; instance admin for a webhook of every namespace.")
async def send_test(request: Request, webhook_id: str) -> Response:
    """Queue a ``webhook.test`` event to this webhook only."""
    await form_of(request)
    d = door(request)
    wid = path_id(webhook_id, "webhook")
    delivery = await d.call(d.webhooks.send_test, wid, actor=d.who)
    return _to_hook(wid, f"test event queued as delivery #{delivery.id}")


@router.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
@access("admin", "Of the webhook's namespace; instance admin for a webhook of every namespace.")
async def redeliver(request: Request, webhook_id: str, delivery_id: str) -> Response:
    """Queue one delivery again now (same ``webhook-id``, fresh retry schedule)."""
    await form_of(request)
    d = door(request)
    wid = path_id(webhook_id, "webhook")
    found = await d.call(d.webhooks.redeliver, wid, path_id(delivery_id, "delivery"), actor=d.who)
    return _to_hook(wid, f"delivery #{found.id} queued again")


@router.post("/webhooks/{webhook_id}/active")
@access("admin", "Of the webhook's namespace; instance admin for a webhook of every namespace.")
async def set_active(request: Request, webhook_id: str) -> Response:
    """Pause or re-enable the subscription (re-enabling clears a disabled state)."""
    form = await form_of(request)
    d = door(request)
    wid = path_id(webhook_id, "webhook")
    active = text_of(form, "active") == "true"
    await d.call(d.webhooks.update_webhook, wid, {"active": active}, actor=d.who)
    return _to_hook(wid, "webhook enabled" if active else "webhook paused")


@router.post("/webhooks/{webhook_id}/rotate-secret")
@access("admin", "Of the webhook's namespace; instance admin for a webhook of every namespace.")
async def rotate_secret(request: Request, webhook_id: str) -> Response:
    """A new signing secret, shown once; the old one signs too during the overlap."""
    await form_of(request)
    d = door(request)
    hook, secret = await d.call(
        d.webhooks.rotate_secret, path_id(webhook_id, "webhook"), actor=d.who
    )
    return _secret_page(request, hook, secret, created=False)


@router.post("/webhooks/{webhook_id}/delete")
@access("admin", "Of the webhook's namespace; instance admin for a webhook of every namespace.")
async def delete_webhook(request: Request, webhook_id: str) -> Response:
    """Delete the subscription and its delivery history."""
    await form_of(request)
    d = door(request)
    wid = path_id(webhook_id, "webhook")
    await d.call(d.webhooks.delete_webhook, wid, actor=d.who)
    return RedirectResponse(
        "/webhooks" + query({"done": f"webhook #{wid} deleted"}), status_code=303
    )
