"""Whether a model server may run a version's own code (issue 12).

A version of format ``python`` is served by its ``entrypoint.py``, which runs
in the model server's process with its rights. The model server does so only
when the model's production policy allows it (``allow_custom_code``, granted
by the namespace policy only; a model policy can withdraw it), and asks here
before it loads such a version: ``consume`` is enough, for a version the
caller can see (a consumer: in the production view). The same answer carries
the policy's drift thresholds, which the server judges a version's input
drift by when the version's statistics file sets none.
"""

from __future__ import annotations

from modelyard.domain import identity as auth
from modelyard.domain.identity import Principal
from modelyard.domain.policies import Policy
from modelyard.domain.references import Reference
from modelyard.service.core import RegistryCore, version_not_found
from modelyard.service.policy_gate import effective_policy
from modelyard.service.views import ProductionView


class CustomCodeUseCases(RegistryCore):
    """The custom-code permission as model servers read it."""

    def custom_code_allowed(self, ref: str | Reference, *, actor: Principal) -> bool:
        """True if the policy of the model ``ref`` names allows model servers to
        run the version's own code. Requires: consume, and the version visible
        to the caller."""
        return self.serving_policy(ref, actor=actor).allow_custom_code is True

    def serving_policy(self, ref: str | Reference, *, actor: Principal) -> Policy:
        """The effective production policy of the model ``ref`` names, for a
        model server: ``allow_custom_code`` and ``drift_thresholds`` are what
        it reads. Requires: consume, and the version visible to the caller."""
        r = self.resolve(ref)
        production_only = auth.require_readable(actor, r.namespace)
        with self.db.read() as tx:
            vid = self.version_id(tx, r)
            if production_only and not tx.version_matches(
                vid, ProductionView(tx).rule(r.namespace)
            ):
                raise version_not_found(r)
            model_id = self.model_id(tx, r.namespace, r.name)
            return effective_policy(tx, model_id)
