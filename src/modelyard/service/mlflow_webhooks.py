"""MLflow 3's webhook contract on modelyard's outbox: event names, bodies, validation.

A webhook made through the MLflow door is an ordinary subscription (same
table, fan-out, retries, leases and SSRF guard) with MLflow's name and event
list kept beside it (``webhooks.mlflow``). What differs is only the wire:

- its ``event_types`` are the modelyard types that map to the MLflow events
  it asked for, so the fan-out queues only events MLflow would have sent;
- its deliveries carry MLflow's body ``{"entity", "action", "timestamp",
  "data"}`` (``data`` per MLflow's payload types) and MLflow's headers
  ``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp`` and, when the webhook has
  a secret, ``X-MLflow-Signature`` (see :func:`modelyard.webhooks.mlflow_signature`).

The mapping (one modelyard event to the MLflow events it makes):

==========================  ==========================================
modelyard                   MLflow
==========================  ==========================================
``model.created``           ``registered_model.created``
``version.created``         ``model_version.created``
``version.updated``         ``model_version_tag.deleted`` then ``.set``,
                            one per key (see below)
``alias.moved``             ``model_version_alias.created``
``alias.deleted``           ``model_version_alias.deleted``
==========================  ==========================================

MLflow sends one tag webhook per key set or deleted, whether the value
changed or not; one modelyard ``version.updated`` can touch several keys
at once (REST v1's PATCH). So one event translates to a *list* of MLflow
events (:func:`mlflow_events`), and the fan-out queues one delivery per
element a webhook subscribed to, numbered by its index (the delivery's
``part``), so each has its own delivery id, retries and signature. The keys
come from the event's ``tags_set`` / ``tags_deleted`` (what the request
asked); an event written without them (older rows, state changes) is read
as the difference between its ``before`` and ``after`` tags.

MLflow 3.17 has no registered-model tag events; prompt and budget events
have no modelyard counterpart and are refused (``INVALID_PARAMETER_VALUE``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from modelyard.domain.errors import InvalidInput

# The metadata key the MLflow door stores a version's ``source`` under
# (``api/mlflow/render.py`` reads the same key).
SOURCE_KEY: Final = "mlflow.source"

TO_MODELYARD: Final[dict[str, str]] = {
    "registered_model.created": "model.created",
    "model_version.created": "version.created",
    "model_version_tag.set": "version.updated",
    "model_version_tag.deleted": "version.updated",
    "model_version_alias.created": "alias.moved",
    "model_version_alias.deleted": "alias.deleted",
}
"""MLflow event name -> the modelyard event type it is delivered for."""

MLFLOW_SOURCES: Final = frozenset(TO_MODELYARD.values())
"""Modelyard event types that can make an MLflow event."""

TO_MLFLOW: Final[dict[str, str]] = {
    mine: theirs for theirs, mine in TO_MODELYARD.items() if mine != "version.updated"
}
"""Modelyard event type -> the one MLflow event it makes (tag events aside)."""

# Every event MLflow 3.17 knows (``mlflow.entities.webhook.VALID_ENTITY_ACTIONS``):
# known but not (yet) deliverable ones get a message that says so.
MLFLOW_EVENTS: Final = frozenset(
    {
        *TO_MODELYARD,
        "prompt.created",
        "prompt_version.created",
        "prompt_tag.set",
        "prompt_tag.deleted",
        "prompt_version_tag.set",
        "prompt_version_tag.deleted",
        "prompt_alias.created",
        "prompt_alias.deleted",
        "budget_policy.exceeded",
    }
)

# MLflow's rule for a webhook name: starts and ends with a letter or digit,
# at most 63 characters of letters, digits, ``.``, ``_`` and ``-``.
_NAME: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
MAX_SECRET: Final = 128  # the ``webhooks.secret`` column


def invalid(message: str, **details: Any) -> InvalidInput:
    """A bad MLflow webhook field (``INVALID_PARAMETER_VALUE`` at the door)."""
    return InvalidInput(message, code="INVALID_PARAMETER", details=details)


def check_name(name: Any) -> str:
    """An MLflow webhook name, checked by MLflow's rule."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise invalid(
            f"Webhook name {name!r} is invalid: it must start and end with a letter or "
            "digit, be at most 63 characters long and contain only letters, digits, "
            "'.', '_' and '-'.",
            parameter="name",
        )
    return name


def check_events(events: Any) -> list[str]:
    """MLflow event names (``entity.action``), de-duplicated in order; each must map."""
    if not isinstance(events, list) or not events:
        raise invalid("Webhook events must be a non-empty list.", parameter="events")
    out: list[str] = []
    for ev in events:
        if not isinstance(ev, str) or ev not in MLFLOW_EVENTS:
            raise invalid(
                f"Unknown webhook event {ev!r}; events are 'entity.action' names such as "
                "'registered_model.created'.",
                parameter="events",
                allowed=sorted(TO_MODELYARD),
            )
        if ev not in TO_MODELYARD:
            raise invalid(
                f"Webhook event {ev!r} is not delivered by modelyard; supported: "
                f"{', '.join(sorted(TO_MODELYARD))}.",
                parameter="events",
                allowed=sorted(TO_MODELYARD),
            )
        if ev not in out:
            out.append(ev)
    return out


def check_secret(secret: Any) -> str:
    """An MLflow secret: any text up to 128 characters ('' for none: unsigned)."""
    if secret is None:
        return ""
    if not isinstance(secret, str) or len(secret) > MAX_SECRET:
        raise invalid(f"Webhook secret is text of at most {MAX_SECRET} characters.")
    return secret


def modelyard_types(events: list[str]) -> list[str]:
    """The modelyard event types a webhook with these MLflow events subscribes to."""
    return list(dict.fromkeys(TO_MODELYARD[e] for e in events))


def _tag_events(payload: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The MLflow tag events of one ``version.updated``: deleted keys, then set
    keys, each in key order (the order the update applied them)."""
    if "tags_set" in payload:
        set_tags = dict(payload.get("tags_set") or {})
        deleted = list(payload.get("tags_deleted") or [])
    else:
        old = dict((payload.get("before") or {}).get("tags") or {})
        new = dict((payload.get("after") or {}).get("tags") or {})
        set_tags = {k: val for k, val in new.items() if old.get(k) != val}
        deleted = [k for k in old if k not in new]
    after = payload.get("after") or {}
    name, version = after["model"], str(after["version"])
    out: list[tuple[str, dict[str, Any]]] = [
        ("model_version_tag.deleted", {"name": name, "version": version, "key": key})
        for key in sorted(deleted)
    ]
    out.extend(
        (
            "model_version_tag.set",
            {"name": name, "version": version, "key": key, "value": str(set_tags[key])},
        )
        for key in sorted(set_tags)
    )
    return out


def _data(ev_type: str, subject: str, payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """MLflow's ``data`` for a modelyard event that makes one MLflow event."""
    if ev_type == "model.created":
        return {
            "name": payload["name"],
            "tags": dict(payload.get("tags") or {}),
            "description": payload.get("description") or None,
        }
    if ev_type == "version.created":
        metadata = payload.get("metadata") or {}
        return {
            "name": payload["model"],
            "version": str(payload["version"]),
            "source": str(metadata.get(SOURCE_KEY, "")),
            "run_id": payload.get("source_run"),
            "tags": dict(payload.get("tags") or {}),
            "description": payload.get("description") or None,
        }
    if ev_type in ("alias.moved", "alias.deleted"):
        # subject: "ns/name@alias"
        name = subject.split("/", 1)[-1].rpartition("@")[0]
        data: dict[str, Any] = {"name": name, "alias": payload["alias"]}
        if ev_type == "alias.moved":
            data["version"] = str(payload["to_version"])
        return data
    return None


def mlflow_events(ev: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The MLflow events (name, ``data``) one outbox event makes, in a fixed
    order: a delivery's ``part`` is its index here. Empty: MLflow has none."""
    ev_type = ev["type"]
    if ev_type not in MLFLOW_SOURCES:
        return []
    if ev_type == "version.updated":
        return _tag_events(ev["payload"])
    data = _data(ev_type, ev["subject"], ev["payload"])
    return [] if data is None else [(TO_MLFLOW[ev_type], data)]


def _iso(us: int) -> str:
    # MLflow writes ``datetime.isoformat()`` of an aware UTC time ("+00:00").
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat()


def event_body(ev: Mapping[str, Any], part: int = 0) -> bytes | None:
    """MLflow's JSON body for part ``part`` of an outbox event (None: no such part)."""
    made = mlflow_events(ev)
    if not 0 <= part < len(made):
        return None
    name, data = made[part]
    return render(name, data, ev["at"])


def render(name: str, data: Mapping[str, Any], at_us: int) -> bytes:
    """The body MLflow POSTs for event ``name`` with ``data``, stamped ``at_us``."""
    entity, _, action = name.partition(".")
    return orjson.dumps(
        {"entity": entity, "action": action, "timestamp": _iso(at_us), "data": data}
    )


def example_data(name: str) -> dict[str, Any]:
    """A made-up ``data`` for a test delivery of MLflow event ``name``."""
    model = "example-model"
    if name == "registered_model.created":
        return {"name": model, "tags": {"team": "example"}, "description": "a test event"}
    if name == "model_version.created":
        return {
            "name": model,
            "version": "1",
            "source": "models:/m-example",
            "run_id": None,
            "tags": {"team": "example"},
            "description": "a test event",
        }
    if name == "model_version_tag.set":
        return {"name": model, "version": "1", "key": "example_key", "value": "example_value"}
    if name == "model_version_tag.deleted":
        return {"name": model, "version": "1", "key": "example_key"}
    if name == "model_version_alias.created":
        return {"name": model, "alias": "champion", "version": "1"}
    if name == "model_version_alias.deleted":
        return {"name": model, "alias": "champion"}
    raise invalid(f"no test payload for webhook event {name!r}", parameter="event")
