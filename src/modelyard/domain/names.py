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
    # Lone surrogates (from Python callers) are not text any database takes.
    if len(value) > MAX_TAG_VALUE_LENGTH or any(
        unicodedata.category(c) in ("Cc", "Cs") for c in value
    ):
        raise InvalidInput(
            "tag value too long or contains control characters or lone surrogates",
            code="INVALID_TAG",
        )
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


# Characters that stand for a path separator somewhere: look-alikes of "/"
# and "\\", and the currency signs that Windows' "best fit" conversion to a
# Japanese or Korean code page turns into a backslash.
_SEPARATOR_LOOKALIKES = frozenset(
    "\u2044\u2215\u2571\u29f8\uff0f"  # fraction, division, box-drawing, big, fullwidth slash
    "\u2216\u29f5\u29f9\ufe68\uff3c"  # set minus, reverse solidus operator, small/fullwidth
    "\u00a5\u20a9"  # yen and won signs
)
# Refused anywhere in a name by Windows (":" also names NTFS streams).
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')
# Control, format (bidi overrides, BOM, zero-width), surrogate, private-use
# and unassigned code points, and line/paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Windows device names, reserved with any extension ("nul.txt") and in any case.
_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"}
    | {f"{p}{n}" for p in ("COM", "LPT") for n in "0123456789"}
)
MAX_SEGMENT_BYTES = 255


def _check_segment(segment: str, value: str) -> None:
    if segment == "":
        raise _bad_path(value, "empty segment")
    if segment in (".", ".."):
        raise _bad_path(value, "relative segment")
    if segment != segment.strip():
        raise _bad_path(value, "leading or trailing white space in a segment")
    if segment.endswith("."):
        # Windows drops trailing dots: "..." and "a." would not be what they say.
        raise _bad_path(value, "a segment ends with a dot")
    if segment.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        raise _bad_path(value, "a reserved device name on Windows")
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise _bad_path(value, f"a segment longer than {MAX_SEGMENT_BYTES} bytes")


def _check_text(candidate: str, value: str) -> None:
    for c in candidate:
        if unicodedata.category(c) in _REFUSED_CATEGORIES:
            raise _bad_path(value, "control, format or unassigned character")
        if c == "\\" or c in _SEPARATOR_LOOKALIKES:
            raise _bad_path(value, "backslash or a look-alike of a path separator")
        if c in _WINDOWS_FORBIDDEN:
            raise _bad_path(value, 'a character Windows forbids in names (<>:"|?*)')
    if candidate.startswith("/"):
        raise _bad_path(value, "absolute path")
    for segment in candidate.split("/"):
        _check_segment(segment, value)


def validate_file_path(value: str) -> str:
    """Return the logical file path if it is safe, else raise ``INVALID_PATH``.

    A path is stored as given and pulled as given onto Linux, macOS and
    Windows, so it must be safe on all three, and must not turn into
    something else under the normalizations those systems and their tools
    apply (issue 9: fullwidth dots before ``/etc/passwd``, a BOM before
    ``../x`` and ``..`` between division slashes were accepted).

    The rule, in order:

    - 1 to 1024 characters; percent-encoding is decoded until stable (at most
      8 levels), and the checks below hold for the text as given and decoded;
    - the path must be in Unicode NFKC form. We refuse other input rather
      than store its NFKC form: a pushed file is pulled under the very name
      it was pushed with, and the error names the NFKC spelling to use.
      Since the form is NFKC, fullwidth dots and slashes, ligatures and the
      like cannot hide ``..`` or a separator; the decoded text is checked in
      its NFKC form too;
    - no control, format (bidi overrides, BOM, zero-width), surrogate,
      private-use or unassigned code points, nor line/paragraph separators;
    - no backslash or look-alike of a separator (division, fraction and
      fullwidth slashes, set minus, yen and won signs: see the table above);
      no ``<>:"|?*``; not absolute;
    - each ``/`` segment: not empty, not ``.`` or ``..``, no leading or
      trailing white space, no trailing dot, not a Windows device name with
      any extension (``CON``, ``nul.txt``, ``COM1``...), at most 255 bytes
      of UTF-8.
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
    # Categories first: NFKC of a lone surrogate or unassigned code point is
    # not meaningful, and the message should name the real problem.
    _check_text(value, value)
    nfkc = unicodedata.normalize("NFKC", value)
    if nfkc != value:
        raise InvalidInput(
            f"invalid file path {value!r}: not in Unicode NFKC form (use {nfkc!r})",
            code="INVALID_PATH",
            details={"path": value, "reason": "not in Unicode NFKC form", "nfkc": nfkc},
        )
    if decoded != value:
        _check_text(decoded, value)
        _check_text(unicodedata.normalize("NFKC", decoded), value)
    return value


# The same rules as JSON Schema patterns, for the OpenAPI document (ECMA-262 and
# Python agree on these; the checks above use fullmatch, so a trailing newline
# cannot slip past ``$`` as it would with ``match``).
NAME_PATTERN = _NAME_RE.pattern
ALIAS_PATTERN = _ALIAS_RE.pattern
KEY_PATTERN = _KEY_RE.pattern
DIGEST_PATTERN = _DIGEST_RE.pattern
