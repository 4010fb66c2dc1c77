"""MLflow's tracking endpoints (experiments, runs, params, metrics, tags) onto
``service/tracking.py``. Thin: read the fields, call, shape the answer.

Experiments live in namespaces (``default`` unless created with the tag
``modelyard.namespace``); the service checks read or write there.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from modelyard.api.access import access
from modelyard.api.deps import ServiceCall, actor, service_call
from modelyard.api.mlflow import tracking_render as r
from modelyard.api.mlflow.params import Params, invalid, missing, ok, paged
from modelyard.domain.tracking import Dataset, DatasetInput, Metric, ModelOutput
from modelyard.service.tracking import LogBatch, TrackingService

router = APIRouter(prefix="/mlflow")


def tracking(request: Request) -> tuple[TrackingService, ServiceCall]:
    """The tracking service and how to call it for this request."""
    svc: TrackingService = request.app.state.services.tracking
    return svc, service_call(request)


def _run_id(p: Params) -> str:
    """``run_id``, or the deprecated ``run_uuid`` older clients send."""
    value = p.text("run_id") or p.text("run_uuid")
    if not value:
        raise missing("run_id")
    return value


def _time_ms(p: Params, name: str) -> int | None:
    return r.to_us(p.integer(name, minimum=0))


# -- experiments -------------------------------------------------------------


@router.post("/experiments/create")
@access("write")
async def create_experiment(request: Request) -> Response:
    """``MlflowClient.create_experiment``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    exp = await call(
        svc.create_experiment,
        p.required_text("name"),
        tags=p.key_values("tags"),
        artifact_location=p.text("artifact_location"),
        actor=actor(request),
    )
    return ok({"experiment_id": str(exp.id)})


@router.get("/experiments/get")
@access("read")
async def get_experiment(request: Request) -> Response:
    """``MlflowClient.get_experiment``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    exp = await call(svc.get_experiment, p.required_text("experiment_id"), actor=actor(request))
    return ok({"experiment": r.experiment(exp)})


@router.get("/experiments/get-by-name")
@access("read")
async def get_experiment_by_name(request: Request) -> Response:
    """``MlflowClient.get_experiment_by_name``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    exp = await call(
        svc.get_experiment_by_name, p.required_text("experiment_name"), actor=actor(request)
    )
    return ok({"experiment": r.experiment(exp)})


@router.post("/experiments/search")
@router.get("/experiments/search")
@access("read")
async def search_experiments(request: Request) -> Response:
    """``MlflowClient.search_experiments``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    page = await call.heavy(
        svc.search_experiments,
        view=r.view(p, "view_type"),
        filter_string=p.text("filter"),
        order_by=p.texts("order_by"),
        max_results=p.integer("max_results"),
        page_token=p.text("page_token"),
        actor=actor(request),
    )
    return ok(paged("experiments", [r.experiment(e) for e in page.items], page.next_page_token))


@router.post("/experiments/update")
@access("write")
async def update_experiment(request: Request) -> Response:
    """``MlflowClient.rename_experiment``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    new_name = p.text("new_name")
    if new_name:
        await call(
            svc.rename_experiment,
            p.required_text("experiment_id"),
            new_name,
            actor=actor(request),
        )
    return ok()


@router.post("/experiments/delete")
@access("write")
async def delete_experiment(request: Request) -> Response:
    """``MlflowClient.delete_experiment``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    await call(svc.delete_experiment, p.required_text("experiment_id"), actor=actor(request))
    return ok()


@router.post("/experiments/restore")
@access("write")
async def restore_experiment(request: Request) -> Response:
    """``MlflowClient.restore_experiment``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    await call(svc.restore_experiment, p.required_text("experiment_id"), actor=actor(request))
    return ok()


@router.post("/experiments/set-experiment-tag")
@access("write")
async def set_experiment_tag(request: Request) -> Response:
    """``MlflowClient.set_experiment_tag``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    await call(
        svc.set_experiment_tag,
        p.required_text("experiment_id"),
        p.required_text("key"),
        p.text("value") or "",
        actor=actor(request),
    )
    return ok()


@router.post("/experiments/delete-experiment-tag")
@access("write")
async def delete_experiment_tag(request: Request) -> Response:
    """``MlflowClient.delete_experiment_tag``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    await call(
        svc.delete_experiment_tag,
        p.required_text("experiment_id"),
        p.required_text("key"),
        actor=actor(request),
    )
    return ok()


# -- runs ----------------------------------------------------------------------


@router.post("/runs/create")
@access("write")
async def create_run(request: Request) -> Response:
    """``MlflowClient.create_run`` / ``mlflow.start_run``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    tags = p.key_values("tags")
    user = p.text("user_id")
    if user and "mlflow.user" not in tags:
        tags["mlflow.user"] = user
    run = await call(
        svc.create_run,
        p.text("experiment_id") or "0",
        name=p.text("run_name") or None,
        start_time=_time_ms(p, "start_time"),
        tags=tags,
        actor=actor(request),
    )
    return ok({"run": r.run(run)})


@router.get("/runs/get")
@access("read")
async def get_run(request: Request) -> Response:
    """``MlflowClient.get_run``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    run = await call(svc.get_run, _run_id(p), actor=actor(request))
    return ok({"run": r.run(run)})


@router.post("/runs/update")
@access("write")
async def update_run(request: Request) -> Response:
    """``MlflowClient.update_run`` / ``set_terminated``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    run = await call(
        svc.update_run,
        _run_id(p),
        status=p.text("status"),
        end_time=_time_ms(p, "end_time"),
        name=p.text("run_name") or None,
        actor=actor(request),
    )
    return ok({"run_info": r.run_info(run)})


@router.post("/runs/delete")
@access("write")
async def delete_run(request: Request) -> Response:
    """``MlflowClient.delete_run``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    await call(svc.delete_run, _run_id(p), actor=actor(request))
    return ok()


@router.post("/runs/restore")
@access("write")
async def restore_run(request: Request) -> Response:
    """``MlflowClient.restore_run``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    await call(svc.restore_run, _run_id(p), actor=actor(request))
    return ok()


def _metric(p: Params) -> Metric:
    return Metric(
        p.required_text("key"),
        r.read_double(p, "value"),
        (p.integer("timestamp", minimum=0) or 0) * 1000,
        p.integer("step", 0) or 0,
        None,
        p.text("model_id") or None,
    )


@router.post("/runs/log-metric")
@access("write")
async def log_metric(request: Request) -> Response:
    """``MlflowClient.log_metric``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    await call(svc.log_batch, _run_id(p), LogBatch(metrics=[_metric(p)]), actor=actor(request))
    return ok()


@router.post("/runs/log-parameter")
@access("write")
async def log_param(request: Request) -> Response:
    """``MlflowClient.log_param``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    batch = LogBatch(params={p.required_text("key"): p.text("value") or ""})
    await call(svc.log_batch, _run_id(p), batch, actor=actor(request))
    return ok()


@router.post("/runs/set-tag")
@access("write")
async def set_tag(request: Request) -> Response:
    """``MlflowClient.set_tag``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    batch = LogBatch(tags={p.required_text("key"): p.text("value") or ""})
    await call(svc.log_batch, _run_id(p), batch, actor=actor(request))
    return ok()


@router.post("/runs/delete-tag")
@access("write")
async def delete_tag(request: Request) -> Response:
    """``MlflowClient.delete_tag``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    await call(svc.delete_run_tag, _run_id(p), p.required_text("key"), actor=actor(request))
    return ok()


@router.post("/runs/log-batch")
@access("write")
async def log_batch(request: Request) -> Response:
    """``MlflowClient.log_batch`` (and ``log_metrics`` / ``log_params`` / ``set_tags``)."""
    p = await Params.of(request)
    svc, call = tracking(request)
    raw_metrics = p.raw("metrics") or []
    if not isinstance(raw_metrics, list) or not all(isinstance(m, dict) for m in raw_metrics):
        raise invalid("Invalid value for parameter 'metrics': expected a list of metrics.")
    batch = LogBatch(
        metrics=[_metric(Params(m)) for m in raw_metrics],
        params=p.key_values("params"),
        tags=p.key_values("tags"),
    )
    await call(svc.log_batch, _run_id(p), batch, actor=actor(request))
    return ok()


@router.post("/runs/outputs")
@access("write")
async def log_outputs(request: Request) -> Response:
    """``MlflowClient.log_outputs``: the logged models a run produced."""
    p = await Params.of(request)
    svc, call = tracking(request)
    raw = p.raw("models") or []
    if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
        raise invalid("Invalid value for parameter 'models': expected a list of model outputs.")
    outputs = [
        ModelOutput(Params(m).required_text("model_id"), Params(m).integer("step", 0) or 0)
        for m in raw
    ]
    await call(svc.log_outputs, _run_id(p), outputs, actor=actor(request))
    return ok()


def _dataset_input(raw: object) -> DatasetInput:
    """One MLflow ``DatasetInput`` message (``{"tags": [...], "dataset": {...}}``)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("dataset"), dict):
        raise invalid("Each dataset input is an object with a 'dataset' object.")
    d = Params(raw["dataset"])
    dataset = Dataset(
        name=d.required_text("name"),
        digest=d.required_text("digest"),
        source_type=d.required_text("source_type"),
        source=d.required_text("source"),
        schema=d.text("schema"),
        profile=d.text("profile"),
    )
    return DatasetInput(dataset, Params(raw).key_values("tags") or {})


@router.post("/runs/log-inputs")
@access("write")
async def log_inputs(request: Request) -> Response:
    """``MlflowClient.log_inputs`` / ``mlflow.log_input``: datasets a run read
    and logged models it used."""
    p = await Params.of(request)
    svc, call = tracking(request)
    datasets = p.raw("datasets") or []
    models = p.raw("models") or []
    if not isinstance(datasets, list) or not isinstance(models, list):
        raise invalid("Invalid value for parameters 'datasets' and 'models': expected lists.")
    if not all(isinstance(m, dict) for m in models):
        raise invalid("Each model input is an object with a 'model_id'.")
    await call(
        svc.log_inputs,
        _run_id(p),
        [_dataset_input(d) for d in datasets],
        [Params(m).required_text("model_id") for m in models],
        actor=actor(request),
    )
    return ok()


@router.post("/runs/search")
@access("read")
async def search_runs(request: Request) -> Response:
    """``MlflowClient.search_runs`` / ``mlflow.search_runs``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    page = await call.heavy(
        svc.search_runs,
        p.texts("experiment_ids"),
        filter_string=p.text("filter"),
        view=r.view(p, "run_view_type"),
        order_by=p.texts("order_by"),
        max_results=p.integer("max_results"),
        page_token=p.text("page_token"),
        actor=actor(request),
    )
    return ok(paged("runs", [r.run(x) for x in page.items], page.next_page_token))


@router.get("/metrics/get-history")
@access("read")
async def get_metric_history(request: Request) -> Response:
    """``MlflowClient.get_metric_history``."""
    p = await Params.of(request)
    svc, call = tracking(request)
    page = await call(
        svc.get_metric_history,
        _run_id(p),
        p.required_text("metric_key"),
        max_results=p.integer("max_results"),
        page_token=p.text("page_token"),
        actor=actor(request),
    )
    return ok(paged("metrics", [r.metric(m) for m in page.items], page.next_page_token))


@router.get("/metrics/get-history-bulk-interval")
@access("read")
async def get_metric_history_bulk_interval(request: Request) -> Response:
    """The sampled history of one metric over several runs (MLflow's UI charts
    and ``get-history-bulk-interval`` callers): each run's points between
    ``start_step`` and ``end_step``, at most ``max_results`` per run."""
    p = await Params.of(request)
    svc, call = tracking(request)
    points = await call(
        svc.sample_metric_histories,
        p.texts("run_ids"),
        p.required_text("metric_key"),
        points=p.integer("max_results"),
        start_step=p.integer("start_step"),
        end_step=p.integer("end_step"),
        actor=actor(request),
    )
    return ok({"metrics": [r.metric(m) for m in points]})
