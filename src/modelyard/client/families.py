"""Model families in the SDK (issue 14): a version's family tree, its
variants and its ancestry, and attaching resources, over HTTP or in-process.

Backends answer the REST API's wire shapes; :class:`FamilyMixin` gives
``Registry`` its methods on top of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from modelyard.domain.references import Reference, parse_reference
from modelyard.wire import render

if TYPE_CHECKING:
    from modelyard.client.registry import VersionInfo
    from modelyard.domain.identity import Principal
    from modelyard.service.registry import RegistryService

Wire = dict[str, Any]


class FamilyBackend(Protocol):
    """What the family SDK needs from a registry."""

    def family(self, ref: Reference) -> Wire: ...
    def variants(self, ref: Reference, query: Wire) -> Wire: ...
    def ancestry(self, ref: Reference) -> Wire: ...
    def attach_resources(
        self, ref: Reference, body: Wire, idempotency_key: str | None = None
    ) -> Wire: ...
    def promote(self, ref: Reference, body: Wire) -> Wire: ...


def _vpath(ref: Reference) -> str:
    seg = str(ref.version) if ref.version is not None else quote(ref.alias or "latest", safe="")
    ns, name = quote(ref.namespace, safe=""), quote(ref.name, safe="")
    return f"/api/v1/models/{ns}/{name}/versions/{seg}"


class RemoteFamilies:
    """HTTP calls of the family API (mixed into ``RemoteBackend``)."""

    if TYPE_CHECKING:

        def _wire(self, method: str, path: str, **kw: Any) -> Wire: ...

    def family(self, ref: Reference) -> Wire:
        """GET a version's family."""
        return self._wire("GET", f"{_vpath(ref)}/family")

    def variants(self, ref: Reference, query: Wire) -> Wire:
        """GET a version's variants (``format``, ``relation``, ``latest``)."""
        params = {k: v for k, v in query.items() if v is not None}
        if "latest" in params:
            params["latest"] = "true" if params["latest"] else "false"
        return self._wire("GET", f"{_vpath(ref)}/variants", params=params)

    def ancestry(self, ref: Reference) -> Wire:
        """GET a version's ancestry."""
        return self._wire("GET", f"{_vpath(ref)}/ancestry")

    def attach_resources(
        self, ref: Reference, body: Wire, idempotency_key: str | None = None
    ) -> Wire:
        """POST resources (creates the next version)."""
        payload = {k: v for k, v in body.items() if v is not None}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._wire("POST", f"{_vpath(ref)}/resources", json=payload, headers=headers)

    def promote(self, ref: Reference, body: Wire) -> Wire:
        """POST a family promotion."""
        payload = {k: v for k, v in body.items() if v is not None}
        return self._wire("POST", f"{_vpath(ref)}/promote", json=payload)


class EmbeddedFamilies:
    """The family use cases in this process (mixed into ``EmbeddedBackend``)."""

    if TYPE_CHECKING:
        svc: RegistryService
        actor: Principal

    def family(self, ref: Reference) -> Wire:
        """A version's family."""
        return render.family(self.svc.get_family(ref, actor=self.actor))

    def variants(self, ref: Reference, query: Wire) -> Wire:
        """A version's variants."""
        found = self.svc.list_variants(
            ref,
            format=query.get("format"),
            relation=query.get("relation"),
            latest=bool(query.get("latest")),
            actor=self.actor,
        )
        return {"variants": [render.version(v) for v in found]}

    def ancestry(self, ref: Reference) -> Wire:
        """A version's ancestry."""
        found = self.svc.get_ancestry(ref, actor=self.actor)
        return {"ancestry": [render.version(v) for v in found]}

    def attach_resources(
        self, ref: Reference, body: Wire, idempotency_key: str | None = None
    ) -> Wire:
        """Attach resources (creates the next version)."""
        return render.version(
            self.svc.attach_resources(
                ref,
                body["resources"],
                alias=body.get("alias"),
                reason=body.get("reason") or "",
                description=body.get("description"),
                actor=self.actor,
                idempotency_key=idempotency_key,
            )
        )

    def promote(self, ref: Reference, body: Wire) -> Wire:
        """A family promotion."""
        return render.family_promotion(
            self.svc.promote_family(
                ref,
                action=body["action"],
                formats=body["with_variants"],
                alias=body.get("alias"),
                reason=body.get("reason") or "",
                archive_previous=bool(body.get("archive_previous")),
                actor=self.actor,
            )
        )


@dataclass(frozen=True)
class PromotedPart:
    """One version a family promotion touched (see :class:`FamilyPromotionInfo`)."""

    version: VersionInfo
    format: str | None
    changed: bool
    before: Any


@dataclass(frozen=True)
class FamilyPromotionInfo:
    """A committed family promotion: the original first, then each chosen variant.

    ``change_id`` is the id the audit log's ``family.promoted`` entry and each
    part's own event (``payload.change.id``) share.
    """

    change_id: str
    action: str
    alias: str | None
    parts: list[PromotedPart]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> FamilyPromotionInfo:
        """Build from the API's JSON."""
        from modelyard.client.registry import VersionInfo

        parts = [
            PromotedPart(
                VersionInfo.from_wire(p["version"]), p["format"], p["changed"], p["before"]
            )
            for p in d["parts"]
        ]
        return cls(d["change_id"], d["action"], d["alias"], parts, d)


@dataclass(frozen=True)
class FamilyMember:
    """One version of a family and its place in the tree."""

    version: VersionInfo
    parent: str | None
    depth: int


@dataclass(frozen=True)
class FamilyInfo:
    """A version's family as the SDK returns it.

    ``members`` are in depth-first order (each one after the member above it);
    ``root`` is the original's reference, None if the caller may not see it.
    """

    of: str
    root: str | None
    members: list[FamilyMember]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> FamilyInfo:
        """Build from the API's JSON."""
        from modelyard.client.registry import VersionInfo  # registry imports this module

        members = [
            FamilyMember(VersionInfo.from_wire(m["version"]), m["parent"], m["depth"])
            for m in d["members"]
        ]
        return cls(d["of"], d["root"], members, d)

    def children(self, ref: str) -> list[FamilyMember]:
        """The members directly below ``ref`` in the tree."""
        return [m for m in self.members if m.parent == ref]

    def tree_lines(self) -> Iterator[str]:
        """The tree as text lines: ``ref  format  relation  state``, indented."""
        for m in self.members:
            v = m.version
            mark = "" if m.depth == 0 else "└─ "
            relation = v.lineage.get("relation") or ("original" if m.depth == 0 else "")
            marker = "  <" if v.ref == self.of else ""
            yield (
                f"{'   ' * max(m.depth - 1, 0)}{mark}{v.ref}  "
                f"[{v.format or '-'}] {relation} ({v.state}){marker}"
            ).rstrip()


class FamilyMixin:
    """``Registry`` methods for model families."""

    if TYPE_CHECKING:
        _b: FamilyBackend

    def family(self, ref: str) -> FamilyInfo:
        """The whole family of a version: its original and every variant, as a tree."""
        return FamilyInfo.from_wire(self._b.family(parse_reference(ref)))

    def variants(
        self, ref: str, *, format: str | None = None, relation: str | None = None
    ) -> list[VersionInfo]:
        """Versions made from ``ref`` (directly or not), newest first."""
        from modelyard.client.registry import VersionInfo

        body = self._b.variants(
            parse_reference(ref), {"format": format, "relation": relation, "latest": None}
        )
        return [VersionInfo.from_wire(v) for v in body["variants"]]

    def variant(
        self, ref: str, *, format: str | None = None, relation: str | None = None
    ) -> VersionInfo:
        """The newest ready or published variant of ``ref`` with that format
        and relation, e.g. ``registry.variant("fraud@production", format="onnx")``.

        Raises ``NotFound`` (``VARIANT_NOT_FOUND``) when there is none.
        """
        from modelyard.client.registry import VersionInfo

        body = self._b.variants(
            parse_reference(ref), {"format": format, "relation": relation, "latest": True}
        )
        return VersionInfo.from_wire(body["variants"][0])

    def ancestry(self, ref: str) -> list[VersionInfo]:
        """Where ``ref`` comes from: parent, grandparent, ... up to its original."""
        from modelyard.client.registry import VersionInfo

        body = self._b.ancestry(parse_reference(ref))
        return [VersionInfo.from_wire(v) for v in body["ancestry"]]

    def promote_family(
        self,
        ref: str,
        *,
        action: str,
        with_variants: list[str],
        alias: str | None = None,
        reason: str = "",
        archive_previous: bool = False,
    ) -> FamilyPromotionInfo:
        """Publish ``ref`` (``action="publish"``) or point ``alias`` at it
        (``action="alias"``) together with the newest ready or published
        variant of each format in ``with_variants``, in one transaction: every
        part is checked by the production policy, and one refusal refuses all.
        ``registry.publish(ref, with_variants=[...])`` and
        ``registry.set_alias(ref, alias, with_variants=[...])`` call this.
        """
        body = {
            "action": action,
            "with_variants": list(with_variants),
            "alias": alias,
            "reason": reason,
            "archive_previous": archive_previous,
        }
        return FamilyPromotionInfo.from_wire(self._b.promote(parse_reference(ref), body))
