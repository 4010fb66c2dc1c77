"""Bundles (issue 14): a named set of roles (``detector``, ``classifier``,
...) each bound to a version reference, with declared edges (one member's
outputs feed another's inputs, through a field mapping); a bundle version
pins a concrete version per role. Pure rules, no I/O:

- names of roles and fields, and the shape of edges;
- compatibility of an edge against the two members' signatures: every
  mapped output exists on the source, every mapped input on the target, with
  the same dtype and a compatible shape;
- the change rules between two signatures of one role (the previous pinned
  version and the new one): an added *optional* input is fine; a removed
  input, a retyped input, an added required input, a removed output, or an
  output whose dtype or shape changed is breaking.

A signature is ``{"inputs": [...], "outputs": [...]}`` where each list holds
``{"name", "dtype"?, "shape"?, "optional"?}`` (or an object keyed by name
holding the rest). Unknown dtype or shape means "not declared": nothing is
compared for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from modelyard.domain.approvals import ApprovalState, Vote
from modelyard.domain.entities import Version
from modelyard.domain.errors import InvalidInput
from modelyard.domain.names import validate_alias
from modelyard.domain.references import Reference, parse_reference

ROLE_PATTERN: Final = r"^[a-z][a-z0-9_-]{0,63}$"
_ROLE_RE: Final = re.compile(ROLE_PATTERN)
_FIELD_RE: Final = re.compile(r"^[\w.:/-]{1,128}$")
MAX_ROLES: Final = 64
MAX_EDGES: Final = 256
MAX_MAPPING: Final = 256


@dataclass(frozen=True, slots=True)
class Edge:
    """``source``'s outputs feed ``target``'s inputs: ``mapping`` output -> input."""

    source: str
    target: str
    mapping: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """JSON shape (as stored and on the wire)."""
        return {"from": self.source, "to": self.target, "mapping": dict(self.mapping)}


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One reason a bundle does not fit together, spelled out."""

    kind: str  # "edge" or "change"
    role: str
    field: str | None
    problem: str

    def to_dict(self) -> dict[str, Any]:
        """JSON shape (error details)."""
        return {"kind": self.kind, "role": self.role, "field": self.field, "problem": self.problem}


@dataclass(frozen=True, slots=True)
class Bundle:
    """A named set of roles, each bound to a reference, with declared edges."""

    namespace: str
    name: str
    description: str
    roles: dict[str, str]
    edges: list[Edge]
    latest_version: int
    created_by: str
    created_at: int
    updated_at: int
    aliases: dict[str, int] = field(default_factory=dict)
    # What applied alias moves broke since the newest pin (flagged by the
    # namespace's ``bundle_breaks: flag``, or forced by an admin), oldest first.
    incompatible: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BundleVersion:
    """A bundle version: the concrete version each role pinned (with files)."""

    namespace: str
    name: str
    number: int
    members: dict[str, Version]
    created_by: str
    created_at: int
    edges: list[Edge] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """``namespace/name/number``."""
        return f"{self.namespace}/{self.name}/{self.number}"


def validate_role(role: Any) -> str:
    """A role name: lowercase letters, digits, ``_`` and ``-``, starting with a letter."""
    if not isinstance(role, str) or not _ROLE_RE.fullmatch(role):
        raise InvalidInput(
            f"invalid role {str(role)[:80]!r}: lowercase letters, digits, '_' and '-', "
            "starting with a letter, at most 64 characters",
            code="INVALID_BUNDLE",
            details={"role": str(role)[:80]},
        )
    return role


def parse_edges(edges: Any, roles: Mapping[str, Any]) -> list[Edge]:
    """Edges from their JSON form, checked against the role names."""
    if edges is None:
        return []
    if not isinstance(edges, list) or len(edges) > MAX_EDGES:
        raise InvalidInput(f"edges must be a list of at most {MAX_EDGES}", code="INVALID_BUNDLE")
    out: list[Edge] = []
    seen: set[tuple[str, str]] = set()
    for e in edges:
        if not isinstance(e, Mapping):
            raise InvalidInput("each edge is an object", code="INVALID_BUNDLE")
        source, target, mapping = e.get("from"), e.get("to"), e.get("mapping")
        for end in (source, target):
            validate_role(end)
            if end not in roles:
                raise InvalidInput(
                    f"edge names role {end!r}, which the bundle does not have",
                    code="INVALID_BUNDLE",
                    details={"role": end},
                )
        if source == target:
            raise InvalidInput(
                f"edge from {source!r} to itself", code="INVALID_BUNDLE", details={"role": source}
            )
        assert isinstance(source, str) and isinstance(target, str)  # validate_role checked
        if (source, target) in seen:
            raise InvalidInput(
                f"two edges from {source!r} to {target!r}: merge their mappings",
                code="INVALID_BUNDLE",
            )
        seen.add((source, target))
        if not isinstance(mapping, Mapping) or not mapping or len(mapping) > MAX_MAPPING:
            raise InvalidInput(
                f"edge {source} -> {target} needs a mapping of output field to input field",
                code="INVALID_BUNDLE",
            )
        for out_field, in_field in mapping.items():
            for f in (out_field, in_field):
                if not isinstance(f, str) or not _FIELD_RE.fullmatch(f):
                    raise InvalidInput(
                        f"invalid field name {str(f)[:80]!r} in edge {source} -> {target}",
                        code="INVALID_BUNDLE",
                    )
        out.append(Edge(source, target, {str(k): str(v) for k, v in mapping.items()}))
    return out


# Open Inference Protocol datatype names -> the NumPy names, so "FP32" and
# "float32" compare equal (a signature may use either).
_OIP_DTYPES: Final = {
    "bool": "bool",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "fp16": "float16",
    "fp32": "float32",
    "fp64": "float64",
    "bytes": "bytes",
    "bf16": "bfloat16",
    "float": "float32",
    "double": "float64",
}


def canonical_dtype(name: str) -> str:
    """A tensor element type under one spelling: ``FP32``, ``float32`` and
    ``float`` are all ``float32``; unknown names are kept, lowercased."""
    low = name.strip().lower()
    return _OIP_DTYPES.get(low, low)


@dataclass(frozen=True, slots=True)
class _Tensor:
    dtype: str | None
    shape: tuple[int | None, ...] | None
    optional: bool


def _tensors(signature: Mapping[str, Any] | None, part: str) -> dict[str, _Tensor] | None:
    """The inputs or outputs of a signature by name; None if not declared."""
    if not signature or part not in signature:
        return None
    raw = signature[part]
    items: list[tuple[Any, Any]]
    if isinstance(raw, Mapping):
        items = list(raw.items())
    elif isinstance(raw, list):
        items = [(t.get("name"), t) for t in raw if isinstance(t, Mapping)]
    else:
        return None
    out: dict[str, _Tensor] = {}
    for name, spec in items:
        if not isinstance(name, str):
            continue
        spec = spec if isinstance(spec, Mapping) else {}
        # ``datatype`` is the signature contract's key (OIP names, serving/);
        # ``dtype`` and ``type`` are accepted as the serving flavors accept them.
        dtype = spec.get("datatype", spec.get("dtype", spec.get("type")))
        shape = spec.get("shape")
        dims: tuple[int | None, ...] | None = None
        if isinstance(shape, list):
            dims = tuple(
                d if isinstance(d, int) and not isinstance(d, bool) and d >= 0 else None
                for d in shape
            )
        out[name] = _Tensor(
            canonical_dtype(dtype) if isinstance(dtype, str) else None,
            dims,
            bool(spec.get("optional", False)),
        )
    return out


def _shapes_fit(a: tuple[int | None, ...] | None, b: tuple[int | None, ...] | None) -> bool:
    if a is None or b is None:
        return True
    if len(a) != len(b):
        return False
    return all(x is None or y is None or x == y for x, y in zip(a, b, strict=True))


def _shape_text(s: tuple[int | None, ...] | None) -> str:
    return "?" if s is None else "[" + ", ".join("-1" if d is None else str(d) for d in s) + "]"


def check_edge(
    edge: Edge,
    source_signature: Mapping[str, Any] | None,
    target_signature: Mapping[str, Any] | None,
) -> list[Mismatch]:
    """Does ``edge`` hold between these signatures? Every problem, spelled out."""
    problems: list[Mismatch] = []
    outs = _tensors(source_signature, "outputs")
    ins = _tensors(target_signature, "inputs")
    if outs is None:
        problems.append(Mismatch("edge", edge.source, None, f"{edge.source} declares no outputs"))
    if ins is None:
        problems.append(Mismatch("edge", edge.target, None, f"{edge.target} declares no inputs"))
    if outs is None or ins is None:
        return problems
    for out_name, in_name in edge.mapping.items():
        o, i = outs.get(out_name), ins.get(in_name)
        if o is None:
            problems.append(
                Mismatch(
                    "edge",
                    edge.source,
                    out_name,
                    f"{edge.source} has no output {out_name!r} (it has {sorted(outs)})",
                )
            )
        if i is None:
            problems.append(
                Mismatch(
                    "edge",
                    edge.target,
                    in_name,
                    f"{edge.target} has no input {in_name!r} (it has {sorted(ins)})",
                )
            )
        if o is None or i is None:
            continue
        if o.dtype and i.dtype and o.dtype != i.dtype:
            problems.append(
                Mismatch(
                    "edge",
                    edge.target,
                    in_name,
                    f"{edge.source}.{out_name} is {o.dtype} but "
                    f"{edge.target}.{in_name} takes {i.dtype}",
                )
            )
        if not _shapes_fit(o.shape, i.shape):
            problems.append(
                Mismatch(
                    "edge",
                    edge.target,
                    in_name,
                    f"{edge.source}.{out_name} has shape {_shape_text(o.shape)} but "
                    f"{edge.target}.{in_name} takes {_shape_text(i.shape)}",
                )
            )
    return problems


def compare_signatures(
    role: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> list[Mismatch]:
    """The breaking changes from ``old`` to ``new`` of one role's signature."""
    problems: list[Mismatch] = []

    def add(field: str | None, text: str) -> None:
        problems.append(Mismatch("change", role, field, text))

    old_in, new_in = _tensors(old, "inputs"), _tensors(new, "inputs")
    if old_in is not None:
        if new_in is None:
            add(None, f"{role}: the new version declares no inputs")
        else:
            for name, t in old_in.items():
                n = new_in.get(name)
                if n is None:
                    add(name, f"{role}: input {name!r} was removed")
                elif t.dtype and n.dtype and t.dtype != n.dtype:
                    add(name, f"{role}: input {name!r} changed dtype {t.dtype} -> {n.dtype}")
                elif not _shapes_fit(t.shape, n.shape):
                    add(
                        name,
                        f"{role}: input {name!r} changed shape "
                        f"{_shape_text(t.shape)} -> {_shape_text(n.shape)}",
                    )
            for name, n in new_in.items():
                if name not in old_in and not n.optional:
                    add(name, f"{role}: added input {name!r} is required, not optional")
    old_out, new_out = _tensors(old, "outputs"), _tensors(new, "outputs")
    if old_out is not None:
        if new_out is None:
            add(None, f"{role}: the new version declares no outputs")
        else:
            for name, t in old_out.items():
                n = new_out.get(name)
                if n is None:
                    add(name, f"{role}: output {name!r} was removed")
                elif t.dtype and n.dtype and t.dtype != n.dtype:
                    add(name, f"{role}: output {name!r} changed dtype {t.dtype} -> {n.dtype}")
                elif t.shape != n.shape and not (t.shape is None or n.shape is None):
                    add(
                        name,
                        f"{role}: output {name!r} changed shape "
                        f"{_shape_text(t.shape)} -> {_shape_text(n.shape)}",
                    )
    return problems


def parse_bundle_ref(text: str) -> tuple[Reference, int | None]:
    """``NAME``, ``ns/NAME``, ``NAME@latest``, ``NAME@3``, ``NAME/3`` or
    ``NAME@ALIAS``: the bundle (as a reference to its name, with ``alias`` set
    for ``@ALIAS``) and the version number (None: newest, or the alias's)."""
    alias: str | None = None
    if "@" in text:
        head, _, tail = text.partition("@")
        if tail.isascii() and tail.isdigit() and len(tail) < 10:
            text = f"{head}/{tail}"
        else:
            text = head
            if tail != "latest":
                alias = validate_alias(tail)
    r = parse_reference(text)
    return Reference(r.namespace, r.name, alias=alias), r.version


def _diff_part(
    old: dict[str, _Tensor] | None, new: dict[str, _Tensor] | None
) -> dict[str, list[Any]]:
    def text(t: _Tensor) -> dict[str, Any]:
        return {
            "dtype": t.dtype,
            "shape": None if t.shape is None else [-1 if d is None else d for d in t.shape],
            "optional": t.optional,
        }

    old, new = old or {}, new or {}
    changed = [
        {"name": name, "before": text(t), "after": text(new[name])}
        for name, t in old.items()
        if name in new and text(t) != text(new[name])
    ]
    return {
        "added": [{"name": n, **text(t)} for n, t in new.items() if n not in old],
        "removed": [{"name": n, **text(t)} for n, t in old.items() if n not in new],
        "changed": changed,
    }


def signature_diff(
    role: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Every difference from ``old`` to ``new``, breaking or not: inputs and
    outputs ``added``/``removed``/``changed`` (with before and after), and the
    ``breaking`` ones as :func:`compare_signatures` judges them (its rules: an
    added optional input is fine, a removed or retyped input is not, ...)."""
    return {
        "inputs": _diff_part(_tensors(old, "inputs"), _tensors(new, "inputs")),
        "outputs": _diff_part(_tensors(old, "outputs"), _tensors(new, "outputs")),
        "breaking": [m.to_dict() for m in compare_signatures(role, old, new)],
    }


@dataclass(frozen=True, slots=True)
class BundleAliasMove:
    """One entry of a bundle alias's history (``to_version`` None: removed)."""

    namespace: str
    bundle: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    at: int


@dataclass(frozen=True, slots=True)
class BundleApproval:
    """A request to move bundle alias ``alias`` to bundle version ``version``,
    and its reviews (the bundle counterpart of
    :class:`~modelyard.domain.approvals.Approval`)."""

    id: int
    namespace: str
    bundle: str
    version: int
    alias: str
    alias_from: int | None
    state: ApprovalState
    requested_by: str
    comment: str
    created_at: int
    decided_by: str | None
    decided_at: int | None
    votes: list[Vote] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """The bundle version the request is about, ``namespace/bundle/number``."""
        return f"{self.namespace}/{self.bundle}/{self.version}"

    @property
    def approvers(self) -> list[str]:
        """Distinct actors who approved, in order."""
        return [v.actor for v in self.votes if v.decision == "approve"]
