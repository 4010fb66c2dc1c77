"""Request bodies of the native API (pydantic, for validation and OpenAPI).

Values the service checks with its own stable error codes (names, paths,
digests, tag values) are typed loosely here on purpose: the service is the one
place those rules live.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NamespaceCreate(_Body):
    """Create a namespace."""

    name: str
    description: str = ""


class ModelCreate(_Body):
    """Register a model name."""

    name: str
    namespace: str = "default"
    description: str = ""
    tags: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class TagChanges(_Body):
    """Mutable fields shared by models and versions."""

    description: str | None = None
    tags: dict[str, Any] | None = Field(None, description="Tags to set (merged).")
    delete_tags: list[str] = Field(default_factory=list, description="Tag keys to remove.")
    metadata: dict[str, Any] | None = Field(None, description="Replaces the custom metadata.")


class FileIn(BaseModel):
    """One manifest entry: a logical path naming an uploaded blob."""

    path: str
    digest: str = Field(description="sha256, 64 lowercase hex characters")
    size: int
    media_type: str | None = None


class Lineage(_Body):
    """Where a version came from. References are resolved, never dereferenced as URIs."""

    source_run: str | None = None
    code_ref: str | None = None
    datasets: list[Any] = Field(default_factory=list)
    parent: str | None = Field(None, description="Reference of the version this derives from.")
    original: str | None = Field(None, description="Reference of the original version.")
    relation: str | None = Field(None, description="converted, quantized, finetuned, ...")


class VersionCreate(_Body):
    """Create a version from already-uploaded blobs, in one transaction."""

    files: list[FileIn] = Field(default_factory=list)
    description: str = ""
    framework: str | None = None
    format: str | None = None
    signature: dict[str, Any] | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    lineage: Lineage = Field(default_factory=Lineage)
    draft: bool = Field(False, description="Create as draft; commit files later.")


class FilesCommit(_Body):
    """The manifest that turns a draft into a ready version."""

    files: list[FileIn]


class Transition(_Body):
    """Options of a lifecycle transition."""

    archive_previous: bool = False


class AliasSet(_Body):
    """Point an alias at a version."""

    version: str = Field(description="Version number or reference within the model.")
    reason: str = ""
    expected_version: int | None = Field(
        None,
        description="Compare-and-set: move only if the alias points at this version now "
        "(else 409 ALIAS_CHANGED).",
    )


class DigestList(_Body):
    """Digests a client holds."""

    digests: list[str]


# -- governance (issue 3) -------------------------------------------------------


class PolicyRules(_Body):
    """A production policy; every rule optional (unset = inherited / no requirement).

    Checked by the service (``INVALID_POLICY``), so types are loose here.
    """

    required_tags: dict[str, Any] | list[Any] | None = Field(
        None, description='{"encrypted": "true", "reviewed": null} (null = key present)'
    )
    required_metadata: list[Any] | None = Field(None, description="Metadata keys that must exist.")
    require_signature: bool | None = None
    metric_thresholds: list[Any] | None = Field(
        None, description='["metrics.accuracy >= 0.92"] or {"metric","op","value"} objects'
    )
    allowed_formats: list[Any] | None = None
    required_approvals: int | None = Field(None, description="Distinct approvals needed.")
    protected_aliases: list[Any] | None = Field(None, description='e.g. ["production"]')


class Rollback(_Body):
    """Move an alias back to its previous target."""

    reason: str = ""
    expected_version: int | None = Field(
        None, description="The version the alias points at now (else 409 ALIAS_CHANGED)."
    )


class ApprovalRequest(_Body):
    """Ask for a gated transition of this version."""

    action: str = Field("publish", description="publish, or alias (move a protected alias)")
    alias: str | None = Field(None, description="Alias to point at the version.")
    archive_previous: bool = False
    comment: str = ""


class Review(_Body):
    """A reviewer's comment on approve / reject."""

    comment: str = ""


class WebhookCreate(_Body):
    """Subscribe a URL to registry events."""

    url: str = Field(description="http(s) endpoint; checked against the SSRF rules.")
    event_types: list[str] | None = Field(
        None, description="Patterns: '*', 'version.*', 'alias.moved' (default: all)."
    )
    namespace: str | None = Field(None, description="Only events of this namespace.")
    model: str | None = Field(None, description="Only events of this model (in namespace).")
    description: str = ""
    active: bool = True


class WebhookUpdate(_Body):
    """Change a subscription; send only the fields to change (null clears namespace/model)."""

    url: str | None = None
    event_types: list[str] | None = None
    namespace: str | None = None
    model: str | None = None
    description: str | None = None
    active: bool | None = Field(None, description="true re-enables a disabled webhook.")


class SecretRotation(_Body):
    """Options of a secret rotation."""

    overlap_seconds: float | None = Field(
        None, description="How long the old secret keeps signing too (default from settings)."
    )
