"""Reading pages: home (models and versions search), model, version, compare.

Each page is a few service calls (the same ones REST v1 makes), one keyset
page at a time: no page counts or loads a whole result set.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from modelyard.domain.access import access
from modelyard.domain.entities import AliasMove, Model, Version
from modelyard.domain.errors import InvalidInput, NotFound, PermissionDenied
from modelyard.domain.identity import Permission
from modelyard.domain.names import validate_name
from modelyard.domain.policies import Policy, evaluate
from modelyard.domain.references import Reference, parse_reference
from modelyard.web import compare as diff
from modelyard.web.calls import Door, door
from modelyard.web.lineage import MAX_NODES, lineage_graph
from modelyard.web.render import page, query
from modelyard.web.search_form import PAGE_SIZE, SORTS, STATES, SearchForm

router = APIRouter(include_in_schema=False)

MAX_METRIC_COLUMNS: Final = 8
MAX_TIMELINE: Final = 100
MAX_PARENT_HOPS: Final = 8
EVENTS_SCANNED: Final = 100
LIVE_TYPES: Final = ("version.*", "alias.*", "model.updated")


def version_ref(namespace: str, name: str, version: str) -> Reference:
    """A reference from path parts: a number, ``latest`` or an alias."""
    validate_name(namespace, kind="namespace")
    validate_name(name)
    sep = "/" if version.isascii() and version.isdigit() else "@"
    return parse_reference(f"{namespace}/{name}{sep}{version}")


async def _latest(d: Door, m: Model) -> Version | None:
    """The model's latest version the caller may see (None: it has none)."""
    if not m.latest_version:
        return None
    try:
        return await d.call(
            d.registry.get_version, f"{m.namespace}/{m.name}@latest", with_files=False, actor=d.who
        )
    except NotFound:
        return None


@router.get("/")
@access("authenticated", "Lists only what the caller may see.")
async def home(request: Request) -> Response:
    """Search models (or versions, when framework or state is asked for)."""
    d = door(request)
    form = SearchForm.parse(request.query_params)
    namespaces = await d.call(d.registry.list_namespaces, actor=d.who)
    context: dict[str, Any] = {
        "form": form,
        "sorts": SORTS,
        "states": STATES,
        "namespaces": namespaces,
        "rows": [],
        "next_page": None,
        "error": None,
        "error_at": None,
    }
    query: dict[str, Any] = {
        "order_by": form.sort,
        "page_size": PAGE_SIZE,
        "page_token": form.page,
        "namespace": form.namespace or None,
        "actor": d.who,
    }
    text = form.filter_text() or None
    try:
        form.check_text()
        if form.target == "models":
            models = await d.call.heavy(d.registry.search_models, text, **query)
            context["rows"] = [(m, await _latest(d, m)) for m in models.items]
            context["next_page"] = models.next_page_token
        else:
            versions = await d.call.heavy(d.registry.search_versions, text, **query)
            context["rows"] = versions.items
            context["next_page"] = versions.next_page_token
    except InvalidInput as exc:
        context["error"] = exc
        context["error_at"] = form.user_position(exc)
        return page(request, "home.html", context, status=400)
    return page(request, "home.html", context)


def live_stream(namespace: str, name: str) -> str:
    """The event stream a model page listens to: its versions, aliases and details."""
    types = ",".join(LIVE_TYPES)
    return "/api/v1/events/stream" + query({"model": f"{namespace}/{name}", "types": types})


def _policy_status(policy: Policy, versions: list[Version]) -> dict[int, list[str]] | None:
    """What each version lacks of the effective production policy (None: no rules).

    The content rules only (tags, metadata, signature, metrics, format), as
    the API's dry run lists them: approvals are given to a request, never
    held by a version.
    """
    if not any(v is not None for v in policy.to_dict().values()):
        return None
    return {
        v.number: [x.message for x in evaluate(policy, v, approvals=None).violations]
        for v in versions
    }


@router.get("/models/{namespace}/{name}")
@access("consume", "A consumer sees the production view.")
async def model_page(request: Request, namespace: str, name: str) -> Response:
    """A model: description, tags, metadata, aliases and their timeline, versions."""
    d = door(request)
    params = request.query_params
    model = await d.call(d.registry.get_model, name, namespace=namespace, actor=d.who)
    versions = await d.call(
        d.registry.list_versions,
        name,
        namespace=namespace,
        page_size=PAGE_SIZE,
        page_token=params.get("page") or None,
        actor=d.who,
    )
    columns = [c for c in dict.fromkeys(params.getlist("metric")) if c][:MAX_METRIC_COLUMNS]
    offered = sorted({k for v in versions.items for k in v.metrics} | set(columns))
    history: list[AliasMove] | None
    moves_token = params.get("moves") or None
    try:
        moves = await d.call(
            d.registry.alias_moves,
            name,
            namespace=namespace,
            page_size=MAX_TIMELINE,
            page_token=moves_token,
            actor=d.who,
        )
    except PermissionDenied:
        history = None  # a consumer: the history is not part of the production view
        current: dict[str, int] = {}
        moves_next = None
    else:
        history, moves_next = moves.items, moves.next_page_token
        now = await d.call(d.registry.model_aliases, name, namespace=namespace, actor=d.who)
        current = dict(sorted(now.items()))
    policy_status = None
    if history is not None:  # a reader; a consumer sees published versions only
        policy = await d.call(d.governance.effective_policy, namespace, name, actor=d.who)
        policy_status = _policy_status(policy, versions.items)
    at_alias = params.get("alias") or next(iter(current), "")
    at_time = params.get("at") or ""
    at_answer = None
    at_error = None
    if at_alias and at_time and history is not None:
        try:
            at_answer = await d.call(
                d.governance.alias_at, name, at_alias, at_time, namespace=namespace, actor=d.who
            )
        except InvalidInput as exc:
            at_error = exc
    context = {
        "model": model,
        "versions": versions.items,
        "next_page": versions.next_page_token,
        "columns": columns,
        "offered": offered,
        "timeline": history,
        "moves_token": moves_token,
        "moves_next": moves_next,
        "current": current,
        "at_alias": at_alias,
        "at_time": at_time,
        "at_answer": at_answer,
        "at_error": at_error,
        "page_token": params.get("page") or None,
        "can_write": d.who.can(Permission.WRITE, namespace),
        "policy_status": policy_status,
        "done": params.get("done") or "",
        # Whoever reads the model's history may follow its events live (a
        # consumer's production view has neither).
        "live_stream": None if history is None else live_stream(namespace, name),
    }
    return page(request, "model.html", context)


async def _parents(d: Door, ver: Version) -> list[Version | str]:
    """The parent chain, nearest first (a link the caller cannot see is shown as text)."""
    chain: list[Version | str] = []
    link = ver.parent
    seen = {ver.ref}
    while link is not None and len(chain) < MAX_PARENT_HOPS and str(link) not in seen:
        seen.add(str(link))
        try:
            parent = await d.call(d.registry.get_version, str(link), with_files=False, actor=d.who)
        except NotFound:
            chain.append(str(link))
            break
        chain.append(parent)
        link = parent.parent
    return chain


async def _events(d: Door, ver: Version) -> list[dict[str, Any]] | None:
    """Recent audit entries about this version (None: the caller may not read the log)."""
    try:
        found = await d.call(
            d.governance.audit,
            actor=d.who,
            model=f"{ver.namespace}/{ver.model}",
            page_size=EVENTS_SCANNED,
        )
    except PermissionDenied:
        return None
    mine = []
    for entry in found.items:
        payload = entry["payload"] if isinstance(entry["payload"], dict) else {}
        moved_here = ver.number in (payload.get("to_version"), payload.get("from_version"))
        if entry["subject"] == ver.ref or (entry["type"] == "alias.moved" and moved_here):
            mine.append(entry)
    return mine


@router.get("/models/{namespace}/{name}/versions/{version}")
@access("consume", "A consumer sees the production view.")
async def version_page(request: Request, namespace: str, name: str, version: str) -> Response:
    """A version: files, signature, metrics, params, lineage and its events."""
    d = door(request)
    ref = version_ref(namespace, name, version)
    ver = await d.call(d.registry.get_version, ref, with_files=True, actor=d.who)
    original = None
    if ver.original is not None:
        try:
            original = await d.call(
                d.registry.get_version, str(ver.original), with_files=False, actor=d.who
            )
        except NotFound:
            original = None
    try:
        # A bounded excerpt: a family can hold thousands of versions.
        family, unseen = await d.call(
            d.registry.family_excerpt, ver.ref, max_members=MAX_NODES, actor=d.who
        )
    except (NotFound, PermissionDenied):
        family, unseen = None, 0
    context = {
        "ver": ver,
        "graph": lineage_graph(family, ver, unseen=unseen),
        "can_write": d.who.can(Permission.WRITE, ver.namespace),
        "done": request.query_params.get("done") or "",
        "original": original,
        "parents": await _parents(d, ver),
        "events": await _events(d, ver),
    }
    return page(request, "version.html", context)


@router.get("/compare")
@access("authenticated", "Each version needs consume on its namespace.")
async def compare_page(request: Request) -> Response:
    """Two or more versions side by side: metrics with deltas, params, signature, files."""
    d = door(request)
    refs = [r.strip() for r in request.query_params.getlist("v") if r.strip()]
    refs = list(dict.fromkeys(refs))
    if len(refs) < 2 or len(refs) > diff.MAX_COMPARED:
        raise InvalidInput(
            f"choose between 2 and {diff.MAX_COMPARED} versions to compare",
            code="INVALID_INPUT",
            details={"given": len(refs)},
        )
    versions = [
        await d.call(d.registry.get_version, ref, with_files=True, actor=d.who) for ref in refs
    ]
    # The base is the oldest: a table's checkboxes come newest first.
    versions.sort(key=lambda v: (v.namespace, v.model, v.number))
    context = {
        "versions": versions,
        "metrics": diff.metric_rows(versions),
        "params": diff.param_rows(versions),
        "signature": diff.signature_rows(versions),
        "files": diff.file_diffs(versions),
    }
    return page(request, "compare.html", context)
