"""Registry entities in MLflow's JSON shape (protobuf's JSON mapping).

Times are milliseconds since the epoch (modelyard keeps microseconds); tags
and aliases are lists of ``{"key", "value"}`` / ``{"alias", "version"}``;
version numbers are strings, as MLflow's messages declare them.

Where an MLflow field lives in modelyard:

- a version's ``source`` is its metadata key ``mlflow.source``, its
  ``run_id`` the version's ``source_run`` (its lineage run), its ``model_id``
  (an MLflow 3 logged model) the metadata key ``mlflow.model_id``;
- ``user_id`` is the version's creator; ``current_stage`` is derived from its
  state and the @staging alias (``service/stages.py``);
- ``status`` is ``PENDING_REGISTRATION`` for a draft (files not committed)
  and ``READY`` otherwise.
"""

from __future__ import annotations

from typing import Any, Final

from modelyard.domain.entities import Model, Version, VersionState
from modelyard.service.stages import stage_of

SOURCE_KEY: Final = "mlflow.source"
MODEL_ID_KEY: Final = "mlflow.model_id"


def millis(us: int) -> int:
    """Microseconds to MLflow's milliseconds."""
    return us // 1000


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    """A tag mapping as MLflow's repeated ``{"key", "value"}``."""
    return [{"key": k, "value": v} for k, v in tags.items()]


def model_version(v: Version) -> dict[str, Any]:
    """A version as MLflow's ``ModelVersion``."""
    body: dict[str, Any] = {
        "name": v.model,
        "version": str(v.number),
        "creation_timestamp": millis(v.created_at),
        "last_updated_timestamp": millis(v.updated_at),
        "user_id": v.created_by,
        "current_stage": stage_of(v),
        "description": v.description,
        "source": str(v.metadata.get(SOURCE_KEY, "")),
        "status": "PENDING_REGISTRATION" if v.state is VersionState.DRAFT else "READY",
        "tags": tag_list(v.tags),
        "aliases": list(v.aliases),
    }
    if v.source_run:
        body["run_id"] = v.source_run
    model_id = v.metadata.get(MODEL_ID_KEY)
    if isinstance(model_id, str) and model_id:
        body["model_id"] = model_id
    return body


def registered_model(
    m: Model,
    *,
    aliases: dict[str, int] | None = None,
    latest: list[Version] | None = None,
) -> dict[str, Any]:
    """A model as MLflow's ``RegisteredModel`` (aliases and latest versions when given)."""
    body: dict[str, Any] = {
        "name": m.name,
        "creation_timestamp": millis(m.created_at),
        "last_updated_timestamp": millis(m.updated_at),
        "description": m.description,
        "tags": tag_list(m.tags),
    }
    if aliases:
        body["aliases"] = [{"alias": a, "version": str(n)} for a, n in sorted(aliases.items())]
    if latest:
        body["latest_versions"] = [model_version(v) for v in latest]
    return body
