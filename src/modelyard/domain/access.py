"""What an entry point needs before it runs: the declaration every door shares.

Each HTTP route (REST v1 under ``api/``, pages under ``web/``) marks its
endpoint with :func:`access`; the guard that ``api/access.py`` installs reads
the mark and refuses any route that declared nothing (deny by default). The
declaration lives here, in the pure domain, so every door can make it without
importing another door.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

from modelyard.domain.errors import Unauthenticated
from modelyard.domain.identity import Principal

F = TypeVar("F", bound=Callable[..., Any])

Requirement = Literal[
    "public",
    "authenticated",
    "consume",
    "read",
    "write",
    "review",
    "admin",
    "instance-admin",
]
# Where the guard puts the authenticated principal in an ASGI scope.
PRINCIPAL_KEY: Final = "modelyard.principal"


@dataclass(frozen=True, slots=True)
class Access:
    """What a route needs. ``requires`` names the permission the service checks
    on the target namespace (``consume``/``read``/``write``/``review``/
    ``admin``), or ``instance-admin``, ``authenticated`` (any valid token; the
    service filters what it returns) or ``public`` (no token)."""

    requires: Requirement
    note: str = ""

    @property
    def public(self) -> bool:
        """No token needed."""
        return self.requires == "public"

    def describe(self) -> str:
        """One line for the OpenAPI description."""
        text = {
            "public": "no token needed",
            "authenticated": "any valid token; the answer holds only what the caller may see",
            "instance-admin": "instance admin (admin on `*`)",
        }.get(self.requires, f"`{self.requires}` on the namespace")
        return f"Requires: {text}." + (f" {self.note}" if self.note else "")


def access(requires: Requirement, note: str = "") -> Callable[[F], F]:
    """Declare what an endpoint needs (put it under the ``@router.<method>`` line)."""

    def mark(fn: F) -> F:
        fn.__dict__["modelyard_access"] = Access(requires, note)
        return fn

    return mark


def principal_of(scope: Mapping[str, Any]) -> Principal:
    """The principal the guard put in the scope (``UNAUTHENTICATED`` if none)."""
    found = scope.get(PRINCIPAL_KEY)
    if not isinstance(found, Principal):
        raise Unauthenticated("no authenticated principal", code="UNAUTHENTICATED")
    return found
