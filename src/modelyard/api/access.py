"""Deny by default: every route declares what it needs, and a guard enforces it.

Each endpoint carries an :class:`Access` set with :func:`access`. When the app
is built, :func:`install_guards` wraps every route's ASGI app in a guard:

- ``public`` routes run as they are (health, metrics, the OpenAPI document
  and its viewers);
- every other route first authenticates the bearer token (401
  ``UNAUTHENTICATED``, ``WWW-Authenticate: Bearer``) and puts the
  :class:`~modelyard.domain.identity.Principal` in the request scope; the
  service then checks the declared permission on the target namespace
  (403 ``PERMISSION_DENIED``, or 404 outside a consumer's production view);
- a route that declared nothing is refused with 403 at request time, and
  ``install_guards(strict=True)`` (what ``create_app`` uses) refuses to
  build such an app at all.

The guard replaces FastAPI dependencies on purpose: it runs once per request
with no dependency resolution, and a token seen in the last few seconds costs
a dict lookup and one SHA-256 (see ``service/identity.py`` for the cache and
its revocation bound).

With auth off (the local default, see ``Settings.auth_enabled``) every
request acts as the built-in superuser ``anonymous``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Final

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from modelyard.domain.access import PRINCIPAL_KEY, Access, Requirement, access, principal_of
from modelyard.domain.errors import PermissionDenied
from modelyard.domain.identity import Principal
from modelyard.service.identity import IdentityService

# Declared in the domain so that every door (api, web) can mark its routes.
__all__ = [
    "ANONYMOUS",
    "PRINCIPAL_KEY",
    "Access",
    "Authenticator",
    "Requirement",
    "access",
    "bearer_token",
    "declared",
    "guard_of",
    "install_guards",
    "principal_of",
]

ANONYMOUS: Final = Principal.local("anonymous")
# FastAPI adds the OpenAPI document itself (its viewers are api/docs.py's).
BUILTIN_PUBLIC: Final = frozenset({"/openapi.json"})


def declared(route: BaseRoute) -> Access | None:
    """The access a route's endpoint declared, if any."""
    if isinstance(route, Route):
        if route.path in BUILTIN_PUBLIC:
            return Access("public", "OpenAPI document and viewers.")
        found = getattr(route.endpoint, "modelyard_access", None)
        return found if isinstance(found, Access) else None
    return None


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, rest = bytes(value).decode("latin-1").partition(" ")
            token = rest.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


class Authenticator:
    """Turns a request's bearer token into a principal (or ``anonymous`` with auth off).

    ``credentials`` reads the token from the request: the bearer header by
    default; a door whose clients send it otherwise (the MLflow door also
    takes it as a Basic password) passes its own reader.
    """

    def __init__(
        self,
        identity: IdentityService,
        *,
        enabled: bool,
        call: Any,
        credentials: Callable[[Scope], str | None] = bearer_token,
    ) -> None:
        self.identity = identity
        self.enabled = enabled
        self.call = call  # api.deps.ServiceCall: inline on SQLite, threadpool elsewhere
        self.credentials = credentials

    async def __call__(self, scope: Scope) -> Principal:
        """The request's principal; ``UNAUTHENTICATED`` for a missing or bad token."""
        if not self.enabled:
            return ANONYMOUS
        token = self.credentials(scope)
        found = self.identity.authenticate_cached(token)
        if found is not None:
            return found
        principal: Principal = await self.call(self.identity.authenticate, token)
        return principal


def _guard(app: ASGIApp, rule: Access | None, authenticator: Authenticator) -> ASGIApp:
    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if rule is None:
            raise PermissionDenied(
                "this route declares no authorization decision; refused by default",
                code="PERMISSION_DENIED",
            )
        if not rule.public:
            scope[PRINCIPAL_KEY] = await authenticator(scope)
        await app(scope, receive, send)

    guarded.__dict__["modelyard_access"] = rule
    return guarded


GUARDED_MARK: Final = "modelyard_guards_installed"


def install_guards(app: Starlette, authenticator: Authenticator, *, strict: bool = True) -> None:
    """Wrap every route in its guard; with ``strict``, refuse undeclared routes now.

    A mounted sub-app is accepted only if ``install_guards`` ran on it first
    (strictly): its own routes then carry their guards (the MLflow door,
    ``api/mlflow/app.py``). Any other mount would bypass the guards.
    """
    missing: list[str] = []
    # Route objects come from module-level routers shared by every app built
    # in this process: guard a per-app shallow copy, never the shared one.
    app.router.routes[:] = [copy.copy(r) for r in app.router.routes]
    for route in app.router.routes:
        if isinstance(route, Mount) and getattr(route.app, GUARDED_MARK, False):
            continue
        rule = declared(route)
        if rule is None:
            methods = sorted(getattr(route, "methods", None) or ())
            missing.append(f"{','.join(methods)} {getattr(route, 'path', route)!r}")
        if isinstance(route, Route):
            route.app = _guard(route.app, rule, authenticator)
            if rule is not None and getattr(route, "include_in_schema", False):
                extra = dict(getattr(route, "openapi_extra", None) or {})
                extra["x-required-permission"] = rule.requires
                route.openapi_extra = extra  # type: ignore[attr-defined]
                description = getattr(route, "description", "") or ""
                route.description = f"{description}\n\n{rule.describe()}".strip()  # type: ignore[attr-defined]
        else:
            # Mounts of unguarded apps and other route kinds would bypass the guard.
            missing.append(f"unsupported route kind {type(route).__name__}")
    if missing and strict:
        raise RuntimeError("routes without an authorization decision: " + "; ".join(missing))
    if not missing:
        app.__dict__[GUARDED_MARK] = True


def guard_of(route: BaseRoute) -> Access | None:
    """The access a route's installed guard enforces (None: not guarded or undeclared)."""
    found = getattr(getattr(route, "app", None), "modelyard_access", None)
    return found if isinstance(found, Access) else None
