"""Pure ASGI middleware: Prometheus request metrics and the JSON body guard."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    """This app's Prometheus collectors (one registry per app, no globals)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "modelyard_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "modelyard_http_errors",
            "HTTP responses with status >= 400",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "modelyard_http_request_duration_seconds",
            "Request latency",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
            registry=self.registry,
        )
        self.webhook_attempts = Counter(
            "modelyard_webhook_attempts",
            "Webhook delivery attempts sent by this process",
            ["result"],
            registry=self.registry,
        )
        self.webhook_latency = Histogram(
            "modelyard_webhook_attempt_duration_seconds",
            "Webhook delivery attempt latency",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )


class MetricsMiddleware:
    """Counts requests and errors and times them, labelled by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, label, str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(method, label, str(status)).inc()
            self.metrics.latency.labels(method, label).observe(time.perf_counter() - start)


class BodyLimitMiddleware:
    """Guards JSON request bodies: refuses bodies over ``limit`` bytes (413)
    and JSON text that is not Unicode (422), except where ``streams(method,
    path)`` says the route streams its body (blob uploads).

    The limit is checked on ``Content-Length`` first; the body is then read
    here, up to the limit, and replayed to the app, so the 413 is ours and not
    a framework parse error. Memory stays bounded by the limit; large uploads
    go to the exempt blob routes, which stream.

    A JSON string may spell a lone UTF-16 surrogate (``"\\ud800"``), which
    Python's ``json`` decodes into a ``str`` that no encoder, database or
    error body can write: it is refused here, before any route sees it
    (issue 9: it was a 500, and the connection was reset after it).
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        streams: Callable[[str, str], bool] = lambda method, path: False,
    ) -> None:
        self.app = app
        self.limit = limit
        self.streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.streams(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        limit = self.limit
        declared: int | None = None
        json_text = True
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if value.isdigit():
                    declared = int(value)
                    if declared > limit:
                        await _send_413(send, limit)
                        return
            elif name == b"content-type":
                json_text = _is_json(value)
        if declared == 0 or (declared is None and scope["method"] in ("GET", "HEAD", "OPTIONS")):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = 0
        pending: Message | None = None
        while True:
            message = await receive()
            if message["type"] != "http.request":
                pending = message  # a disconnect: the app sees it after the body
                break
            body = message.get("body", b"")
            seen += len(body)
            if seen > limit:
                await _send_413(send, limit)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if json_text:
            at = lone_surrogate(whole)
            if at is not None:
                await _send_error(
                    send,
                    422,
                    "VALIDATION_ERROR",
                    "the request does not match the schema",
                    {
                        "errors": [
                            {
                                "loc": ["body", str(at)],
                                "msg": "lone UTF-16 surrogate: JSON text must be Unicode "
                                "(RFC 7493)",
                                "type": "json_invalid",
                            }
                        ]
                    },
                )
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed, pending
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": whole, "more_body": False}
            if pending is not None:
                message, pending = pending, None
                return message
            return await receive()

        await self.app(scope, replay, send)


def _is_json(content_type: bytes) -> bool:
    """``application/json`` and ``application/*+json`` (parameters ignored)."""
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


# JSON text up to the first lone surrogate escape: runs without a backslash,
# escapes other than \\u, \\u escapes of non-surrogates, and surrogate pairs
# (possessive, so it runs at C speed without backtracking on big bodies).
_TEXT_WITHOUT_LONE_SURROGATE = re.compile(
    rb"(?:[^\\]++"
    rb"|\\[^u]"
    rb"|\\u(?![dD][89a-fA-F])[0-9a-fA-F]{4}"
    rb"|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb")*+",
    re.DOTALL,
)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
# A surrogate encoded as UTF-8 bytes (invalid UTF-8, but json.loads decodes
# bytes with "surrogatepass").
_RAW_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")


def lone_surrogate(body: bytes) -> int | None:
    """Byte offset of the first lone UTF-16 surrogate in JSON text, or None.

    A high surrogate escape must be followed at once by a low one; a low one
    must follow a high one. Raw surrogate bytes are always refused. Text that
    is not JSON (a broken escape) is left to the JSON parser.

    Cost: two byte searches for bodies without a surrogate escape or an
    ``0xED`` byte (nearly all); else orjson, which refuses lone surrogates,
    decides at a few hundred MB/s; only text orjson refuses for another
    reason (``NaN``, which Python's parser takes) is scanned by the regex.
    """
    if b"\xed" not in body and b"\\ud" not in body and b"\\uD" not in body:
        return None
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "surrogate" in exc.msg:
            if "UTF-8" not in exc.msg:
                return int(exc.pos)
            # Raw surrogate bytes: orjson checks the encoding first, at offset 0.
            raw = _RAW_SURROGATE.search(body)
            return raw.start() if raw is not None else int(exc.pos)
        # Refused for another reason (NaN, a broken escape): scanned below.
    else:
        return None
    raw = _RAW_SURROGATE.search(body)
    if raw is not None:
        return raw.start()
    at = _TEXT_WITHOUT_LONE_SURROGATE.match(body)
    end = at.end() if at is not None else 0
    if end < len(body) and _SURROGATE_ESCAPE.match(body, end):
        return end
    return None


async def _send_413(send: Send, limit: int) -> None:
    # The rest of the body is not read: the connection cannot be reused.
    await _send_error(
        send,
        413,
        "PAYLOAD_TOO_LARGE",
        "request body too large",
        {"limit": limit},
        close=True,
    )


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any],
    *,
    close: bool = False,
) -> None:
    """The one error body, sent from middleware (before any route runs)."""
    body = orjson.dumps({"error": {"code": code, "message": message, "details": details}})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
