"""Webhook subscriptions, their deliveries, redelivery and test events."""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.deps import actor, webhook_services
from modelyard.api.responses import JSONResponse
from modelyard.api.schemas import SecretRotation, WebhookCreate, WebhookUpdate
from modelyard.wire import render

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


@router.post("", status_code=201, summary="Create a webhook")
@access("admin", "Of the webhook's namespace; instance admin for a webhook of every namespace.")
async def create_webhook(body: WebhookCreate, request: Request) -> Response:
    """Subscribe a URL; the answer holds the signing ``secret``, shown only this once."""
    svc, call = webhook_services(request)
    hook, secret = await call(
        svc.create_webhook,
        body.url,
        event_types=body.event_types,
        namespace=body.namespace,
        model=body.model,
        description=body.description,
        active=body.active,
        actor=actor(request),
    )
    return JSONResponse({**render.webhook(hook), "secret": secret}, status_code=201)


@router.get("", summary="List webhooks")
@access("authenticated", "Lists the webhooks the caller administers.")
async def list_webhooks(request: Request) -> Response:
    """Every subscription (secrets are never returned)."""
    svc, call = webhook_services(request)
    hooks = await call(svc.list_webhooks, actor=actor(request))
    return JSONResponse({"webhooks": [render.webhook(h) for h in hooks]})


@router.get("/{webhook_id}", summary="Get a webhook")
@access("admin", "Of the webhook's namespace; instance admin for a webhook of every namespace.")
async def get_webhook(webhook_id: int, request: Request) -> Response:
    """One subscription."""
    svc, call = webhook_services(request)
    return JSONResponse(
        render.webhook(await call(svc.get_webhook, webhook_id, actor=actor(request)))
    )


@router.patch("/{webhook_id}", summary="Update a webhook")
@access("admin", "Of the webhook's namespace; instance admin for a webhook of every namespace.")
async def update_webhook(webhook_id: int, body: WebhookUpdate, request: Request) -> Response:
    """Change URL, filters, description or ``active`` (true re-enables a disabled one)."""
    svc, call = webhook_services(request)
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    hook = await call(svc.update_webhook, webhook_id, changes, actor=actor(request))
    return JSONResponse(render.webhook(hook))


@router.delete("/{webhook_id}", status_code=204, summary="Delete a webhook")
@access("admin", "Of the webhook's namespace; instance admin for a webhook of every namespace.")
async def delete_webhook(webhook_id: int, request: Request) -> Response:
    """Delete a subscription and its delivery history."""
    svc, call = webhook_services(request)
    await call(svc.delete_webhook, webhook_id, actor=actor(request))
    return Response(status_code=204)


@router.post("/{webhook_id}/rotate-secret", summary="Rotate a webhook's secret")
@access("admin", "Of the webhook's namespace; instance admin for a webhook of every namespace.")
async def rotate_secret(
    webhook_id: int, request: Request, body: SecretRotation | None = None
) -> Response:
    """New signing secret (returned once); the old one also signs during the overlap."""
    svc, call = webhook_services(request)
    overlap = body.overlap_seconds if body is not None else None
    hook, secret = await call(svc.rotate_secret, webhook_id, overlap=overlap, actor=actor(request))
    return JSONResponse({**render.webhook(hook), "secret": secret})


@router.get("/{webhook_id}/deliveries", summary="List a webhook's deliveries")
@access("admin", "Of the webhook's namespace; instance admin for a webhook of every namespace.")
async def list_deliveries(
    webhook_id: int,
    request: Request,
    status: str | None = Query(None, description="pending, succeeded or failed"),
    page_size: int = Query(50, ge=1, le=1000),
    page_token: str | None = None,
) -> Response:
    """Deliveries newest first, each with every attempt (status, latency, code, body)."""
    svc, call = webhook_services(request)
    page = await call(
        svc.list_deliveries,
        webhook_id,
        status=status,
        page_size=page_size,
        page_token=page_token,
        actor=actor(request),
    )
    return JSONResponse(
        {
            "deliveries": [render.delivery(d) for d in page.items],
            "next_page_token": page.next_page_token,
        }
    )


@router.get("/{webhook_id}/deliveries/{delivery_id}", summary="Get one delivery")
@access("admin", "Of the webhook's namespace; instance admin for a webhook of every namespace.")
async def get_delivery(webhook_id: int, delivery_id: int, request: Request) -> Response:
    """One delivery with its attempts."""
    svc, call = webhook_services(request)
    return JSONResponse(
        render.delivery(await call(svc.get_delivery, webhook_id, delivery_id, actor=actor(request)))
    )


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    summary="Redeliver one delivery",
)
@access("admin", "Of the webhook's namespace; instance admin for a webhook of every namespace.")
async def redeliver(webhook_id: int, delivery_id: int, request: Request) -> Response:
    """Queue the delivery again now (same ``webhook-id``, fresh retry schedule)."""
    svc, call = webhook_services(request)
    d = await call(svc.redeliver, webhook_id, delivery_id, actor=actor(request))
    return JSONResponse(render.delivery(d), status_code=202)


@router.post("/{webhook_id}/test", status_code=202, summary="Send a test event")
@access("admin", "Of the webhook's namespace; instance admin for a webhook of every namespace.")
async def send_test(webhook_id: int, request: Request) -> Response:
    """Write a ``webhook.test`` event and queue it to this webhook only."""
    svc, call = webhook_services(request)
    d = await call(svc.send_test, webhook_id, actor=actor(request))
    return JSONResponse(render.delivery(d), status_code=202)
