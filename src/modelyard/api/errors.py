"""The one table from domain errors to HTTP, and the one JSON error body.

Body: ``{"error": {"code": str, "message": str, "details": object}}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from modelyard.api.openapi import allowed_methods
from modelyard.api.responses import JSONResponse
from modelyard.domain import errors as e
from modelyard.domain.webhooks import DestinationRefused

log = logging.getLogger("modelyard.api")

STATUS: dict[type[e.ModelyardError], int] = {
    e.InvalidInput: 400,
    e.Unauthenticated: 401,
    e.PermissionDenied: 403,
    e.NotFound: 404,
    e.AlreadyExists: 409,
    e.Conflict: 409,
    e.PolicyViolation: 409,
    e.PayloadTooLarge: 413,
    e.IntegrityError: 422,
    e.StorageFull: 507,
    e.Unavailable: 503,
    # Well-formed but forbidden by the SSRF rules (a subclass of InvalidInput).
    DestinationRefused: 422,
}

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ROUTE_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    411: "LENGTH_REQUIRED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    416: "RANGE_NOT_SATISFIABLE",
}


def status_for(exc: e.ModelyardError) -> int:
    """HTTP status of a domain error (by its nearest mapped class)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response:
    """Build the one error body.

    An error may quote the input that caused it, and input can hold what JSON
    cannot carry (a lone surrogate from Python callers, an integer beyond 64
    bits, nesting deeper than the encoder goes): such values are written in a
    safe form rather than failing the answer itself (issue 9).
    """
    content = {"error": {"code": code, "message": message, "details": details or {}}}
    try:
        return JSONResponse(content, status_code=status, headers=headers)
    except TypeError:
        return JSONResponse(_json_safe(content, 0), status_code=status, headers=headers)


_MAX_DEPTH = 32
_INT64 = 1 << 63


def _json_safe(value: Any, depth: int) -> Any:
    """``value`` with every part JSON can't carry replaced by a readable stand-in."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)
    if depth >= _MAX_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {_json_safe(str(k), depth): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v, depth + 1) for v in value]
    return _json_safe(str(value), depth)


def install_error_handlers(app: FastAPI) -> None:
    """Map every error, including framework ones and bugs, to the one body."""

    async def domain(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, e.ModelyardError)
        status = status_for(exc)
        # RFC 6750: a 401 names the scheme the client should use.
        headers = {"WWW-Authenticate": 'Bearer realm="modelyard"'} if status == 401 else None
        return error_response(status, exc.code, exc.message, exc.details, headers=headers)

    async def validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = [
            {
                "loc": [str(x) for x in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
            for err in exc.errors()
        ]
        return error_response(
            422, "VALIDATION_ERROR", "the request does not match the schema", {"errors": problems}
        )

    async def http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first matching route's methods.
            headers["Allow"] = ", ".join(allowed_methods(request.app.router.routes, request.scope))
        return error_response(exc.status_code, code, str(exc.detail), None, headers=headers)

    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "INTERNAL_ERROR", "internal error; see the server log")

    app.add_exception_handler(e.ModelyardError, domain)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(Exception, unexpected)
