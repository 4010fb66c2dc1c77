"""The one exception tree of modelyard. No HTTP in here.

::

    ModelyardError
     ├── NotFound            (MODEL_NOT_FOUND, VERSION_NOT_FOUND, ...)
     ├── AlreadyExists       (MODEL_ALREADY_EXISTS, ...)
     ├── Conflict            (VERSION_IMMUTABLE, MODEL_HAS_PUBLISHED_VERSIONS, ...)
     ├── InvalidInput        (INVALID_NAME, INVALID_PATH, INVALID_FILTER, ...)
     ├── PayloadTooLarge     (PAYLOAD_TOO_LARGE)
     ├── StorageFull         (STORAGE_FULL)
     ├── Unavailable         (DATABASE_UNAVAILABLE, NOT_READY)
     │    └── StorageUnavailable  (STORAGE_UNAVAILABLE)
     ├── IntegrityError      (DIGEST_MISMATCH, BLOB_MISSING, SIZE_MISMATCH)
     ├── PermissionDenied    (PERMISSION_DENIED)
     ├── Unauthenticated     (UNAUTHENTICATED)
     └── PolicyViolation     (POLICY_VIOLATION)

Each error carries a stable ``code`` (part of the public contract), a human
``message`` and a JSON-able ``details`` mapping. The API layer maps the class to
an HTTP status in one table.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ModelyardError(Exception):
    """Base of every error modelyard raises on purpose."""

    default_code: ClassVar[str] = "ERROR"

    def __init__(
        self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The error as the one JSON error body's inner object."""
        return {"code": self.code, "message": self.message, "details": self.details}


class NotFound(ModelyardError):
    """The named thing does not exist (or is not visible to the caller)."""

    default_code = "NOT_FOUND"


class AlreadyExists(ModelyardError):
    """A thing with that identity exists already."""

    default_code = "ALREADY_EXISTS"


class Conflict(ModelyardError):
    """The request is valid but clashes with the current state."""

    default_code = "CONFLICT"


class InvalidInput(ModelyardError):
    """The request is malformed or names something impossible."""

    default_code = "INVALID_INPUT"


class PayloadTooLarge(ModelyardError):
    """The request body or a field of it is over a configured limit."""

    default_code = "PAYLOAD_TOO_LARGE"


class StorageFull(ModelyardError):
    """The server has no room left for the bytes (disk full, or over a quota);
    nothing partial was kept."""

    default_code = "STORAGE_FULL"


class Unavailable(ModelyardError):
    """Something the registry depends on (its metadata database, its blob
    store) cannot be reached now; nothing was changed, and the request may be
    retried. Not the caller's fault: the doors answer 503."""

    default_code = "UNAVAILABLE"


class StorageUnavailable(Unavailable):
    """The blob store could not be reached or refused the operation (an object
    store down, denied credentials, a missing bucket); nothing partial was
    kept, and the request may be retried."""

    default_code = "STORAGE_UNAVAILABLE"


class IntegrityError(ModelyardError):
    """Bytes do not match the digest or size they claim."""

    default_code = "INTEGRITY_ERROR"


class PermissionDenied(ModelyardError):
    """The caller is known but may not do this."""

    default_code = "PERMISSION_DENIED"


class Unauthenticated(ModelyardError):
    """The caller did not prove who they are."""

    default_code = "UNAUTHENTICATED"


class PolicyViolation(ModelyardError):
    """A governance policy is not satisfied; ``details`` lists every unmet rule."""

    default_code = "POLICY_VIOLATION"
