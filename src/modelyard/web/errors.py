"""Errors on the UI's paths render as pages, with the same code and status as REST.

:func:`install_error_pages` wraps the app's exception handlers (installed by
the API door, which keeps its one JSON error body): a request the web door
marked (``web/door.py``), or any browser request for a path nobody serves,
gets an HTML page carrying the error's stable code; every other request gets
the JSON body as before.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from modelyard.domain import errors as e
from modelyard.web.door import WEB_KEY
from modelyard.web.render import page

log = logging.getLogger("modelyard.web")

Handler = Callable[[Request, Any], Response | Awaitable[Response]]

# The same table as REST v1's (api/errors.py STATUS), by nearest class.
_STATUS: dict[type[e.ModelyardError], int] = {
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
}
_HTTP_CODES = {404: "ROUTE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


def status_for(exc: e.ModelyardError) -> int:
    """HTTP status of a domain error (by its nearest mapped class)."""
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 400


def _wants_page(request: Request) -> bool:
    if request.scope.get(WEB_KEY):
        return True
    path = request.url.path
    browser = "text/html" in request.headers.get("accept", "")
    return browser and not path.startswith("/api/")


def error_page(request: Request, status: int, code: str, message: str) -> Response:
    """The error page: status, stable code and message (escaped like all text)."""
    context: dict[str, Any] = {"status": status, "code": code, "message": message}
    response = page(request, "error.html", context, status=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="modelyard"'
    return response


def install_error_pages(handlers: dict[Any, Handler]) -> None:
    """Wrap the handlers for domain errors, HTTP errors and bugs (in place)."""
    domain = handlers[e.ModelyardError]
    http = handlers[HTTPException]
    unexpected = handlers[Exception]

    async def delegate(handler: Handler, request: Request, exc: Exception) -> Response:
        answer = handler(request, exc)
        return answer if isinstance(answer, Response) else await answer

    async def on_domain(request: Request, exc: Exception) -> Response:
        if not _wants_page(request) or not isinstance(exc, e.ModelyardError):
            return await delegate(domain, request, exc)
        return error_page(request, status_for(exc), exc.code, exc.message)

    async def on_http(request: Request, exc: Exception) -> Response:
        if not _wants_page(request) or not isinstance(exc, HTTPException):
            return await delegate(http, request, exc)
        code = _HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
        message = "no page here" if exc.status_code == 404 else str(exc.detail)
        return error_page(request, exc.status_code, code, message)

    async def on_bug(request: Request, exc: Exception) -> Response:
        if not _wants_page(request):
            return await delegate(unexpected, request, exc)
        log.exception("unhandled error", exc_info=exc)
        return error_page(request, 500, "INTERNAL_ERROR", "internal error; see the server log")

    handlers[e.ModelyardError] = on_domain
    handlers[HTTPException] = on_http
    handlers[Exception] = on_bug
