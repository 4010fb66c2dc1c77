"""Version use cases: create (one transaction), read, list, commit a draft's
files, edit, and lifecycle transitions gated by the production policy."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

import orjson

from modelyard.domain import identity as auth
from modelyard.domain.entities import FileEntry, Version, VersionState
from modelyard.domain.errors import Conflict, InvalidInput
from modelyard.domain.families import metric_delta as metric_delta_of
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.names import validate_name
from modelyard.domain.references import DEFAULT_NAMESPACE, Reference, parse_reference
from modelyard.service import blobs as blob_rules
from modelyard.service import families, pending_versions, policy_gate, run_lineage
from modelyard.service import validation as v
from modelyard.service.artifacts import ResolvedSource, check_stored, resolve_model_source
from modelyard.service.core import (
    Page,
    RegistryCore,
    check_page_size,
    parse_state,
    version_payload,
)
from modelyard.service.views import ProductionView
from modelyard.store.metadata.ports import RegistryTx, now_us

if TYPE_CHECKING:
    from modelyard.service.registry import RegistryService


@dataclass(slots=True)
class VersionSpec:
    """What a client sends to create a version."""

    files: list[Any] = field(default_factory=list)
    description: str = ""
    framework: str | None = None
    format: str | None = None
    signature: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    source_run: str | None = None
    code_ref: str | None = None
    datasets: list[Any] = field(default_factory=list)
    parent: str | None = None
    original: str | None = None
    relation: str | None = None
    recipe: dict[str, Any] | None = None
    metric_delta: dict[str, Any] | None = None
    draft: bool = False
    # An MLflow model source (``runs:/<run>/<path>``, ``models:/m-<id>``, a
    # ``mlflow-artifacts:/`` URI): with no ``files``, the version's manifest
    # is what the source names in the artifact index (service/artifacts.py),
    # and ``source_run`` its run. Any other text is kept as metadata
    # ``mlflow.source`` only.
    source: str | None = None


@dataclass(slots=True)
class PreparedVersion:
    """A version create after its prepare step: every field checked."""

    namespace: str
    name: str
    files: list[FileEntry]
    draft: bool
    description: str
    framework: str | None
    format: str | None
    signature: dict[str, Any] | None
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    meta: dict[str, Any]
    datasets: list[Any]
    source_run: str | None
    code_ref: str | None
    relation: str | None
    recipe: dict[str, Any] | None
    metric_delta: dict[str, float] | None
    parent: Reference | None
    original: Reference | None
    # Files whose blob is the caller's own direct upload still being verified
    # (the version is then created draft and waits on them), and whose
    # verified upload releases them (None: anyone's; the caller reads all).
    waiting: list[FileEntry] = field(default_factory=list)
    waiter: str | None = None


class VersionUseCases(RegistryCore):
    """Versions: numbered, immutable once ready, with files, lineage and a lifecycle."""

    def get_version(
        self, ref: str | Reference, *, with_files: bool = True, actor: Principal
    ) -> Version:
        """A version by reference (``name/3``, ``name@alias``, ``ns/name@latest``).

        Requires: read on the namespace; with consume only, the version must be
        in the production view (``latest`` is then the newest visible one).
        """
        r = self.resolve(ref)
        consume_only = auth.require_readable(actor, r.namespace)
        with self.db.read() as tx:
            if consume_only:
                view = ProductionView(tx)
                vid = view.version_id(r, view.rule(r.namespace))
                return view.version(actor, tx.get_version_by_id(vid, with_files=with_files))
            found = tx.get_version_by_ref(
                r.namespace, r.name, number=r.version, alias=r.alias, with_files=with_files
            )
            if found is None:
                # Raises the precise NotFound. If the reference resolves now, an
                # alias was set by another transaction between the two statements
                # (PostgreSQL reads committed rows per statement): load what it
                # names now rather than fail (it was a 500 under replica tests).
                vid = self.version_id(tx, r)
                found = tx.get_version_by_id(vid, with_files=with_files)
            return pending_versions.with_pending(tx, found)

    def list_versions(
        self,
        name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        page_size: int = 100,
        page_token: str | None = None,
        states: Sequence[str] | None = None,
        actor: Principal,
    ) -> Page[Version]:
        """A model's versions, newest first.

        Requires: read on the namespace (consume: only the production view).
        """
        consume_only = auth.require_readable(actor, namespace)
        limit = check_page_size(page_size)
        before: int | None = None
        if page_token:
            if not (page_token.isascii() and page_token.isdigit()) or len(page_token) > 10:
                raise InvalidInput("invalid page token", code="INVALID_CURSOR")
            before = int(page_token)
        for s in states or ():
            parse_state(s)
        with self.db.read() as tx:
            view = ProductionView(tx)
            where = view.rule(namespace) if consume_only else None
            if where is None:
                mid = self.model_id(tx, namespace, name)
            else:
                mid = view.model_id(namespace, name, where)
            ids = tx.list_version_ids(
                mid, limit=limit + 1, before=before, states=states, where=where
            )
            items = tx.load_versions(ids[:limit])
            if consume_only:
                items = [view.version(actor, x) for x in items]
        token = str(items[-1].number) if len(ids) > limit else None
        return Page(items, token)

    def prepare_version(
        self,
        name: str,
        spec: VersionSpec,
        *,
        namespace: str,
        actor: Principal,
        allow_pending: bool = False,
    ) -> PreparedVersion:
        """The prepare step of a version create: permissions, every field
        checked, the manifest's blobs checked (mount rule). No transaction.
        With ``allow_pending``, files may name the caller's own direct uploads
        still being verified (``PreparedVersion.waiting``).

        Requires: write on the namespace, and read on the namespace of a
        parent or original version.
        """
        validate_name(namespace, kind="namespace")
        auth.require(actor, Permission.WRITE, namespace)
        validate_name(name)
        resolved = None
        if spec.source is not None:
            spec, resolved = _resolve_source(self, spec, actor)
        taken = run_lineage.run_values(self.db, spec.source_run, actor=actor)
        if taken is not None:
            spec = replace(
                spec,
                metrics=run_lineage.merged(spec.metrics, taken.metrics, self.limits),
                params=run_lineage.merged(spec.params, taken.params, self.limits),
                datasets=spec.datasets or taken.datasets[: self.limits.max_map_keys],
            )
        files = v.check_files(spec.files, max_files=self.max_files)
        relation = v.check_relation(spec.relation)
        recipe = v.check_recipe(spec.recipe, self.limits)
        delta = v.check_metric_delta(spec.metric_delta, self.limits)
        parent_ref = (
            None
            if spec.parent is None
            else parse_reference(spec.parent, default_namespace=namespace)
        )
        original_ref = (
            None
            if spec.original is None
            else parse_reference(spec.original, default_namespace=namespace)
        )
        prepared = PreparedVersion(
            namespace=namespace,
            name=name,
            files=files,
            draft=spec.draft,
            description=v.check_description(spec.description),
            framework=v.check_short(spec.framework, "framework"),
            format=v.check_short(spec.format, "format"),
            signature=v.check_signature(spec.signature, self.limits),
            metrics=v.check_metrics(spec.metrics, self.limits),
            params=v.check_params(spec.params, self.limits),
            tags=v.check_tags(spec.tags, self.limits),
            meta=v.check_metadata(spec.metadata, self.limits),
            datasets=v.check_datasets(spec.datasets, self.limits),
            source_run=_bounded(spec.source_run, "source_run", 256),
            code_ref=_bounded(spec.code_ref, "code_ref", 1024),
            relation=relation,
            recipe=recipe,
            metric_delta=delta,
            parent=parent_ref,
            original=original_ref,
        )
        for lineage_ref in (parent_ref, original_ref):
            if lineage_ref is not None:
                auth.require(actor, Permission.READ, lineage_ref.namespace)
        if relation and parent_ref is None and original_ref is None:
            raise InvalidInput(
                "a relation needs a parent or original version", code="INVALID_LINEAGE"
            )
        if (recipe is not None or delta is not None) and parent_ref is None:
            raise InvalidInput(
                "a recipe or metric_delta describes a step from a parent version: name the parent",
                code="INVALID_LINEAGE",
            )
        if resolved is None:
            prepared.waiting = blob_rules.check_manifest(
                cast("RegistryService", self), files, actor=actor, allow_pending=allow_pending
            )
            prepared.waiter = None if actor.reads_everything else actor.name
        else:
            # Files of a resolved source: the resolver checked that the caller
            # may read the run or logged model that owns them (their uploader
            # may be someone else); only presence and sizes remain to hold.
            check_stored(self.blobs, files)
        return prepared

    def insert_version_in_tx(
        self, tx: RegistryTx, p: PreparedVersion, *, actor: Principal
    ) -> Version:
        """The transaction step of a version create: number, row, items,
        manifest and the ``version.created`` event, inside ``tx``.

        Requires: nothing checked here; :meth:`prepare_version` checked it.
        """
        found_model = tx.model_for_write(p.namespace, p.name)
        if found_model is None:
            self.model_id(tx, p.namespace, p.name)  # raises MODEL_NOT_FOUND
            raise AssertionError("unreachable")
        mid, archived = found_model
        if archived:
            raise Conflict(f"model {p.namespace}/{p.name} is archived", code="MODEL_ARCHIVED")
        link = families.resolve_lineage(self, tx, p.parent, p.original)
        metric_delta = p.metric_delta
        if metric_delta is None and link.parent is not None:
            metric_delta = metric_delta_of(p.metrics, link.parent.metrics) or None
        number = tx.allocate_version_number(mid)
        at = now_us()
        # A version over blobs still being verified is a draft until they are
        # (issue 13); it then becomes ready by itself unless asked to be a draft.
        draft = p.draft or bool(p.waiting)
        vid = tx.insert_version(
            {
                "model_id": mid,
                "number": number,
                "state": (VersionState.DRAFT if draft else VersionState.READY).value,
                "description": p.description,
                "framework": p.framework,
                "format": p.format,
                "signature": p.signature,
                "meta": p.meta,
                "source_run": p.source_run,
                "code_ref": p.code_ref,
                "datasets": p.datasets,
                "original_id": link.original_id,
                "parent_id": link.parent_id,
                "relation": p.relation,
                "recipe": p.recipe,
                "metric_delta": metric_delta,
                "file_count": len(p.files),
                "total_size": sum(f.size for f in p.files),
                "created_by": actor.name,
                "created_at": at,
                "updated_at": at,
            }
        )
        tx.insert_version_items(
            vid,
            tags=p.tags,
            metrics=p.metrics,
            params=p.params,
            meta=p.meta,
            files=p.files,
            created_at=at,
        )
        if p.waiting:
            tx.add_version_waits(
                vid,
                [(f.path, f.digest) for f in p.waiting],
                uploader=p.waiter,
                promote=not p.draft,
            )
        version = pending_versions.with_pending(tx, tx.get_version_by_id(vid, with_files=True))
        tx.append_event(
            "version.created",
            actor=actor.name,
            namespace=p.namespace,
            subject=version.ref,
            payload=version_payload(version),
        )
        return version

    def create_version(
        self,
        name: str,
        spec: VersionSpec,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        actor: Principal,
        idempotency_key: str | None = None,
    ) -> Version:
        """Create a version whose files are already uploaded, in one transaction.

        The version becomes visible (``ready``, or ``draft`` if asked) only when
        the transaction that records its manifest commits. Every file's blob must
        be stored with the declared size. Requires: write on the namespace, and
        read on the namespace of a parent or original version.
        """
        prepared = self.prepare_version(
            name, spec, namespace=namespace, actor=actor, allow_pending=True
        )
        # The request's fingerprint matters only under an Idempotency-Key, and
        # asdict's deep copy cost ~5% of a create's CPU: computed only then.
        request_hash = (
            hashlib.sha256(
                orjson.dumps(
                    {"ns": namespace, "name": name, "spec": asdict(spec)},
                    option=orjson.OPT_SORT_KEYS,
                    default=str,
                )
            ).hexdigest()
            if idempotency_key
            else ""
        )
        scope = "create_version:" + hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:40]
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= 255
        ):
            raise InvalidInput(
                "Idempotency-Key must be 1-255 characters", code="INVALID_IDEMPOTENCY_KEY"
            )

        def op(tx: RegistryTx) -> Version:
            # First, before any model lock: the verifier locks an upload's
            # row, then the models of the drafts waiting on it.
            waiting = pending_versions.recheck_in_tx(tx, prepared.waiting, prepared.waiter)
            blob_rules.check_not_collected(tx, prepared.files)
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
                        return pending_versions.with_pending(tx, found[0])
            version = self.insert_version_in_tx(tx, replace(prepared, waiting=waiting), actor=actor)
            if idempotency_key:
                tx.put_idempotent(scope, idempotency_key, request_hash, version.id)
            return version

        return self.run_in_transaction(op)

    def commit_files(self, ref: str | Reference, files: list[Any], *, actor: Principal) -> Version:
        """Attach the manifest to a draft version and make it ``ready`` (immutable).

        Requires: write on the namespace.
        """
        r = self.resolve(ref)
        auth.require(actor, Permission.WRITE, r.namespace)
        entries = v.check_files(files, max_files=self.max_files)
        with self.db.read() as rtx:
            # A draft waiting for verification is refused before its new
            # manifest is looked at (checked again in the transaction).
            pending_versions.check_not_waiting(rtx, rtx.load_versions([self.version_id(rtx, r)])[0])
        blob_rules.check_manifest(cast("RegistryService", self), entries, actor=actor)

        def op(tx: RegistryTx) -> Version:
            blob_rules.check_not_collected(tx, entries)
            vid = self.version_id(tx, r)
            current = tx.load_versions([vid])[0]
            if current.state is not VersionState.DRAFT:
                raise Conflict(
                    f"version {current.ref} is {current.state.value}; its files are immutable",
                    code="VERSION_IMMUTABLE",
                )
            pending_versions.check_not_waiting(tx, current)
            tx.insert_files(vid, entries)
            tx.update_version(
                vid,
                state=VersionState.READY.value,
                file_count=len(entries),
                total_size=sum(f.size for f in entries),
            )
            version = tx.load_versions([vid], with_files=True)[0]
            payload = version_payload(version)
            payload["before"] = {"state": current.state.value, "file_count": current.file_count}
            payload["after"] = {"state": version.state.value, "file_count": version.file_count}
            tx.append_event(
                "version.files_committed",
                actor=actor.name,
                namespace=r.namespace,
                subject=version.ref,
                payload=payload,
            )
            return version

        return self.run_in_transaction(op)

    def delete_version(
        self, ref: str | Reference, *, force: bool = False, actor: Principal
    ) -> None:
        """Delete one version for good: its manifest, tags, metrics, approvals;
        versions derived from it keep their own lineage fields cut. Refused
        while it is published unless forced (``VERSION_PUBLISHED``: archive it
        first) and while a protected alias points at it (``ALIAS_PROTECTED``);
        other aliases on it are removed, each recorded in its history with an
        ``alias.deleted`` event, all in one transaction. Its blobs stay until
        garbage collection finds no other manifest listing them
        (``GcService``); its number is never handed out again. Writes
        ``version.deleted``.

        Requires: admin on the namespace, as deleting a model does.
        """
        r = self.resolve(ref)
        auth.require(actor, Permission.ADMIN, r.namespace)

        def op(tx: RegistryTx) -> None:
            # The model row lock orders this against alias moves and
            # transitions of the same model (PostgreSQL).
            mid = self.model_id(tx, r.namespace, r.name, for_update=True)
            vid = self.version_id(tx, r)
            before = tx.load_versions([vid])[0]
            if before.state is VersionState.PUBLISHED and not force:
                raise Conflict(
                    f"version {before.ref} is published; archive it before deleting it "
                    "(or delete with force)",
                    code="VERSION_PUBLISHED",
                    details={"reference": before.ref},
                )
            reason = f"version {before.number} deleted"
            for alias in before.aliases:
                cast("RegistryService", self).remove_alias_in_tx(
                    tx, mid, r.namespace, r.name, alias, before.number, actor=actor, reason=reason
                )
            digests, _ = tx.delete_version(vid, actor=actor.name)
            tx.append_event(
                "version.deleted",
                actor=actor.name,
                namespace=before.namespace,
                subject=before.ref,
                payload={
                    **version_payload(before),
                    "forced": force,
                    "aliases_removed": before.aliases,
                    "digests": len(digests),
                    "before": version_payload(before),
                    "after": None,
                },
            )

        self.run_in_transaction(op)

    def update_version(
        self,
        ref: str | Reference,
        *,
        description: str | None = None,
        set_tags: Mapping[str, Any] | None = None,
        delete_tags: Sequence[str] = (),
        metadata: Any = None,
        actor: Principal,
    ) -> Version:
        """Change the mutable fields of a version: description, tags, metadata.

        Requires: write on the namespace.
        """
        r = self.resolve(ref)
        auth.require(actor, Permission.WRITE, r.namespace)
        desc = None if description is None else v.check_description(description)
        new_tags = v.check_tags(set_tags, self.limits)
        meta = None if metadata is None else v.check_metadata(metadata, self.limits)
        drop = v.check_delete_tags(delete_tags, self.limits)

        def op(tx: RegistryTx) -> Version:
            vid = self.version_id(tx, r)
            before = tx.load_versions([vid])[0]
            values: dict[str, Any] = {}
            if desc is not None:
                values["description"] = desc
            if meta is not None:
                values["meta"] = meta
                tx.replace_version_meta(vid, meta, created_at=before.created_at)
            tx.update_version(vid, **values)
            if new_tags or drop:
                tags = {k: val for k, val in before.tags.items() if k not in drop}
                tags.update(new_tags)
                tx.replace_version_tags(vid, tags, created_at=before.created_at)
            after = tx.load_versions([vid])[0]
            policy_gate.check_edit(tx, vid, before, after)
            tx.append_event(
                "version.updated",
                actor=actor.name,
                namespace=after.namespace,
                subject=after.ref,
                payload={
                    "before": version_payload(before),
                    "after": version_payload(after),
                    # What was asked, not only what changed: MLflow sends one
                    # tag webhook per key set or deleted, same value or not.
                    "tags_set": dict(new_tags),
                    "tags_deleted": [k for k in dict.fromkeys(drop) if k not in new_tags],
                },
            )
            return after

        return self.run_in_transaction(op)


def _resolve_source(
    core: RegistryCore, spec: VersionSpec, actor: Principal
) -> tuple[VersionSpec, ResolvedSource | None]:
    """``spec`` with the files its MLflow ``source`` names (when it names
    ours and no files were sent) and the source text kept as metadata."""
    assert spec.source is not None
    resolved = None if spec.files else resolve_model_source(core.db, spec.source, actor=actor)
    meta = dict(spec.metadata) if isinstance(spec.metadata, dict) else spec.metadata
    if isinstance(meta, dict):
        meta.setdefault("mlflow.source", spec.source)
    if resolved is None:
        return replace(spec, metadata=meta), None
    return (
        replace(
            spec,
            files=list(resolved.files),
            metadata=meta,
            source_run=spec.source_run or resolved.run_id,
        ),
        resolved,
    )


def _bounded(value: str | None, field_name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidInput(
            f"{field_name} must be a string of at most {limit} characters",
            code="INVALID_INPUT",
            details={"field": field_name},
        )
    return value
