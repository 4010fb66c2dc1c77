"""Entities to JSON-able dicts: the wire shape of the native API (and of the SDK's answers)."""

from __future__ import annotations

import functools
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from modelyard.domain.bundles import Bundle, BundleAliasMove, BundleApproval, BundleVersion
from modelyard.domain.entities import AliasMove, Model, Namespace, Version
from modelyard.domain.families import (
    RESOURCE_PREFIX,
    Family,
    FamilyNode,
    FamilyPromotion,
    is_resource,
)
from modelyard.domain.webhooks import Delivery, Webhook

_EPOCH = datetime(1970, 1, 1)


@functools.lru_cache(maxsize=4096)
def _iso_second(seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=seconds)).isoformat()


def iso(us: int) -> str:
    """Microseconds since the epoch as ISO 8601 UTC (``...T12:00:00.000001Z``;
    no fraction when it is zero, as ``datetime.isoformat`` writes it).

    Integer arithmetic and one formatted string per second (cached: a page's
    versions were mostly made in the same few seconds) rather than
    ``datetime.fromtimestamp(...).isoformat()``: two of these per version were
    a third of rendering a search page (py-spy), 3.4x faster this way.
    """
    seconds, micros = divmod(us, 1_000_000)
    prefix = _iso_second(seconds)
    return f"{prefix}.{micros:06d}Z" if micros else f"{prefix}Z"


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
            "recipe": ver.recipe,
            "metric_delta": ver.metric_delta,
        },
        "file_count": ver.file_count,
        "total_size": ver.total_size,
        "created_by": ver.created_by,
        "created_at": iso(ver.created_at),
        "updated_at": iso(ver.updated_at),
        "pickle_exception": pickle_exception(ver.pickle_exception),
    }
    if ver.pending is not None:
        # Files whose blob is still being verified (the version is a draft
        # until none is left; issue 13); only where they were loaded.
        out["pending_files"] = [asdict(w) for w in ver.pending]
    if ver.files is not None:
        # ``files`` stays the whole manifest (what a pull fetches);
        # ``resources`` lists the components apart from the weights.
        out["files"] = [asdict(f) for f in ver.files]
        out["resources"] = [
            {"name": f.path[len(RESOURCE_PREFIX) :], **asdict(f)}
            for f in ver.files
            if is_resource(f.path)
        ]
    return out


def pickle_exception(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """Wire shape of a version's pickle exception: who recorded it, when
    (ISO time), why, and the pickle files' digests it is bound to."""
    if record is None:
        return None
    return {
        "by": record["by"],
        "at": iso(int(record["at"])),
        "reason": record["reason"],
        "digests": record["digests"],
    }


def family(f: Family) -> dict[str, Any]:
    """Wire shape of a family: the version asked about, the root, and every
    member in depth-first order with its place in the tree.

    Flat rather than nested, so a long chain of variants cannot hit a JSON
    encoder's nesting limit: ``parent`` is the nearest member above (the
    tree's edge, which skips versions the caller may not see) and ``depth``
    its level (top-level trees at 0).
    """
    members: list[dict[str, Any]] = []
    stack: list[tuple[FamilyNode, str | None, int]] = [(n, None, 0) for n in reversed(f.trees)]
    while stack:
        node, above, depth = stack.pop()
        members.append({"version": version(node.version), "parent": above, "depth": depth})
        stack.extend((c, node.version.ref, depth + 1) for c in reversed(node.children))
    return {"of": f.of, "root": f.root, "members": members}


def family_promotion(p: FamilyPromotion) -> dict[str, Any]:
    """Wire shape of a family promotion: the change and each version it touched
    (the original first), with ``changed`` and where it was ``before``."""
    return {
        "change_id": p.change_id,
        "action": p.action,
        "alias": p.alias,
        "parts": [
            {
                "version": version(x.version),
                "format": x.format,
                "changed": x.changed,
                "before": x.before,
            }
            for x in p.parts
        ],
    }


def bundle(b: Bundle) -> dict[str, Any]:
    """Wire shape of a bundle."""
    return {
        "namespace": b.namespace,
        "name": b.name,
        "description": b.description,
        "roles": b.roles,
        "edges": [e.to_dict() for e in b.edges],
        "latest_version": b.latest_version,
        "aliases": dict(b.aliases),
        "incompatible": [{**e, "at": iso(e["at"])} for e in b.incompatible],
        "created_by": b.created_by,
        "created_at": iso(b.created_at),
        "updated_at": iso(b.updated_at),
    }


def bundle_version(bv: BundleVersion) -> dict[str, Any]:
    """Wire shape of a bundle version: each role's pinned version with its files."""
    return {
        "ref": bv.ref,
        "namespace": bv.namespace,
        "name": bv.name,
        "version": bv.number,
        "members": {role: version(v) for role, v in bv.members.items()},
        "edges": [e.to_dict() for e in bv.edges],
        "created_by": bv.created_by,
        "created_at": iso(bv.created_at),
    }


def bundle_approval(a: BundleApproval) -> dict[str, Any]:
    """Wire shape of a bundle alias approval request with its reviews (the
    shape of a model version's request, ``bundle`` in place of ``model``)."""
    return {
        "id": a.id,
        "ref": a.ref,
        "namespace": a.namespace,
        "bundle": a.bundle,
        "version": a.version,
        "alias": a.alias,
        "alias_from": a.alias_from,
        "state": a.state.value,
        "requested_by": a.requested_by,
        "comment": a.comment,
        "created_at": iso(a.created_at),
        "decided_by": a.decided_by,
        "decided_at": None if a.decided_at is None else iso(a.decided_at),
        "approvals": a.approvers,
        "reviews": [
            {"actor": v.actor, "decision": v.decision, "comment": v.comment, "at": iso(v.at)}
            for v in a.votes
        ],
    }


def bundle_alias_move(m: BundleAliasMove) -> dict[str, Any]:
    """Wire shape of one bundle alias history entry."""
    return {
        "namespace": m.namespace,
        "bundle": m.bundle,
        "alias": m.alias,
        "from_version": m.from_version,
        "to_version": m.to_version,
        "actor": m.actor,
        "reason": m.reason,
        "at": iso(m.at),
    }


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


def webhook(h: Webhook) -> dict[str, Any]:
    """Wire shape of a webhook subscription (never with its secret)."""
    return {
        "id": h.id,
        "url": h.url,
        "description": h.description,
        "event_types": h.event_types,
        "namespace": h.namespace,
        "model": h.model,
        "active": h.active,
        "disabled_reason": h.disabled_reason,
        "failing_since": iso(h.failing_since) if h.failing_since else None,
        "previous_secret_expires_at": (
            iso(h.previous_secret_expires_at) if h.previous_secret_expires_at else None
        ),
        "created_by": h.created_by,
        "created_at": iso(h.created_at),
        "updated_at": iso(h.updated_at),
    }


def delivery(d: Delivery) -> dict[str, Any]:
    """Wire shape of a delivery with its attempts."""
    return {
        "id": d.id,
        "webhook_id": d.webhook_id,
        "message_id": d.message_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": d.status.value,
        "failures": d.failures,
        "next_attempt_at": iso(d.next_attempt_at) if d.next_attempt_at else None,
        "created_at": iso(d.created_at),
        "updated_at": iso(d.updated_at),
        "attempts": [
            {
                "attempt": a.attempt,
                "at": iso(a.at),
                "status": a.status,
                "latency_ms": round(a.latency_us / 1000, 3),
                "response_code": a.response_code,
                "response_body": a.response_body,
                "error": a.error,
            }
            for a in d.attempts
        ],
    }


def event(ev: dict[str, Any]) -> dict[str, Any]:
    """Wire shape of an outbox event."""
    return {**ev, "at": iso(ev["at"])}
