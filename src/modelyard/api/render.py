"""Entities to JSON-able dicts: the wire shape of the native API."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from modelyard.domain.entities import AliasMove, Model, Namespace, Version


def iso(us: int) -> str:
    """Microseconds since the epoch as ISO 8601 UTC."""
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat().replace("+00:00", "Z")


def namespace(ns: Namespace) -> dict[str, Any]:
    """Wire shape of a namespace."""
    return {"name": ns.name, "description": ns.description, "created_at": iso(ns.created_at)}


def model(m: Model) -> dict[str, Any]:
    """Wire shape of a model."""
    return {
        "namespace": m.namespace,
        "name": m.name,
        "description": m.description,
        "tags": m.tags,
        "metadata": m.metadata,
        "archived": m.archived,
        "latest_version": m.latest_version or None,
        "created_by": m.created_by,
        "created_at": iso(m.created_at),
        "updated_at": iso(m.updated_at),
    }


def version(ver: Version) -> dict[str, Any]:
    """Wire shape of a version."""
    out: dict[str, Any] = {
        "ref": ver.ref,
        "namespace": ver.namespace,
        "model": ver.model,
        "version": ver.number,
        "state": ver.state.value,
        "description": ver.description,
        "framework": ver.framework,
        "format": ver.format,
        "signature": ver.signature,
        "metrics": ver.metrics,
        "params": ver.params,
        "tags": ver.tags,
        "metadata": ver.metadata,
        "aliases": ver.aliases,
        "lineage": {
            "source_run": ver.source_run,
            "code_ref": ver.code_ref,
            "datasets": ver.datasets,
            "original": str(ver.original) if ver.original else None,
            "parent": str(ver.parent) if ver.parent else None,
            "relation": ver.relation,
        },
        "file_count": ver.file_count,
        "total_size": ver.total_size,
        "created_by": ver.created_by,
        "created_at": iso(ver.created_at),
        "updated_at": iso(ver.updated_at),
    }
    if ver.files is not None:
        out["files"] = [asdict(f) for f in ver.files]
    return out


def alias_move(a: AliasMove) -> dict[str, Any]:
    """Wire shape of one alias history entry."""
    return {
        "namespace": a.namespace,
        "model": a.model,
        "alias": a.alias,
        "from_version": a.from_version,
        "to_version": a.to_version,
        "actor": a.actor,
        "reason": a.reason,
        "at": iso(a.at),
    }
