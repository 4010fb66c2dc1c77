"""Bundles in the SDK (issue 14): create, pin, read, and the readiness check
a process runs before it serves ("is every file of every member here and
intact?"), over HTTP or in-process.

On disk a pulled bundle version is one directory per role:
``DEST/<role>/<path>`` for every file of the role's pinned version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from modelyard.client.transfer import hash_file, safe_destination
from modelyard.domain.bundles import parse_bundle_ref
from modelyard.domain.errors import InvalidInput
from modelyard.wire import render

if TYPE_CHECKING:
    from modelyard.client.registry import PushCallbacks, Registry
    from modelyard.domain.identity import Principal
    from modelyard.service.registry import RegistryService

Wire = dict[str, Any]


class BundleBackend(Protocol):
    """What the bundle SDK needs from a registry."""

    def create_bundle(self, namespace: str, body: Wire) -> Wire: ...
    def get_bundle(self, namespace: str, name: str) -> Wire: ...
    def list_bundles(self, namespace: str) -> Wire: ...
    def create_bundle_version(self, namespace: str, name: str, accept_breaking: bool) -> Wire: ...
    def get_bundle_version(
        self, namespace: str, name: str, number: int | None, alias: str | None = None
    ) -> Wire: ...
    def update_bundle(self, namespace: str, name: str, body: Wire) -> Wire: ...
    def set_bundle_alias(self, namespace: str, name: str, alias: str, body: Wire) -> Wire: ...
    def delete_bundle_alias(self, namespace: str, name: str, alias: str, reason: str) -> None: ...
    def bundle_alias_history(self, namespace: str, name: str, alias: str | None) -> Wire: ...
    def delete_bundle(self, namespace: str, name: str, *, force: bool, reason: str) -> None: ...
    def request_bundle_approval(self, namespace: str, name: str, body: Wire) -> Wire: ...
    def list_bundle_approvals(self, namespace: str, name: str, state: str) -> Wire: ...
    def get_bundle_approval(self, namespace: str, name: str, approval_id: int) -> Wire: ...
    def review_bundle_approval(
        self, namespace: str, name: str, approval_id: int, decision: str, comment: str
    ) -> Wire: ...


def _bpath(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/bundles/{quote(namespace, safe='')}"
    return base if name is None else f"{base}/{quote(name, safe='')}"


class RemoteBundles:
    """HTTP calls of the bundle API (mixed into ``RemoteBackend``)."""

    if TYPE_CHECKING:

        def _wire(self, method: str, path: str, **kw: Any) -> Wire: ...
        def _json(self, method: str, path: str, **kw: Any) -> Any: ...

    def create_bundle(self, namespace: str, body: Wire) -> Wire:
        """POST a bundle."""
        return self._wire("POST", _bpath(namespace), json=body)

    def get_bundle(self, namespace: str, name: str) -> Wire:
        """GET a bundle."""
        return self._wire("GET", _bpath(namespace, name))

    def list_bundles(self, namespace: str) -> Wire:
        """GET a namespace's bundles."""
        return self._wire("GET", _bpath(namespace))

    def create_bundle_version(self, namespace: str, name: str, accept_breaking: bool) -> Wire:
        """POST a bundle version."""
        return self._wire(
            "POST",
            f"{_bpath(namespace, name)}/versions",
            json={"accept_breaking": accept_breaking},
        )

    def get_bundle_version(
        self, namespace: str, name: str, number: int | None, alias: str | None = None
    ) -> Wire:
        """GET a bundle version (by number, by alias; neither: latest)."""
        seg = alias or ("latest" if number is None else str(number))
        return self._wire("GET", f"{_bpath(namespace, name)}/versions/{quote(seg, safe='')}")

    def update_bundle(self, namespace: str, name: str, body: Wire) -> Wire:
        """PATCH a bundle (answers the bundle version it pinned)."""
        return self._wire("PATCH", _bpath(namespace, name), json=body)

    def set_bundle_alias(self, namespace: str, name: str, alias: str, body: Wire) -> Wire:
        """PUT a bundle alias."""
        path = f"{_bpath(namespace, name)}/aliases/{quote(alias, safe='')}"
        return self._wire("PUT", path, json=body)

    def delete_bundle_alias(self, namespace: str, name: str, alias: str, reason: str) -> None:
        """DELETE a bundle alias."""
        path = f"{_bpath(namespace, name)}/aliases/{quote(alias, safe='')}"
        self._json("DELETE", path, params={"reason": reason} if reason else None)

    def bundle_alias_history(self, namespace: str, name: str, alias: str | None) -> Wire:
        """GET a bundle's alias history."""
        return self._wire(
            "GET",
            f"{_bpath(namespace, name)}/aliases/history",
            params={"alias": alias} if alias else None,
        )

    def delete_bundle(self, namespace: str, name: str, *, force: bool, reason: str) -> None:
        """DELETE a bundle."""
        params = {"force": str(force).lower()}
        if reason:
            params["reason"] = reason
        self._json("DELETE", _bpath(namespace, name), params=params)

    def request_bundle_approval(self, namespace: str, name: str, body: Wire) -> Wire:
        """POST a bundle approval request."""
        return self._wire("POST", f"{_bpath(namespace, name)}/approvals", json=body)

    def list_bundle_approvals(self, namespace: str, name: str, state: str) -> Wire:
        """GET a bundle's approval requests."""
        return self._wire("GET", f"{_bpath(namespace, name)}/approvals", params={"state": state})

    def get_bundle_approval(self, namespace: str, name: str, approval_id: int) -> Wire:
        """GET one bundle approval request."""
        return self._wire("GET", f"{_bpath(namespace, name)}/approvals/{int(approval_id)}")

    def review_bundle_approval(
        self, namespace: str, name: str, approval_id: int, decision: str, comment: str
    ) -> Wire:
        """POST approve, reject or cancel on a bundle approval request."""
        path = f"{_bpath(namespace, name)}/approvals/{int(approval_id)}/{decision}"
        return self._wire("POST", path, json=None if decision == "cancel" else {"comment": comment})


class EmbeddedBundles:
    """The bundle use cases in this process (mixed into ``EmbeddedBackend``)."""

    if TYPE_CHECKING:
        svc: RegistryService
        actor: Principal

    def create_bundle(self, namespace: str, body: Wire) -> Wire:
        """Create a bundle."""
        return render.bundle(
            self.svc.create_bundle(
                body["name"],
                namespace=namespace,
                roles=body.get("roles") or {},
                edges=body.get("edges"),
                description=body.get("description") or "",
                actor=self.actor,
            )
        )

    def get_bundle(self, namespace: str, name: str) -> Wire:
        """One bundle."""
        return render.bundle(self.svc.get_bundle(name, namespace=namespace, actor=self.actor))

    def list_bundles(self, namespace: str) -> Wire:
        """A namespace's bundles."""
        found = self.svc.list_bundles(namespace=namespace, actor=self.actor)
        return {"bundles": [render.bundle(b) for b in found]}

    def create_bundle_version(self, namespace: str, name: str, accept_breaking: bool) -> Wire:
        """Pin a bundle version."""
        return render.bundle_version(
            self.svc.create_bundle_version(
                name, namespace=namespace, accept_breaking=accept_breaking, actor=self.actor
            )
        )

    def get_bundle_version(
        self, namespace: str, name: str, number: int | None, alias: str | None = None
    ) -> Wire:
        """A bundle version."""
        return render.bundle_version(
            self.svc.get_bundle_version(
                name, namespace=namespace, number=number, alias=alias, actor=self.actor
            )
        )

    def update_bundle(self, namespace: str, name: str, body: Wire) -> Wire:
        """Edit a bundle; the bundle version it pinned."""
        return render.bundle_version(
            self.svc.update_bundle(
                name,
                namespace=namespace,
                roles=body.get("roles"),
                edges=body.get("edges"),
                description=body.get("description"),
                accept_breaking=bool(body.get("accept_breaking")),
                actor=self.actor,
            )
        )

    def set_bundle_alias(self, namespace: str, name: str, alias: str, body: Wire) -> Wire:
        """Point a bundle alias."""
        return render.bundle_version(
            self.svc.set_bundle_alias(
                name,
                alias,
                version=body["version"],
                namespace=namespace,
                reason=body.get("reason") or "",
                expected_version=body.get("expected_version"),
                actor=self.actor,
            )
        )

    def delete_bundle_alias(self, namespace: str, name: str, alias: str, reason: str) -> None:
        """Remove a bundle alias."""
        self.svc.delete_bundle_alias(
            name, alias, namespace=namespace, reason=reason, actor=self.actor
        )

    def bundle_alias_history(self, namespace: str, name: str, alias: str | None) -> Wire:
        """A bundle's alias history."""
        moves = self.svc.bundle_alias_history(
            name, namespace=namespace, alias=alias, actor=self.actor
        )
        return {"history": [render.bundle_alias_move(m) for m in moves]}

    def delete_bundle(self, namespace: str, name: str, *, force: bool, reason: str) -> None:
        """Delete a bundle."""
        self.svc.delete_bundle(
            name, namespace=namespace, force=force, reason=reason, actor=self.actor
        )

    def request_bundle_approval(self, namespace: str, name: str, body: Wire) -> Wire:
        """Ask for a bundle alias move."""
        return render.bundle_approval(
            self.svc.request_bundle_approval(
                name,
                body["alias"],
                version=body["version"],
                namespace=namespace,
                comment=body.get("comment") or "",
                actor=self.actor,
            )
        )

    def list_bundle_approvals(self, namespace: str, name: str, state: str) -> Wire:
        """A bundle's approval requests."""
        found = self.svc.list_bundle_approvals(
            name, namespace=namespace, state=None if state == "all" else state, actor=self.actor
        )
        return {"approvals": [render.bundle_approval(a) for a in found]}

    def get_bundle_approval(self, namespace: str, name: str, approval_id: int) -> Wire:
        """One bundle approval request."""
        return render.bundle_approval(
            self.svc.get_bundle_approval(name, approval_id, namespace=namespace, actor=self.actor)
        )

    def review_bundle_approval(
        self, namespace: str, name: str, approval_id: int, decision: str, comment: str
    ) -> Wire:
        """Approve, reject or cancel a bundle approval request."""
        if decision == "cancel":
            done = self.svc.cancel_bundle_approval(
                name, approval_id, namespace=namespace, actor=self.actor
            )
        else:
            review = (
                self.svc.approve_bundle_approval
                if decision == "approve"
                else self.svc.reject_bundle_approval
            )
            done = review(name, approval_id, namespace=namespace, comment=comment, actor=self.actor)
        return render.bundle_approval(done)


@dataclass(frozen=True)
class Readiness:
    """Is a bundle version fully present and intact in a directory?

    ``loaded`` is true only when every file of every member is there and
    hashes to its digest; ``missing`` and ``damaged`` say precisely what is
    not (each entry: ``role``, ``ref``, ``path``, and for damaged files what
    was expected and found).
    """

    bundle: str
    dest: str
    loaded: bool
    files: int
    missing: list[dict[str, Any]] = field(default_factory=list)
    damaged: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON shape (the CLI's ``--json``)."""
        return {
            "bundle": self.bundle,
            "dest": self.dest,
            "loaded": self.loaded,
            "files": self.files,
            "missing": self.missing,
            "damaged": self.damaged,
        }


def check_bundle(bundle_version: Wire, dest: str | os.PathLike[str]) -> Readiness:
    """Check ``dest`` against a bundle version's manifests (no network)."""
    root = Path(dest)
    missing: list[dict[str, Any]] = []
    damaged: list[dict[str, Any]] = []
    count = 0
    for role, member in bundle_version["members"].items():
        for f in member.get("files") or []:
            count += 1
            where = {"role": role, "ref": member["ref"], "path": f["path"]}
            try:
                target = safe_destination(root / role, f["path"])
            except InvalidInput:
                damaged.append({**where, "problem": "unsafe path"})
                continue
            if not target.is_file():
                missing.append(where)
                continue
            size = target.stat().st_size
            if size != int(f["size"]):
                damaged.append(
                    {**where, "problem": "size", "expected": int(f["size"]), "found": size}
                )
                continue
            digest, _ = hash_file(target)
            if digest != f["digest"]:
                damaged.append(
                    {**where, "problem": "digest", "expected": f["digest"], "found": digest}
                )
    return Readiness(
        bundle_version["ref"],
        str(root),
        not missing and not damaged,
        count,
        missing,
        damaged,
    )


class BundleHandle:
    """One bundle version reference (``name``, ``ns/name``, ``name@3``, ``@latest``,
    ``name@production``) on a registry: fetch it, pull it, check it on disk."""

    def __init__(self, registry: Registry, ref: str) -> None:
        r, self.number = parse_bundle_ref(ref)
        self.namespace, self.name, self.alias = r.namespace, r.name, r.alias
        self._reg = registry

    def version(self) -> Wire:
        """The bundle version this handle names, with every member's manifest."""
        return self._reg._b.get_bundle_version(
            self.namespace, self.name, self.number, alias=self.alias
        )

    def pull(
        self,
        dest: str | os.PathLike[str],
        *,
        link: bool = False,
        callbacks: PushCallbacks | None = None,
    ) -> Readiness:
        """Download every member into ``dest/<role>/`` (digest-checked, from the
        local cache when it has the bytes); then the readiness of ``dest``."""
        bv = self.version()
        for role, member in bv["members"].items():
            self._reg.pull(member["ref"], Path(dest) / role, link=link, callbacks=callbacks)
        return check_bundle(bv, dest)

    def ready(self, dest: str | os.PathLike[str]) -> Readiness:
        """Is this bundle version fully present and intact in ``dest``?

        Asks the registry for the manifests once, then reads only ``dest``.
        """
        return check_bundle(self.version(), dest)


class BundleMixin:
    """``Registry`` methods for bundles."""

    if TYPE_CHECKING:
        _b: BundleBackend

    def create_bundle(
        self,
        name: str,
        roles: dict[str, str],
        *,
        edges: list[dict[str, Any]] | None = None,
        namespace: str = "default",
        description: str = "",
    ) -> Wire:
        """Create a bundle: ``roles`` maps a role to a reference; ``edges`` are
        ``{"from": role, "to": role, "mapping": {output: input}}``."""
        body = {"name": name, "roles": roles, "edges": edges or [], "description": description}
        return self._b.create_bundle(namespace, body)

    def get_bundle(self, name: str, *, namespace: str = "default") -> Wire:
        """One bundle (roles, edges, newest version number)."""
        return self._b.get_bundle(namespace, name)

    def list_bundles(self, *, namespace: str = "default") -> list[Wire]:
        """A namespace's bundles."""
        return list(self._b.list_bundles(namespace)["bundles"])

    def pin_bundle(self, ref: str, *, accept_breaking: bool = False) -> Wire:
        """Create a bundle version pinning what every role names now; refused
        with ``BUNDLE_INCOMPATIBLE`` (every mismatch in ``details``) if the
        members do not fit together."""
        r, _ = parse_bundle_ref(ref)
        return self._b.create_bundle_version(r.namespace, r.name, accept_breaking)

    def update_bundle(
        self,
        ref: str,
        *,
        roles: dict[str, str] | None = None,
        edges: list[dict[str, Any]] | None = None,
        description: str | None = None,
        accept_breaking: bool = False,
    ) -> Wire:
        """Replace a bundle's roles and/or edges (None: keep) and pin its next
        version with them; the pinned bundle version. Refused with
        ``BUNDLE_INCOMPATIBLE`` (nothing changed) if it does not fit."""
        r, _ = parse_bundle_ref(ref)
        body: Wire = {"accept_breaking": accept_breaking}
        for key, value in (("roles", roles), ("edges", edges), ("description", description)):
            if value is not None:
                body[key] = value
        return self._b.update_bundle(r.namespace, r.name, body)

    def set_bundle_alias(
        self,
        ref: str,
        alias: str,
        *,
        reason: str = "",
        expected_version: int | None = None,
    ) -> Wire:
        """Point bundle ``alias`` at the bundle version ``ref`` names
        (``pipe@3``, ``pipe/3``, ``pipe@staging``; plain ``pipe``: the newest)."""
        handle = self.bundle(ref)
        number = handle.number
        if number is None:
            number = int(handle.version()["version"])
        body: Wire = {"version": number, "reason": reason}
        if expected_version is not None:
            body["expected_version"] = expected_version
        return self._b.set_bundle_alias(handle.namespace, handle.name, alias, body)

    def delete_bundle_alias(self, ref: str, alias: str, *, reason: str = "") -> None:
        """Remove a bundle alias (``ALIAS_PROTECTED`` if the policy protects it)."""
        r, _ = parse_bundle_ref(ref)
        self._b.delete_bundle_alias(r.namespace, r.name, alias, reason)

    def bundle_alias_history(self, ref: str, *, alias: str | None = None) -> list[Wire]:
        """Every recorded move of a bundle's aliases (or one), oldest first."""
        r, _ = parse_bundle_ref(ref)
        return list(self._b.bundle_alias_history(r.namespace, r.name, alias)["history"])

    def delete_bundle(self, ref: str, *, force: bool = False, reason: str = "") -> None:
        """Delete a bundle with its versions, aliases and their history (admin);
        refused with ``BUNDLE_HAS_ALIASES`` while an alias names one of its
        versions, unless ``force``. The member model versions stay."""
        r, _ = parse_bundle_ref(ref)
        self._b.delete_bundle(r.namespace, r.name, force=force, reason=reason)

    def request_bundle_approval(self, ref: str, alias: str, *, comment: str = "") -> Wire:
        """Ask reviewers to move bundle ``alias`` to the bundle version ``ref``
        names (``pipe@3``, ``pipe/3``; plain ``pipe``: the newest)."""
        handle = self.bundle(ref)
        number = handle.number
        if number is None:
            number = int(handle.version()["version"])
        body: Wire = {"version": number, "alias": alias, "comment": comment}
        return self._b.request_bundle_approval(handle.namespace, handle.name, body)

    def list_bundle_approvals(self, ref: str, *, state: str = "pending") -> list[Wire]:
        """A bundle's approval requests, newest first (``state``: ``pending``,
        ``applied``, ``rejected``, ``cancelled`` or ``all``)."""
        r, _ = parse_bundle_ref(ref)
        return list(self._b.list_bundle_approvals(r.namespace, r.name, state)["approvals"])

    def get_bundle_approval(self, ref: str, approval_id: int) -> Wire:
        """One of a bundle's approval requests, with its reviews."""
        r, _ = parse_bundle_ref(ref)
        return self._b.get_bundle_approval(r.namespace, r.name, approval_id)

    def approve_bundle_approval(self, ref: str, approval_id: int, *, comment: str = "") -> Wire:
        """Approve a bundle's request; the move applies at the N-th approval."""
        r, _ = parse_bundle_ref(ref)
        return self._b.review_bundle_approval(r.namespace, r.name, approval_id, "approve", comment)

    def reject_bundle_approval(self, ref: str, approval_id: int, *, comment: str = "") -> Wire:
        """Reject a bundle's request (final)."""
        r, _ = parse_bundle_ref(ref)
        return self._b.review_bundle_approval(r.namespace, r.name, approval_id, "reject", comment)

    def cancel_bundle_approval(self, ref: str, approval_id: int) -> Wire:
        """Withdraw one's own pending request."""
        r, _ = parse_bundle_ref(ref)
        return self._b.review_bundle_approval(r.namespace, r.name, approval_id, "cancel", "")

    def bundle(self, ref: str) -> BundleHandle:
        """A handle on a bundle version: ``.version()``, ``.pull(dest)``, ``.ready(dest)``."""
        from modelyard.client.registry import Registry

        assert isinstance(self, Registry)
        return BundleHandle(self, ref)
