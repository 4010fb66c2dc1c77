"""Namespace use cases: create, list, ensure ``default``, and the health checks."""

from __future__ import annotations

from modelyard.domain import identity as auth
from modelyard.domain.entities import Namespace
from modelyard.domain.errors import AlreadyExists
from modelyard.domain.identity import SYSTEM, Principal
from modelyard.domain.names import validate_name
from modelyard.domain.references import DEFAULT_NAMESPACE
from modelyard.service import validation as v
from modelyard.service.core import RegistryCore
from modelyard.store.metadata.ports import RegistryTx


class NamespaceUseCases(RegistryCore):
    """Namespaces: the unit of permissions."""

    def ensure_namespace(self, name: str = DEFAULT_NAMESPACE) -> Namespace:
        """Create the namespace if missing (idempotent; used for ``default``)."""
        validate_name(name, kind="namespace")
        with self.db.read() as tx:
            ns = tx.get_namespace(name)
        if ns is not None:
            return ns
        try:
            return self.create_namespace(name, actor=SYSTEM)
        except AlreadyExists:
            with self.db.read() as tx:
                found = tx.get_namespace(name)
            assert found is not None
            return found

    def create_namespace(self, name: str, *, description: str = "", actor: Principal) -> Namespace:
        """Create a namespace. Requires: instance admin."""
        auth.require_instance_admin(actor)
        validate_name(name, kind="namespace")
        description = v.check_description(description)

        def op(tx: RegistryTx) -> Namespace:
            ns = tx.insert_namespace(name, description)
            tx.append_event(
                "namespace.created",
                actor=actor.name,
                namespace=name,
                subject=name,
                payload={"name": name},
            )
            return ns

        return self.run_in_transaction(op)

    def list_namespaces(self, *, actor: Principal) -> list[Namespace]:
        """The namespaces the caller holds any role in (all, for global roles).

        Requires: nothing (the list is filtered).
        """
        with self.db.read() as tx:
            found = tx.list_namespaces()
        if actor.is_instance_admin or actor.roles.get(auth.GLOBAL_SCOPE):
            return found
        return [ns for ns in found if actor.roles.get(ns.name)]

    def ping(self) -> None:
        """Check that the database answers (health); ``DATABASE_UNAVAILABLE``
        otherwise. Requires: nothing."""
        with self.db.read() as tx:
            tx.get_namespace(DEFAULT_NAMESPACE)

    def check_blob_store(self) -> None:
        """Check that the blob store answers and can be written (readiness);
        ``STORAGE_UNAVAILABLE`` otherwise. Requires: nothing."""
        self.blobs.check()
