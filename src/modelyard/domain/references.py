"""References to versions: ``name/3``, ``name@alias``, ``name@latest`` and the
same with a ``namespace/`` prefix.

Grammar (names start with a letter, so a digits-only segment is a version)::

    ref       := [namespace "/"] name ( "/" number | "@" alias )?
"""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.domain.errors import InvalidInput
from modelyard.domain.names import validate_alias, validate_name

DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed reference. Exactly one of ``version`` / ``alias`` may be set;
    neither means "the model itself" (or its latest version where one is needed).
    """

    namespace: str
    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        base = f"{self.namespace}/{self.name}"
        if self.version is not None:
            return f"{base}/{self.version}"
        if self.alias is not None:
            return f"{base}@{self.alias}"
        return base

    @property
    def is_latest(self) -> bool:
        """True when the reference asks for the newest version."""
        return self.alias == "latest" or (self.version is None and self.alias is None)


def _bad(value: str, reason: str) -> InvalidInput:
    return InvalidInput(
        f"invalid reference {value!r}: {reason}",
        code="INVALID_REFERENCE",
        details={"reference": value, "reason": reason},
    )


def parse_reference(value: str, *, default_namespace: str = DEFAULT_NAMESPACE) -> Reference:
    """Parse a reference string, raising ``INVALID_REFERENCE`` if it is malformed."""
    if not isinstance(value, str) or not value or len(value) > 400:
        raise _bad(str(value), "empty or too long")
    alias: str | None = None
    body = value
    if "@" in value:
        body, _, alias = value.partition("@")
        if not alias:
            raise _bad(value, "empty alias")
        try:
            validate_alias(alias)
        except InvalidInput as exc:
            raise _bad(value, exc.message) from None
    parts = body.split("/")
    version: int | None = None
    if alias is None and len(parts) >= 2 and parts[-1].isascii() and parts[-1].isdigit():
        if len(parts[-1]) > 9:
            raise _bad(value, "version number too large")
        version = int(parts[-1])
        if version < 1:
            raise _bad(value, "versions start at 1")
        parts = parts[:-1]
    if len(parts) == 1:
        namespace, name = default_namespace, parts[0]
    elif len(parts) == 2:
        namespace, name = parts
    else:
        raise _bad(value, "too many '/' segments")
    try:
        validate_name(namespace, kind="namespace")
        validate_name(name)
    except InvalidInput as exc:
        raise _bad(value, exc.message) from None
    return Reference(namespace=namespace, name=name, version=version, alias=alias)
