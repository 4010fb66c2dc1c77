"""A version's lineage as a graph, laid out here and drawn as SVG by the template.

The family (``RegistryService.get_family``: the original and every variant,
as far as the viewer may see them) is drawn as an indented tree, one version
a row, each edge from a parent down to the versions made from it, with the
path from the original to this version emphasised. What the version was made
from outside the registry (source run, datasets, code reference) stands in a
column to the right with an arrow into this version.

No script: the page's SVG is plain markup (links are ``<a>`` elements), and
every label is escaped by the template like all text. A family larger than
:data:`MAX_NODES` is cut (the path to this version always stays) and says
how many versions it leaves out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Literal

from modelyard.domain.entities import Version
from modelyard.domain.families import Family, FamilyNode
from modelyard.web.render import seg

MAX_NODES: Final = 30
MAX_INPUTS: Final = 6
MAX_LABEL: Final = 28
ROW: Final = 44
BOX_H: Final = 30
BOX_W: Final = 210
INDENT: Final = 28
PAD: Final = 8
INPUT_W: Final = 220
GAP: Final = 90

Kind = Literal["self", "path", "member", "run", "dataset", "code"]


@dataclass(frozen=True, slots=True)
class Box:
    """One node: a version of the family, or an input of this version."""

    x: int
    y: int
    w: int
    label: str
    title: str
    kind: Kind
    href: str | None = None
    state: str = ""

    @property
    def h(self) -> int:
        """Height of every box."""
        return BOX_H


@dataclass(frozen=True, slots=True)
class Edge:
    """An SVG path (``d``) between two boxes."""

    d: str
    kind: Literal["tree", "path", "input"]


@dataclass(frozen=True, slots=True)
class Graph:
    """What the template draws."""

    width: int
    height: int
    boxes: list[Box]
    edges: list[Edge]
    left_out: int


def _short(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def _version_href(v: Version) -> str:
    return f"/models/{seg(v.namespace)}/{seg(v.model)}/versions/{v.number}"


def _label(v: Version, this: Version) -> str:
    same = (v.namespace, v.model) == (this.namespace, this.model)
    if same:
        return f"v{v.number}"
    if v.namespace == this.namespace:
        return f"{v.model}/{v.number}"
    return f"{v.namespace}/{v.model}/{v.number}"


def _path_to(trees: list[FamilyNode], target: int) -> list[int]:
    """Version ids from a top node down to ``target`` (empty if not found)."""
    stack: list[tuple[FamilyNode, list[int]]] = [(t, [t.version.id]) for t in reversed(trees)]
    while stack:
        node, path = stack.pop()
        if node.version.id == target:
            return path
        stack.extend((c, [*path, c.version.id]) for c in reversed(node.children))
    return []


def _dataset_label(ds: Any) -> str:
    if isinstance(ds, str):
        return ds
    name = ds.get("name") if isinstance(ds, dict) else None
    if isinstance(name, str):
        version = ds.get("version")
        return name + (f"@{version}" if version not in (None, "") else "")
    return json.dumps(ds, sort_keys=True, default=str)


def _inputs(ver: Version) -> list[tuple[Kind, str]]:
    found: list[tuple[Kind, str]] = []
    if ver.source_run:
        found.append(("run", ver.source_run))
    found.extend(("dataset", _dataset_label(ds)) for ds in ver.datasets or [])
    if ver.code_ref:
        found.append(("code", ver.code_ref))
    return found


def _drawn_trees(family: Family | None, ver: Version) -> list[FamilyNode]:
    """The family's trees, with a version that names the original but no
    parent (made straight from it) drawn under the original."""
    if family is None or not family.trees:
        return [FamilyNode(ver)]
    first, rest = family.trees[0], family.trees[1:]
    if family.root is None or first.version.ref != family.root:
        return family.trees
    under = [
        t for t in rest if t.version.original is not None and str(t.version.original) == family.root
    ]
    moved = {id(t) for t in under}
    if not under:
        return family.trees
    children = sorted([*first.children, *under], key=lambda n: (n.version.created_at, n.version.id))
    root = FamilyNode(first.version, children)
    return [root, *(t for t in rest if id(t) not in moved)]


def lineage_graph(family: Family | None, ver: Version, *, unseen: int = 0) -> Graph:
    """Lay out ``ver``'s family tree and inputs (``family`` None: ``ver`` alone;
    ``unseen``: members the excerpt ``family`` left out, counted as not drawn)."""
    trees = _drawn_trees(family, ver)
    on_path = set(_path_to(trees, ver.id))
    boxes: list[Box] = []
    edges: list[Edge] = []
    shown = 0
    left_out = 0
    self_box: Box | None = None
    # Preorder: a node's ancestors come before it, so keeping the first
    # MAX_NODES (and the path to this version) never keeps an orphan.
    stack: list[tuple[FamilyNode, int, Box | None]] = [(t, 0, None) for t in reversed(trees)]
    while stack:
        node, depth, above = stack.pop()
        v = node.version
        if shown >= MAX_NODES and v.id not in on_path:
            left_out += 1 + sum(1 for _ in _descendants(node))
            continue
        kind: Kind = "self" if v.id == ver.id else ("path" if v.id in on_path else "member")
        role = v.relation or ("original" if above is None else "")
        box = Box(
            x=PAD + depth * INDENT,
            y=PAD + shown * ROW,
            w=BOX_W,
            label=_short(_label(v, ver) + (f" · {role}" if role else "")),
            title=f"{v.ref}: {v.state.value}" + (f", {role}" if role else ""),
            kind=kind,
            href=None if v.id == ver.id else _version_href(v),
            state=v.state.value,
        )
        boxes.append(box)
        if self_box is None and kind == "self":
            self_box = box
        if above is not None:
            x = above.x + INDENT // 2
            d = f"M{x},{above.y + BOX_H} V{box.y + BOX_H // 2} H{box.x}"
            both = kind in ("self", "path") and above.kind in ("self", "path")
            edges.append(Edge(d, "path" if both else "tree"))
        shown += 1
        stack.extend((c, depth + 1, box) for c in reversed(node.children))
    tree_w = max(b.x + b.w for b in boxes) + PAD
    height = PAD + shown * ROW
    inputs = _inputs(ver)
    if inputs and self_box is not None:
        extra = len(inputs) - MAX_INPUTS
        inputs = inputs[:MAX_INPUTS]
        x = tree_w + GAP
        top = max(PAD, self_box.y - (len(inputs) - 1) * ROW // 2)
        for i, (kind_, text) in enumerate(inputs):
            label = {"run": "run ", "dataset": "data ", "code": "code "}[kind_] + text
            if i == len(inputs) - 1 and extra > 0:
                label = f"{label} (+{extra} more)"
            box = Box(x=x, y=top + i * ROW, w=INPUT_W, label=_short(label), title=text, kind=kind_)
            boxes.append(box)
            sx, sy = box.x, box.y + BOX_H // 2
            ex, ey = self_box.x + self_box.w, self_box.y + BOX_H // 2
            mid = (sx + ex) // 2
            edges.append(Edge(f"M{sx},{sy} C{mid},{sy} {mid},{ey} {ex + 6},{ey}", "input"))
        height = max(height, top + len(inputs) * ROW)
        tree_w = x + INPUT_W + PAD
    return Graph(width=tree_w, height=height, boxes=boxes, edges=edges, left_out=left_out + unseen)


def _descendants(node: FamilyNode) -> list[FamilyNode]:
    out: list[FamilyNode] = []
    stack = list(node.children)
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(n.children)
    return out
