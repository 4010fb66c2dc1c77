"""The OpenAPI document as a contract that client generators can trust.

FastAPI documents what the endpoints' signatures say; this module adds what
the app does beyond them, from one set of rules rather than per route:

- **Error responses.** Every status a route can answer with the one error
  body (component ``Error``), derived from the permission it declared
  (``api/access.py``), its method, its parameters and body, plus the extra
  statuses its decorator lists in ``responses=`` (see :func:`errors`).
- **Parameter rules.** Path and query parameters are checked by the service
  with stable error codes (400 ``INVALID_NAME``, ...), not by FastAPI, so
  their signatures say ``str``; the document states the rule (name patterns
  from ``domain/names.py``, the enums of roles and states) by parameter name.
  Request bodies carry theirs in ``api/schemas.py``.
- **405 ``Allow``.** :func:`allowed_methods` lists every method routed for a
  path, not only those of the first route that matched it.

The rules only describe: what the app accepts is decided by the service, and
``tests/api/test_openapi_contract.py`` holds the two together.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import Route
from starlette.types import Scope

from modelyard.api.access import Access, declared
from modelyard.domain.approvals import ApprovalState
from modelyard.domain.entities import Relation, VersionState
from modelyard.domain.identity import GLOBAL_SCOPE, Role
from modelyard.domain.names import ALIAS_PATTERN, DIGEST_PATTERN, KEY_PATTERN, NAME_PATTERN
from modelyard.domain.webhooks import DeliveryStatus

ERROR_REF: Final = {"$ref": "#/components/schemas/Error"}

ERROR_SCHEMA: Final[dict[str, Any]] = {
    "title": "Error",
    "description": "The one error body of every route: a stable `code`, a message, details.",
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "additionalProperties": False,
            "properties": {
                "code": {
                    "type": "string",
                    "pattern": "^[A-Z][A-Z0-9_]*$",
                    "description": "Stable, e.g. MODEL_NOT_FOUND, INVALID_NAME.",
                },
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}

ERROR_TEXT: Final = {
    400: "Invalid input: the `code` names the rule (INVALID_NAME, INVALID_FILTER, ...).",
    401: "No valid bearer token (auth on).",
    403: "The token's user lacks the permission this route requires.",
    404: "The named thing does not exist, or the caller may not see it.",
    409: "Conflicts with the current state (exists already, wrong state, policy, ...).",
    413: "The body, or a list or map in it, is larger than the configured limit.",
    416: "The Range cannot be satisfied.",
    422: "The body does not match the schema (VALIDATION_ERROR), or fails an integrity "
    "or destination check.",
    507: "The server's storage is full.",
}

MUTATING: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Permissions of routes that change the registry (an "authenticated" route
# changes at most the caller's own tokens, which cannot conflict).
WRITES: Final = frozenset({"write", "admin", "review", "instance-admin"})


def _bare(pattern: str) -> str:
    return pattern.removeprefix("^").removesuffix("$")


def _either(*patterns: str) -> str:
    return "^(?:" + "|".join(_bare(p) for p in patterns) + ")$"


NAME: Final[dict[str, Any]] = {"type": "string", "pattern": NAME_PATTERN, "maxLength": 128}
ALIAS: Final[dict[str, Any]] = {"type": "string", "pattern": ALIAS_PATTERN, "maxLength": 64}
KEY: Final[dict[str, Any]] = {"type": "string", "pattern": KEY_PATTERN, "maxLength": 255}
DIGEST: Final[dict[str, Any]] = {"type": "string", "pattern": DIGEST_PATTERN}
# A version number (1 to 9 digits, not all zeros) or an alias, ``latest`` included.
VERSION: Final[dict[str, Any]] = {
    "anyOf": [
        {"type": "string", "pattern": "^[0-9]{1,9}$", "not": {"pattern": "^0+$"}},
        ALIAS,
    ],
    "description": "Version number, `latest` or an alias name.",
}
NAMESPACE_OR_ALL: Final[dict[str, Any]] = {
    "type": "string",
    "pattern": _either(NAME_PATTERN, "^\\" + GLOBAL_SCOPE + "$"),
    "maxLength": 128,
    "description": "A namespace, or `*` for every namespace.",
}
# ``ns/name`` or ``name``.
MODEL_REF: Final[dict[str, Any]] = {
    "type": "string",
    "pattern": "^(?:" + _bare(NAME_PATTERN) + "/)?" + _bare(NAME_PATTERN) + "$",
    "maxLength": 257,
}


# A reference: ``name``, ``ns/name``, either with ``/3`` or ``@alias``.
REFERENCE: Final[dict[str, Any]] = {
    "type": "string",
    "pattern": "^(?:"
    + _bare(NAME_PATTERN)
    + "/)?"
    + _bare(NAME_PATTERN)
    + "(?:/[1-9][0-9]{0,8}|@"
    + _bare(ALIAS_PATTERN)
    + ")?$",
    "maxLength": 400,
    "description": "`name`, `ns/name`, `ns/name/3`, `ns/name@alias`.",
}
# Row ids (64-bit, from 1).
ROW_ID: Final[dict[str, Any]] = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
# A filter on names that the service compares, never checks.
FREE_NAME: Final[dict[str, Any]] = {"type": "string", "maxLength": 128}


def enum_of(values: Iterable[str]) -> dict[str, Any]:
    """A string enum."""
    return {"type": "string", "enum": list(values)}


# Parameter rules by name; (path, name) entries override for one path.
PARAMETERS: Final[dict[str, dict[str, Any]]] = {
    "namespace": NAME,
    "name": NAME,
    "version": VERSION,
    "alias": ALIAS,
    "digest": DIGEST,
    "user": NAME,
    "role": enum_of(r.value for r in Role),
    "approval_id": ROW_ID,
    "webhook_id": ROW_ID,
    "delivery_id": ROW_ID,
    "ref": REFERENCE,
    # Issue 12: deployments are named by environment and reference.
    "environment": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9._-]{0,63}$"},
    "reference": REFERENCE,
    "follows": REFERENCE,
    "token_id": {"type": "string", "maxLength": 32},
    "upload_id": {"type": "string", "pattern": "^[0-9]{1,20}-[0-9a-f]{32}$"},
}
PARAMETER_OVERRIDES: Final[dict[tuple[str, str], dict[str, Any]]] = {
    ("/api/v1/roles/{namespace}/{user}/{role}", "namespace"): NAMESPACE_OR_ALL,
    ("/api/v1/roles", "namespace"): FREE_NAME,
    ("/api/v1/roles", "user"): FREE_NAME,
    ("/api/v1/tokens", "user"): FREE_NAME,
    ("/api/v1/events", "model"): MODEL_REF,
    ("/api/v1/events/stream", "model"): MODEL_REF,
    ("/api/v1/audit", "model"): MODEL_REF,
    # A filter on recorded moves: any text, compared only.
    ("/api/v1/models/{namespace}/{name}/aliases/history", "alias"): {"type": "string"},
    ("/api/v1/models/{namespace}/{name}/versions", "state"): {
        "type": "array",
        "items": enum_of(s.value for s in VersionState),
    },
    ("/api/v1/namespaces/{namespace}/approvals", "state"): {
        **enum_of([*(s.value for s in ApprovalState), "all"]),
        "default": "pending",
    },
    ("/api/v1/models/{namespace}/{name}/versions/{version}/policy-check", "action"): {
        **enum_of(["publish", "alias"]),
        "default": "publish",
    },
    ("/api/v1/webhooks/{webhook_id}/deliveries", "status"): enum_of(
        s.value for s in DeliveryStatus
    ),
    # Issue 14: a bundle version is a number, "latest" or a bundle alias
    # (the model rule, VERSION, applies as is); variants filter by a format
    # name and a relation. A filter on recorded bundle alias moves: any text.
    ("/api/v1/bundles/{namespace}/{name}/aliases/history", "alias"): {"type": "string"},
    ("/api/v1/models/{namespace}/{name}/versions/{version}/variants", "format"): {
        "type": "string",
        "pattern": "^[\\w.+:/@-]{1,64}$",
    },
    ("/api/v1/models/{namespace}/{name}/versions/{version}/variants", "relation"): enum_of(
        r.value for r in Relation
    ),
}
# Query parameters whose values name a namespace or user by name-rule, wherever
# they appear (path parameters get the same by PARAMETERS).
QUERY_BY_NAME: Final = frozenset(
    {"namespace", "user", "alias", "ref", "environment", "reference", "follows"}
)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Extra error statuses for a route's ``responses=`` (beyond the derived ones)."""
    return {s: {"description": ERROR_TEXT.get(s, "Error."), "content": {}} for s in statuses}


def error_statuses(route: APIRoute, method: str, rule: Access | None) -> set[int]:
    """Every error status ``route`` can answer ``method`` with (see the module doc)."""
    found: set[int] = set()
    if rule is not None and not rule.public:
        found |= {401, 403}
    dep = route.dependant
    # Names in the path, the query or the body: one that breaks the rules (400,
    # or 422 where FastAPI parses it), or one that names nothing (404).
    if dep.path_params or dep.query_params or route.body_field is not None:
        found |= {400, 404, 422}
    if dep.header_params:
        found |= {400, 422}
    if route.body_field is not None:
        found.add(413)
    if rule is not None and rule.requires == "consume":
        found.add(404)  # outside a consumer's production view
    if method in MUTATING and rule is not None and rule.requires in WRITES:
        found |= {409, 507}
    for status in route.responses:
        code = int(status) if str(status).isdigit() else 0
        if code >= 400:
            found.add(code)
    return found


def _error_response(status: int, existing: dict[str, Any] | None, method: str) -> dict[str, Any]:
    out = dict(existing or {})
    out["description"] = ERROR_TEXT.get(status, out.get("description") or "Error.")
    if method == "HEAD":
        out.pop("content", None)  # a HEAD answer has no body
    else:
        out["content"] = {"application/json": {"schema": ERROR_REF}}
    if status == 401:
        out["headers"] = {
            "WWW-Authenticate": {
                "description": '`Bearer realm="modelyard"`',
                "schema": {"type": "string"},
            }
        }
    return out


def _parameter_rule(path: str, param: dict[str, Any]) -> dict[str, Any] | None:
    name = param.get("name", "")
    override = PARAMETER_OVERRIDES.get((path, name))
    if override is not None:
        return override
    if param.get("in") == "path" or (param.get("in") == "query" and name in QUERY_BY_NAME):
        return PARAMETERS.get(name)
    return None


def build_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with the errors and parameter rules of every route."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=app.routes,
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    # Our 422 is the one error body, not FastAPI's {"detail": [...]}.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = copy.deepcopy(ERROR_SCHEMA)
    # Bearer tokens are asked for only when this server has auth on: with it
    # off every request acts as the anonymous superuser, and saying otherwise
    # would not be true of this instance.
    secured = bool(getattr(app.state, "auth_enabled", False))
    if secured:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "An API token."}
        }
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        item = doc["paths"].get(route.path_format, {})
        rule = declared(route)
        for method in route.methods or ():
            op = item.get(method.lower())
            if op is None:
                continue
            responses = op.setdefault("responses", {})
            for status in sorted(error_statuses(route, method, rule)):
                responses[str(status)] = _error_response(status, responses.get(str(status)), method)
            op["responses"] = dict(sorted(responses.items()))
            if secured and rule is not None and not rule.public:
                op["security"] = [{"bearer": []}]
            for param in op.get("parameters", []):
                extra = _parameter_rule(route.path_format, param)
                if extra is not None:
                    kept = {k: v for k, v in param.get("schema", {}).items() if k in ("title",)}
                    param["schema"] = {**kept, **copy.deepcopy(extra)}
    return doc


def install_openapi(app: FastAPI) -> None:
    """Serve :func:`build_document` (built once, on first request) as ``/openapi.json``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def allowed_methods(routes: Iterable[Any], scope: Scope) -> list[str]:
    """The methods of the request's path, for a 405's ``Allow`` header.

    That is every method of the routes whose template matches the path, taking
    only the most literal templates: ``.../aliases/history`` is the history
    resource (GET), even though ``.../aliases/{alias}`` would match it too.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    best: int | None = None
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            params = route.path_format.count("{")
            if best is None or params < best:
                best, methods = params, set(route.methods)
            elif params == best:
                methods |= route.methods
    return sorted(methods)
