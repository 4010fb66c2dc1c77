"""Sign in with an API token, sign out.

The token a person pastes is checked by the identity service (the same check
as a bearer token on REST v1) and kept in an HttpOnly, SameSite=Strict cookie
(Secure over https); ``web/door.py`` hands it to the route guard on every
later request. Both forms carry the CSRF token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from modelyard.domain.access import access
from modelyard.domain.errors import Unauthenticated
from modelyard.web.door import CSRF_FIELD, check_csrf, is_https, session_cookie
from modelyard.web.render import page

router = APIRouter(include_in_schema=False)

MAX_FORM_FIELDS = 8


def safe_next(value: object) -> str:
    """Where to go after signing in: a path of this site only (never ``//host``)."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/"


@router.get("/signin")
@access("public", "The sign-in form.")
async def signin_form(request: Request) -> Response:
    """The sign-in form (with auth off it says so and links home)."""
    context: dict[str, Any] = {"next": safe_next(request.query_params.get("next")), "error": None}
    return page(request, "signin.html", context)


@router.post("/signin")
@access("public", "Checks the token it is given; CSRF-protected.")
async def signin(request: Request) -> Response:
    """Check the token, keep it in the session cookie, go on to ``next``."""
    form = await request.form(max_fields=MAX_FORM_FIELDS, max_files=0)
    check_csrf(request.scope, form.get(CSRF_FIELD))
    target = safe_next(form.get("next"))
    token = form.get("token")
    state: Any = request.app.state
    if not state.auth_enabled:
        return RedirectResponse(target, status_code=303)
    try:
        if not isinstance(token, str):
            raise Unauthenticated("a token is required", code="UNAUTHENTICATED")
        token = token.strip()
        await state.call(state.identity.authenticate, token)
    except Unauthenticated as exc:
        context = {"next": target, "error": exc}
        return page(request, "signin.html", context, status=401)
    response = RedirectResponse(target, status_code=303)
    response.headers.append(
        "set-cookie", session_cookie(token, secure=is_https(request.scope)).decode("latin-1")
    )
    return response


@router.post("/signout")
@access("public", "Clears the session cookie; CSRF-protected.")
async def signout(request: Request) -> Response:
    """Forget the session cookie."""
    form = await request.form(max_fields=MAX_FORM_FIELDS, max_files=0)
    check_csrf(request.scope, form.get(CSRF_FIELD))
    response = RedirectResponse("/signin", status_code=303)
    response.headers.append(
        "set-cookie", session_cookie(None, secure=is_https(request.scope)).decode("latin-1")
    )
    return response
