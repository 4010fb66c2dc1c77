"""The MLflow door: MLflow's REST API as a sub-app mounted on the main app.

Why a mounted sub-app rather than routes on the main router: the door has its
own error body (MLflow's ``error_code`` shape, ``api/mlflow/errors.py``), its
own answer for unknown paths (``ENDPOINT_NOT_FOUND``), its own credentials
(a token as Bearer *or* as a Basic password) and its own API description
(MLflow's, not modelyard's OpenAPI document). A sub-app holds all four in one
place, and REST v1's routes, handlers and OpenAPI document stay untouched.

The sub-app shares the main app's ``state`` (the same services, the same
ways to call them), so both doors run the same service calls. Its routes
declare their permission with ``@access`` and are guarded exactly as REST
v1's (``install_guards``, deny by default); the main app accepts the mount
only because its routes are guarded already.

It is mounted at ``/api/2.0`` (what ``MlflowClient`` calls) and
``/ajax-api/2.0`` (what MLflow's web UI calls); its routes are written
relative to that (``/mlflow/registered-models/create``). Lanes adding MLflow
endpoints append their router to :data:`ROUTERS`.

The sub-app is a plain Starlette app, not a FastAPI one, and a route whose
endpoint reads everything from its request (``async def f(request)``, all
but the few with path parameters) runs as a plain Starlette route: the door
has no OpenAPI document and no declared parameters, so FastAPI's per-request
work (a second middleware stack with telemetry checks, dependency solving per
route) bought nothing; it was about a fifth of a point read's server CPU
(cProfile, issue 10's head-to-head). The routes MLflow's client calls most
are matched first (:data:`HOT_PATHS`).
"""

from __future__ import annotations

import base64
import binascii
import inspect
from typing import Any, Final

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Scope

from modelyard.api.access import Authenticator, install_guards
from modelyard.api.mlflow import (
    artifacts,
    logged_models,
    registry,
    server_info,
    tracking,
    webhooks,
)
from modelyard.api.mlflow.errors import install_mlflow_error_handlers
from modelyard.service.rendered import RevisionCache

PREFIXES: Final = ("/api/2.0", "/ajax-api/2.0")
V3_PREFIXES: Final = ("/api/3.0", "/ajax-api/3.0")

ROUTERS: Final[list[APIRouter]] = [
    registry.router,
    tracking.router,
    logged_models.router,
    artifacts.mpu_router,
    artifacts.router,
    webhooks.router,
]
"""The door's routers, in matching order."""

V3_ROUTERS: Final[list[APIRouter]] = [server_info.router]
"""What MLflow serves under ``/api/3.0`` that its client calls (only these:
the ``/api/2.0`` routes are not repeated there)."""


HOT_PATHS: Final = (
    "/mlflow/model-versions/get",
    "/mlflow/registered-models/alias",
    "/mlflow/registered-models/get",
    "/mlflow/model-versions/create",
    "/mlflow/registered-models/create",
)
"""Paths matched first: the registry calls of MLflow's client (a point read
is matched against every route before it). No two door routes match the
same path and method, so the order changes no answer."""


def lean_route(route: BaseRoute) -> BaseRoute:
    """``route`` as a plain Starlette route when its endpoint takes only the
    request (no parameters to solve), else ``route`` itself.

    Same path, methods (no implicit ``HEAD``: the door never answered it),
    name and endpoint, so its ``@access`` declaration and the metrics label
    (the route's path) are what they were.
    """
    if not isinstance(route, APIRoute):
        return route
    if list(inspect.signature(route.endpoint).parameters) != ["request"]:
        return route
    methods = set(route.methods or ())
    lean = Route(route.path, route.endpoint, methods=list(methods), name=route.name)
    lean.methods = methods
    return lean


def door_routes(routers: list[APIRouter]) -> list[BaseRoute]:
    """The routes of ``routers`` in matching order: :data:`HOT_PATHS` first,
    then the others in their routers' order."""
    routes = [lean_route(r) for router in routers for r in router.routes]
    rank = {path: i for i, path in enumerate(HOT_PATHS)}
    # sorted() is stable: routes outside HOT_PATHS keep their order.
    return sorted(routes, key=lambda r: rank.get(getattr(r, "path", ""), len(rank)))


def mlflow_token(scope: Scope) -> str | None:
    """The modelyard token of an MLflow request.

    MLflow's client sends ``MLFLOW_TRACKING_TOKEN`` as ``Authorization:
    Bearer <token>`` and ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD`` as Basic
    auth; with Basic the password is the token and the user name is not
    consulted (the token says who the caller is, as with git hosts' tokens).
    """
    for name, value in scope.get("headers", ()):
        if name != b"authorization":
            continue
        scheme, _, rest = bytes(value).decode("latin-1").partition(" ")
        rest = rest.strip()
        if scheme.lower() == "bearer":
            return rest or None
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(rest, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            _, sep, password = decoded.partition(":")
            return password if sep and password else None
        return None
    return None


def build_mlflow_app(parent: FastAPI, routers: list[APIRouter] = ROUTERS) -> Starlette:
    """The door's app with ``routers``, sharing ``parent``'s state (services,
    service calls)."""
    door = Starlette(routes=door_routes(routers))
    # As on the main app: no redirect built from a foreign Host header.
    door.router.redirect_slashes = False
    door.state = parent.state
    install_mlflow_error_handlers(door)
    state = parent.state
    authenticator = Authenticator(
        state.identity, enabled=state.auth_enabled, call=state.call, credentials=mlflow_token
    )
    install_guards(door, authenticator)
    return door


def install_mlflow(app: FastAPI) -> None:
    """Mount the door on ``app`` (in front of its own routes, before its guards).

    In front: the router tries routes in order, and behind REST v1 every door
    request was first matched against each of its ~110 routes (~12 % of a
    door point read's CPU, cProfile). No REST v1 or UI path starts with a
    door prefix, so the order changes no answer; a REST v1 request pays four
    prefix checks.
    """
    # Search answers by data revision (registry._answer).
    app.state.mlflow_answers = RevisionCache[dict[str, Any]](capacity=256)
    door = build_mlflow_app(app)
    v3 = build_mlflow_app(app, V3_ROUTERS)
    mounts = [Mount(prefix, app=door) for prefix in PREFIXES]
    mounts += [Mount(prefix, app=v3) for prefix in V3_PREFIXES]
    app.router.routes[0:0] = mounts
