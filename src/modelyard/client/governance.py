"""Governance in the SDK (issue 3): policies, dry runs, approvals, rollback,
alias at a time and the audit log, over HTTP or in-process.

Backends answer the REST API's wire shapes (plain dicts); ``GovernanceMixin``
gives ``Registry`` its methods on top of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote

from modelyard.client.paging import walk_pages
from modelyard.domain.errors import InvalidInput
from modelyard.domain.references import DEFAULT_NAMESPACE, Reference, parse_reference
from modelyard.wire import governance as rg
from modelyard.wire import render

if TYPE_CHECKING:
    from modelyard.composition import Services
    from modelyard.domain.identity import Principal
    from modelyard.service.approvals import ApprovalService
    from modelyard.service.governance import GovernanceService
    from modelyard.service.identity import IdentityService
    from modelyard.service.registry import RegistryService

Wire = dict[str, Any]
Decision = Literal["approve", "reject", "cancel"]
UserAction = Literal["disable", "enable", "delete"]


class GovernanceBackend(Protocol):
    """What the governance SDK needs from a registry (``model`` None = namespace)."""

    def get_policy(self, namespace: str, model: str | None) -> Wire: ...
    def put_policy(self, namespace: str, model: str | None, rules: Wire) -> Wire: ...
    def delete_policy(self, namespace: str, model: str | None) -> None: ...
    def policy_check(self, ref: Reference, action: str, alias: str | None) -> Wire: ...
    def rollback(self, ref: Reference, reason: str, expected_version: int | None) -> Wire: ...
    def alias_at(self, ref: Reference, at: str | int | None) -> Wire: ...
    def alias_history(self, ref: Reference, alias: str | None, query: Wire) -> Wire: ...
    def request_approval(self, ref: Reference, body: Wire) -> Wire: ...
    def review(self, approval_id: int, decision: Decision, comment: str) -> Wire: ...
    def get_approval(self, approval_id: int) -> Wire: ...
    def list_approvals(
        self, namespace: str, state: str, page_size: int, page_token: str | None
    ) -> Wire: ...
    def audit(self, query: Wire) -> Wire: ...
    def set_user_state(self, name: str, action: UserAction) -> Wire: ...


def _q(s: str) -> str:
    return quote(s, safe="")


def _mpath(namespace: str, name: str) -> str:
    return f"/api/v1/models/{_q(namespace)}/{_q(name)}"


def _vpath(ref: Reference) -> str:
    seg = str(ref.version) if ref.version is not None else _q(ref.alias or "latest")
    return f"{_mpath(ref.namespace, ref.name)}/versions/{seg}"


def _policy_path(namespace: str, model: str | None) -> str:
    if model is None:
        return f"/api/v1/namespaces/{_q(namespace)}/policy"
    return f"{_mpath(namespace, model)}/policy"


def _alias_of(ref: Reference) -> str:
    if ref.alias is None or ref.alias == "latest":
        raise InvalidInput(f"{ref} names no alias: write name@alias", code="INVALID_REFERENCE")
    return ref.alias


class RemoteGovernance:
    """HTTP calls of the governance API (mixed into ``RemoteBackend``)."""

    if TYPE_CHECKING:

        def _wire(self, method: str, path: str, **kw: Any) -> Wire: ...
        def _json(self, method: str, path: str, **kw: Any) -> Any: ...

    def get_policy(self, namespace: str, model: str | None) -> Wire:
        """GET a namespace's or model's policy."""
        return self._wire("GET", _policy_path(namespace, model))

    def put_policy(self, namespace: str, model: str | None, rules: Wire) -> Wire:
        """PUT a policy."""
        return self._wire("PUT", _policy_path(namespace, model), json=rules)

    def delete_policy(self, namespace: str, model: str | None) -> None:
        """DELETE a policy."""
        self._json("DELETE", _policy_path(namespace, model))

    def policy_check(self, ref: Reference, action: str, alias: str | None) -> Wire:
        """GET the dry run."""
        params = {"action": action, **({"alias": alias} if alias else {})}
        return self._wire("GET", f"{_vpath(ref)}/policy-check", params=params)

    def rollback(self, ref: Reference, reason: str, expected_version: int | None) -> Wire:
        """POST a rollback."""
        path = f"{_mpath(ref.namespace, ref.name)}/aliases/{_q(_alias_of(ref))}/rollback"
        return self._wire(
            "POST", path, json={"reason": reason, "expected_version": expected_version}
        )

    def alias_at(self, ref: Reference, at: str | int | None) -> Wire:
        """GET where an alias points (at a time)."""
        path = f"{_mpath(ref.namespace, ref.name)}/aliases/{_q(_alias_of(ref))}"
        return self._wire("GET", path, params={} if at is None else {"at": str(at)})

    def alias_history(self, ref: Reference, alias: str | None, query: Wire) -> Wire:
        """GET one page of a model's alias moves (``query``: ``order``,
        ``page_size``, ``page_token``)."""
        params = {k: v for k, v in query.items() if v is not None}
        if alias is not None:
            params["alias"] = alias
        path = f"{_mpath(ref.namespace, ref.name)}/aliases/history"
        return self._wire("GET", path, params=params)

    def request_approval(self, ref: Reference, body: Wire) -> Wire:
        """POST an approval request."""
        return self._wire("POST", f"{_vpath(ref)}/approvals", json=body)

    def review(self, approval_id: int, decision: Decision, comment: str) -> Wire:
        """POST approve / reject / cancel."""
        body = None if decision == "cancel" else {"comment": comment}
        return self._wire("POST", f"/api/v1/approvals/{int(approval_id)}/{decision}", json=body)

    def get_approval(self, approval_id: int) -> Wire:
        """GET one request."""
        return self._wire("GET", f"/api/v1/approvals/{int(approval_id)}")

    def list_approvals(
        self, namespace: str, state: str, page_size: int, page_token: str | None
    ) -> Wire:
        """GET a namespace's requests."""
        params: dict[str, Any] = {"state": state, "page_size": page_size}
        if page_token:
            params["page_token"] = page_token
        return self._wire("GET", f"/api/v1/namespaces/{_q(namespace)}/approvals", params=params)

    def audit(self, query: Wire) -> Wire:
        """GET the audit log."""
        params = {k: v for k, v in query.items() if v is not None}
        return self._wire("GET", "/api/v1/audit", params=params)

    def set_user_state(self, name: str, action: UserAction) -> Wire:
        """POST /users/{name}/disable|enable, or DELETE /users/{name} (answers {})."""
        path = f"/api/v1/users/{_q(name)}"
        if action == "delete":
            self._json("DELETE", path)
            return {}
        return self._wire("POST", f"{path}/{action}")


class EmbeddedGovernance:
    """The governance service in this process (mixed into ``EmbeddedBackend``)."""

    if TYPE_CHECKING:
        services: Services
        svc: RegistryService
        actor: Principal
        identity: IdentityService

    @property
    def gov(self) -> GovernanceService:
        """The governance service over the embedded registry."""
        return self.services.governance

    @property
    def approvals(self) -> ApprovalService:
        """The approval service over the embedded registry."""
        return self.services.approvals

    def get_policy(self, namespace: str, model: str | None) -> Wire:
        """A namespace's policy, or a model's with its namespace's and the merge."""
        if model is None:
            return rg.policy_record(self.gov.get_policy(namespace, actor=self.actor))
        return rg.model_policy(
            self.gov.get_policy(namespace, actor=self.actor),
            self.gov.get_policy(namespace, model, actor=self.actor),
            self.gov.effective_policy(namespace, model, actor=self.actor),
        )

    def put_policy(self, namespace: str, model: str | None, rules: Wire) -> Wire:
        """Replace a policy."""
        return rg.policy_record(
            self.gov.set_policy(namespace, rules, model=model, actor=self.actor)
        )

    def delete_policy(self, namespace: str, model: str | None) -> None:
        """Remove a policy."""
        self.gov.delete_policy(namespace, model=model, actor=self.actor)

    def policy_check(self, ref: Reference, action: str, alias: str | None) -> Wire:
        """The dry run."""
        return rg.policy_check(self.gov.check(ref, action=action, alias=alias, actor=self.actor))

    def rollback(self, ref: Reference, reason: str, expected_version: int | None) -> Wire:
        """Roll an alias back."""
        return render.version(
            self.gov.rollback_alias(
                ref.name,
                _alias_of(ref),
                namespace=ref.namespace,
                actor=self.actor,
                reason=reason,
                expected_version=expected_version,
            )
        )

    def alias_at(self, ref: Reference, at: str | int | None) -> Wire:
        """Where an alias points (at a time)."""
        import time

        when = time.time_ns() // 1000 if at is None else at
        return rg.alias_at(
            self.gov.alias_at(
                ref.name, _alias_of(ref), when, namespace=ref.namespace, actor=self.actor
            )
        )

    def alias_history(self, ref: Reference, alias: str | None, query: Wire) -> Wire:
        """One page of a model's alias moves, as the REST route answers it."""
        page = self.svc.alias_moves(
            ref.name,
            namespace=ref.namespace,
            alias=alias,
            page_size=query.get("page_size", 100),
            page_token=query.get("page_token"),
            newest_first=query.get("order") == "desc",
            actor=self.actor,
        )
        return {
            "history": [render.alias_move(m) for m in page.items],
            "next_page_token": page.next_page_token,
        }

    def request_approval(self, ref: Reference, body: Wire) -> Wire:
        """Request an approval."""
        return rg.approval(self.approvals.request_approval(ref, actor=self.actor, **body))

    def review(self, approval_id: int, decision: Decision, comment: str) -> Wire:
        """Approve, reject or cancel."""
        if decision == "approve":
            a = self.approvals.approve(approval_id, actor=self.actor, comment=comment)
        elif decision == "reject":
            a = self.approvals.reject(approval_id, actor=self.actor, comment=comment)
        else:
            a = self.approvals.cancel(approval_id, actor=self.actor)
        return rg.approval(a)

    def get_approval(self, approval_id: int) -> Wire:
        """One request."""
        return rg.approval(self.approvals.get_approval(approval_id, actor=self.actor))

    def list_approvals(
        self, namespace: str, state: str, page_size: int, page_token: str | None
    ) -> Wire:
        """A namespace's requests."""
        page = self.approvals.list_approvals(
            namespace,
            state=None if state == "all" else state,
            page_size=page_size,
            page_token=page_token,
            actor=self.actor,
        )
        return {
            "approvals": [rg.approval(a) for a in page.items],
            "next_page_token": page.next_page_token,
        }

    def audit(self, query: Wire) -> Wire:
        """The audit log."""
        filters = dict(query)
        by = filters.pop("actor", None)
        page = self.gov.audit(**filters, by=by, actor=self.actor)
        return {
            "entries": [rg.audit_entry(e) for e in page.items],
            "next_page_token": page.next_page_token,
        }

    def set_user_state(self, name: str, action: UserAction) -> Wire:
        """Disable, enable or delete a user in this process."""
        from modelyard.wire.identity import render_user

        if action == "delete":
            self.identity.delete_user(name, actor=self.actor)
            return {}
        change = self.identity.disable_user if action == "disable" else self.identity.enable_user
        return render_user(change(name, actor=self.actor))


class GovernanceMixin:
    """``Registry`` methods for governance (results are the API's JSON shapes)."""

    if TYPE_CHECKING:
        _b: GovernanceBackend

    def get_policy(self, *, namespace: str = DEFAULT_NAMESPACE, model: str | None = None) -> Wire:
        """The production policy of a namespace, or of a model (with the merged one)."""
        return self._b.get_policy(namespace, model)

    def set_policy(
        self,
        rules: dict[str, Any],
        *,
        namespace: str = DEFAULT_NAMESPACE,
        model: str | None = None,
    ) -> Wire:
        """Replace the production policy of a namespace or model, e.g.
        ``{"required_tags": {"encrypted": "true"}, "metric_thresholds":
        ["metrics.accuracy >= 0.9"], "required_approvals": 1,
        "protected_aliases": ["production"]}``."""
        return self._b.put_policy(namespace, model, rules)

    def delete_policy(
        self, *, namespace: str = DEFAULT_NAMESPACE, model: str | None = None
    ) -> None:
        """Remove a namespace's or model's own policy."""
        self._b.delete_policy(namespace, model)

    def disable_user(self, name: str) -> Wire:
        """Disable a user (instance admin): their tokens are refused from the next
        request on; roles and tokens stay for :meth:`enable_user`."""
        return self._b.set_user_state(name, "disable")

    def enable_user(self, name: str) -> Wire:
        """Enable a disabled user again (instance admin)."""
        return self._b.set_user_state(name, "enable")

    def delete_user(self, name: str) -> None:
        """Delete a user (instance admin): tokens revoked, roles removed; history
        keeps the name, and the name is not given to a new user."""
        self._b.set_user_state(name, "delete")

    def check_policy(self, ref: str, *, action: str = "publish", alias: str | None = None) -> Wire:
        """Dry run: what ``ref`` still lacks to be published (or to receive ``alias``)."""
        return self._b.policy_check(parse_reference(ref), action, alias)

    def rollback(self, ref: str, *, reason: str = "", expected_version: int | None = None) -> Wire:
        """Move ``name@alias`` back to its previous target; returns the version."""
        return self._b.rollback(parse_reference(ref), reason, expected_version)

    def alias_at(self, ref: str, at: str | int | None = None) -> Wire:
        """Where ``name@alias`` pointed at ``at`` (RFC 3339 or µs; default now)."""
        return self._b.alias_at(parse_reference(ref), at)

    def alias_history(
        self,
        model: str,
        *,
        alias: str | None = None,
        newest_first: bool = False,
        limit: int | None = None,
        page_size: int = 100,
    ) -> Iterator[Wire]:
        """The recorded moves of ``model``'s aliases (``fraud``, ``team/fraud``;
        ``fraud@prod`` for one alias, or ``alias=``): oldest first unless
        ``newest_first``, at most ``limit``. Pages are fetched as you iterate."""
        ref = parse_reference(model)
        if ref.version is not None:
            raise InvalidInput(
                f"{model} names a version: give the model (name or ns/name)",
                code="INVALID_REFERENCE",
            )
        one = alias if alias is not None else (ref.alias if ref.alias != "latest" else None)
        order = "desc" if newest_first else "asc"

        def fetch(token: str | None, remaining: int | None) -> Wire:
            size = page_size if remaining is None else max(1, min(page_size, remaining))
            query = {"order": order, "page_size": size, "page_token": token}
            return self._b.alias_history(ref, one, query)

        return walk_pages(fetch, "history", limit)

    def request_approval(
        self,
        ref: str,
        *,
        action: str = "publish",
        alias: str | None = None,
        archive_previous: bool = False,
        comment: str = "",
    ) -> Wire:
        """Ask reviewers to publish ``ref`` (and/or point ``alias`` at it)."""
        body = {
            "action": action,
            "alias": alias,
            "archive_previous": archive_previous,
            "comment": comment,
        }
        return self._b.request_approval(parse_reference(ref), body)

    def approve(self, approval_id: int, *, comment: str = "") -> Wire:
        """Approve a request (it applies at the N-th distinct approval)."""
        return self._b.review(approval_id, "approve", comment)

    def reject(self, approval_id: int, *, comment: str = "") -> Wire:
        """Reject a request."""
        return self._b.review(approval_id, "reject", comment)

    def cancel_approval(self, approval_id: int) -> Wire:
        """Withdraw one's own pending request."""
        return self._b.review(approval_id, "cancel", "")

    def get_approval(self, approval_id: int) -> Wire:
        """One request with its reviews."""
        return self._b.get_approval(approval_id)

    def list_approvals(
        self, *, namespace: str = DEFAULT_NAMESPACE, state: str = "pending"
    ) -> Iterator[Wire]:
        """A namespace's requests, newest first (``state`` may be ``all``)."""
        return walk_pages(
            lambda token, _: self._b.list_approvals(namespace, state, 100, token), "approvals"
        )

    def audit(
        self,
        *,
        actor: str | None = None,
        model: str | None = None,
        namespace: str | None = None,
        action: str | None = None,
        since: str | int | None = None,
        until: str | int | None = None,
        limit: int | None = None,
        page_size: int = 100,
    ) -> Iterator[Wire]:
        """Audit entries newest first, filtered (see ``GovernanceService.audit``)."""

        def fetch(token: str | None, _: int | None) -> Wire:
            query = {
                "actor": actor,
                "model": model,
                "namespace": namespace,
                "action": action,
                "since": since,
                "until": until,
                "page_size": page_size,
                "page_token": token,
            }
            return self._b.audit(query)

        return walk_pages(fetch, "entries", limit)
