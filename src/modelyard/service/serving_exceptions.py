"""Serving exceptions (issue 12): an admin's recorded, audited exception on one
version that the model server reads before it loads the version.

The one kind is ``pickle``: ``modelyard serve`` never unpickles (loading a
pickle runs whatever code the file names), unless an admin of the version's
namespace has recorded this exception on that exact version, with a reason.
The registry itself never unpickles anything; the exception only tells the
model server that a person with authority accepted the risk for these bytes
(a ready version's files never change).

- ``grant_serving_exception`` / ``revoke_serving_exception``: ``admin`` on the
  namespace; events ``version.serving_exception_granted`` /
  ``version.serving_exception_revoked`` (subject: the version), so the audit
  log says who allowed what, when and why.
- ``serving_exceptions``: what a model server reads; ``consume`` is enough,
  for a version the caller can see (a consumer: in the production view).
- ``custom_code_allowed``: whether the model's production policy lets a model
  server run a version's own Python code (``allow_custom_code``, granted by
  the namespace policy only); read like the exceptions.
"""

from __future__ import annotations

from modelyard.domain import identity as auth
from modelyard.domain.deployments import (
    ServingException,
    validate_exception_kind,
    validate_reason,
)
from modelyard.domain.errors import NotFound
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.references import Reference
from modelyard.service.core import RegistryCore, version_not_found
from modelyard.service.policy_gate import effective_policy
from modelyard.service.views import ProductionView
from modelyard.store.metadata.ports import RegistryTx, now_us


class ServingExceptionUseCases(RegistryCore):
    """Record, revoke and read serving exceptions on versions."""

    def grant_serving_exception(
        self, ref: str | Reference, kind: str, *, reason: str, actor: Principal
    ) -> ServingException:
        """Record that ``kind`` is excepted on the version ``ref`` names, and why
        (replacing an earlier one of that kind). Requires: admin on its namespace.
        Event: ``version.serving_exception_granted``."""
        r = self.resolve(ref)
        what = validate_exception_kind(kind)
        why = validate_reason(reason)
        auth.require(actor, Permission.ADMIN, r.namespace)

        def op(tx: RegistryTx) -> ServingException:
            version = tx.get_version_by_id(self.version_id(tx, r))
            exc = ServingException(what, why, actor.name, now_us())
            tx.deployments.put_serving_exception(version.id, exc)
            tx.append_event(
                "version.serving_exception_granted",
                actor=actor.name,
                namespace=version.namespace,
                subject=version.ref,
                payload={"version": version.number, "kind": what, "reason": why},
            )
            return exc

        return self.run_in_transaction(op)

    def revoke_serving_exception(
        self, ref: str | Reference, kind: str, *, actor: Principal
    ) -> None:
        """Remove the exception ``kind`` from the version ``ref`` names
        (``SERVING_EXCEPTION_NOT_FOUND`` if it has none). Requires: admin.
        Event: ``version.serving_exception_revoked``. A server that loaded the
        version keeps it; the next load is refused."""
        r = self.resolve(ref)
        what = validate_exception_kind(kind)
        auth.require(actor, Permission.ADMIN, r.namespace)

        def op(tx: RegistryTx) -> None:
            version = tx.get_version_by_id(self.version_id(tx, r))
            if not tx.deployments.delete_serving_exception(version.id, what):
                raise NotFound(
                    f"{version.ref} has no {what} exception",
                    code="SERVING_EXCEPTION_NOT_FOUND",
                    details={"ref": version.ref, "kind": what},
                )
            tx.append_event(
                "version.serving_exception_revoked",
                actor=actor.name,
                namespace=version.namespace,
                subject=version.ref,
                payload={"version": version.number, "kind": what},
            )

        self.run_in_transaction(op)

    def serving_exceptions(
        self, ref: str | Reference, *, actor: Principal
    ) -> list[ServingException]:
        """The exceptions on the version ``ref`` names. Requires: consume on its
        namespace, and the version visible to the caller."""
        r = self.resolve(ref)
        production_only = auth.require_readable(actor, r.namespace)
        with self.db.read() as tx:
            vid = self.version_id(tx, r)
            if production_only and not tx.version_matches(
                vid, ProductionView(tx).rule(r.namespace)
            ):
                raise version_not_found(r)
            return tx.deployments.serving_exceptions(vid)

    def custom_code_allowed(self, ref: str | Reference, *, actor: Principal) -> bool:
        """True if the policy of the model ``ref`` names allows model servers to
        run the version's own code (see the module docstring). Requires:
        consume, and the version visible to the caller."""
        r = self.resolve(ref)
        production_only = auth.require_readable(actor, r.namespace)
        with self.db.read() as tx:
            vid = self.version_id(tx, r)
            if production_only and not tx.version_matches(
                vid, ProductionView(tx).rule(r.namespace)
            ):
                raise version_not_found(r)
            model_id = self.model_id(tx, r.namespace, r.name)
            return effective_policy(tx, model_id).allow_custom_code is True
