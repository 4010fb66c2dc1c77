"""MLflow 3's logged-model endpoints, the ones ``mlflow.<flavor>.log_model``
and model registration call: create, get, finalize, tags, params, delete,
search (by name and source run; other filters are refused, never ignored)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.deps import actor
from modelyard.api.mlflow import tracking_render as r
from modelyard.api.mlflow.params import Params, invalid, ok, paged
from modelyard.api.mlflow.tracking import tracking

router = APIRouter(prefix="/mlflow/logged-models")

# ``name = 'x'`` / ``source_run_id = "y"`` joined by AND: what the client sends
# when it looks a run's model up by name (``_get_logged_models_from_run``).
_CLAUSE = re.compile(
    r"""\s*(?:attributes\.)?(?P<field>name|source_run_id)\s*=\s*
        (?:'(?P<sq>[^']*)'|"(?P<dq>[^"]*)")\s*""",
    re.VERBOSE,
)


def _logged_model_filter(text: str | None) -> dict[str, str]:
    found: dict[str, str] = {}
    if not text or not text.strip():
        return found
    for part in re.split(r"\s+AND\s+", text, flags=re.IGNORECASE):
        m = _CLAUSE.fullmatch(part)
        if m is None:
            raise invalid(
                f"Unsupported logged model filter {text!r}: modelyard filters logged models "
                "by name = '...' and source_run_id = '...' joined by AND."
            )
        found[m.group("field")] = m.group("sq") if m.group("sq") is not None else m.group("dq")
    return found


@router.post("")
@access("write")
async def create_logged_model(request: Request) -> Response:
    """``MlflowClient.create_logged_model`` (step one of ``log_model``)."""
    p = await Params.of(request)
    svc, call = tracking(request)
    model = await call(
        svc.create_logged_model,
        p.required_text("experiment_id"),
        name=p.text("name") or None,
        source_run_id=p.text("source_run_id") or None,
        model_type=p.text("model_type") or None,
        tags=p.key_values("tags"),
        params=p.key_values("params"),
        actor=actor(request),
    )
    return ok({"model": r.logged_model(model)})


@router.post("/search")
@access("read")
async def search_logged_models(request: Request) -> Response:
    """``MlflowClient.search_logged_models`` (by name and source run)."""
    p = await Params.of(request)
    if p.raw("datasets") or p.raw("order_by"):
        raise invalid("modelyard does not order or filter logged models by dataset or metric.")
    where = _logged_model_filter(p.text("filter"))
    svc, call = tracking(request)
    page = await call(
        svc.search_logged_models,
        p.texts("experiment_ids"),
        name=where.get("name"),
        source_run_id=where.get("source_run_id"),
        max_results=p.integer("max_results"),
        page_token=p.text("page_token"),
        actor=actor(request),
    )
    return ok(paged("models", [r.logged_model(m) for m in page.items], page.next_page_token))


@router.get("/{model_id}")
@access("read")
async def get_logged_model(request: Request, model_id: str) -> Response:
    """``MlflowClient.get_logged_model``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    model = await call(
        svc.get_logged_model,
        model_id,
        allow_deleted=p.boolean("allow_deleted"),
        actor=actor(request),
    )
    return ok({"model": r.logged_model(model)})


@router.patch("/{model_id}")
@access("write")
async def finalize_logged_model(request: Request, model_id: str) -> Response:
    """``MlflowClient.finalize_logged_model``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    model = await call(
        svc.finalize_logged_model,
        model_id,
        r.model_status(p.text("status")),
        actor=actor(request),
    )
    return ok({"model": r.logged_model(model)})


@router.delete("/{model_id}")
@access("write")
async def delete_logged_model(request: Request, model_id: str) -> Response:
    """``MlflowClient.delete_logged_model``."""
    svc, call = tracking(request)
    await call(svc.delete_logged_model, model_id, actor=actor(request))
    return ok()


@router.patch("/{model_id}/tags")
@access("write")
async def set_logged_model_tags(request: Request, model_id: str) -> Response:
    """``MlflowClient.set_logged_model_tags``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    await call(svc.set_logged_model_tags, model_id, p.key_values("tags"), actor=actor(request))
    return ok()


@router.delete("/{model_id}/tags/{tag_key:path}")
@access("write")
async def delete_logged_model_tag(request: Request, model_id: str, tag_key: str) -> Response:
    """``MlflowClient.delete_logged_model_tag``."""
    svc, call = tracking(request)
    await call(svc.delete_logged_model_tag, model_id, tag_key, actor=actor(request))
    return ok()


@router.post("/{model_id}/params")
@access("write")
async def log_logged_model_params(request: Request, model_id: str) -> Response:
    """``MlflowClient.log_model_params`` (params past the first 100 of a create)."""
    p = await Params.of(request)
    svc, call = tracking(request)
    await call(svc.log_logged_model_params, model_id, p.key_values("params"), actor=actor(request))
    return ok()
