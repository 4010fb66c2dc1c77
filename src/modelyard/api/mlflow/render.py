"""Registry entities in MLflow's JSON shape (protobuf's JSON mapping).

Times are milliseconds since the epoch (modelyard keeps microseconds); tags
and aliases are lists of ``{"key", "value"}`` / ``{"alias", "version"}``;
version numbers are strings, as MLflow's messages declare them.
"""

from __future__ import annotations

from typing import Any

from modelyard.domain.entities import Model


def millis(us: int) -> int:
    """Microseconds to MLflow's milliseconds."""
    return us // 1000


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    """A tag mapping as MLflow's repeated ``{"key", "value"}``."""
    return [{"key": k, "value": v} for k, v in tags.items()]


def registered_model(m: Model) -> dict[str, Any]:
    """A model as MLflow's ``RegisteredModel``."""
    return {
        "name": m.name,
        "creation_timestamp": millis(m.created_at),
        "last_updated_timestamp": millis(m.updated_at),
        "description": m.description,
        "tags": tag_list(m.tags),
    }
