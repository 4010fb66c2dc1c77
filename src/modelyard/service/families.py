"""Model families (issue 14): lineage rules at creation, and the family,
variant and ancestry queries.

The graph rules themselves are the domain's (:mod:`modelyard.domain.families`);
this module applies them inside transactions and under the caller's view:
a principal that only consumes a namespace sees the family members of that
namespace that are in its production view, and nothing of namespaces it
cannot read at all. A hidden member is left out as if it did not exist; the
visible versions below it hang under their nearest visible ancestor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modelyard.domain import identity as auth
from modelyard.domain.entities import Version
from modelyard.domain.errors import InvalidInput, NotFound
from modelyard.domain.families import Family, ancestors, build_trees, descendants
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.lifecycle import counts_as_latest
from modelyard.domain.references import Reference
from modelyard.service import validation as v
from modelyard.service.core import RegistryCore
from modelyard.service.views import ProductionView
from modelyard.store.metadata.ports import RegistryTx


@dataclass(frozen=True, slots=True)
class LineageLinks:
    """What a new version's lineage resolved to: ids to store, and the parent."""

    parent_id: int | None
    original_id: int | None
    parent: Version | None


def _lineage_id(core: RegistryCore, tx: RegistryTx, ref: Reference, field: str) -> int:
    try:
        return core.version_id(tx, ref)
    except NotFound as exc:
        # The same 404 code as any missing version, naming the body field.
        exc.details = {**exc.details, "field": field, "reference": str(ref)}
        raise


def resolve_lineage(
    core: RegistryCore,
    tx: RegistryTx,
    parent_ref: Reference | None,
    original_ref: Reference | None,
) -> LineageLinks:
    """Resolve a new version's ``parent`` and ``original`` inside ``tx``.

    The stored original is always the family's root: the parent's original
    (or the parent itself when it is a root), and an original named
    explicitly resolves to its own root the same way. Parent and original
    must then agree (``LINEAGE_MISMATCH``). Both must exist
    (``VERSION_NOT_FOUND``/``MODEL_NOT_FOUND`` with ``details.field``); the
    caller checked read permission on their namespaces. No cycle can form:
    lineage is fixed at creation and names versions that exist already.
    """
    parent_id = root_id = None
    parent: Version | None = None
    if parent_ref is not None:
        parent_id = _lineage_id(core, tx, parent_ref, "parent")
        parent = tx.load_versions([parent_id])[0]
        root_id = tx.version_keys(parent_id).original_id or parent_id
    if original_ref is not None:
        named = _lineage_id(core, tx, original_ref, "original")
        named_root = tx.version_keys(named).original_id or named
        if root_id is not None and named_root != root_id:
            root = tx.load_versions([root_id])[0]
            raise InvalidInput(
                f"parent {parent_ref} belongs to the family of {root.ref}, "
                f"not to that of {original_ref}",
                code="LINEAGE_MISMATCH",
                details={
                    "parent": str(parent_ref),
                    "original": str(original_ref),
                    "parent_original": root.ref,
                },
            )
        root_id = named_root
    return LineageLinks(parent_id, root_id, parent)


@dataclass(slots=True)
class _Scope:
    """One read of a family as a caller sees it."""

    version_id: int
    root_id: int
    parents: dict[int, int | None]
    visible: dict[int, Version]


class FamilyUseCases(RegistryCore):
    """Queries over the variant graph: family tree, variants, ancestry."""

    def _scope(
        self,
        tx: RegistryTx,
        ref: str | Reference,
        actor: Principal,
        pick: Callable[[int, int, dict[int, int | None]], list[int]] | None = None,
    ) -> _Scope:
        """The family of ``ref``'s version as ``actor`` sees it; ``pick(version_id,
        root_id, parents)`` chooses which members to load (default: all)."""
        r = self.resolve(ref)
        view = ProductionView(tx)
        if auth.require_readable(actor, r.namespace):
            vid = view.version_id(r, view.rule(r.namespace))
        else:
            vid = self.version_id(tx, r)
        root_id = tx.version_keys(vid).original_id or vid
        parents = tx.family_links(root_id)
        chosen = sorted(parents) if pick is None else sorted(pick(vid, root_id, parents))
        visible: dict[int, Version] = {}
        for ver in tx.load_versions(chosen):
            perms = actor.permissions_in(ver.namespace)
            if Permission.READ in perms or (
                Permission.CONSUME in perms and tx.version_matches(ver.id, view.rule(ver.namespace))
            ):
                visible[ver.id] = view.version(actor, ver)
        return _Scope(vid, root_id, parents, visible)

    def get_family(self, ref: str | Reference, *, actor: Principal) -> Family:
        """The whole family of the version ``ref`` names, as a tree from its root.

        Requires: read (or consume: the production view) on the version's
        namespace; members elsewhere appear as far as the caller may see them.
        """
        with self.db.read() as tx:
            scope = self._scope(tx, ref, actor)
        root = scope.visible.get(scope.root_id)
        return Family(
            of=scope.visible[scope.version_id].ref,
            root=None if root is None else root.ref,
            trees=build_trees(scope.visible, scope.parents, scope.root_id),
        )

    def family_excerpt(
        self, ref: str | Reference, *, max_members: int = 30, actor: Principal
    ) -> tuple[Family, int]:
        """At most ``max_members`` of the family of ``ref``'s version, for a
        page that draws it: the root, the version, its nearest ancestors (up
        to half the budget), its children, then the newest other members.
        Also how many members were left out (0 for a caller without read on
        the version's namespace, who is not told about versions outside the
        production view). Only the chosen members are loaded, so a family of
        thousands costs the page what a small one does. Requires: as
        :meth:`get_family`.
        """
        if isinstance(max_members, bool) or not isinstance(max_members, int) or max_members < 2:
            raise InvalidInput("max_members must be at least 2", code="INVALID_PAGE_SIZE")

        def pick(vid: int, root_id: int, parents: dict[int, int | None]) -> list[int]:
            chosen = dict.fromkeys([root_id, vid])
            for a in ancestors(vid, parents)[: max_members // 2]:
                chosen[a] = None
            children = sorted(i for i, p in parents.items() if p == vid)
            for i in [*children, *sorted(parents, reverse=True)]:
                if len(chosen) >= max_members:
                    break
                chosen[i] = None
            return list(chosen)

        with self.db.read() as tx:
            scope = self._scope(tx, ref, actor, pick)
        root = scope.visible.get(scope.root_id)
        family = Family(
            of=scope.visible[scope.version_id].ref,
            root=None if root is None else root.ref,
            trees=build_trees(scope.visible, scope.parents, scope.root_id),
        )
        of = scope.visible[scope.version_id]
        reads = Permission.READ in actor.permissions_in(of.namespace)
        left_out = len(scope.parents) - min(len(scope.parents), max_members) if reads else 0
        return family, left_out

    def list_variants(
        self,
        ref: str | Reference,
        *,
        format: str | None = None,
        relation: str | None = None,
        latest: bool = False,
        actor: Principal,
    ) -> list[Version]:
        """The versions made (directly or not) from ``ref``'s version, newest first.

        ``format`` and ``relation`` narrow them; ``latest`` keeps the newest
        one that ``latest`` may name (ready or published), and answers
        ``VARIANT_NOT_FOUND`` when there is none. Requires: as
        :meth:`get_family`.
        """
        fmt = v.check_short(format, "format")
        rel = v.check_relation(relation)
        with self.db.read() as tx:
            scope = self._scope(tx, ref, actor)
        found = [
            scope.visible[i]
            for i in descendants(scope.version_id, scope.parents)
            if i in scope.visible
        ]
        found = [
            x
            for x in found
            if (fmt is None or x.format == fmt) and (rel is None or x.relation == rel)
        ]
        found.sort(key=lambda x: (x.created_at, x.id), reverse=True)
        if not latest:
            return found
        for x in found:
            if counts_as_latest(x.state):
                return [x]
        of = scope.visible[scope.version_id].ref
        wanted = ", ".join(
            f"{k} {val}" for k, val in (("format", fmt), ("relation", rel)) if val is not None
        )
        raise NotFound(
            f"{of} has no ready or published variant" + (f" with {wanted}" if wanted else ""),
            code="VARIANT_NOT_FOUND",
            details={"reference": of, "format": fmt, "relation": rel},
        )

    def get_ancestry(self, ref: str | Reference, *, actor: Principal) -> list[Version]:
        """Where ``ref``'s version comes from: its parent, the parent's parent, ...
        up to the family's original, nearest first (hidden ones left out).

        Requires: as :meth:`get_family`.
        """
        with self.db.read() as tx:
            scope = self._scope(tx, ref, actor)
        return [
            scope.visible[i]
            for i in ancestors(scope.version_id, scope.parents)
            if i in scope.visible
        ]
