"""Model families: the variant graph of versions (issue 14).

A version may name a ``parent`` (the step it was made from) and an
``original`` (the root of its family) with a :class:`~modelyard.domain.
entities.Relation`. The rules kept here, free of I/O:

- the original is always the root: a version's stored original is its
  parent's original, or the parent itself when the parent is a root; an
  original named explicitly resolves to *its* root the same way;
- parent and original must agree (the parent belongs to the original's
  family), so a version has exactly one family;
- the parent graph has no cycles (a version can only point at versions that
  existed before it, and the walks below refuse a cycle all the same);
- a family is the root and every version whose original is that root, drawn
  as a tree by parent.

Files whose path starts with :data:`RESOURCE_PREFIX` are a version's
*resources* (thresholds, label maps): components that may change without the
weights, listed apart from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from modelyard.domain.entities import FileEntry, Version
from modelyard.domain.errors import IntegrityError
from modelyard.domain.lifecycle import counts_as_latest

RESOURCE_PREFIX: Final = "resources/"

# A family deeper than this is a broken store, not a real lineage: walks stop
# and say so instead of looping.
MAX_LINEAGE_DEPTH: Final = 10_000


@dataclass(slots=True)
class FamilyNode:
    """One version of a family tree and the versions made from it."""

    version: Version
    children: list[FamilyNode] = field(default_factory=list)


@dataclass(slots=True)
class Family:
    """The family of a version, as one caller may see it.

    ``root`` is the family's root reference, or None when the caller may not
    see it; ``trees`` are the top-level nodes (the root's tree first). A
    visible version whose parent is hidden hangs under its nearest visible
    ancestor, or becomes a top-level node when it has none.
    """

    of: str
    root: str | None
    trees: list[FamilyNode]

    def versions(self) -> list[Version]:
        """Every version of the family, parents before children."""
        out: list[Version] = []
        stack = list(reversed(self.trees))
        while stack:
            node = stack.pop()
            out.append(node.version)
            stack.extend(reversed(node.children))
        return out


def lineage_cycle(version_id: int) -> IntegrityError:
    """The error for a parent chain that loops (a damaged store)."""
    return IntegrityError(
        f"the lineage of version id {version_id} has a cycle",
        code="LINEAGE_CYCLE",
        details={"version_id": version_id},
    )


def ancestors(version_id: int, parents: Mapping[int, int | None]) -> list[int]:
    """The parent chain of ``version_id``, nearest first, up to the root.

    ``parents`` maps every family member's id to its parent's id. A chain
    that revisits a version raises ``LINEAGE_CYCLE``.
    """
    chain: list[int] = []
    seen = {version_id}
    current = parents.get(version_id)
    while current is not None:
        if current in seen or len(chain) >= MAX_LINEAGE_DEPTH:
            raise lineage_cycle(version_id)
        seen.add(current)
        chain.append(current)
        current = parents.get(current)
    return chain


def descendants(version_id: int, parents: Mapping[int, int | None]) -> list[int]:
    """Ids of the versions made (directly or not) from ``version_id``."""
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        if parent is not None:
            children.setdefault(parent, []).append(child)
    out: list[int] = []
    seen = {version_id}
    stack = list(children.get(version_id, ()))
    while stack:
        vid = stack.pop()
        if vid in seen:
            raise lineage_cycle(vid)
        seen.add(vid)
        out.append(vid)
        stack.extend(children.get(vid, ()))
    return out


def _nearest_drawn(
    version_id: int, parents: Mapping[int, int | None], drawn: Mapping[int, Any]
) -> int | None:
    """The nearest ancestor of ``version_id`` in ``drawn`` (None: none). The
    walk stops there, so drawing an excerpt of a deep chain costs the gaps
    between its members, not each member's whole chain; a cycle still raises
    ``LINEAGE_CYCLE``."""
    seen = {version_id}
    current = parents.get(version_id)
    while current is not None:
        if current in drawn:
            return current
        if current in seen or len(seen) > MAX_LINEAGE_DEPTH:
            raise lineage_cycle(version_id)
        seen.add(current)
        current = parents.get(current)
    return None


def build_trees(
    versions: Mapping[int, Version], parents: Mapping[int, int | None], root_id: int
) -> list[FamilyNode]:
    """Draw the visible ``versions`` as trees by parent.

    ``parents`` covers the whole family, hidden versions included, so a
    visible version can hang under its nearest *visible* ancestor. Children
    are in creation order; the root's tree comes first.
    """
    nodes = {vid: FamilyNode(ver) for vid, ver in versions.items()}
    tops: list[FamilyNode] = []
    for vid in sorted(versions, key=lambda i: (versions[i].created_at, i)):
        holder = _nearest_drawn(vid, parents, nodes)
        if holder is None:
            tops.append(nodes[vid])
        else:
            nodes[holder].children.append(nodes[vid])
    tops.sort(key=lambda n: (n.version.id != root_id, n.version.created_at, n.version.id))
    return tops


def metric_delta(
    metrics: Mapping[str, float], parent_metrics: Mapping[str, float]
) -> dict[str, float]:
    """How each metric both versions report moved against the parent's value."""
    return {k: metrics[k] - parent_metrics[k] for k in sorted(metrics) if k in parent_metrics}


def is_resource(path: str) -> bool:
    """True if the manifest path names a resource rather than the weights."""
    return path.startswith(RESOURCE_PREFIX)


def split_resources(files: Iterable[FileEntry]) -> tuple[list[FileEntry], list[FileEntry]]:
    """A manifest split into (model files, resources)."""
    model: list[FileEntry] = []
    resources: list[FileEntry] = []
    for f in files:
        (resources if is_resource(f.path) else model).append(f)
    return model, resources


def choose_variants(
    candidates: Iterable[Version], formats: Iterable[str]
) -> tuple[dict[str, Version], list[str]]:
    """The variant of each format a family promotion moves along with its original.

    ``candidates`` are the original's descendants the caller may see. The
    choice for a format is its newest descendant (by creation) whose state
    ``latest`` may name (ready or published): the build the family would
    serve as that format today, the same answer as ``variants --latest``.
    Drafts and archived builds are never picked. Answers the choices by
    format, and the formats with no such variant.
    """
    newest: dict[str, Version] = {}
    for ver in candidates:
        fmt = (ver.format or "").lower()
        if not counts_as_latest(ver.state):
            continue
        best = newest.get(fmt)
        if best is None or (ver.created_at, ver.id) > (best.created_at, best.id):
            newest[fmt] = ver
    chosen: dict[str, Version] = {}
    missing: list[str] = []
    for fmt in dict.fromkeys(f.lower() for f in formats):
        if fmt in newest:
            chosen[fmt] = newest[fmt]
        else:
            missing.append(fmt)
    return chosen, missing


@dataclass(frozen=True, slots=True)
class PromotionPart:
    """One version a family promotion touched: its format (None for the
    original), whether the step changed it (publishing a published version
    changes nothing), and where it was before (state, or the alias's version)."""

    version: Version
    format: str | None
    changed: bool
    before: Any


@dataclass(frozen=True, slots=True)
class FamilyPromotion:
    """A family promotion as committed: the original first, then the variants
    in the order their formats were asked for."""

    change_id: str
    action: str
    alias: str | None
    parts: list[PromotionPart]
