"""Validation of the strings clients choose: names, tag keys, digests, file paths.

A client string never becomes a filesystem path: file paths in a manifest are
*logical* names, checked here strictly and stored as text. Blobs live under
their digest only.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

from modelyard.domain.errors import InvalidInput

# Names start with a letter so that "name/3" (version 3) and "ns/name" never
# read two ways: a segment of digits only is always a version number.
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,127}$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,254}$")
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")

MAX_PATH_LENGTH = 1024
MAX_TAG_VALUE_LENGTH = 5000
RESERVED_ALIASES = frozenset({"latest"})


def validate_name(value: str, *, kind: str = "model") -> str:
    """Return ``value`` if it is a valid model or namespace name, else raise."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise InvalidInput(
            f"invalid {kind} name {value!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter",
            code="INVALID_NAME",
            details={"kind": kind, "value": value if isinstance(value, str) else None},
        )
    return value


def validate_alias(value: str) -> str:
    """Return ``value`` if it is a valid alias name (``latest`` is reserved)."""
    if not isinstance(value, str) or not _ALIAS_RE.fullmatch(value):
        raise InvalidInput(
            f"invalid alias {value!r}", code="INVALID_ALIAS", details={"value": value}
        )
    return value


def validate_key(value: str, *, kind: str = "tag") -> str:
    """Return ``value`` if it is a valid tag, metric, param or metadata key."""
    if not isinstance(value, str) or not _KEY_RE.fullmatch(value):
        raise InvalidInput(
            f"invalid {kind} key {value!r}",
            code="INVALID_KEY",
            details={"kind": kind, "value": value if isinstance(value, str) else None},
        )
    return value


def validate_tag_value(value: str) -> str:
    """Tag values are free text up to a bound, without control characters."""
    if not isinstance(value, str):
        raise InvalidInput("tag values must be strings", code="INVALID_TAG")
    if len(value) > MAX_TAG_VALUE_LENGTH or any(unicodedata.category(c) == "Cc" for c in value):
        raise InvalidInput("tag value too long or contains control characters", code="INVALID_TAG")
    return value


def validate_digest(value: str) -> str:
    """Return ``value`` if it is a lowercase hex sha256 digest."""
    if not isinstance(value, str) or not _DIGEST_RE.fullmatch(value):
        raise InvalidInput(
            f"invalid sha256 digest {value!r}: expected 64 lowercase hex characters",
            code="INVALID_DIGEST",
            details={"value": value if isinstance(value, str) else None},
        )
    return value


def _bad_path(value: object, reason: str) -> InvalidInput:
    return InvalidInput(
        f"invalid file path {value!r}: {reason}",
        code="INVALID_PATH",
        details={"path": value if isinstance(value, str) else None, "reason": reason},
    )


def validate_file_path(value: str) -> str:
    """Return the logical file path if it is safe, else raise ``INVALID_PATH``.

    Refused: empty, too long, absolute, drive letters and UNC prefixes,
    backslashes, control characters, empty / ``.`` / ``..`` segments, and any of
    these hidden behind (repeated) percent-encoding.
    """
    if not isinstance(value, str) or not value:
        raise _bad_path(value, "empty")
    if len(value) > MAX_PATH_LENGTH:
        raise _bad_path(value, "too long")
    decoded = value
    # Decode until stable so that %252e%252e cannot smuggle "..".
    for _ in range(8):
        nxt = unquote(decoded)
        if nxt == decoded:
            break
        decoded = nxt
    else:
        raise _bad_path(value, "too many levels of percent-encoding")
    for candidate in {value, decoded}:
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in candidate):
            raise _bad_path(value, "control character")
        if "\\" in candidate:
            raise _bad_path(value, "backslash")
        if candidate.startswith("/"):
            raise _bad_path(value, "absolute path")
        if re.match(r"^[A-Za-z]:", candidate):
            raise _bad_path(value, "drive letter")
        for segment in candidate.split("/"):
            if segment == "":
                raise _bad_path(value, "empty segment")
            if segment in (".", ".."):
                raise _bad_path(value, "relative segment")
            if segment != segment.strip():
                raise _bad_path(value, "leading or trailing white space in a segment")
    if unicodedata.normalize("NFC", value) != value:
        raise _bad_path(value, "not in Unicode NFC form")
    return value


# The same rules as JSON Schema patterns, for the OpenAPI document (ECMA-262 and
# Python agree on these; the checks above use fullmatch, so a trailing newline
# cannot slip past ``$`` as it would with ``match``).
NAME_PATTERN = _NAME_RE.pattern
ALIAS_PATTERN = _ALIAS_RE.pattern
KEY_PATTERN = _KEY_RE.pattern
DIGEST_PATTERN = _DIGEST_RE.pattern
