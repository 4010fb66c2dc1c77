"""Account and roles pages: who am I, my API tokens (create, shown once;
revoke), and a namespace's role bindings (admins grant and revoke).

The same identity service calls as REST v1's ``/api/v1/whoami``, ``/tokens``
and ``/roles`` routes, refused by the same rules with the same codes. A new
token is shown once, in the answer to the form that made it (never in a URL).
"""

from __future__ import annotations

import time
from typing import Any, Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from modelyard.domain.access import access
from modelyard.domain.errors import InvalidInput
from modelyard.domain.identity import GLOBAL_SCOPE, Permission, Role
from modelyard.web.actions import form_of, text_of
from modelyard.web.calls import Door, door
from modelyard.web.door import is_https, session_cookie
from modelyard.web.render import page, query

router = APIRouter(include_in_schema=False)

DAY: Final = 86_400
ROLES: Final = tuple(r.value for r in Role)


async def _account_context(request: Request, d: Door) -> dict[str, Any]:
    tokens = await d.call(d.identity.list_tokens, user=d.who.name, actor=d.who)
    return {
        "me": d.identity.whoami(actor=d.who),
        "tokens": sorted(tokens, key=lambda t: t.created_at, reverse=True),
        "now": time.time_ns() // 1000,
        "error": None,
        "new_token": None,
        "done": request.query_params.get("done") or "",
    }


@router.get("/account")
@access("authenticated", "One's own identity and tokens.")
async def account_page(request: Request) -> Response:
    """Who the caller is, its roles, and its tokens."""
    d = door(request)
    return page(request, "account.html", await _account_context(request, d))


def _expiry(text: str) -> int | None:
    """Days from the form as seconds (empty: no expiry); the service checks the range."""
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 6:
        raise InvalidInput("expiry must be a whole number of days", code="INVALID_EXPIRY")
    return int(text) * DAY


@router.post("/account/tokens")
@access("authenticated", "Own tokens.")
async def create_token(request: Request) -> Response:
    """Create a token of the caller's; the answer shows it, this once."""
    form = await form_of(request)
    d = door(request)
    try:
        token, plaintext = await d.call(
            d.identity.create_token,
            text_of(form, "name"),
            expires_in=_expiry(text_of(form, "expires_days")),
            actor=d.who,
        )
    except InvalidInput as exc:
        context = await _account_context(request, door(request))
        context["error"] = exc
        return page(request, "account.html", context, status=400)
    context = await _account_context(request, door(request))
    context["new_token"] = (token, plaintext)
    return page(request, "account.html", context)


@router.post("/account/tokens/{token_id}/revoke")
@access("authenticated", "Own tokens; instance admin for any.")
async def revoke_token(request: Request, token_id: str) -> Response:
    """Revoke one of the caller's tokens; revoking this session's own signs out."""
    await form_of(request)
    d = door(request)
    token = await d.call(d.identity.revoke_token, token_id, actor=d.who)
    if token.id == d.who.token_id:
        response = RedirectResponse("/signin", status_code=303)
        response.headers.append(
            "set-cookie", session_cookie(None, secure=is_https(request.scope)).decode("latin-1")
        )
        return response
    done = f"token {token.name!r} ({token.id}) revoked"
    return RedirectResponse("/account" + query({"done": done}), status_code=303)


@router.get("/roles")
@access("authenticated", "Own bindings; a namespace's with admin on it; all as instance admin.")
async def roles_page(request: Request) -> Response:
    """A namespace's role bindings (one's own, unless admin there); admins manage them."""
    d = door(request)
    namespaces = [ns.name for ns in await d.call(d.registry.list_namespaces, actor=d.who)]
    if d.who.is_instance_admin:
        namespaces.append(GLOBAL_SCOPE)
    wanted = request.query_params.get("namespace") or ""
    if not wanted:
        managed = [ns for ns in namespaces if d.who.can(Permission.ADMIN, ns)]
        wanted = (managed or namespaces or ["default"])[0]
    bindings = await d.call(d.identity.list_roles, namespace=wanted, actor=d.who)
    manage = (
        d.who.is_instance_admin if wanted == GLOBAL_SCOPE else d.who.can(Permission.ADMIN, wanted)
    )
    context = {
        "namespaces": namespaces,
        "namespace": wanted,
        "bindings": bindings,
        "roles": ROLES,
        "can_manage": manage,
        "done": request.query_params.get("done") or "",
    }
    return page(request, "roles.html", context)


async def _change_role(request: Request, grant: bool) -> Response:
    form = await form_of(request)
    d = door(request)
    namespace, user, role = (text_of(form, k) for k in ("namespace", "user", "role"))
    if grant:
        _binding, created = await d.call(
            d.identity.grant_role, user, role, namespace=namespace, actor=d.who
        )
        done = f"{user} is now {role} in {namespace}" if created else f"{user} was {role} already"
    else:
        await d.call(d.identity.revoke_role, user, role, namespace=namespace, actor=d.who)
        done = f"{user} is no longer {role} in {namespace}"
    target = "/roles" + query({"namespace": namespace, "done": done})
    return RedirectResponse(target, status_code=303)


@router.post("/roles/grant")
@access("admin", "On `*`: instance admin.")
async def grant_role(request: Request) -> Response:
    """Bind a role to a user in the namespace."""
    return await _change_role(request, True)


@router.post("/roles/revoke")
@access("admin", "On `*`: instance admin.")
async def revoke_role(request: Request) -> Response:
    """Remove a role binding."""
    return await _change_role(request, False)
