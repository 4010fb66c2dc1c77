"""Templates and the helpers they use: one Jinja2 environment, autoescaped.

Every value a template prints is escaped by Jinja2 (``autoescape`` is on for
every template), and the one piece of user text shown as HTML, a model's or
version's description, goes through :func:`markdown` with raw HTML off and
markdown-it's link validation (no ``javascript:``, ``vbscript:``, ``file:``
or non-image ``data:`` links), so nothing a user wrote can become markup.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlencode

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from modelyard.domain.access import principal_of
from modelyard.domain.errors import Unauthenticated
from modelyard.web.door import CSRF_FIELD, SECURITY_HEADERS, csrf_token
from modelyard.wire.render import iso

if TYPE_CHECKING:
    from jinja2 import Environment
    from markdown_it import MarkdownIt

STATE_CLASSES: Final = {
    "draft": "badge-draft",
    "ready": "badge-ready",
    "published": "badge-published",
    "archived": "badge-archived",
}

# Jinja2 and markdown-it are imported on the first page, not when the server
# starts: together they are most of a cold start's extra import time.


@functools.cache
def _markdown_parser() -> MarkdownIt:
    """CommonMark with raw HTML disabled: a description's ``<script>`` is text."""
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    return parser.enable("table")


def markdown(text: str) -> Markup:
    """A description as safe HTML (raw HTML in it is shown as text)."""
    return Markup(_markdown_parser().render(text or ""))


def when(us: int | None) -> str:
    """Microseconds since the epoch as ``2026-11-30 17:51:02 UTC``."""
    if not us:
        return "—"
    stamp = iso(us)
    return stamp[:19].replace("T", " ") + " UTC"


def size(n: int | None) -> str:
    """A byte count for people (``1.4 MiB``)."""
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def as_json(value: Any) -> str:
    """A JSON value, pretty, for a ``<pre>`` (escaped by the template)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def metric(value: float | None) -> str:
    """A metric value, compact."""
    if value is None:
        return "—"
    return f"{value:.6g}"


def seg(value: object) -> str:
    """One URL path segment (slashes and everything else percent-encoded)."""
    return quote(str(value), safe="")


def path_url(value: str) -> str:
    """A file path inside a URL (its slashes kept)."""
    return quote(value, safe="/")


def query(params: Mapping[str, Any] | list[tuple[str, Any]]) -> str:
    """``?a=1&b=2`` from a mapping or pairs, leaving out empty values."""
    pairs = params.items() if isinstance(params, Mapping) else params
    kept = [(k, v) for k, v in pairs if v not in (None, "", [])]
    return "?" + urlencode(kept, doseq=True) if kept else ""


@functools.cache
def environment() -> Environment:
    """The one template environment (built on first use, never at import)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("modelyard.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        markdown=markdown,
        when=when,
        size=size,
        as_json=as_json,
        metric=metric,
        seg=seg,
        path_url=path_url,
        query=query,
        iso=iso,
    )
    env.globals.update(state_class=STATE_CLASSES, csrf_field=CSRF_FIELD)
    return env


def page(
    request: Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> HTMLResponse:
    """Render ``template`` with what every page shows (who is signed in, the CSRF token)."""
    try:
        who = principal_of(request.scope)
    except Unauthenticated:  # an error page before authentication
        who = None
    base = {
        "request": request,
        "who": who,
        "auth_enabled": bool(getattr(request.app.state, "auth_enabled", False)),
        "csrf": csrf_token(request.scope),
        "path": request.url.path,
        "done": "",
    }
    html = environment().get_template(template).render({**base, **context})
    response = HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})
    # Also when the web door did not see the request (an error page for a
    # browser on a path nobody serves).
    for name, value in SECURITY_HEADERS:
        response.headers[name.decode()] = value.decode()
    return response
