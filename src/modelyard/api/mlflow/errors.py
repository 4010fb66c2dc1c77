"""The MLflow door's one error table: domain errors to MLflow's error body.

Body: ``{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "..."}``, the
shape MLflow's ``RestException`` reads. The client raises on any non-200
answer and takes the exception's kind from ``error_code``; the statuses below
follow MLflow's own ``ERROR_CODE_TO_HTTP_STATUS`` where it has one, so raw
HTTP callers see what an MLflow server would answer.

Modelyard's own stable code is kept at the end of the message (``"...
[POLICY_VIOLATION]"``); a policy violation's message lists every unmet rule,
so an MLflow user reads *why* without knowing modelyard.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from modelyard.api.errors import _json_safe
from modelyard.api.responses import JSONResponse
from modelyard.domain import errors as e
from modelyard.domain.webhooks import DestinationRefused

log = logging.getLogger("modelyard.api.mlflow")

# MLflow's error codes (``databricks.proto``'s ErrorCode names), as the door uses them.
RESOURCE_DOES_NOT_EXIST: Final = "RESOURCE_DOES_NOT_EXIST"
RESOURCE_ALREADY_EXISTS: Final = "RESOURCE_ALREADY_EXISTS"
INVALID_PARAMETER_VALUE: Final = "INVALID_PARAMETER_VALUE"
INVALID_STATE: Final = "INVALID_STATE"
RESOURCE_CONFLICT: Final = "RESOURCE_CONFLICT"
PERMISSION_DENIED: Final = "PERMISSION_DENIED"
UNAUTHENTICATED: Final = "UNAUTHENTICATED"
ENDPOINT_NOT_FOUND: Final = "ENDPOINT_NOT_FOUND"
RESOURCE_EXHAUSTED: Final = "RESOURCE_EXHAUSTED"
BAD_REQUEST: Final = "BAD_REQUEST"
INTERNAL_ERROR: Final = "INTERNAL_ERROR"
TEMPORARILY_UNAVAILABLE: Final = "TEMPORARILY_UNAVAILABLE"

# Nearest class first (looked up along the exception's MRO). ``DestinationRefused``
# (a webhook URL the SSRF rules forbid) is an InvalidInput to MLflow's client.
TABLE: Final[dict[type[e.ModelyardError], tuple[str, int]]] = {
    e.InvalidInput: (INVALID_PARAMETER_VALUE, 400),
    DestinationRefused: (INVALID_PARAMETER_VALUE, 400),
    # MLflow answers "already exists" with 400 (its ERROR_CODE_TO_HTTP_STATUS).
    e.AlreadyExists: (RESOURCE_ALREADY_EXISTS, 400),
    e.NotFound: (RESOURCE_DOES_NOT_EXIST, 404),
    e.Unauthenticated: (UNAUTHENTICATED, 401),
    e.PermissionDenied: (PERMISSION_DENIED, 403),
    # A state clash (immutable version, model with published versions): MLflow
    # has no 4xx "failed precondition" but RESOURCE_CONFLICT (409).
    e.Conflict: (RESOURCE_CONFLICT, 409),
    # The request is valid but the version does not meet the namespace's
    # rules: INVALID_STATE is MLflow's word for it; 409 keeps it a client error.
    e.PolicyViolation: (INVALID_STATE, 409),
    e.PayloadTooLarge: (INVALID_PARAMETER_VALUE, 413),
    e.IntegrityError: (INVALID_PARAMETER_VALUE, 400),
    e.StorageFull: (RESOURCE_EXHAUSTED, 507),
    # The database or the blob store is down: MLflow's client retries 503s.
    e.Unavailable: (TEMPORARILY_UNAVAILABLE, 503),
}

_HTTP: Final[dict[int, str]] = {
    400: BAD_REQUEST,
    401: UNAUTHENTICATED,
    403: PERMISSION_DENIED,
    404: ENDPOINT_NOT_FOUND,
    405: ENDPOINT_NOT_FOUND,
    413: INVALID_PARAMETER_VALUE,
    415: INVALID_PARAMETER_VALUE,
}


def code_and_status(exc: e.ModelyardError) -> tuple[str, int]:
    """MLflow's error code and the HTTP status for a domain error."""
    for cls in type(exc).__mro__:
        found = TABLE.get(cls)
        if found is not None:
            return found
    return INVALID_PARAMETER_VALUE, 400


def message_of(exc: e.ModelyardError) -> str:
    """The message an MLflow user reads: modelyard's message (a policy violation's
    lists every unmet rule) and its stable code."""
    return f"{exc.message} [{exc.code}]"


def mlflow_error(
    status: int, error_code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """MLflow's error body (input quoted in a message is made JSON-safe)."""
    body: dict[str, Any] = {"error_code": error_code, "message": message}
    try:
        return JSONResponse(body, status_code=status, headers=headers)
    except TypeError:
        return JSONResponse(_json_safe(body, 0), status_code=status, headers=headers)


def install_mlflow_error_handlers(app: Starlette) -> None:
    """Map every error of the door's app, framework ones and bugs too, to MLflow's body."""

    async def domain(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, e.ModelyardError)
        code, status = code_and_status(exc)
        headers = None
        if status == 401:
            # MLflow's client sends a token as Bearer, or as the password of Basic.
            headers = {"WWW-Authenticate": 'Basic realm="modelyard", Bearer realm="modelyard"'}
        return mlflow_error(status, code, message_of(exc), headers)

    async def validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err.get('loc', ()))}: {err.get('msg', '')}"
            for err in exc.errors()
        )
        return mlflow_error(400, INVALID_PARAMETER_VALUE, f"invalid request: {problems}")

    async def http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP.get(exc.status_code, BAD_REQUEST)
        if exc.status_code in (404, 405):
            message = (
                f"{request.method} {request.url.path} is not an MLflow endpoint "
                "modelyard serves (see the README's MLflow section)"
            )
            # Which MLflow calls clients rely on that the door lacks shows here.
            log.warning("MLflow endpoint not served: %s %s", request.method, request.url.path)
        else:
            message = str(exc.detail)
        return mlflow_error(exc.status_code, code, message, dict(exc.headers or {}) or None)

    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return mlflow_error(500, INTERNAL_ERROR, "internal error; see the server log")

    app.add_exception_handler(e.ModelyardError, domain)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(Exception, unexpected)
