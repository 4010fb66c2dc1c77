"""The registry's use cases behind one facade: what every door calls.

:class:`RegistryService` puts the use cases together (one module each:
``namespaces``, ``models``, ``versions``, ``lifecycle``, ``aliases``,
``search``, ``stages``, ``families``, ``family_promotion``, ``resources``, ``bundles``,
``bundle_aliases`` with ``bundle_approvals`` (and ``bundle_guard``, which alias moves consult),
``deployments``, ``monitoring``, ``pickle_exceptions``; the production view in
``views``; what they share in ``core``), so REST v1, the MLflow door, the UI,
the embedded SDK and the CLI call the same methods.

Every method that changes something runs in one write transaction
(:meth:`~modelyard.service.core.RegistryCore.run_in_transaction`) and writes
its event (outbox) in that same transaction. Every method takes the acting
:class:`~modelyard.domain.identity.Principal` as ``actor`` and checks its
permission on the target namespace first (see ``domain/identity.py`` for what
each role may do); each docstring names the permission it needs. A principal
that only *consumes* a namespace sees the production view
(:mod:`~modelyard.service.views`), and anything outside it answers 404
exactly as if it did not exist.
"""

from __future__ import annotations

from modelyard.domain import filters
from modelyard.domain import identity as auth
from modelyard.domain.entities import FileEntry, Version
from modelyard.domain.errors import NotFound
from modelyard.domain.identity import Principal
from modelyard.domain.references import Reference
from modelyard.service import pending_versions
from modelyard.service.aliases import AliasUseCases
from modelyard.service.bundle_approvals import BundleApprovalUseCases
from modelyard.service.bundles import BundleUseCases
from modelyard.service.core import MAX_PAGE_SIZE, Page
from modelyard.service.custom_code import CustomCodeUseCases
from modelyard.service.families import FamilyUseCases
from modelyard.service.family_promotion import FamilyPromotionUseCases
from modelyard.service.lifecycle import LifecycleUseCases
from modelyard.service.models import ModelUseCases
from modelyard.service.monitoring import MonitoringUseCases
from modelyard.service.namespaces import NamespaceUseCases
from modelyard.service.pickle_exceptions import PickleExceptionUseCases
from modelyard.service.resources import ResourceUseCases
from modelyard.service.search import SearchUseCases
from modelyard.service.stages import StageUseCases
from modelyard.service.versions import VersionSpec, VersionUseCases
from modelyard.service.views import ProductionView, production_filter
from modelyard.store.metadata.ports import RegistryTx

__all__ = ["MAX_PAGE_SIZE", "Page", "RegistryService", "VersionSpec"]


class RegistryService(
    FamilyPromotionUseCases,
    NamespaceUseCases,
    ModelUseCases,
    VersionUseCases,
    LifecycleUseCases,
    AliasUseCases,
    SearchUseCases,
    StageUseCases,
    FamilyUseCases,
    ResourceUseCases,
    BundleUseCases,
    BundleApprovalUseCases,  # and BundleAliasUseCases, which it extends
    MonitoringUseCases,  # and DeploymentUseCases, which it extends
    CustomCodeUseCases,
    PickleExceptionUseCases,
):
    """The registry's use cases over a metadata store and a blob store."""

    def production_filter(self, namespace: str) -> filters.Node:
        """What a ``consumer`` of ``namespace`` may see, as one search filter node
        (see :func:`~modelyard.service.views.production_filter`).

        Requires: nothing (internal; callers check consume or read first).
        """
        with self.db.read() as tx:
            return production_filter(tx, namespace)

    # -- helpers of the file and blob use cases ---------------------------

    def _readable(self, actor: Principal, namespace: str) -> filters.Node | None:
        """Check a read of ``namespace``; the production filter if only that view applies."""
        if auth.require_readable(actor, namespace):
            return self.production_filter(namespace)
        return None

    def _version_id(self, tx: RegistryTx, ref: Reference) -> int:
        return self.version_id(tx, ref)

    def _visible_version_id(self, tx: RegistryTx, r: Reference, rule: filters.Node) -> int:
        return ProductionView(tx).version_id(r, rule)

    # -- files ------------------------------------------------------------

    def get_file(
        self, ref: str | Reference, path: str, *, actor: Principal
    ) -> tuple[Version, FileEntry]:
        """One file of a version (the path is a logical name, looked up, never opened).

        Requires: as :meth:`get_version`.
        """
        r = self.resolve(ref)
        rule = self._readable(actor, r.namespace)
        with self.db.read() as tx:
            vid = self._version_id(tx, r) if rule is None else self._visible_version_id(tx, r, rule)
            version = tx.load_versions([vid])[0]
            entry = tx.file_of(vid, path)
            if entry is None:
                raise NotFound(
                    f"file {path!r} not in {version.ref}",
                    code="FILE_NOT_FOUND",
                    details={"path": path, "reference": version.ref},
                )
            # Never the bytes of a blob still being verified (issue 13).
            pending_versions.check_file_readable(tx, version, entry)
        return version, entry
