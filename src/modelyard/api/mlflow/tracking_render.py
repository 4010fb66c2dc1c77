"""Tracking entities in MLflow's JSON shape (protobuf's JSON mapping), and the
few request values only tracking reads (metric values, view types, times).

Times: modelyard keeps microseconds, MLflow speaks milliseconds. Metric values
that are not finite travel as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"``, as protobuf's JSON mapping writes doubles (JSON has no NaN).
"""

from __future__ import annotations

import math
from typing import Any

from modelyard.api.mlflow.params import Params, invalid
from modelyard.api.mlflow.render import millis, tag_list
from modelyard.domain.tracking import (
    DatasetInput,
    Experiment,
    LoggedModel,
    LoggedModelStatus,
    Metric,
    Run,
)

_VIEWS = {
    "ACTIVE_ONLY": "active",
    "1": "active",
    "DELETED_ONLY": "deleted",
    "2": "deleted",
    "ALL": "all",
    "3": "all",
}
_MODEL_STATUS = {
    LoggedModelStatus.PENDING: "LOGGED_MODEL_PENDING",
    LoggedModelStatus.READY: "LOGGED_MODEL_READY",
    LoggedModelStatus.FAILED: "LOGGED_MODEL_UPLOAD_FAILED",
}
_MODEL_STATUS_IN = {v: k.value for k, v in _MODEL_STATUS.items()} | {
    "2": LoggedModelStatus.READY.value,
    "1": LoggedModelStatus.PENDING.value,
    "3": LoggedModelStatus.FAILED.value,
}


def double(value: float) -> float | str:
    """A double in protobuf's JSON mapping."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def read_double(p: Params, name: str) -> float:
    """A required double field (a JSON number, or its text, ``"NaN"`` included)."""
    raw = p.raw(name)
    if raw is None or isinstance(raw, bool):
        raise invalid(f"Missing value for required parameter '{name}'.", parameter=name)
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise invalid(f"Invalid value {raw!r} for parameter '{name}': expected a number.") from None


def view(p: Params, name: str) -> str:
    """A ``ViewType`` field as the service's view name (``active`` if absent)."""
    raw = p.text(name)
    if raw is None or raw == "":
        return "active"
    found = _VIEWS.get(raw.upper())
    if found is None:
        raise invalid(f"Invalid value {raw!r} for parameter '{name}'.", parameter=name)
    return found


def model_status(raw: str | None) -> str:
    """A ``LoggedModelStatus`` name as the service's status."""
    found = _MODEL_STATUS_IN.get(raw or "")
    if found is None:
        raise invalid(f"Invalid logged model status {raw!r}.", parameter="status")
    return found


def to_us(ms: int | None) -> int | None:
    """MLflow milliseconds to modelyard microseconds."""
    return None if ms is None else ms * 1000


def experiment(e: Experiment) -> dict[str, Any]:
    """An experiment as MLflow's ``Experiment``."""
    return {
        "experiment_id": str(e.id),
        "name": e.name,
        "artifact_location": e.artifact_location,
        "lifecycle_stage": e.lifecycle_stage.value,
        "last_update_time": millis(e.updated_at),
        "creation_time": millis(e.created_at),
        "tags": tag_list(e.tags),
    }


def metric(m: Metric) -> dict[str, Any]:
    """A metric point as MLflow's ``Metric``."""
    out: dict[str, Any] = {
        "key": m.key,
        "value": double(m.value),
        "timestamp": millis(m.timestamp),
        "step": m.step,
    }
    if m.run_id is not None:
        out["run_id"] = m.run_id
    if m.model_id is not None:
        out["model_id"] = m.model_id
    return out


def run_info(r: Run) -> dict[str, Any]:
    """A run's ``RunInfo``."""
    info: dict[str, Any] = {
        "run_id": r.id,
        "run_uuid": r.id,
        "run_name": r.name,
        "experiment_id": str(r.experiment_id),
        "user_id": r.user,
        "status": r.status.value,
        "artifact_uri": r.artifact_uri,
        "lifecycle_stage": r.lifecycle_stage.value,
    }
    if r.start_time is not None:
        info["start_time"] = millis(r.start_time)
    if r.end_time is not None:
        info["end_time"] = millis(r.end_time)
    return info


def run(r: Run) -> dict[str, Any]:
    """A run as MLflow's ``Run`` (info, data with the latest metrics, outputs)."""
    return {
        "info": run_info(r),
        "data": {
            "metrics": [
                {k: v for k, v in metric(m).items() if k not in ("run_id", "model_id")}
                for m in r.metrics.values()
            ],
            "params": tag_list(r.params),
            "tags": tag_list(r.tags),
        },
        "inputs": {
            "dataset_inputs": [dataset_input(i) for i in r.dataset_inputs],
            "model_inputs": [{"model_id": m} for m in r.model_inputs],
        },
        "outputs": {"model_outputs": [{"model_id": o.model_id, "step": o.step} for o in r.outputs]},
    }


def dataset_input(i: DatasetInput) -> dict[str, Any]:
    """A run's dataset input as MLflow's ``DatasetInput``."""
    d = i.dataset
    dataset: dict[str, Any] = {
        "name": d.name,
        "digest": d.digest,
        "source_type": d.source_type,
        "source": d.source,
    }
    if d.schema is not None:
        dataset["schema"] = d.schema
    if d.profile is not None:
        dataset["profile"] = d.profile
    return {"tags": tag_list(i.tags), "dataset": dataset}


def logged_model(m: LoggedModel) -> dict[str, Any]:
    """A logged model as MLflow's ``LoggedModel``."""
    info: dict[str, Any] = {
        "model_id": m.id,
        "experiment_id": str(m.experiment_id),
        "name": m.name,
        "creation_timestamp_ms": millis(m.created_at),
        "last_updated_timestamp_ms": millis(m.updated_at),
        "artifact_uri": m.artifact_location,
        "status": _MODEL_STATUS[m.status],
        "status_message": m.status_message,
        "tags": tag_list(m.tags),
    }
    if m.model_type is not None:
        info["model_type"] = m.model_type
    if m.source_run_id is not None:
        info["source_run_id"] = m.source_run_id
    return {
        "info": info,
        "data": {"params": tag_list(m.params), "metrics": [metric(x) for x in m.metrics]},
    }
