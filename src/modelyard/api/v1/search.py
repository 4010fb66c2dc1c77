"""Search over models and versions with the filter language."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.deps import ServiceCall, actor, services
from modelyard.api.openapi import NAME, errors
from modelyard.api.responses import JSONResponse
from modelyard.domain.entities import Version
from modelyard.domain.identity import Principal
from modelyard.service.registry import RegistryService
from modelyard.wire import render

router = APIRouter(prefix="/api/v1/search", tags=["search"])

FILTER_HELP = (
    "e.g. `tags.team = 'fraud' AND metrics.accuracy >= 0.9 AND framework IN ('onnx','tflite')`"
)


class SearchBody(BaseModel):
    """Search parameters as a JSON body, for filters too long for a URL."""

    model_config = ConfigDict(extra="forbid")
    filter: str | None = None
    order_by: str | None = None
    page_size: int = Field(100, json_schema_extra={"minimum": 1, "maximum": 1000})
    page_token: str | None = None
    namespace: str | None = Field(None, json_schema_extra=NAME)


def version_json(ver: Version) -> bytes:
    """One version as the JSON a search page lists (what the cache keeps)."""
    return orjson.dumps(render.version(ver), option=orjson.OPT_NON_STR_KEYS)


async def _versions(
    request: Request,
    svc: RegistryService,
    call: ServiceCall,
    q: SearchBody | _VersionsQuery,
    who: Principal,
) -> Response:
    page = await call.heavy(
        svc.search_versions_rendered,
        q.filter,
        order_by=q.order_by,
        page_size=q.page_size,
        page_token=q.page_token,
        namespace=q.namespace,
        actor=who,
        render=version_json,
        cache=request.app.state.rendered_versions,
    )
    # The bytes orjson would write for the whole page: each version's JSON
    # is compact, so joining them with commas is the same document.
    body = b"".join(
        (
            b'{"versions":[',
            b",".join(page.items),
            b'],"next_page_token":',
            orjson.dumps(page.next_page_token),
            b"}",
        )
    )
    return Response(body, media_type="application/json")


async def _models(
    svc: RegistryService, call: ServiceCall, q: SearchBody, who: Principal
) -> Response:
    page = await call.heavy(
        svc.search_models,
        q.filter,
        order_by=q.order_by,
        page_size=q.page_size,
        page_token=q.page_token,
        namespace=q.namespace,
        actor=who,
    )
    return JSONResponse(
        {"models": [render.model(m) for m in page.items], "next_page_token": page.next_page_token}
    )


class _VersionsQuery(BaseModel):
    """The query parameters of ``GET /search/versions``, validated as FastAPI
    would validate them from the signature (the same pydantic rules)."""

    model_config = ConfigDict(extra="ignore")
    filter: str | None = None
    order_by: str | None = None
    page_size: int = Field(100, ge=1, le=1000)
    page_token: str | None = None
    namespace: str | None = None


def _optional_text(name: str, description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    if description is not None:
        schema["description"] = description
    schema["title"] = name.replace("_", " ").title()
    param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if description is not None:
        param["description"] = description
    return param


# What FastAPI wrote for these parameters when they were in the signature.
_VERSIONS_PARAMETERS = [
    _optional_text("filter", FILTER_HELP),
    _optional_text("order_by", "created DESC (default), name, number, ..."),
    {
        "name": "page_size",
        "in": "query",
        "required": False,
        "schema": {
            "type": "integer",
            "maximum": 1000,
            "minimum": 1,
            "default": 100,
            "title": "Page Size",
        },
    },
    _optional_text("page_token"),
    _optional_text("namespace"),
]


@router.get(
    "/versions",
    openapi_extra={"parameters": _VERSIONS_PARAMETERS},
    responses=errors(400, 404, 422),
)
@access("authenticated", "Filtered to what the caller may see.")
async def search_versions(request: Request) -> Response:
    """Versions matching the filter, one page at a time."""
    # The parameters are read here rather than declared in the signature:
    # FastAPI's solving of five query parameters cost about as much as the
    # rest of a cached page's route (cProfile). Errors are the same 422.
    try:
        q = _VersionsQuery.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("query", *err["loc"])} for err in exc.errors()]
        ) from None
    svc, call = services(request)
    return await _versions(request, svc, call, q, actor(request))


@router.post("/versions")
@access("authenticated", "Filtered to what the caller may see.")
async def search_versions_post(request: Request, body: SearchBody) -> Response:
    """Same as GET, with the parameters in a JSON body."""
    svc, call = services(request)
    return await _versions(request, svc, call, body, actor(request))


@router.get("/models")
@access("authenticated", "Filtered to what the caller may see.")
async def search_models(
    request: Request,
    filter: str | None = Query(None, description=FILTER_HELP),
    order_by: str | None = None,
    page_size: int = Query(100, ge=1, le=1000),
    page_token: str | None = None,
    namespace: str | None = None,
) -> Response:
    """Models matching the filter, one page at a time."""
    svc, call = services(request)
    return await _models(
        svc,
        call,
        SearchBody(
            filter=filter,
            order_by=order_by,
            page_size=page_size,
            page_token=page_token,
            namespace=namespace,
        ),
        actor(request),
    )


@router.post("/models")
@access("authenticated", "Filtered to what the caller may see.")
async def search_models_post(request: Request, body: SearchBody) -> Response:
    """Same as GET, with the parameters in a JSON body."""
    svc, call = services(request)
    return await _models(svc, call, body, actor(request))
