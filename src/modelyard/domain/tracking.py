"""Experiment tracking: experiments, runs (params, metrics with history, tags),
logged models and the artifact index, as plain dataclasses.

These are the lineage a version points to (``Version.source_run``). The MLflow
door writes them, but nothing here speaks MLflow's wire format: times are
integer microseconds like every other entity (the door converts to and from
MLflow's milliseconds), ids are ours (experiments: integers; runs: 32 hex
digits; logged models: ``m-`` and 32 hex digits).

Every experiment lives in one modelyard namespace, the unit of permissions:
``default`` unless its creator names another with the tag
:data:`NAMESPACE_TAG` at creation. Its runs, logged models and artifacts are
read and written under that namespace's roles.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from modelyard.domain.errors import InvalidInput

NAMESPACE_TAG: Final = "modelyard.namespace"
"""Experiment tag naming the namespace an experiment is created in (fixed after)."""

DEFAULT_EXPERIMENT_ID: Final = 0
DEFAULT_EXPERIMENT_NAME: Final = "Default"

_RUN_ID_RE = re.compile(r"[0-9a-f]{32}")
_MODEL_ID_RE = re.compile(r"m-[0-9a-f]{32}")

MAX_KEY_LENGTH: Final = 250
MAX_PARAM_VALUE_LENGTH: Final = 6000
MAX_TAG_VALUE_LENGTH: Final = 8000
MAX_ENTITY_NAME_LENGTH: Final = 500


class LifecycleStage(StrEnum):
    """Soft deletion of experiments, runs and logged models (restore undoes it)."""

    ACTIVE = "active"
    DELETED = "deleted"


class RunStatus(StrEnum):
    """What a run is doing (MLflow's names)."""

    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class LoggedModelStatus(StrEnum):
    """A logged model is ``PENDING`` while its files upload, then ``READY`` or ``FAILED``."""

    PENDING = "PENDING"
    READY = "READY"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class Experiment:
    """A named group of runs, in one namespace."""

    id: int
    name: str
    namespace: str
    artifact_location: str
    lifecycle_stage: LifecycleStage
    tags: dict[str, str]
    created_by: str
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Metric:
    """One logged value of a metric (a run keeps every one: the history)."""

    key: str
    value: float
    timestamp: int  # µs
    step: int
    run_id: str | None = None
    model_id: str | None = None


@dataclass(frozen=True, slots=True)
class ModelOutput:
    """A logged model a run produced, at a step."""

    model_id: str
    step: int


@dataclass(frozen=True, slots=True)
class Dataset:
    """A dataset a run read (MLflow's ``Dataset``): named and versioned by its
    digest within an experiment. ``source`` is text describing where it came
    from; the server never opens it."""

    name: str
    digest: str
    source_type: str
    source: str
    schema: str | None = None
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class DatasetInput:
    """A dataset as one run's input, with its input tags (``mlflow.data.context``)."""

    dataset: Dataset
    tags: dict[str, str] = field(default_factory=dict)


# MLflow's bounds on a dataset's fields and on input tags.
DATASET_LIMITS: Final = {
    "name": 500,
    "digest": 36,
    "source_type": 36,
    "source": 65535,
    "schema": 1048575,
    "profile": 16384,
}
MAX_INPUT_TAG_KEY = 255
MAX_INPUT_TAG_VALUE = 500
CONTEXT_TAG: Final = "mlflow.data.context"


def check_dataset_input(item: DatasetInput) -> DatasetInput:
    """``item`` if its fields keep MLflow's bounds (name, digest, source type
    and source required), else ``INVALID_INPUT``."""
    d = item.dataset
    for name, limit in DATASET_LIMITS.items():
        value = getattr(d, name)
        if value is None and name in ("schema", "profile"):
            continue
        validate_text(value, f"dataset {name}", limit)
        if not value and name in ("name", "digest", "source_type", "source"):
            raise InvalidInput(f"dataset {name} must not be empty", code="INVALID_INPUT")
    for key, value in item.tags.items():
        validate_text(key, "input tag key", MAX_INPUT_TAG_KEY)
        validate_text(value, "input tag value", MAX_INPUT_TAG_VALUE)
        if not key:
            raise InvalidInput("input tag keys must not be empty", code="INVALID_INPUT")
    return item


@dataclass(frozen=True, slots=True)
class Run:
    """One execution of training code: its info, its latest metrics, params, tags."""

    id: str
    experiment_id: int
    namespace: str
    name: str
    user: str
    status: RunStatus
    start_time: int | None  # µs
    end_time: int | None  # µs
    lifecycle_stage: LifecycleStage
    artifact_uri: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    outputs: list[ModelOutput] = field(default_factory=list)
    # ``log_inputs``: datasets read (in the order first logged) and logged models used.
    dataset_inputs: list[DatasetInput] = field(default_factory=list)
    model_inputs: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LoggedModel:
    """A model logged from a run (MLflow 3): its files live under ``artifact_location``."""

    id: str
    experiment_id: int
    namespace: str
    name: str
    source_run_id: str | None
    model_type: str | None
    status: LoggedModelStatus
    status_message: str
    artifact_location: str
    lifecycle_stage: LifecycleStage
    created_by: str
    created_at: int
    updated_at: int
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    """One file of a run's or logged model's artifact tree, by digest."""

    path: str  # relative to the owner's artifact root
    digest: str
    size: int


# -- ids and keys ------------------------------------------------------------


def validate_run_id(value: object) -> str:
    """``value`` if it is a run id (32 lowercase hex digits), else ``INVALID_RUN_ID``."""
    if not isinstance(value, str) or not _RUN_ID_RE.fullmatch(value):
        raise InvalidInput(f"invalid run id {value!r}", code="INVALID_RUN_ID")
    return value


def validate_model_id(value: object) -> str:
    """``value`` if it is a logged model id (``m-`` + 32 hex), else ``INVALID_MODEL_ID``."""
    if not isinstance(value, str) or not _MODEL_ID_RE.fullmatch(value):
        raise InvalidInput(f"invalid logged model id {value!r}", code="INVALID_MODEL_ID")
    return value


def validate_experiment_id(value: object) -> int:
    """An experiment id from an int or its decimal text, else ``INVALID_EXPERIMENT_ID``."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    raise InvalidInput(f"invalid experiment id {value!r}", code="INVALID_EXPERIMENT_ID")


def validate_key(value: object, kind: str = "key") -> str:
    """A param, metric or tag key: 1..250 characters, no NUL, not ``.``/``..``-only
    path segments (MLflow keys may contain ``/`` and spaces)."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_KEY_LENGTH or "\x00" in value:
        raise InvalidInput(
            f"invalid {kind} {value!r}: 1 to {MAX_KEY_LENGTH} characters, no NUL",
            code="INVALID_KEY",
            details={"key": str(value)[:300]},
        )
    if any(part in ("", ".", "..") for part in value.split("/")) or value.startswith(" "):
        raise InvalidInput(
            f"invalid {kind} {value!r}: empty, '.' or '..' path segment",
            code="INVALID_KEY",
            details={"key": value},
        )
    return value


def validate_text(value: object, what: str, limit: int) -> str:
    """A string of at most ``limit`` characters without NUL, else ``INVALID_INPUT``."""
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise InvalidInput(
            f"{what} must be a string of at most {limit} characters",
            code="INVALID_INPUT",
            details={"field": what},
        )
    return value


def validate_metric_value(value: object) -> float:
    """A metric value: any float, NaN and infinities included (MLflow allows them)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"metric value {value!r} is not a number", code="INVALID_METRIC")
    out = float(value)
    if math.isnan(out):
        return math.nan
    return out
