"""Users, API tokens, role bindings and ``whoami``."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.deps import actor, identity
from modelyard.api.openapi import NAME
from modelyard.api.responses import JSONResponse
from modelyard.service.identity import MAX_EXPIRES_IN
from modelyard.wire.identity import render_binding, render_token, render_user

router = APIRouter(prefix="/api/v1", tags=["identity"])


class UserCreate(BaseModel):
    """A new user."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., max_length=128, json_schema_extra=NAME)


class TokenCreate(BaseModel):
    """A new API token: for the caller, or (instance admin) for ``user``."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1, max_length=128, description="What the token is for.")
    user: str | None = Field(None, max_length=128, description="Owner (default: the caller).")
    expires_in: int | None = Field(
        None, ge=1, le=MAX_EXPIRES_IN, description="Lifetime in seconds (default: no expiry)."
    )


@router.get("/whoami", summary="Who the token belongs to")
@access("authenticated")
async def whoami(request: Request) -> Response:
    """The caller's name, roles per namespace and token id."""
    svc, _call = identity(request)
    return JSONResponse(svc.whoami(actor=actor(request)))


@router.post("/users", status_code=201, summary="Create a user")
@access("instance-admin")
async def create_user(body: UserCreate, request: Request) -> Response:
    """Create a user; give it roles and a token next."""
    svc, call = identity(request)
    user = await call(svc.create_user, body.name, actor=actor(request))
    return JSONResponse(render_user(user), status_code=201)


@router.get("/users", summary="List users")
@access("instance-admin")
async def list_users(request: Request) -> Response:
    """Every user with their role bindings."""
    svc, call = identity(request)
    users = await call(svc.list_users, actor=actor(request))
    return JSONResponse({"users": [render_user(u) for u in users]})


@router.post("/users/{name}/disable", summary="Disable a user (their tokens stop at once)")
@access("instance-admin")
async def disable_user(name: str, request: Request) -> Response:
    """Refuse every token of the user from the next request on; roles and tokens
    are kept for ``enable``. Idempotent."""
    svc, call = identity(request)
    user = await call(svc.disable_user, name, actor=actor(request))
    return JSONResponse(render_user(user))


@router.post("/users/{name}/enable", summary="Enable a disabled user")
@access("instance-admin")
async def enable_user(name: str, request: Request) -> Response:
    """Let the user's tokens work again. Idempotent."""
    svc, call = identity(request)
    user = await call(svc.enable_user, name, actor=actor(request))
    return JSONResponse(render_user(user))


@router.delete("/users/{name}", status_code=204, summary="Delete a user")
@access("instance-admin")
async def delete_user(name: str, request: Request) -> Response:
    """Revoke the user's tokens and remove their roles. History keeps the name,
    which is not given to a new user."""
    svc, call = identity(request)
    await call(svc.delete_user, name, actor=actor(request))
    return Response(status_code=204)


@router.post("/tokens", status_code=201, summary="Create an API token (shown once)")
@access("authenticated", "Own tokens; instance admin for another user's.")
async def create_token(body: TokenCreate, request: Request) -> Response:
    """Create a token. The ``token`` field of the answer is its only appearance."""
    svc, call = identity(request)
    token, plaintext = await call(
        svc.create_token,
        body.name,
        user=body.user,
        expires_in=body.expires_in,
        actor=actor(request),
    )
    return JSONResponse({**render_token(token), "token": plaintext}, status_code=201)


@router.get("/tokens", summary="List API tokens")
@access("authenticated", "Own tokens; instance admin for others' (user=..., all=true).")
async def list_tokens(
    request: Request,
    user: str | None = Query(None, max_length=128),
    all: bool = Query(False, description="Every user's tokens (instance admin)."),
) -> Response:
    """Tokens with their state and last use; never their secrets."""
    svc, call = identity(request)
    tokens = await call(svc.list_tokens, user=user, all_users=all, actor=actor(request))
    return JSONResponse({"tokens": [render_token(t) for t in tokens]})


@router.delete("/tokens/{token_id}", summary="Revoke an API token")
@access("authenticated", "Own tokens; instance admin for any.")
async def revoke_token(token_id: str, request: Request) -> Response:
    """Revoke a token at once; the record stays (idempotent)."""
    svc, call = identity(request)
    token = await call(svc.revoke_token, token_id, actor=actor(request))
    return JSONResponse(render_token(token))


@router.get("/roles", summary="List role bindings")
@access("authenticated", "Own bindings; a namespace's with admin on it; all as instance admin.")
async def list_roles(
    request: Request,
    namespace: str | None = Query(None, max_length=128),
    user: str | None = Query(None, max_length=128),
) -> Response:
    """Role bindings, optionally of one namespace (``*`` for global) and/or user."""
    svc, call = identity(request)
    found = await call(svc.list_roles, namespace=namespace, user=user, actor=actor(request))
    return JSONResponse({"roles": [render_binding(b) for b in found]})


@router.put(
    "/roles/{namespace}/{user}/{role}",
    summary="Grant a role",
    responses={201: {"description": "Granted now (200: the user held it already)."}},
)
@access("admin", "On `*`: instance admin.")
async def grant_role(namespace: str, user: str, role: str, request: Request) -> Response:
    """Bind ``role`` to ``user`` in ``namespace`` (``*``: every namespace); idempotent."""
    svc, call = identity(request)
    binding, created = await call(
        svc.grant_role, user, role, namespace=namespace, actor=actor(request)
    )
    return JSONResponse(render_binding(binding), status_code=201 if created else 200)


@router.delete("/roles/{namespace}/{user}/{role}", status_code=204, summary="Revoke a role")
@access("admin", "On `*`: instance admin.")
async def revoke_role(namespace: str, user: str, role: str, request: Request) -> Response:
    """Remove a role binding."""
    svc, call = identity(request)
    await call(svc.revoke_role, user, role, namespace=namespace, actor=actor(request))
    return Response(status_code=204)
