"""The production view: what a principal that only *consumes* a namespace sees.

A consumer sees the versions that are published and meet the content rules of
their model's effective production policy, and the models holding one; the
rest answers 404 exactly as if it did not exist. :class:`ProductionView`
computes that view inside the caller's transaction, once per namespace per
call: a search returning versions with lineage in several namespaces reads
each namespace's policies once, in the same transaction (issue 9, Structure 6:
it used to open a read transaction per item, nested inside the caller's).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from modelyard.domain import filters
from modelyard.domain import identity as auth
from modelyard.domain.entities import Model, Version, VersionLink
from modelyard.domain.errors import NotFound
from modelyard.domain.identity import Permission, Principal, Role
from modelyard.domain.names import validate_name
from modelyard.domain.policies import (
    PRODUCTION,
    Policy,
    merge_policies,
    parse_policy,
    policy_filter,
)
from modelyard.domain.references import Reference
from modelyard.service import policy_gate
from modelyard.service.core import model_not_found, version_not_found
from modelyard.store.metadata.ports import RegistryTx


def production_filter(tx: RegistryTx, namespace: str) -> filters.Node:
    """What a ``consumer`` of ``namespace`` may see, as one search filter node.

    The one seam of the production view: searches add it to their filter
    (pagination stays exact), point reads test the version against it.
    Versions a consumer may see are published and meet the content rules
    of their model's effective production policy (see
    :func:`~modelyard.domain.policies.policy_filter`). Models with a policy
    of their own get their own branch, the rest share the namespace's:
    ``(namespace = ns AND name NOT IN (own...) AND ns_filter) OR (namespace
    = ns AND name = m1 AND m1_filter) OR ...``.
    """
    validate_name(namespace, kind="namespace")
    ns = tx.get_namespace(namespace)
    if ns is None:
        raise NotFound(
            f"namespace {namespace!r} not found",
            code="NAMESPACE_NOT_FOUND",
            details={"namespace": namespace},
        )
    ns_rules = tx.governance.get_policy(ns.id, None, PRODUCTION)
    own = tx.governance.model_policies_of_namespace(ns.id, PRODUCTION)
    ns_policy = policy_gate.stored_policy(None if ns_rules is None else ns_rules.rules)
    in_ns = filters.Comparison(filters.Field("attr", "namespace"), "=", namespace)
    name = filters.Field("attr", "name")
    shared: list[filters.Node] = [in_ns]
    if own:
        shared.append(filters.Comparison(name, "NOT IN", tuple(n for n, _ in own)))
    shared.append(policy_filter(ns_policy or Policy()))
    branches: list[filters.Node] = [filters.And(tuple(shared))]
    for model_name, rules in own:
        effective = merge_policies(ns_policy, parse_policy(rules))
        branches.append(
            filters.And(
                (in_ns, filters.Comparison(name, "=", model_name), policy_filter(effective))
            )
        )
    return branches[0] if len(branches) == 1 else filters.Or(tuple(branches))


class ProductionView:
    """The production view of one call, inside that call's transaction.

    Build one per use-case call (never keep it: policies change), after the
    permission check (``auth.require_readable``) and inside the transaction
    the call reads in.
    """

    def __init__(self, tx: RegistryTx) -> None:
        self.tx = tx
        self._rules: dict[str, filters.Node] = {}

    def rule(self, namespace: str) -> filters.Node:
        """:func:`production_filter` of ``namespace``, computed once per call."""
        found = self._rules.get(namespace)
        if found is None:
            found = self._rules[namespace] = production_filter(self.tx, namespace)
        return found

    def readable(self, actor: Principal, namespace: str) -> filters.Node | None:
        """Check a read of ``namespace``; the production filter if only that view applies."""
        if auth.require_readable(actor, namespace):
            return self.rule(namespace)
        return None

    def visibility(
        self, actor: Principal, target: Literal["models", "versions"]
    ) -> filters.Node | None:
        """What a search may return to ``actor`` (see ``auth.visibility_filter``)."""
        names: list[str] = []
        if Role.CONSUMER in actor.roles.get(auth.GLOBAL_SCOPE, frozenset()):
            names = [ns.name for ns in self.tx.list_namespaces()]
        return auth.visibility_filter(actor, target, namespaces=names, production=self.rule)

    def model(self, actor: Principal, model: Model) -> Model:
        """``model`` as ``actor`` sees it.

        For a production-only principal ``latest_version`` is the newest
        *visible* number, so the counter of every version ever created does
        not reveal hidden ones.
        """
        if not actor.production_only(model.namespace):
            return model
        ids = self.tx.list_version_ids(
            model.id, limit=1, before=None, states=None, where=self.rule(model.namespace)
        )
        newest = self.tx.load_versions(ids)[0].number if ids else 0
        return replace(model, latest_version=newest)

    def version(self, actor: Principal, ver: Version) -> Version:
        """``ver`` as ``actor`` sees it: for a production-only principal, lineage
        links to versions it may not see are dropped, so they do not reveal
        existence."""
        if not actor.production_only(ver.namespace):
            return ver
        links: dict[str, Any] = {}
        for name in ("parent", "original"):
            link = getattr(ver, name)
            if link is not None and not self._link_visible(actor, link):
                links[name] = None
        return replace(ver, **links) if links else ver

    def _link_visible(self, actor: Principal, link: VersionLink) -> bool:
        perms = actor.permissions_in(link.namespace)
        if Permission.READ in perms:
            return True
        if Permission.CONSUME not in perms:
            return False
        vid = self.tx.find_version_id(link.namespace, link.model, number=link.number)
        return vid is not None and self.tx.version_matches(vid, self.rule(link.namespace))

    def model_id(self, namespace: str, name: str, rule: filters.Node) -> int:
        """A model's id if it holds a version inside ``rule``; MODEL_NOT_FOUND otherwise."""
        mid = self.tx.find_model_id(namespace, name)
        if mid is None or not self.tx.model_matches(mid, filters.AnyVersion(rule)):
            raise model_not_found(namespace, name)
        return mid

    def version_id(self, r: Reference, rule: filters.Node) -> int:
        """Resolve ``r`` within ``rule``; 404s read as for a missing thing
        (``latest`` is the newest visible version)."""
        mid = self.model_id(r.namespace, r.name, rule)
        if r.is_latest:
            ids = self.tx.list_version_ids(mid, limit=1, before=None, states=None, where=rule)
            if not ids:
                raise version_not_found(r)
            return ids[0]
        vid = self.tx.find_version_id(r.namespace, r.name, number=r.version, alias=r.alias)
        if vid is None or not self.tx.version_matches(vid, rule):
            raise version_not_found(r)
        return vid
