"""Entities of the registry as plain, immutable dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class VersionState(StrEnum):
    """Lifecycle of a version: ``draft -> ready -> published -> archived``."""

    DRAFT = "draft"
    READY = "ready"
    PUBLISHED = "published"
    ARCHIVED = "archived"


class Relation(StrEnum):
    """How a version derives from its ``parent`` (and ``original``), issue 14.

    ``converted``: same weights in another format (PyTorch -> ONNX);
    ``quantized``/``pruned``: a smaller build of the parent; ``finetuned``:
    trained further; ``distilled``: a student trained from the parent;
    ``retuned``: the parent's weights with other resources (thresholds,
    label maps), as the resource use case creates it.
    """

    CONVERTED = "converted"
    QUANTIZED = "quantized"
    PRUNED = "pruned"
    FINETUNED = "finetuned"
    DISTILLED = "distilled"
    RETUNED = "retuned"


@dataclass(frozen=True, slots=True)
class Namespace:
    """A team or project: the unit of permissions."""

    id: int
    name: str
    description: str
    created_at: int


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a version: a logical path naming a content-addressed blob."""

    path: str
    digest: str
    size: int
    media_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class VersionLink:
    """A pointer to another version, as stored (id) and shown (reference)."""

    namespace: str
    model: str
    number: int

    def __str__(self) -> str:
        return f"{self.namespace}/{self.model}/{self.number}"


@dataclass(frozen=True, slots=True)
class Model:
    """A named model in a namespace."""

    id: int
    namespace: str
    name: str
    description: str
    tags: dict[str, str]
    metadata: dict[str, Any]
    archived: bool
    latest_version: int
    created_by: str
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class PendingFile:
    """A file of a draft version whose blob a direct upload still has to prove
    (issue 13): ``pending`` while the background verifier has not read it back,
    ``failed`` when the bytes did not hash to the digest (``error``: the
    recorded error's code, message and details). Uploading the right bytes
    for that digest again (and their verification) clears it."""

    path: str
    digest: str
    state: str
    error: dict[str, Any] | None = None


# Not frozen, unlike the other entities: a frozen dataclass sets each of the
# 26 fields through object.__setattr__, 4.8 µs a Version against 1.0 µs, and
# a search page builds up to 1,000 of them. Nothing mutates one; views derive
# narrowed copies with dataclasses.replace.
@dataclass(slots=True)
class Version:
    """One version of a model with its files, schema, metrics and lineage."""

    id: int
    namespace: str
    model: str
    number: int
    state: VersionState
    description: str
    framework: str | None
    format: str | None
    signature: dict[str, Any] | None
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    metadata: dict[str, Any]
    source_run: str | None
    code_ref: str | None
    datasets: list[Any]
    original: VersionLink | None
    parent: VersionLink | None
    relation: str | None
    file_count: int
    total_size: int
    created_by: str
    created_at: int
    updated_at: int
    aliases: list[str] = field(default_factory=list)
    files: list[FileEntry] | None = None
    # How the version was made from its parent (tool, tool_version, options)
    # and how its metrics moved against the parent's (issue 14).
    recipe: dict[str, Any] | None = None
    metric_delta: dict[str, float] | None = None
    # Files still waiting for the verification of their blob (a draft created
    # over direct uploads still being read back); None when not loaded.
    pending: list[PendingFile] | None = None
    # An admin's audited permission to unpickle this version's pickle files
    # (``domain.pickles.PickleException.to_json``), None when there is none.
    pickle_exception: dict[str, Any] | None = None

    @property
    def ref(self) -> str:
        """Canonical reference ``namespace/name/number``."""
        return f"{self.namespace}/{self.model}/{self.number}"


@dataclass(frozen=True, slots=True)
class AliasMove:
    """One entry of an alias's history."""

    model: str
    namespace: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    at: int
