"""The SDK raises the same typed exceptions as the service, rebuilt from the error body."""

from __future__ import annotations

from typing import Any

from modelyard.domain import errors as e
from modelyard.domain.webhooks import DestinationRefused

_BY_STATUS: dict[int, type[e.ModelyardError]] = {
    400: e.InvalidInput,
    401: e.Unauthenticated,
    403: e.PermissionDenied,
    404: e.NotFound,
    413: e.PayloadTooLarge,
    422: e.IntegrityError,
}
_BY_CODE: dict[str, type[e.ModelyardError]] = {
    "POLICY_VIOLATION": e.PolicyViolation,
    "VALIDATION_ERROR": e.InvalidInput,
    "WEBHOOK_URL_REFUSED": DestinationRefused,
    "WEBHOOK_URL_UNRESOLVABLE": DestinationRefused,
    "STORAGE_FULL": e.StorageFull,
    "STORAGE_UNAVAILABLE": e.StorageUnavailable,
    "DATABASE_UNAVAILABLE": e.Unavailable,
    "NOT_READY": e.Unavailable,
}


class ServerError(e.ModelyardError):
    """The server failed (5xx) or answered something that is not our error body."""

    default_code = "SERVER_ERROR"


def error_from_response(status: int, body: Any) -> e.ModelyardError:
    """Rebuild the typed exception for an error response."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return ServerError(f"HTTP {status}", details={"status": status})
    code = str(err.get("code", "ERROR"))
    message = str(err.get("message", ""))
    details = err.get("details") if isinstance(err.get("details"), dict) else {}
    if code in _BY_CODE:
        cls = _BY_CODE[code]
    elif status >= 500:
        return ServerError(message, code=code, details=details)
    elif status == 409:
        cls = e.AlreadyExists if code.endswith("ALREADY_EXISTS") else e.Conflict
    else:
        cls = _BY_STATUS.get(status, e.ModelyardError)
    return cls(message, code=code, details=details)
