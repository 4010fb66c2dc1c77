"""Request bodies of the native API (pydantic, for validation and OpenAPI).

Values the service checks with its own stable error codes (names, paths,
digests, tag values) are typed loosely here on purpose: the service is the one
place those rules live, and a bad value gets its 400 code from there. Their
rules appear in the OpenAPI document only (``json_schema_extra``, from
``api/openapi.py``), so a client generator knows them and what the app accepts
does not change.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

from modelyard.api.openapi import ALIAS, DIGEST, KEY, NAME, REFERENCE, VERSION, enum_of
from modelyard.domain.approvals import ApprovalAction
from modelyard.domain.bundles import ROLE_PATTERN
from modelyard.domain.entities import Relation
from modelyard.domain.names import MAX_PATH_LENGTH, MAX_TAG_VALUE_LENGTH
from modelyard.domain.pickles import MAX_REASON as MAX_PICKLE_REASON
from modelyard.domain.policies import MAX_APPROVALS, MAX_RULES
from modelyard.service.validation import MAX_DESCRIPTION


def _json_number(value: Any) -> Any:
    """Refuse what pydantic's lax mode would coerce but JSON Schema calls no
    number (``false``, ``"3"``), and keep what it calls one (``3.0`` is an
    integer there): numbers are then the numbers the document states."""
    if isinstance(value, bool | str):
        raise ValueError("expected a number")
    return value


# What the service takes for expected_version (service/registry.py).
MAX_VERSION_NUMBER = 2**31 - 1
JsonInt = Annotated[int, BeforeValidator(_json_number)]
JsonFloat = Annotated[float, BeforeValidator(_json_number)]

# Free text up to a bound, without control characters (Unicode category Cc).
_NO_CONTROL = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
DESCRIPTION: dict[str, Any] = {"maxLength": MAX_DESCRIPTION}
# Reasons and comments: any text but NUL (PostgreSQL refuses it).
COMMENT: dict[str, Any] = {"pattern": "^[^\\u0000]*$"}
TAG_VALUE: dict[str, Any] = {
    "type": "string",
    "maxLength": MAX_TAG_VALUE_LENGTH,
    "pattern": _NO_CONTROL,
}
# No maxProperties: the count limit is an operator setting (max_map_keys);
# over it the service answers 400 TOO_MANY_ITEMS, a documented status.
TAGS: dict[str, Any] = {
    "type": "object",
    "propertyNames": KEY,
    "additionalProperties": TAG_VALUE,
}
METRICS: dict[str, Any] = {
    "type": "object",
    "propertyNames": KEY,
    "additionalProperties": {"type": "number"},
}
PARAMS: dict[str, Any] = {
    "type": "object",
    "propertyNames": KEY,
    "additionalProperties": {"anyOf": [TAG_VALUE, {"type": "number"}, {"type": "boolean"}]},
}
METADATA: dict[str, Any] = {"type": "object", "propertyNames": KEY}
WEBHOOK_URL: dict[str, Any] = {"minLength": 1, "maxLength": 2048}
EVENT_TYPES: dict[str, Any] = {"minItems": 1, "maxItems": 50}
# Framework and format names (service/validation.py check_short).
SHORT_TEXT: dict[str, Any] = {"pattern": "^[\\w.+:/@-]{1,64}$"}
# One logical path: relative, "/"-separated segments, none empty, "." or "..",
# no backslash or control character (the service also refuses what a pattern
# cannot say: non-NFC text, percent-encoded dots, drive letters, ...).
FILE_PATH: dict[str, Any] = {
    "minLength": 1,
    "maxLength": MAX_PATH_LENGTH,
    "pattern": "^(?!/)(?!.*//)(?!(?:.*/)?\\.\\.?(?:/|$))[^\\\\\\u0000-\\u001f\\u007f-\\u009f]+$",
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NamespaceCreate(_Body):
    """Create a namespace."""

    name: str = Field(json_schema_extra=NAME)
    description: str = Field("", json_schema_extra=DESCRIPTION)


class ModelCreate(_Body):
    """Register a model name."""

    name: str = Field(json_schema_extra=NAME)
    namespace: str = Field("default", json_schema_extra=NAME)
    description: str = Field("", json_schema_extra=DESCRIPTION)
    tags: dict[str, Any] = Field(default_factory=dict, json_schema_extra=TAGS)
    metadata: dict[str, Any] = Field(default_factory=dict, json_schema_extra=METADATA)


class TagChanges(_Body):
    """Mutable fields shared by models and versions."""

    description: str | None = Field(None, json_schema_extra=DESCRIPTION)
    tags: dict[str, Any] | None = Field(
        None, description="Tags to set (merged).", json_schema_extra=TAGS
    )
    delete_tags: list[str] = Field(default_factory=list, description="Tag keys to remove.")
    metadata: dict[str, Any] | None = Field(
        None, description="Replaces the custom metadata.", json_schema_extra=METADATA
    )


class FileIn(BaseModel):
    """One manifest entry: a logical path naming an uploaded blob."""

    path: str = Field(json_schema_extra=FILE_PATH)
    digest: str = Field(
        description="sha256, 64 lowercase hex characters (a `sha256:` prefix is accepted)",
        json_schema_extra={"pattern": "^(?:sha256:)?[0-9a-f]{64}$"},
    )
    size: JsonInt = Field(json_schema_extra={"minimum": 0, "maximum": 2**63 - 1})
    media_type: str | None = Field(
        None,
        json_schema_extra={
            "maxLength": 255,
            "pattern": "^[\\w.+-]+/[\\w.+-]+(;[\\w .=+-]*)?$",
        },
    )


class ResourceIn(BaseModel):
    """One resource: a name below ``resources/`` naming an uploaded blob."""

    name: str = Field(
        description="e.g. `thresholds.json`, `labels/en.csv` (stored as `resources/NAME`)",
        json_schema_extra=FILE_PATH,
    )
    digest: str = Field(
        description="sha256, 64 lowercase hex characters (a `sha256:` prefix is accepted)",
        json_schema_extra={"pattern": "^(?:sha256:)?[0-9a-f]{64}$"},
    )
    size: JsonInt = Field(json_schema_extra={"minimum": 0, "maximum": 2**63 - 1})
    media_type: str | None = Field(
        None,
        json_schema_extra={
            "maxLength": 255,
            "pattern": "^[\\w.+-]+/[\\w.+-]+(;[\\w .=+-]*)?$",
        },
    )


class FamilyPromote(_Body):
    """Publish a version or move one of its aliases, together with chosen
    variants, in one transaction (issue 14)."""

    # The alias goes with action alias, and only there: said in the schema
    # too, so a schema-valid body is one the service takes.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {"properties": {"action": {"const": "alias"}}, "required": ["action"]},
            "then": {
                "required": ["alias"],
                "properties": {"alias": {**ALIAS, "not": {"const": "latest"}}},
            },
            "else": {"properties": {"alias": {"type": "null"}}},
        },
    )

    action: Literal["publish", "alias"]
    with_variants: list[Annotated[str, Field(json_schema_extra=SHORT_TEXT)]] = Field(
        description="Formats: for each, the newest ready or published variant of the "
        "version takes the same step.",
        json_schema_extra={"minItems": 1, "maxItems": 20},
    )
    alias: str | None = Field(
        None, description="The alias to move (action alias).", json_schema_extra=ALIAS
    )
    reason: str = Field("", json_schema_extra={**COMMENT, **DESCRIPTION})
    archive_previous: bool = Field(
        False, description="Publish: archive each part's model's other published versions."
    )


class ResourcesAttach(_Body):
    """Attach or replace resources: creates the next version (issue 14)."""

    resources: list[ResourceIn] = Field(json_schema_extra={"minItems": 1, "maxItems": 1000})
    alias: str | None = Field(
        None,
        description="Move this alias to the new version in the same transaction.",
        json_schema_extra=ALIAS,
    )
    reason: str = Field("", json_schema_extra=COMMENT)
    description: str | None = Field(
        None,
        description="The new version's description (default: the source's).",
        json_schema_extra=DESCRIPTION,
    )


class BundleEdge(_Body):
    """``from``'s outputs feed ``to``'s inputs: ``mapping`` output field -> input field."""

    from_: str = Field(alias="from", json_schema_extra={"pattern": ROLE_PATTERN})
    to: str = Field(json_schema_extra={"pattern": ROLE_PATTERN})
    mapping: dict[str, str] = Field(json_schema_extra={"minProperties": 1, "maxProperties": 256})


class BundleCreate(_Body):
    """Create a bundle: roles bound to references, and declared edges."""

    name: str = Field(json_schema_extra=NAME)
    description: str = Field("", json_schema_extra=DESCRIPTION)
    roles: dict[str, str] = Field(
        description="role -> reference (`det@production`, `ns/cls/3`)",
        json_schema_extra={
            "minProperties": 1,
            "maxProperties": 64,
            "propertyNames": {"pattern": ROLE_PATTERN},
            "additionalProperties": REFERENCE,
        },
    )
    edges: list[BundleEdge] = Field(default_factory=list, json_schema_extra={"maxItems": 256})


class BundleUpdate(_Body):
    """Edit a bundle's roles, edges or description: pins its next version."""

    description: str | None = Field(None, json_schema_extra=DESCRIPTION)
    roles: dict[str, str] | None = Field(
        None,
        description="role -> reference; replaces every role (omit: keep them)",
        json_schema_extra={
            "minProperties": 1,
            "maxProperties": 64,
            "propertyNames": {"pattern": ROLE_PATTERN},
            "additionalProperties": REFERENCE,
        },
    )
    edges: list[BundleEdge] | None = Field(
        None,
        description="Replaces every edge (omit: keep them; [] removes them).",
        json_schema_extra={"maxItems": 256},
    )
    accept_breaking: StrictBool = Field(
        False, description="Let a member's breaking signature change through."
    )


class BundleAliasSet(_Body):
    """Point a bundle alias at one of the bundle's versions."""

    version: JsonInt = Field(json_schema_extra={"minimum": 1, "maximum": MAX_VERSION_NUMBER})
    reason: str = Field("", json_schema_extra=COMMENT)
    expected_version: JsonInt | None = Field(
        None,
        json_schema_extra={"minimum": 1, "maximum": MAX_VERSION_NUMBER},
        description="Compare-and-set: move only if the alias names this version now "
        "(else 409 ALIAS_CHANGED).",
    )


class BundleApprovalCreate(_Body):
    """Ask reviewers to move a bundle alias to one of the bundle's versions."""

    version: JsonInt = Field(json_schema_extra={"minimum": 1, "maximum": MAX_VERSION_NUMBER})
    alias: str = Field(json_schema_extra=ALIAS)
    comment: str = Field("", json_schema_extra=COMMENT)


class BundleVersionCreate(_Body):
    """Pin a bundle version (every role's reference resolved now)."""

    accept_breaking: StrictBool = Field(
        False, description="Let a member's breaking signature change through."
    )


class Lineage(_Body):
    """Where a version came from. References are resolved, never dereferenced as URIs."""

    source_run: str | None = None
    code_ref: str | None = None
    datasets: list[Any] = Field(default_factory=list)
    parent: str | None = Field(
        None,
        description="Reference of the version this derives from.",
        json_schema_extra=REFERENCE,
    )
    original: str | None = Field(
        None, description="Reference of the original version.", json_schema_extra=REFERENCE
    )
    relation: str | None = Field(
        None,
        description="How this version derives from its parent.",
        json_schema_extra={"enum": [r.value for r in Relation]},
    )
    recipe: dict[str, Any] | None = Field(
        None,
        description="How it was made from its parent: tool, tool_version, options.",
        json_schema_extra={
            "properties": {
                "tool": SHORT_TEXT,
                "tool_version": SHORT_TEXT,
                "options": {"type": "object"},
            },
            "required": ["tool"],
            "additionalProperties": False,
        },
    )
    metric_delta: dict[str, float] | None = Field(
        None,
        description="Metric changes against the parent (computed from the metrics "
        "both report when omitted).",
    )


class VersionCreate(_Body):
    """Create a version from already-uploaded blobs, in one transaction."""

    files: list[FileIn] = Field(default_factory=list)
    description: str = Field("", json_schema_extra=DESCRIPTION)
    framework: str | None = Field(None, json_schema_extra=SHORT_TEXT)
    format: str | None = Field(None, json_schema_extra=SHORT_TEXT)
    signature: dict[str, Any] | None = Field(
        None,
        json_schema_extra={
            "properties": {
                "inputs": {"type": ["array", "object"]},
                "outputs": {"type": ["array", "object"]},
            }
        },
    )
    metrics: dict[str, Any] = Field(default_factory=dict, json_schema_extra=METRICS)
    params: dict[str, Any] = Field(default_factory=dict, json_schema_extra=PARAMS)
    tags: dict[str, Any] = Field(default_factory=dict, json_schema_extra=TAGS)
    metadata: dict[str, Any] = Field(default_factory=dict, json_schema_extra=METADATA)
    lineage: Lineage = Field(default_factory=Lineage)
    draft: StrictBool = Field(False, description="Create as draft; commit files later.")


class FilesCommit(_Body):
    """The manifest that turns a draft into a ready version."""

    files: list[FileIn]


class Transition(_Body):
    """Options of a lifecycle transition."""

    archive_previous: StrictBool = False


class PickleExceptionSet(_Body):
    """Record an admin's exception letting model servers unpickle a version."""

    reason: str = Field(
        description="Why these pickle files may be unpickled (kept in the audit log).",
        min_length=1,
        max_length=MAX_PICKLE_REASON,
        # Not blank, no NUL (a blank reason is refused as INVALID_REASON).
        json_schema_extra={"pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"},
    )


class AliasSet(_Body):
    """Point an alias at a version."""

    version: str = Field(
        description="Version number, `latest` or an alias of this model.",
        json_schema_extra=VERSION,
    )
    reason: str = Field("", json_schema_extra=COMMENT)
    expected_version: JsonInt | None = Field(
        None,
        json_schema_extra={"minimum": 1, "maximum": MAX_VERSION_NUMBER},
        description="Compare-and-set: move only if the alias points at this version now "
        "(else 409 ALIAS_CHANGED).",
    )
    force: StrictBool = Field(
        False,
        description="Move even if it breaks a bundle following the alias (admin only; "
        "the event records what broke).",
    )


class DigestList(_Body):
    """Digests a client holds."""

    digests: list[str] = Field(json_schema_extra={"items": DIGEST})


class DirectUploadRequest(_Body):
    """A blob the client means to send straight to the store."""

    size: int = Field(ge=0, le=1 << 62)
    digest: str | None = Field(None, json_schema_extra=DIGEST)


class DirectUploadDone(_Body):
    """What the client sent to the presigned URL, to be verified."""

    digest: str = Field(json_schema_extra=DIGEST)
    size: int | None = Field(None, ge=0, le=1 << 62)


# -- governance (issue 3) -------------------------------------------------------


class PolicyRules(_Body):
    """A production policy; every rule optional (unset = inherited / no requirement).

    Checked by the service (``INVALID_POLICY``), so types are loose here.
    """

    required_tags: dict[str, Any] | list[Any] | None = Field(
        None, description='{"encrypted": "true", "reviewed": null} (null = key present)'
    )
    required_metadata: list[Any] | None = Field(None, description="Metadata keys that must exist.")
    require_signature: StrictBool | None = None
    metric_thresholds: list[Any] | None = Field(
        None, description='["metrics.accuracy >= 0.92"] or {"metric","op","value"} objects'
    )
    allowed_formats: list[Any] | None = None
    required_approvals: JsonInt | None = Field(
        None,
        description="Distinct approvals needed.",
        json_schema_extra={"minimum": 0, "maximum": MAX_APPROVALS},
    )
    protected_aliases: list[Any] | None = Field(
        None,
        description='e.g. ["production"]',
        json_schema_extra={"items": ALIAS, "maxItems": MAX_RULES},
    )
    compatible_signature: StrictBool | None = Field(
        None,
        description="A protected alias moves only to a version whose signature is "
        "compatible with the one it points at now (same inputs and outputs, dtypes, "
        "compatible shapes; an added optional input is fine).",
    )
    allow_custom_code: StrictBool | None = Field(
        None,
        description="Model servers may run a version's own Python code (format `python`); "
        "granted by a namespace policy only, a model policy can withdraw it.",
    )
    bundle_breaks: str | None = Field(
        None,
        description="Namespace policy only: a model alias move that breaks one of the "
        "namespace's bundles is refused (`refuse`, the default) or applied and flagged on "
        "the bundle (`flag`).",
        json_schema_extra={"enum": ["refuse", "flag"]},
    )
    drift_thresholds: dict[str, Any] | None = Field(
        None,
        description='Model servers\' drift thresholds, e.g. {"psi": 0.1, "ks": 0.15} (either '
        "key may be left out); used when a version's statistics file sets none.",
    )


class Rollback(_Body):
    """Move an alias back to its previous target."""

    reason: str = Field("", json_schema_extra=COMMENT)
    expected_version: JsonInt | None = Field(
        None,
        json_schema_extra={"minimum": 1, "maximum": MAX_VERSION_NUMBER},
        description="The version the alias points at now (else 409 ALIAS_CHANGED).",
    )


class ApprovalRequest(_Body):
    """Ask for a gated transition of this version."""

    action: str = Field(
        "publish",
        description="publish, or alias (move a protected alias)",
        json_schema_extra=enum_of(a.value for a in ApprovalAction),
    )
    alias: str | None = Field(
        None, description="Alias to point at the version.", json_schema_extra=ALIAS
    )
    archive_previous: StrictBool = False
    comment: str = Field("", json_schema_extra=COMMENT)


class Review(_Body):
    """A reviewer's comment on approve / reject."""

    comment: str = Field("", json_schema_extra=COMMENT)


class WebhookCreate(_Body):
    """Subscribe a URL to registry events."""

    url: str = Field(
        description="http(s) endpoint; checked against the SSRF rules.",
        json_schema_extra=WEBHOOK_URL,
    )
    event_types: list[str] | None = Field(
        None,
        description="Patterns: '*', 'version.*', 'alias.moved' (default: all).",
        json_schema_extra=EVENT_TYPES,
    )
    namespace: str | None = Field(
        None, description="Only events of this namespace.", json_schema_extra=NAME
    )
    model: str | None = Field(
        None, description="Only events of this model (in namespace).", json_schema_extra=NAME
    )
    description: str = ""
    active: StrictBool = True


class WebhookUpdate(_Body):
    """Change a subscription; send only the fields to change (null clears namespace/model)."""

    url: str | None = Field(None, json_schema_extra=WEBHOOK_URL)
    event_types: list[str] | None = Field(None, json_schema_extra=EVENT_TYPES)
    namespace: str | None = Field(None, json_schema_extra=NAME)
    model: str | None = Field(None, json_schema_extra=NAME)
    description: str | None = None
    active: StrictBool | None = Field(None, description="true re-enables a disabled webhook.")


class SecretRotation(_Body):
    """Options of a secret rotation."""

    overlap_seconds: JsonFloat | None = Field(
        None,
        description="How long the old secret keeps signing too (default from settings).",
        json_schema_extra={"minimum": 0, "maximum": 2_592_000},
    )


# -- deployments (issue 12) ------------------------------------------------------

ENVIRONMENT: dict[str, Any] = {"pattern": "^[A-Za-z][A-Za-z0-9._-]{0,63}$"}
DEPLOYED_REFERENCE: dict[str, Any] = REFERENCE
ENDPOINT: dict[str, Any] = {"maxLength": 2048, "pattern": "^https?://\\S+$"}


_WEEK = 7 * 86_400


class MonitoringSettings(_Body):
    """A deployment's monitoring settings (domain/monitoring.py ``MonitorSettings``)."""

    window_seconds: float | None = Field(None, ge=1, le=_WEEK)
    psi: float | None = Field(None, gt=0, le=1e6)
    ks: float | None = Field(None, gt=0, le=1)
    error_rate: float | None = Field(None, gt=0, le=1)
    latency_p99_ms: float | None = Field(None, gt=0, le=1e9)
    min_requests: JsonInt | None = Field(
        None, json_schema_extra={"minimum": 1, "maximum": 1_000_000}
    )
    rollback: bool | None = Field(None, description="roll the alias back automatically")
    rollback_after_seconds: float | None = Field(None, ge=1, le=_WEEK)


class DeploymentPut(_Body):
    """Record or update a deployment: desired replicas and endpoint (omitted: kept)."""

    environment: str = Field(json_schema_extra=ENVIRONMENT)
    reference: str = Field(
        description="what the deployment follows: `fraud@production`, `ns/fraud/7`",
        json_schema_extra=DEPLOYED_REFERENCE,
    )
    replicas: JsonInt | None = Field(None, json_schema_extra={"minimum": 0, "maximum": 10_000})
    endpoint: str | None = Field(None, json_schema_extra=ENDPOINT)
    monitoring: MonitoringSettings | None = Field(
        None,
        description="monitoring settings, replaced whole (keys left out take their defaults)",
    )


class DeploymentAlert(_Body):
    """A model server's alert: drift or degradation of the version it serves."""

    environment: str = Field(json_schema_extra=ENVIRONMENT)
    reference: str = Field(json_schema_extra=DEPLOYED_REFERENCE)
    replica: str = Field(json_schema_extra={"pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"})
    kind: Literal["drift", "degraded"]
    version: JsonInt = Field(
        description="the version the alert is about (the one this replica serves)",
        json_schema_extra={"minimum": 1, "maximum": MAX_VERSION_NUMBER},
    )
    sustained_seconds: float | None = Field(
        None,
        ge=0,
        le=1e9,
        description="how long the degradation has held (an automatic rollback is due "
        "past the deployment's `monitoring.rollback_after_seconds`)",
    )
    detail: dict[str, Any] = Field(
        default_factory=dict, description="the measures and thresholds (at most 16 KiB)"
    )


class Heartbeat(_Body):
    """A model server's report on the deployment it serves."""

    environment: str = Field(json_schema_extra=ENVIRONMENT)
    reference: str = Field(json_schema_extra=DEPLOYED_REFERENCE)
    replica: str = Field(json_schema_extra={"pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"})
    status: Literal["starting", "ready", "degraded", "failed"]
    version: JsonInt | None = Field(
        None,
        description="the version this replica serves",
        json_schema_extra={"minimum": 1, "maximum": MAX_VERSION_NUMBER},
    )
    endpoint: str | None = Field(None, json_schema_extra=ENDPOINT)
    failed_version: JsonInt | None = Field(
        None,
        description="a version that failed to load (the old one keeps serving)",
        json_schema_extra={"minimum": 1, "maximum": MAX_VERSION_NUMBER},
    )
    error: str | None = Field(None, json_schema_extra=COMMENT)
    measures: dict[str, Any] | None = Field(
        None,
        description="the replica's monitoring window now: requests, error rate, latency "
        "percentiles, per-feature PSI and KS, the thresholds (at most 16 KiB)",
    )
