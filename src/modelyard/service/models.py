"""Model use cases: register, read, edit, rename, archive or restore, delete."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelyard.domain import identity as auth
from modelyard.domain.entities import Model, VersionState
from modelyard.domain.errors import Conflict
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.names import validate_name
from modelyard.domain.references import DEFAULT_NAMESPACE
from modelyard.service import validation as v
from modelyard.service.core import RegistryCore, model_payload
from modelyard.service.views import ProductionView
from modelyard.store.metadata.ports import RegistryTx


class ModelUseCases(RegistryCore):
    """Models: a name in a namespace, with tags and metadata, holding versions."""

    def create_model(
        self,
        name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        description: str = "",
        tags: Mapping[str, Any] | None = None,
        metadata: Any = None,
        actor: Principal,
    ) -> Model:
        """Register a new model name. Requires: write on the namespace."""
        validate_name(namespace, kind="namespace")
        auth.require(actor, Permission.WRITE, namespace)
        validate_name(name)
        description = v.check_description(description)
        tags_ = v.check_tags(tags, self.limits)
        meta = v.check_metadata(metadata, self.limits)

        def op(tx: RegistryTx) -> Model:
            nid = self.namespace_id(tx, namespace)
            mid = tx.insert_model(
                nid, name, description=description, tags=tags_, meta=meta, actor=actor.name
            )
            model = tx.load_models([mid])[0]
            tx.append_event(
                "model.created",
                actor=actor.name,
                namespace=namespace,
                subject=f"{namespace}/{name}",
                payload=model_payload(model),
            )
            return model

        return self.run_in_transaction(op)

    def get_model(
        self, name: str, *, namespace: str = DEFAULT_NAMESPACE, actor: Principal
    ) -> Model:
        """A model by name. Requires: read (consume: only models with a visible version)."""
        consume_only = auth.require_readable(actor, namespace)
        with self.db.read() as tx:
            if consume_only:
                view = ProductionView(tx)
                mid = view.model_id(namespace, name, view.rule(namespace))
                return view.model(actor, tx.load_models([mid])[0])
            return tx.load_models([self.model_id(tx, namespace, name)])[0]

    def update_model(
        self,
        name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        description: str | None = None,
        set_tags: Mapping[str, Any] | None = None,
        delete_tags: Sequence[str] = (),
        metadata: Any = None,
        actor: Principal,
    ) -> Model:
        """Change a model's description, tags (merge/delete) or metadata (replace).

        Requires: write on the namespace.
        """
        auth.require(actor, Permission.WRITE, namespace)
        desc = None if description is None else v.check_description(description)
        new_tags = v.check_tags(set_tags, self.limits)
        meta = None if metadata is None else v.check_metadata(metadata, self.limits)
        drop = v.check_delete_tags(delete_tags, self.limits)

        def op(tx: RegistryTx) -> Model:
            mid = self.model_id(tx, namespace, name, for_update=True)
            before = tx.load_models([mid])[0]
            values: dict[str, Any] = {}
            if desc is not None:
                values["description"] = desc
            if meta is not None:
                values["meta"] = meta
                tx.replace_model_meta(mid, meta)
            tx.update_model(mid, **values)
            if new_tags or drop:
                tags = {k: val for k, val in before.tags.items() if k not in drop}
                tags.update(new_tags)
                tx.replace_model_tags(mid, tags)
            after = tx.load_models([mid])[0]
            tx.append_event(
                "model.updated",
                actor=actor.name,
                namespace=namespace,
                subject=f"{namespace}/{name}",
                payload={"before": model_payload(before), "after": model_payload(after)},
            )
            return after

        return self.run_in_transaction(op)

    def rename_model(
        self, name: str, new_name: str, *, namespace: str = DEFAULT_NAMESPACE, actor: Principal
    ) -> Model:
        """Give a model a new name in its namespace (``MODEL_ALREADY_EXISTS`` if taken).

        Its versions, aliases, alias history, policies and approvals follow it
        (they hang on the model's id); references by the old name stop
        resolving. Requires: write on the namespace.
        """
        auth.require(actor, Permission.WRITE, namespace)
        validate_name(new_name)

        def op(tx: RegistryTx) -> Model:
            mid = self.model_id(tx, namespace, name, for_update=True)
            if new_name != name:
                tx.rename_model(mid, new_name)
            model = tx.load_models([mid])[0]
            payload = model_payload(model)
            payload["before"] = {"name": name}
            payload["after"] = {"name": new_name}
            tx.append_event(
                "model.renamed",
                actor=actor.name,
                namespace=namespace,
                subject=f"{namespace}/{new_name}",
                payload=payload,
            )
            return model

        return self.run_in_transaction(op)

    def set_model_archived(
        self, name: str, *, namespace: str = DEFAULT_NAMESPACE, archived: bool, actor: Principal
    ) -> Model:
        """Archive (hide from default listings, refuse new versions) or restore a model.

        Requires: write on the namespace.
        """
        auth.require(actor, Permission.WRITE, namespace)

        def op(tx: RegistryTx) -> Model:
            mid = self.model_id(tx, namespace, name, for_update=True)
            before = tx.load_models([mid])[0]
            tx.update_model(mid, archived=archived)
            model = tx.load_models([mid])[0]
            payload = model_payload(model)
            payload["before"] = {"archived": before.archived}
            payload["after"] = {"archived": model.archived}
            tx.append_event(
                "model.archived" if archived else "model.restored",
                actor=actor.name,
                namespace=namespace,
                subject=f"{namespace}/{name}",
                payload=payload,
            )
            return model

        return self.run_in_transaction(op)

    def delete_model(
        self,
        name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        force: bool = False,
        actor: Principal,
    ) -> None:
        """Delete a model and its versions; refused while any is published unless forced.

        Blobs stay: another version may share them, and collection is a separate
        step that checks references. Requires: admin on the namespace.
        """
        auth.require(actor, Permission.ADMIN, namespace)

        def op(tx: RegistryTx) -> None:
            mid = self.model_id(tx, namespace, name, for_update=True)
            published = tx.count_versions_in_state(mid, VersionState.PUBLISHED)
            if published and not force:
                raise Conflict(
                    f"model {namespace}/{name} has {published} published version(s); "
                    "archive them or delete with force",
                    code="MODEL_HAS_PUBLISHED_VERSIONS",
                    details={"published": published},
                )
            pinning = tx.bundles.pinning_model(mid)
            if pinning:
                # A bundle version's pins are its record of what ran together
                # (issue 14): the versions they name cannot go away.
                raise Conflict(
                    f"model {namespace}/{name} has versions pinned by bundle versions "
                    + ", ".join(pinning[:10]),
                    code="MODEL_IN_BUNDLE",
                    details={"bundle_versions": pinning[:100]},
                )
            before = tx.load_models([mid])[0]
            tx.delete_model(mid)
            tx.append_event(
                "model.deleted",
                actor=actor.name,
                namespace=namespace,
                subject=f"{namespace}/{name}",
                payload={
                    "namespace": namespace,
                    "name": name,
                    "forced": force,
                    "before": model_payload(before),
                    "after": None,
                },
            )

        self.run_in_transaction(op)
