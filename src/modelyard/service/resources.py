"""Resources (issue 14): attach or replace named components of a version.

A resource is a file whose manifest path starts with ``resources/``
(:data:`~modelyard.domain.families.RESOURCE_PREFIX`): thresholds, label
maps, anything that may change without the weights. A ready version never
changes, so attaching one creates the next version of the same model: the
source's manifest with the new resources (a resource of the same name is
replaced), every other file shared by digest (no byte is copied), ``parent``
= the source and relation ``retuned``. Its other fields (framework, format,
signature, metrics, params, tags, metadata, run, datasets) are carried over.

It is the version-create use case (prepare step, then transaction step) and,
when asked, the alias-move use case in the same transaction: the same
checks, policy and approval rules, and events (``version.created``, then
``alias.moved``). A refused alias move creates nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import orjson

from modelyard.domain import identity as auth
from modelyard.domain.entities import Relation, Version, VersionState
from modelyard.domain.errors import Conflict, InvalidInput
from modelyard.domain.families import RESOURCE_PREFIX
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.names import RESERVED_ALIASES, validate_alias
from modelyard.domain.references import Reference
from modelyard.service import validation as v
from modelyard.service.core import RegistryCore
from modelyard.service.versions import VersionSpec
from modelyard.store.metadata.ports import RegistryTx

if TYPE_CHECKING:
    from modelyard.service.registry import RegistryService

MAX_RESOURCES = 1000


def resource_entries(resources: Any) -> list[dict[str, Any]]:
    """The request's resources as manifest entries under ``resources/``.

    Each item is ``{"name", "digest", "size", "media_type"?}``; ``name`` is
    the path below ``resources/`` (``thresholds.json``, ``labels/en.csv``).
    """
    if not isinstance(resources, list) or not resources:
        raise InvalidInput("resources must be a non-empty list", code="INVALID_RESOURCES")
    if len(resources) > MAX_RESOURCES:
        raise v.too_many("resources", MAX_RESOURCES)
    out: list[dict[str, Any]] = []
    for item in resources:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput("each resource is an object with a name", code="INVALID_RESOURCES")
        name = item["name"]
        if name.startswith(RESOURCE_PREFIX):
            # Accept the full path too: the prefix is what marks a resource.
            name = name[len(RESOURCE_PREFIX) :]
        entry = {k: item[k] for k in ("digest", "size", "media_type") if k in item}
        entry["path"] = RESOURCE_PREFIX + name
        out.append(entry)
    v.check_files(out, max_files=MAX_RESOURCES)  # paths, digests, sizes, duplicates
    return out


class ResourceUseCases(RegistryCore):
    """Resources: the next version with new or replaced components."""

    def attach_resources(
        self,
        ref: str | Reference,
        resources: Sequence[Any],
        *,
        alias: str | None = None,
        reason: str = "",
        description: str | None = None,
        actor: Principal,
        idempotency_key: str | None = None,
    ) -> Version:
        """Create the next version of ``ref``'s model with ``resources`` attached.

        The resources' blobs must be uploaded first (the normal blob path and
        its mount rule). ``alias`` is moved to the new version in the same
        transaction, under the production policy (a refusal creates nothing).
        ``description`` defaults to the source's. ``VERSION_NOT_READY`` for a
        draft source (commit its files first).

        ``idempotency_key`` works as for :meth:`create_version`: the same key
        with the same request (reference as given, resources, alias, reason,
        description) answers the version the first call created, without a
        second one; the same key with another request is refused with
        ``IDEMPOTENCY_KEY_REUSED`` (409). Keys are scoped to the model.

        Requires: write on the namespace.
        """
        r = self.resolve(ref)
        entries = resource_entries(list(resources))
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= 255
        ):
            raise InvalidInput(
                "Idempotency-Key must be 1-255 characters", code="INVALID_IDEMPOTENCY_KEY"
            )
        if alias is not None:
            validate_alias(alias)
            if alias in RESERVED_ALIASES:
                raise InvalidInput(f"alias {alias!r} is reserved", code="INVALID_ALIAS")
        reason = v.check_description(reason)
        auth.require(actor, Permission.WRITE, r.namespace)
        registry = cast("RegistryService", self)
        # The source's files never change once it is ready, so reading them
        # before the write transaction cannot go stale; the prepare step then
        # checks every blob (the shared ones pass the mount rule as files of
        # a version the caller reads).
        source = registry.get_version(r, actor=actor)
        if source.state is VersionState.DRAFT:
            raise Conflict(
                f"version {source.ref} is a draft: commit its files first",
                code="VERSION_NOT_READY",
                details={"version": source.ref},
            )
        replaced = {e["path"] for e in entries}
        files: list[Any] = [
            {"path": f.path, "digest": f.digest, "size": f.size, "media_type": f.media_type}
            for f in source.files or []
            if f.path not in replaced
        ]
        spec = VersionSpec(
            files=files + entries,
            description=source.description if description is None else description,
            framework=source.framework,
            format=source.format,
            signature=source.signature,
            metrics=source.metrics,
            params=source.params,
            tags=source.tags,
            metadata=source.metadata,
            source_run=source.source_run,
            code_ref=source.code_ref,
            datasets=source.datasets,
            parent=source.ref,
            relation=Relation.RETUNED.value,
        )
        prepared = registry.prepare_version(
            source.model, spec, namespace=source.namespace, actor=actor
        )

        # The request as the caller sent it: a replay after the first call
        # moved ``alias`` (or ``latest``) must still match, so the reference
        # text counts, not the version it resolves to now.
        request_hash = (
            hashlib.sha256(
                orjson.dumps(
                    {
                        "ref": str(r),
                        "resources": sorted(entries, key=lambda e: e["path"]),
                        "alias": alias,
                        "reason": reason,
                        "description": description,
                    },
                    option=orjson.OPT_SORT_KEYS,
                )
            ).hexdigest()
            if idempotency_key
            else ""
        )
        scope = (
            "attach_resources:"
            + hashlib.sha256(f"{r.namespace}/{r.name}".encode()).hexdigest()[:40]
        )

        def op(tx: RegistryTx) -> Version:
            if idempotency_key:
                prior = tx.get_idempotent(scope, idempotency_key)
                if prior is not None:
                    if prior[0] != request_hash:
                        raise Conflict(
                            "this Idempotency-Key was used with a different request",
                            code="IDEMPOTENCY_KEY_REUSED",
                        )
                    found = tx.load_versions([prior[1]], with_files=True)
                    if found:
                        return found[0]
            created = registry.insert_version_in_tx(tx, prepared, actor=actor)
            if idempotency_key:
                tx.put_idempotent(scope, idempotency_key, request_hash, created.id)
            if alias is None:
                return created
            registry.move_alias_in_tx(
                tx,
                Reference(created.namespace, created.model, version=created.number),
                alias,
                actor=actor,
                reason=reason,
            )
            return tx.get_version_by_id(created.id, with_files=True)

        return self.run_in_transaction(op)
