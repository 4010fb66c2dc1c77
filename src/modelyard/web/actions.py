"""What a viewer may do from a version page: publish, archive, move an alias,
request approval, roll an alias back.

Each form posts to one route that checks the CSRF token and makes the same
service call as the REST v1 route for that action, so the same rules refuse
it with the same code and message (shown as the error page). On success the
browser is sent back (303) to the page it came from, with what happened.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from modelyard.domain.access import access
from modelyard.domain.entities import VersionState
from modelyard.domain.errors import InvalidInput
from modelyard.web.calls import door
from modelyard.web.door import CSRF_FIELD, check_csrf
from modelyard.web.pages import version_ref
from modelyard.web.render import query, seg

router = APIRouter(include_in_schema=False)

MAX_FIELDS = 8
VERSION = "/models/{namespace}/{name}/versions/{version}"


async def form_of(request: Request) -> FormData:
    """The posted form, after its CSRF token is checked."""
    form = await request.form(max_fields=MAX_FIELDS, max_files=0)
    check_csrf(request.scope, form.get(CSRF_FIELD))
    return form


def text_of(form: FormData, name: str) -> str:
    """A posted text field, trimmed (empty when absent)."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def path_id(value: str, what: str) -> int:
    """A numeric id from a URL segment (``INVALID_INPUT`` for anything else)."""
    if not (value.isascii() and value.isdigit()) or len(value) > 18 or int(value) < 1:
        raise InvalidInput(f"invalid {what} id", code="INVALID_INPUT", details={"id": value})
    return int(value)


def _back(namespace: str, name: str, version: int | str | None, done: str) -> Response:
    url = f"/models/{seg(namespace)}/{seg(name)}"
    if version is not None:
        url += f"/versions/{seg(version)}"
    return RedirectResponse(url + query({"done": done}), status_code=303)


@router.post(VERSION + "/publish")
@access("write", "Gated by the production policy, as on REST v1.")
async def publish(request: Request, namespace: str, name: str, version: str) -> Response:
    """Publish the version (``archive_previous`` archives the other published ones)."""
    form = await form_of(request)
    d = door(request)
    ver = await d.call(
        d.registry.transition_version,
        version_ref(namespace, name, version),
        VersionState.PUBLISHED,
        actor=d.who,
        archive_previous=text_of(form, "archive_previous") == "on",
    )
    return _back(namespace, name, ver.number, f"published v{ver.number}")


@router.post(VERSION + "/archive")
@access("write")
async def archive(request: Request, namespace: str, name: str, version: str) -> Response:
    """Archive the version."""
    await form_of(request)
    d = door(request)
    ver = await d.call(
        d.registry.transition_version,
        version_ref(namespace, name, version),
        VersionState.ARCHIVED,
        actor=d.who,
    )
    return _back(namespace, name, ver.number, f"archived v{ver.number}")


@router.post(VERSION + "/alias")
@access("write", "Protected aliases are gated by the production policy.")
async def move_alias(request: Request, namespace: str, name: str, version: str) -> Response:
    """Point an alias at this version, with a reason for its history."""
    form = await form_of(request)
    d = door(request)
    alias = text_of(form, "alias")
    ver = await d.call(
        d.registry.set_alias,
        version_ref(namespace, name, version),
        alias,
        actor=d.who,
        reason=text_of(form, "reason"),
    )
    return _back(namespace, name, ver.number, f"@{alias} now points at v{ver.number}")


@router.post(VERSION + "/approvals")
@access("write")
async def request_approval(request: Request, namespace: str, name: str, version: str) -> Response:
    """Ask reviewers to publish this version and/or move an alias to it."""
    form = await form_of(request)
    d = door(request)
    alias = text_of(form, "alias") or None
    found = await d.call(
        d.approvals.request_approval,
        version_ref(namespace, name, version),
        action=text_of(form, "action") or "publish",
        alias=alias,
        comment=text_of(form, "comment"),
        actor=d.who,
    )
    return _back(namespace, name, version, f"approval #{found.id} requested")


@router.post("/models/{namespace}/{name}/aliases/{alias}/rollback")
@access("write", "Protected aliases are gated by the production policy.")
async def rollback(request: Request, namespace: str, name: str, alias: str) -> Response:
    """Move the alias back to where it pointed before its last move."""
    form = await form_of(request)
    d = door(request)
    ver = await d.call(
        d.governance.rollback_alias,
        name,
        alias,
        namespace=namespace,
        actor=d.who,
        reason=text_of(form, "reason"),
    )
    return _back(namespace, name, None, f"@{alias} rolled back to v{ver.number}")
