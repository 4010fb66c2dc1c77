"""The Open Inference Protocol v2 HTTP server as one small ASGI application.

Routes (KServe / Triton's REST form)::

    GET  /v2                                     server metadata
    GET  /v2/health/live | /v2/health/ready      liveness, readiness
    GET  /v2/models/{name}[/versions/{v}]        model metadata
    GET  /v2/models/{name}[/versions/{v}]/ready  model readiness
    POST /v2/models/{name}[/versions/{v}]/infer  inference
    GET  /metrics                                Prometheus text format
    GET  /monitoring                             the monitoring windows as JSON

A hand-written dispatcher rather than a routing framework: the infer route is
the hot path, and splitting the path once costs less than matching a route
table. Bodies are read as JSON whatever the ``Content-Type`` (tritonclient
sends none). Errors use OIP's shape ``{"error": message}`` (plus a stable
``code``), never a bare 500 page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from time import perf_counter
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelyard.serving.predlog import PredictionLog, Record
from modelyard.serving.protocol import (
    InferRequest,
    ProtocolError,
    decode_infer,
    encode_infer,
    error_body,
)
from modelyard.serving.table import Live, ModelTable
from modelyard.serving.tensors import bf16_to_float

log = logging.getLogger("modelyard.serving")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Hook = Callable[[], None]

JSON = b"application/json"
BINARY = b"application/octet-stream"
HEADER_LENGTH = b"inference-header-content-length"
DEFAULT_MAX_BODY = 64 << 20


def _server_version() -> str:
    try:
        return package_version("modelyard")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0"


class InferenceApp:
    """ASGI callable serving the models of a :class:`ModelTable`.

    ``on_startup`` / ``on_shutdown`` run in the lifespan (the alias follower
    starts and stops there). ``ready`` turns false while shutting down.
    """

    def __init__(
        self,
        table: ModelTable,
        *,
        on_startup: Hook | None = None,
        on_shutdown: Hook | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        predictions: PredictionLog | None = None,
    ) -> None:
        self.table = table
        self.predictions = predictions
        """Where each inference is logged (``--log-predictions``); None: off."""
        self.metrics = table.metrics
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self.max_body = max_body
        self.ready = True
        self._server_meta = orjson.dumps(
            {
                "name": "modelyard",
                "version": _server_version(),
                "extensions": ["binary_tensor_data"],
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.on_startup is not None:
                    self.on_startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                if self.on_shutdown is not None:
                    self.on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        parts = path.strip("/").split("/")
        if parts[0] == "v2":
            if len(parts) >= 3 and parts[1] == "models":
                await self._model_route(parts[2:], method, scope, receive, send)
                return
            if method not in ("GET", "HEAD"):
                await _send(send, 405, error_body("method not allowed", "METHOD_NOT_ALLOWED"))
            elif len(parts) == 1:
                await _send(send, 200, self._server_meta)
            elif parts[1:] == ["health", "live"]:
                await _send(send, 200, b'{"live":true}')
            elif parts[1:] == ["health", "ready"]:
                ok = self.ready and bool(self.table.models)
                await _send(send, 200 if ok else 503, orjson.dumps({"ready": ok}))
            else:
                await _not_found(send, path)
        elif path == "/metrics" and method in ("GET", "HEAD"):
            body = generate_latest(self.metrics.registry)
            await _send(send, 200, body, CONTENT_TYPE_LATEST.encode())
        elif path == "/monitoring" and method in ("GET", "HEAD"):
            await _send(send, 200, orjson.dumps({"models": self.table.monitoring()}))
        else:
            await _not_found(send, path)

    async def _model_route(
        self, parts: list[str], method: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """``parts``: ``name [versions v] [ready|infer]``."""
        name, rest = parts[0], parts[1:]
        version: str | None = None
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest = rest[1], rest[2:]
        action = rest[0] if len(rest) == 1 else None
        if len(rest) > 1 or action not in (None, "ready", "infer"):
            await _not_found(send, scope["path"])
            return
        served = self.table.models.get(name)
        live: Live | None = None
        if served is not None:
            live = served.default if version is None else served.versions.get(version)
        if live is None:
            what = name if version is None else f"{name} version {version}"
            await _send(
                send, 404, error_body(f"model {what} is not served here", "MODEL_NOT_FOUND")
            )
            return
        if action == "infer":
            if method != "POST":
                await _send(send, 405, error_body("infer takes POST", "METHOD_NOT_ALLOWED"))
            else:
                await self._infer(live, scope, receive, send)
            return
        if method not in ("GET", "HEAD"):
            await _send(send, 405, error_body("method not allowed", "METHOD_NOT_ALLOWED"))
        elif action == "ready":
            await _send(send, 200, orjson.dumps({"name": name, "ready": True}))
        else:
            assert served is not None
            body = served.metadata() if version is None else live.metadata
            await _send(send, 200, body)

    async def _infer(self, live: Live, scope: Scope, receive: Receive, send: Send) -> None:
        m = live.metrics
        m.in_flight.inc()
        started = perf_counter()
        request: InferRequest | None = None
        try:
            header_length: int | None = None
            for key, value in scope["headers"]:
                if key == HEADER_LENGTH:
                    header_length = _int_header(value)
                elif key == b"content-encoding" and value not in (b"identity", b""):
                    raise ProtocolError(
                        "compressed request bodies are not accepted", "UNSUPPORTED_ENCODING", 415
                    )
            body = await _read_body(receive, self.max_body)
            request = decode_infer(body, header_length, live.signature)
            live.monitor.observe_inputs(request.inputs)
            if live.loaded.offload:
                # A slow model (large, or its flavor says so) on a worker
                # thread: other requests, health probes and /metrics go on.
                results = await asyncio.to_thread(live.loaded.predictor.predict, request.inputs)
            else:
                # Inline on the event loop: small models answer in
                # microseconds, and a hop to a worker thread would cost more
                # than the inference (the server is meant to be pinned to a core).
                results = live.loaded.predictor.predict(request.inputs)
            answer, json_length = encode_infer(live.loaded.model, live.version, request, results)
        except ProtocolError as exc:
            m.in_flight.dec()
            m.latency.observe(perf_counter() - started)
            self._count_error(live, str(exc.status), exc.code)
            await _send(send, exc.status, error_body(exc.message, exc.code))
            return
        except Exception as exc:  # a model failing on inputs its signature accepted
            elapsed = perf_counter() - started
            m.in_flight.dec()
            m.latency.observe(elapsed)
            live.monitor.observe(True, elapsed)
            log.exception("inference failed on %s", live.loaded.ref)
            self._count_error(live, "500", "INFERENCE_FAILED")
            message = f"inference failed: {type(exc).__name__}: {exc}"
            if self.predictions is not None and request is not None:
                self._log(live, request.id, request.inputs, None, elapsed, message)
            await _send(send, 500, error_body(message, "INFERENCE_FAILED"))
            return
        elapsed = perf_counter() - started
        m.in_flight.dec()
        m.latency.observe(elapsed)
        live.monitor.observe(False, elapsed)
        m.ok.inc()
        if self.predictions is not None:
            self._log(live, request.id, request.inputs, results, elapsed, None)
        if json_length is None:
            await _send(send, 200, answer)
        else:
            extra = [(HEADER_LENGTH, str(json_length).encode())]
            await _send(send, 200, answer, BINARY, extra)

    def _log(
        self,
        live: Live,
        request_id: str | None,
        inputs: dict[str, Any],
        outputs: dict[str, Any] | None,
        elapsed: float,
        error: str | None,
    ) -> None:
        assert self.predictions is not None
        if live.bf16:  # logged as values, not as the bit patterns the server holds
            inputs = {k: bf16_to_float(v) if k in live.bf16 else v for k, v in inputs.items()}
            if outputs is not None:
                outputs = {k: bf16_to_float(v) if k in live.bf16 else v for k, v in outputs.items()}
        rec = Record(
            time.time(),
            live.loaded.model,
            live.version,
            live.loaded.ref,
            request_id,
            elapsed * 1000.0,
            inputs,
            outputs,
            error,
        )
        if not self.predictions.record(rec):
            self.metrics.prediction_log_dropped.inc()

    def _count_error(self, live: Live, status: str, code: str) -> None:
        model = live.loaded.model
        self.metrics.requests.labels(model, live.version, status).inc()
        self.metrics.errors.labels(model, code).inc()


def _int_header(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        raise ProtocolError(
            "Inference-Header-Content-Length must be an integer", "INVALID_REQUEST"
        ) from None


async def _read_body(receive: Receive, limit: int) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise ProtocolError(f"request body over {limit} bytes", "PAYLOAD_TOO_LARGE", 413)
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ProtocolError(f"request body over {limit} bytes", "PAYLOAD_TOO_LARGE", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def _not_found(send: Send, path: str) -> None:
    await _send(send, 404, error_body(f"no route {path}", "NOT_FOUND"))


async def _send(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
