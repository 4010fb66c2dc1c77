"""Pure ASGI middleware: Prometheus request metrics and the JSON body limit."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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
    """Refuse request bodies over ``limit`` bytes, except where ``streams(method,
    path)`` says the route streams its body (blob uploads).

    The limit is checked on ``Content-Length`` first; a body without one
    (chunked) is read here, up to the limit, and replayed to the app, so the
    413 is ours and not a framework parse error. Memory stays bounded by the
    limit; large uploads go to the exempt blob routes, which stream.
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
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if value.isdigit() and int(value) > limit:
                    await _send_413(send, limit)
                    return
                # A declared length within the limit: the server enforces it.
                await self.app(scope, receive, send)
                return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            body = message.get("body", b"")
            seen += len(body)
            if seen > limit:
                await _send_413(send, limit)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_413(send: Send, limit: int) -> None:
    import orjson

    body = orjson.dumps(
        {
            "error": {
                "code": "PAYLOAD_TOO_LARGE",
                "message": "request body too large",
                "details": {"limit": limit},
            }
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
