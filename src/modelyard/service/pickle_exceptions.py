"""The admin's audited exception that lets model servers unpickle one version
(issue 12; the rules are in :mod:`modelyard.domain.pickles`).

Recording binds the exception to the sha256 of each of the version's pickle
files at that moment, so it never covers other bytes; revoking removes it.
Each writes its event in the same transaction (``version.pickle_exception_recorded``,
``version.pickle_exception_revoked``), which is the audit log's entry. The
registry itself never unpickles: it records who vouched for which digests,
and only ``modelyard serve`` (``serving/``) acts on it.
"""

from __future__ import annotations

from typing import Any

from modelyard.domain import identity as auth
from modelyard.domain.entities import Version
from modelyard.domain.errors import Conflict, NotFound
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.pickles import PickleException, check_reason, pickle_digests
from modelyard.domain.references import Reference
from modelyard.service.core import RegistryCore
from modelyard.store.metadata.ports import RegistryTx, now_us


class PickleExceptionUseCases(RegistryCore):
    """Record and revoke a version's pickle exception."""

    def record_pickle_exception(
        self, ref: str | Reference, reason: str, *, actor: Principal
    ) -> Version:
        """Allow model servers to unpickle the pickle files ``ref`` names now,
        for ``reason``, bound to their current digests; replaces an exception
        already recorded. ``NO_PICKLE_FILES`` (409) for a version without
        pickle files. Writes ``version.pickle_exception_recorded``.

        Requires: admin on the namespace.
        """
        r = self.resolve(ref)
        auth.require(actor, Permission.ADMIN, r.namespace)
        text = check_reason(reason)

        def op(tx: RegistryTx) -> Version:
            self.model_id(tx, r.namespace, r.name, for_update=True)
            vid = self.version_id(tx, r)
            before = tx.load_versions([vid], with_files=True)[0]
            digests = pickle_digests((f.path, f.digest) for f in before.files or [])
            if not digests:
                raise Conflict(
                    f"{before.ref} has no pickle files, so there is nothing to allow",
                    code="NO_PICKLE_FILES",
                    details={"reference": before.ref},
                )
            record = PickleException(actor.name, now_us(), text, digests).to_json()
            tx.update_version(vid, pickle_exception=record)
            tx.append_event(
                "version.pickle_exception_recorded",
                actor=actor.name,
                namespace=before.namespace,
                subject=before.ref,
                payload=_payload(before, record, before.pickle_exception),
            )
            return tx.load_versions([vid], with_files=True)[0]

        return self.run_in_transaction(op)

    def revoke_pickle_exception(self, ref: str | Reference, *, actor: Principal) -> Version:
        """Remove the pickle exception of the version ``ref`` names; model
        servers refuse its pickles again from their next load of it.
        ``PICKLE_EXCEPTION_NOT_FOUND`` (404) when it has none. Writes
        ``version.pickle_exception_revoked``.

        Requires: admin on the namespace.
        """
        r = self.resolve(ref)
        auth.require(actor, Permission.ADMIN, r.namespace)

        def op(tx: RegistryTx) -> Version:
            self.model_id(tx, r.namespace, r.name, for_update=True)
            vid = self.version_id(tx, r)
            before = tx.load_versions([vid])[0]
            if before.pickle_exception is None:
                raise NotFound(
                    f"{before.ref} has no pickle exception",
                    code="PICKLE_EXCEPTION_NOT_FOUND",
                    details={"reference": before.ref},
                )
            # SQL NULL, not JSON null: "no exception" reads the same either
            # way, but NULL is what a version that never had one holds.
            tx.update_version(vid, pickle_exception=None)
            tx.append_event(
                "version.pickle_exception_revoked",
                actor=actor.name,
                namespace=before.namespace,
                subject=before.ref,
                payload=_payload(before, None, before.pickle_exception),
            )
            return tx.load_versions([vid], with_files=True)[0]

        return self.run_in_transaction(op)


def _payload(
    ver: Version, after: dict[str, Any] | None, before: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "namespace": ver.namespace,
        "model": ver.model,
        "version": ver.number,
        "before": before,
        "after": after,
    }
