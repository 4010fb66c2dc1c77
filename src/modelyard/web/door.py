"""The browser's way in: session cookie, CSRF cookie and security headers.

:class:`WebDoor` is one ASGI middleware in front of the app. For the UI's
paths (:func:`is_web_path`) it

- turns the ``modelyard_session`` cookie (an API token, set by the sign-in
  form, HttpOnly and SameSite=Strict) into the ``Authorization: Bearer``
  header the route guard reads, unless the request carries its own header;
  so a page is authorized by the same guard and token check as REST v1;
- gives the browser a CSRF token (double-submit: a random value in a
  SameSite=Strict cookie, echoed by every form in a hidden field and compared
  on each POST by :func:`check_csrf`);
- marks the scope as a web request, so errors render as pages
  (``web/errors.py``), and adds a strict Content-Security-Policy (no inline
  script or style anywhere), ``nosniff``, ``frame-ancestors 'none'`` and a
  same-origin referrer policy to every answer.

A signed-in browser may also follow the UI's download links to the REST
file and archive downloads, and a live page (``static/live.js``) may open
the REST event stream (GET and HEAD only, which change nothing): the cookie
stands for the token there too. Nowhere else on the API: the cookie is no
key to the rest of it.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Mapping
from typing import Any, Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.domain.errors import PermissionDenied

SESSION_COOKIE: Final = "modelyard_session"
CSRF_COOKIE: Final = "modelyard_csrf"
CSRF_FIELD: Final = "csrf_token"
WEB_KEY: Final = "modelyard.web"
CSRF_KEY: Final = "modelyard.csrf"

# Every answer of the UI: nothing inline, nothing from elsewhere.
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)
WEB_EXACT: Final = frozenset(
    {
        "/",
        "/compare",
        "/signin",
        "/signout",
        "/approvals",
        "/audit",
        "/webhooks",
        "/account",
        "/roles",
        "/deployments",
    }
)
WEB_PREFIXES: Final = (
    "/models/",
    "/static/",
    "/approvals/",
    "/namespaces/",
    "/webhooks/",
    "/account/",
    "/roles/",
    "/deployments/",
)
# The REST reads a page uses: the downloads it links to (files and the tar
# archive of a version) and the event stream a live page listens to.
_COOKIE_READS = re.compile(
    r"^/api/v1/(models/[^/]+/[^/]+/versions/[^/]+/(files/.+|archive\.tar)|events/stream)$"
)


def is_web_path(path: str) -> bool:
    """Whether ``path`` belongs to the UI (as opposed to REST, docs, health)."""
    return path in WEB_EXACT or path.startswith(WEB_PREFIXES)


def cookies_of(scope: Scope) -> dict[str, str]:
    """The request's cookies (the last value wins, as browsers send one)."""
    out: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            for part in bytes(value).decode("latin-1").split(";"):
                key, eq, val = part.strip().partition("=")
                if eq:
                    out[key] = val
    return out


def _has_authorization(scope: Scope) -> bool:
    return any(name == b"authorization" for name, _ in scope.get("headers", ()))


def _cookie(name: str, value: str, *, secure: bool, max_age: int | None, http_only: bool) -> bytes:
    parts = [f"{name}={value}", "Path=/", "SameSite=Strict"]
    if http_only:
        parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts).encode("latin-1")


def session_cookie(token: str | None, *, secure: bool) -> bytes:
    """``Set-Cookie`` value that keeps ``token`` (or clears the session with None)."""
    if token is None:
        return _cookie(SESSION_COOKIE, "", secure=secure, max_age=0, http_only=True)
    return _cookie(SESSION_COOKIE, token, secure=secure, max_age=None, http_only=True)


def is_https(scope: Scope) -> bool:
    """Whether the browser reached us over https (directly or as the ASGI server says)."""
    return scope.get("scheme") == "https"


def csrf_token(scope: Mapping[str, Any]) -> str:
    """The CSRF token a form of this request must echo."""
    return str(scope.get(CSRF_KEY, ""))


def check_csrf(scope: Mapping[str, Any], sent: object) -> None:
    """Refuse a form whose hidden token does not match the CSRF cookie.

    ``PERMISSION_DENIED`` with code ``CSRF_FAILED``: the request did not come
    from one of our own pages (or the cookie expired; reloading the page
    gives a fresh form).
    """
    expected = cookies_of(dict(scope)).get(CSRF_COOKIE, "")
    if not (
        isinstance(sent, str)
        and expected
        and len(sent) == len(expected)
        and hmac.compare_digest(sent.encode(), expected.encode())
    ):
        raise PermissionDenied(
            "the form's CSRF token is missing or does not match; reload the page and retry",
            code="CSRF_FAILED",
        )


class WebDoor:
    """ASGI middleware: cookies to bearer tokens, CSRF cookie, security headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        web = is_web_path(path)
        api_read = (
            not web and scope["method"] in ("GET", "HEAD") and bool(_COOKIE_READS.match(path))
        )
        if not web and not api_read:
            await self.app(scope, receive, send)
            return
        cookies = cookies_of(scope)
        token = cookies.get(SESSION_COOKIE)
        if token and not _has_authorization(scope):
            scope = dict(scope)
            scope["headers"] = [*scope["headers"], (b"authorization", f"Bearer {token}".encode())]
        fresh: str | None = None
        if web:
            scope = dict(scope)
            scope[WEB_KEY] = True
            csrf = cookies.get(CSRF_COOKIE, "")
            if not re.fullmatch(r"[A-Za-z0-9_-]{43}", csrf):
                csrf = fresh = secrets.token_urlsafe(32)
            scope[CSRF_KEY] = csrf
        secure = is_https(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    if name.decode() not in headers:
                        headers.raw.append((name, value))
                if fresh is not None:
                    headers.raw.append(
                        (
                            b"set-cookie",
                            _cookie(
                                CSRF_COOKIE, fresh, secure=secure, max_age=None, http_only=True
                            ),
                        )
                    )
            await send(message)

        await self.app(scope, receive, send_with_headers)
