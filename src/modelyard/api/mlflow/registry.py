"""MLflow's model-registry endpoints, onto the registry service.

Every MLflow model lives in one namespace, ``Settings.mlflow_namespace``
(MLflow names carry none and may not contain ``/``). Each route parses its
fields (:class:`~modelyard.api.mlflow.params.Params`), calls the same service
method REST v1 calls, and shapes the answer (``render.py``): roles, the
consumer's production view, policies, approvals, events and the audit log
apply as on REST v1 because they live in the service.

Where MLflow's model and modelyard's differ, the mapping is written down in
``render.py`` (fields), ``service/stages.py`` (stages) and ``filters.py``
(search grammar and order), and in the README's MLflow section.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal

from fastapi import APIRouter, Request
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.deps import actor, services
from modelyard.api.mlflow import render
from modelyard.api.mlflow.filters import translate_filter, translate_order
from modelyard.api.mlflow.params import Params, invalid, ok, paged
from modelyard.domain.entities import Model
from modelyard.domain.errors import NotFound
from modelyard.domain.identity import Principal
from modelyard.domain.references import Reference
from modelyard.service.core import MAX_PAGE_SIZE, Page
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.service.validation import check_source_uri

router = APIRouter(prefix="/mlflow")

# MLflow's own bounds (mlflow/store/model_registry/__init__.py).
MODELS_DEFAULT_RESULTS: Final = 100
MODELS_MAX_RESULTS: Final = 1000
VERSIONS_DEFAULT_RESULTS: Final = 10_000
VERSIONS_MAX_RESULTS: Final = 200_000
RUN_LINK_KEY: Final = "mlflow.run_link"


def namespace_of(request: Request) -> str:
    """The namespace the door's models live in."""
    ns: str = request.app.state.settings.mlflow_namespace
    return ns


def version_ref(request: Request, p: Params) -> Reference:
    """The version a request names by ``name`` and ``version``."""
    name = p.required_text("name")
    raw = p.required_text("version")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or int(raw) < 1:
        raise invalid(
            f"Invalid value {raw!r} for parameter 'version': a positive integer is expected.",
            parameter="version",
        )
    return Reference(namespace_of(request), name, version=int(raw))


def _collect(
    fetch: Callable[[int, str | None], Page[Any]], wanted: int, token: str | None
) -> tuple[list[Any], str | None]:
    """Up to ``wanted`` items over as many service pages as that takes (the
    service serves at most MAX_PAGE_SIZE a page; MLflow asks for up to 200,000)."""
    items: list[Any] = []
    while True:
        page = fetch(min(MAX_PAGE_SIZE, wanted - len(items)), token)
        items.extend(page.items)
        token = page.next_page_token
        if token is None or len(items) >= wanted:
            return items, token


def _search(
    search: Callable[..., Page[Any]],
    target: Literal["models", "versions"],
    namespace: str,
    p: Params,
    who: Principal,
    *,
    default: int,
    maximum: int,
) -> tuple[list[Any], str | None]:
    """One MLflow search request (``max_results``, ``filter``, ``order_by``,
    ``page_token``) over ``search`` (``svc.search_models`` or
    ``svc.search_versions``): the items and MLflow's next page token."""
    wanted = p.integer("max_results", default, minimum=1, maximum=maximum)
    assert wanted is not None
    where = translate_filter(p.text("filter"), target)
    order = translate_order(p.texts("order_by"), target, where)

    def fetch(size: int, token: str | None) -> Page[Any]:
        return search(
            None,
            order_by=order,
            page_size=size,
            page_token=token,
            namespace=namespace,
            where=where,
            actor=who,
        )

    return _collect(fetch, wanted, p.text("page_token") or None)


def _model_bodies(
    svc: RegistryService, models: list[Model], who: Principal
) -> list[dict[str, Any]]:
    """Models with their aliases and latest version per stage, as MLflow returns them."""
    return [
        render.registered_model(m, aliases=aliases, latest=latest)
        for m, (aliases, latest) in zip(models, svc.stage_summaries(models, actor=who), strict=True)
    ]


def _get_model_body(svc: RegistryService, name: str, namespace: str, who: Principal) -> Any:
    model, aliases, latest = svc.model_summary(name, namespace=namespace, actor=who)
    return render.registered_model(model, aliases=aliases, latest=latest)


# -- registered models ---------------------------------------------------------


@router.post("/registered-models/create")
@access("write")
async def create_registered_model(request: Request) -> Response:
    """``MlflowClient.create_registered_model``."""
    p = await Params.of(request)
    svc, call = services(request)
    model = await call(
        svc.create_model,
        p.required_text("name"),
        namespace=namespace_of(request),
        description=p.text("description") or "",
        tags=p.key_values("tags"),
        actor=actor(request),
    )
    return ok({"registered_model": render.registered_model(model)})


@router.get("/registered-models/get")
@access("consume")
async def get_registered_model(request: Request) -> Response:
    """``MlflowClient.get_registered_model`` (with aliases and latest versions)."""
    p = await Params.of(request)
    svc, call = services(request)
    body = await call(
        _get_model_body, svc, p.required_text("name"), namespace_of(request), actor(request)
    )
    return ok({"registered_model": body})


@router.post("/registered-models/rename")
@access("write")
async def rename_registered_model(request: Request) -> Response:
    """``MlflowClient.rename_registered_model``."""
    p = await Params.of(request)
    svc, call = services(request)
    model = await call(
        svc.rename_model,
        p.required_text("name"),
        p.required_text("new_name"),
        namespace=namespace_of(request),
        actor=actor(request),
    )
    return ok({"registered_model": render.registered_model(model)})


@router.patch("/registered-models/update")
@access("write")
async def update_registered_model(request: Request) -> Response:
    """``MlflowClient.update_registered_model`` (the description)."""
    p = await Params.of(request)
    svc, call = services(request)
    model = await call(
        svc.update_model,
        p.required_text("name"),
        namespace=namespace_of(request),
        description=p.text("description") or "",
        actor=actor(request),
    )
    return ok({"registered_model": render.registered_model(model)})


@router.delete("/registered-models/delete")
@access("admin")
async def delete_registered_model(request: Request) -> Response:
    """``MlflowClient.delete_registered_model``: refused while a version is in
    Production (published), as REST v1 refuses it without ``force``."""
    p = await Params.of(request)
    svc, call = services(request)
    await call(
        svc.delete_model,
        p.required_text("name"),
        namespace=namespace_of(request),
        actor=actor(request),
    )
    return ok()


def _search_models(
    svc: RegistryService,
    namespace: str,
    p: Params,
    who: Principal,
) -> dict[str, Any]:
    models, token = _search(
        svc.search_models,
        "models",
        namespace,
        p,
        who,
        default=MODELS_DEFAULT_RESULTS,
        maximum=MODELS_MAX_RESULTS,
    )
    return paged("registered_models", _model_bodies(svc, models, who), token)


def _answer(
    search: Callable[[RegistryService, str, Params, Principal], dict[str, Any]],
    request: Request,
    svc: RegistryService,
    p: Params,
) -> Callable[[], dict[str, Any]]:
    """A search answer, kept per data revision for callers who see whole
    versions (``answer_at_revision``): the client's searches repeat, and a
    page of 20 models with their aliases and latest versions per stage cost
    4.2 ms of CPU in-process (cProfile: 43% the stage summaries, 33% the
    search) against one revision read once kept."""
    namespace, who = namespace_of(request), actor(request)
    key = (
        search.__name__,
        namespace,
        *(repr(p.raw(name)) for name in ("filter", "max_results", "page_token")),
        tuple(p.texts("order_by")),
    )
    cache = request.app.state.mlflow_answers
    return lambda: svc.answer_at_revision(
        cache, key, lambda: search(svc, namespace, p, who), actor=who
    )


@router.get("/registered-models/search")
@access("consume")
async def search_registered_models(request: Request) -> Response:
    """``MlflowClient.search_registered_models`` (filter grammar: ``filters.py``)."""
    p = await Params.of(request)
    svc, call = services(request)
    return ok(await call.heavy(_answer(_search_models, request, svc, p)))


@router.post("/registered-models/get-latest-versions")
@router.get("/registered-models/get-latest-versions")
@access("consume")
async def get_latest_versions(request: Request) -> Response:
    """``MlflowClient.get_latest_versions``: per stage asked, its newest version."""
    p = await Params.of(request)
    svc, call = services(request)
    found = await call(
        svc.latest_in_stages,
        p.required_text("name"),
        p.texts("stages") or None,
        namespace=namespace_of(request),
        actor=actor(request),
    )
    return ok({"model_versions": [render.model_version(v) for v in found]})


async def _edit_tags(request: Request, *, version: bool, delete: bool) -> Response:
    """Set (``key``, ``value``) or delete ``key`` on a model or one of its
    versions: MLflow's four tag calls, one service update each."""
    p = await Params.of(request)
    svc, call = services(request)
    key = p.required_text("key")
    edit: dict[str, Any] = (
        {"delete_tags": [key]} if delete else {"set_tags": {key: p.text("value") or ""}}
    )
    if version:
        await call(svc.update_version, version_ref(request, p), actor=actor(request), **edit)
    else:
        name = p.required_text("name")
        await call(
            svc.update_model, name, namespace=namespace_of(request), actor=actor(request), **edit
        )
    return ok()


@router.post("/registered-models/set-tag")
@access("write")
async def set_registered_model_tag(request: Request) -> Response:
    """``MlflowClient.set_registered_model_tag``."""
    return await _edit_tags(request, version=False, delete=False)


@router.delete("/registered-models/delete-tag")
@access("write")
async def delete_registered_model_tag(request: Request) -> Response:
    """``MlflowClient.delete_registered_model_tag``."""
    return await _edit_tags(request, version=False, delete=True)


# -- aliases ---------------------------------------------------------------------


@router.post("/registered-models/alias")
@access("write")
async def set_registered_model_alias(request: Request) -> Response:
    """``MlflowClient.set_registered_model_alias`` (protected aliases are gated by
    the production policy and approvals, as on REST v1)."""
    p = await Params.of(request)
    svc, call = services(request)
    await call(
        svc.set_alias,
        version_ref(request, p),
        p.required_text("alias"),
        actor=actor(request),
    )
    return ok()


@router.delete("/registered-models/alias")
@access("write")
async def delete_registered_model_alias(request: Request) -> Response:
    """``MlflowClient.delete_registered_model_alias``."""
    p = await Params.of(request)
    svc, call = services(request)
    await call(
        svc.delete_alias,
        p.required_text("name"),
        p.required_text("alias"),
        namespace=namespace_of(request),
        actor=actor(request),
    )
    return ok()


@router.get("/registered-models/alias")
@access("consume")
async def get_model_version_by_alias(request: Request) -> Response:
    """``MlflowClient.get_model_version_by_alias``."""
    p = await Params.of(request)
    svc, call = services(request)
    r = Reference(namespace_of(request), p.required_text("name"), alias=p.required_text("alias"))
    version = await call(svc.get_version, r, with_files=False, actor=actor(request))
    return ok({"model_version": render.model_version(version)})


# -- model versions --------------------------------------------------------------


@router.post("/model-versions/create")
@access("write")
async def create_model_version(request: Request) -> Response:
    """``MlflowClient.create_model_version``.

    The ``source`` is recorded as text (metadata ``mlflow.source``) after
    :func:`~modelyard.service.validation.check_source_uri`; it is never read
    here. ``run_id`` becomes the version's lineage run (``source_run``).
    """
    p = await Params.of(request)
    svc, call = services(request)
    name = p.required_text("name")
    metadata: dict[str, Any] = {render.SOURCE_KEY: check_source_uri(p.required_text("source"))}
    model_id = p.text("model_id")
    if model_id:
        metadata[render.MODEL_ID_KEY] = model_id
    run_link = p.text("run_link")
    if run_link:
        metadata[RUN_LINK_KEY] = run_link
    spec = VersionSpec(
        description=p.text("description") or "",
        tags=p.key_values("tags"),
        metadata=metadata,
        source_run=p.text("run_id") or None,
        # The service resolves a source naming this server's runs or logged
        # models into the version's files (by digest); any other stays text.
        source=metadata[render.SOURCE_KEY],
    )
    version = await call(
        svc.create_version, name, spec, namespace=namespace_of(request), actor=actor(request)
    )
    return ok({"model_version": render.model_version(version)})


@router.get("/model-versions/get")
@access("consume")
async def get_model_version(request: Request) -> Response:
    """``MlflowClient.get_model_version``."""
    p = await Params.of(request)
    svc, call = services(request)
    version = await call(
        svc.get_version, version_ref(request, p), with_files=False, actor=actor(request)
    )
    return ok({"model_version": render.model_version(version)})


@router.patch("/model-versions/update")
@access("write")
async def update_model_version(request: Request) -> Response:
    """``MlflowClient.update_model_version`` (the description)."""
    p = await Params.of(request)
    svc, call = services(request)
    version = await call(
        svc.update_version,
        version_ref(request, p),
        description=p.text("description") or "",
        actor=actor(request),
    )
    return ok({"model_version": render.model_version(version)})


@router.delete("/model-versions/delete")
@access("admin")
async def delete_model_version(request: Request) -> Response:
    """``MlflowClient.delete_model_version`` (refused while in Production)."""
    p = await Params.of(request)
    svc, call = services(request)
    await call(svc.delete_version, version_ref(request, p), actor=actor(request))
    return ok()


@router.post("/model-versions/transition-stage")
@access("write")
async def transition_model_version_stage(request: Request) -> Response:
    """``MlflowClient.transition_model_version_stage`` (mapping: ``service/stages.py``)."""
    p = await Params.of(request)
    svc, call = services(request)
    version = await call(
        svc.set_stage,
        version_ref(request, p),
        p.required_text("stage"),
        archive_existing=p.boolean("archive_existing_versions"),
        actor=actor(request),
    )
    return ok({"model_version": render.model_version(version)})


@router.post("/model-versions/set-tag")
@access("write")
async def set_model_version_tag(request: Request) -> Response:
    """``MlflowClient.set_model_version_tag`` (policies check the edit, as on REST v1)."""
    return await _edit_tags(request, version=True, delete=False)


@router.delete("/model-versions/delete-tag")
@access("write")
async def delete_model_version_tag(request: Request) -> Response:
    """``MlflowClient.delete_model_version_tag``."""
    return await _edit_tags(request, version=True, delete=True)


def _search_versions(
    svc: RegistryService, namespace: str, p: Params, who: Principal
) -> dict[str, Any]:
    found, token = _search(
        svc.search_versions,
        "versions",
        namespace,
        p,
        who,
        default=VERSIONS_DEFAULT_RESULTS,
        maximum=VERSIONS_MAX_RESULTS,
    )
    return paged("model_versions", [render.model_version(v) for v in found], token)


@router.get("/model-versions/search")
@access("consume")
async def search_model_versions(request: Request) -> Response:
    """``MlflowClient.search_model_versions`` (filter grammar: ``filters.py``)."""
    p = await Params.of(request)
    svc, call = services(request)
    return ok(await call.heavy(_answer(_search_versions, request, svc, p)))


@router.get("/model-versions/get-download-uri")
@access("consume")
async def get_model_version_download_uri(request: Request) -> Response:
    """``MlflowClient.get_model_version_download_uri``: the version's recorded
    source (a version registered through REST v1 has none)."""
    p = await Params.of(request)
    svc, call = services(request)
    version = await call(
        svc.get_version, version_ref(request, p), with_files=False, actor=actor(request)
    )
    source = version.metadata.get(render.SOURCE_KEY)
    if not isinstance(source, str) or not source:
        raise NotFound(
            f"version {version.ref} has no MLflow source to download from; its files are "
            f"served by REST v1 (/api/v1/models/{version.namespace}/{version.model}/"
            f"versions/{version.number}/files)",
            code="SOURCE_NOT_FOUND",
            details={"reference": version.ref},
        )
    return ok({"artifact_uri": source})
