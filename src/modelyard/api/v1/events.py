"""The event log (outbox): a filtered, paged list and a Server-Sent Events stream."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from modelyard.api.access import access
from modelyard.api.deps import actor, webhook_services
from modelyard.api.responses import JSONResponse
from modelyard.domain.errors import InvalidInput, Unauthenticated
from modelyard.domain.webhooks import EventFilter, event_for
from modelyard.events.hub import EventHub
from modelyard.service.webhooks import WebhookService
from modelyard.wire import render

router = APIRouter(tags=["events"])
STREAM_BATCH = 500

TypesQ = Query(
    None, description="Comma-separated type patterns: 'version.*,alias.moved' ('*' = all)."
)
NamespaceQ = Query(None, description="Only events of this namespace.")
ModelQ = Query(None, description="Only events about this model: 'ns/name' or 'name'.")
SubjectQ = Query(None, description="Only events with exactly this subject.")


def _filter(
    request: Request,
    svc: WebhookService,
    types: str | None,
    namespace: str | None,
    model: str | None,
    subject: str | None,
) -> EventFilter:
    """The caller's event filter from the query parameters both routes take."""
    patterns = None if types is None else [p.strip() for p in types.split(",") if p.strip()]
    return svc.event_filter(
        types=patterns or None,
        namespace=namespace,
        model=model,
        subject=subject,
        actor=actor(request),
    )


@router.get("/api/v1/events", summary="List events")
@access("authenticated", "Only events of namespaces the caller reads.")
async def list_events(
    request: Request,
    after: int = Query(0, ge=0, description="Return events with id greater than this."),
    limit: int = Query(100, ge=1, le=1000),
    types: str | None = TypesQ,
    namespace: str | None = NamespaceQ,
    model: str | None = ModelQ,
    subject: str | None = SubjectQ,
) -> Response:
    """Outbox events, oldest first: every mutation, ids in commit order.

    Page with ``after=next_after``; an empty page means nothing newer yet.
    """
    svc, call = webhook_services(request)
    flt = _filter(request, svc, types, namespace, model, subject)
    events = await call(svc.list_events, flt, after=after, limit=limit)
    return JSONResponse(
        {
            "events": [render.event(ev) for ev in events],
            "next_after": events[-1]["id"] if events else after,
        }
    )


def event_hub(request: Request, svc: WebhookService, poll: float) -> EventHub:
    """This process's shared stream poller (made on first use, one per app)."""
    hub: EventHub | None = getattr(request.app.state, "event_hub", None)
    if hub is None:
        _svc, call = webhook_services(request)

        async def read(after: int, limit: int) -> list[dict[str, Any]]:
            return await call(svc.list_events, None, after=after, limit=limit)

        async def head() -> int:
            return await call(svc.last_event_id)

        hub = EventHub(read, head, poll=poll)
        request.app.state.event_hub = hub
    return hub


def _sse(ev: dict[str, Any]) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (
        ev["id"],
        orjson.dumps(render.event(ev), option=orjson.OPT_NON_STR_KEYS),
    )


@router.get(
    "/api/v1/events/stream",
    summary="Stream events (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
@access("authenticated", "Only events of namespaces the caller reads.")
async def stream_events(
    request: Request,
    after: int | None = Query(
        None, ge=0, description="Start after this event id (default: only new events)."
    ),
    types: str | None = TypesQ,
    namespace: str | None = NamespaceQ,
    model: str | None = ModelQ,
    subject: str | None = SubjectQ,
    heartbeat: float | None = Query(
        None, gt=0, le=300, description="Seconds between heartbeat comments (default 15)."
    ),
) -> Response:
    """Every matching event as it commits, as ``text/event-stream``.

    Each message has ``id:`` = the event id and ``data:`` = the event as
    ``GET /api/v1/events`` lists it. The first message carries only ``id:`` =
    the starting position, so a client that reconnects before any event
    arrived resumes from there too. A reconnecting client sends ``Last-Event-ID`` (it wins over
    ``after``) and gets every later event exactly once: ids are commit-ordered.
    Idle streams get ``: heartbeat`` comments. One poller per process reads
    the outbox for every open stream (``events/hub.py``); a stream reads the
    database itself only to catch up from an older position. The caller's
    token is checked again at every heartbeat interval: a stream whose token
    was revoked or expired ends then.
    """
    svc, call = webhook_services(request)
    settings = request.app.state.settings
    stopping = request.app.state.stopping
    flt = _filter(request, svc, types, namespace, model, subject)
    last_id = request.headers.get("last-event-id", "").strip()
    if last_id:
        if not (last_id.isascii() and last_id.isdigit()) or len(last_id) > 18:
            raise InvalidInput("Last-Event-ID must be an event id", code="INVALID_CURSOR")
        start = int(last_id)
    elif after is not None:
        start = after
    else:
        start = await call(svc.last_event_id)
    # Checked now: an error inside the stream would come after the 200.
    await call(svc.list_events, flt, after=start, limit=1)
    beat = heartbeat or settings.sse_heartbeat
    poll = min(settings.events_poll_interval, beat)
    authenticator = request.app.state.authenticator
    hub = event_hub(request, svc, settings.events_poll_interval)

    async def messages() -> AsyncIterator[bytes]:
        cursor = start
        # Reconnect delay hint, and the start position as the last event id.
        yield b"retry: 2000\nid: %d\n\n" % cursor
        last_sent = last_auth = time.monotonic()
        async with hub.subscribe():
            while not stopping.is_set():
                if time.monotonic() - last_auth >= beat:
                    # A revoked or expired token ends the stream (within one beat).
                    try:
                        await authenticator(request.scope)
                    except Unauthenticated:
                        return
                    last_auth = time.monotonic()
                changed = hub.changed
                if not hub.covers(cursor):
                    # Behind the hub's window: catch up with this stream's own
                    # query. Every event up to the hub's position had committed
                    # when the hub read it, so a short page reaches that far.
                    reached = hub.position
                    events = await call(svc.list_events, flt, after=cursor, limit=STREAM_BATCH)
                    for ev in events:
                        yield _sse(ev)
                        cursor = ev["id"]
                    sent = bool(events)
                    if sent:
                        last_sent = time.monotonic()
                    if len(events) == STREAM_BATCH:
                        continue
                    cursor = max(cursor, reached)
                    if hub.covers(cursor):
                        continue
                else:
                    fresh, reached = hub.since(cursor)
                    sent = False
                    for ev in fresh:
                        seen = event_for(flt, ev)
                        if seen is not None:
                            yield _sse(seen)
                            sent = True
                    cursor = max(cursor, reached)
                    if sent:
                        last_sent = time.monotonic()
                    if fresh:
                        continue
                if not sent and time.monotonic() - last_sent >= beat:
                    yield b": heartbeat\n\n"
                    last_sent = time.monotonic()
                # Woken by the hub's next read with news, or after one poll
                # interval to look at the token and the shutdown flag again.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), poll)

    return StreamingResponse(
        messages(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
