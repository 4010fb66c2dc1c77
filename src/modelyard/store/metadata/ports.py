"""The metadata store as the service sees it: transactions of domain-level methods.

The service opens a transaction with :meth:`MetadataStore.read`,
:meth:`MetadataStore.write` or :meth:`MetadataStore.transact` and calls the
methods of :class:`RegistryTx` (and of its ``governance``, ``identity`` and
``outbox`` parts). Everything crossing this seam is a domain value: entities,
ids, plain dicts, and filters as ``domain/filters.py`` nodes, never compiled
SQL, a connection, a table or a SQLAlchemy error (the store raises domain
errors: ``AlreadyExists``, ``Conflict``). This module imports no SQLAlchemy;
``repository.py`` and its neighbours implement it for SQLite and PostgreSQL.

::

    MetadataStore            read() / write() / transact(fn) / dispose()
    └── RegistryTx           namespaces, models, versions, aliases, search,
        │                    idempotency keys, events (the outbox's writer)
        ├── .governance      GovernanceQueries: policies, approvals, audit
        ├── .identity        IdentityQueries: users, tokens, role bindings
        ├── .outbox          OutboxQueries: event pages, webhooks, deliveries
        ├── .tracking        TrackingQueries: experiments, runs, metrics,
        │                    logged models, the artifact index
        ├── .bundles         BundleQueries: bundles, versions, members
        └── .deployments     DeploymentQueries: deployments, replicas, history
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from modelyard.domain.approvals import Approval, ApprovalAction, ApprovalState
from modelyard.domain.bundles import BundleApproval
from modelyard.domain.deployments import HistoryEntry
from modelyard.domain.entities import (
    AliasMove,
    FileEntry,
    Model,
    Namespace,
    PendingFile,
    Version,
    VersionState,
)
from modelyard.domain.filters import Node, OrderBy
from modelyard.domain.identity import ApiToken, Role, RoleBinding, User
from modelyard.domain.run_filters import Clause, RunOrder
from modelyard.domain.tracking import (
    ArtifactFile,
    DatasetInput,
    Experiment,
    LoggedModel,
    Metric,
    ModelOutput,
    Run,
)

T = TypeVar("T")


def now_us() -> int:
    """Current time in integer microseconds since the epoch (how rows are stamped)."""
    return time.time_ns() // 1000


# -- values that cross the seam ------------------------------------------------


PENDING = "pending"
VERIFIED = "verified"
FAILED = "failed"
"""States of a direct upload's verification (``blob_verifications``)."""


@dataclass(frozen=True, slots=True)
class VerificationRow:
    """One direct upload's verification by the background verifier."""

    upload_id: str
    digest: str
    size: int
    uploader: str
    state: str
    detail: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class VersionKeys:
    """The ids of a version row that rules need (its model, its lineage)."""

    id: int
    model_id: int
    number: int
    original_id: int | None
    parent_id: int | None


@dataclass(frozen=True, slots=True)
class BundleRow:
    """A bundle as stored: roles (role -> reference text) and edges (JSON)."""

    id: int
    namespace: str
    name: str
    description: str
    roles: dict[str, str]
    edges: list[dict[str, Any]]
    last_version: int
    created_by: str
    created_at: int
    updated_at: int
    # Incompatibilities flagged since the newest pin (0029); empty: none.
    incompatible: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BundleVersionRow:
    """A bundle version as stored: the version id each role pinned."""

    id: int
    number: int
    created_by: str
    created_at: int
    members: dict[str, int]
    # The edges it was checked against; None for versions older than 0016.
    edges: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class FollowedAlias:
    """The model alias a bundle role follows (``namespace/model@alias``)."""

    namespace: str
    model: str
    alias: str


@dataclass(frozen=True, slots=True)
class BundleAliasMoveRow:
    """One entry of a bundle alias's history (``to_version`` None: removed)."""

    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    at: int


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """A policy row: its rules as stored JSON and who changed it last."""

    rules: dict[str, Any]
    updated_by: str
    updated_at: int


@dataclass(frozen=True, slots=True)
class ApprovalRow:
    """An approval with the ids the service needs to apply it."""

    approval: Approval
    namespace_id: int
    model_id: int
    version_id: int


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of the audit log; every one optional, all must hold."""

    actor: str | None = None
    namespace: str | None = None
    namespaces: tuple[str, ...] | None = None  # only these (what the caller may read)
    model: tuple[str, str] | None = None  # (namespace, name)
    action: str | None = None  # exact type, or a prefix ending in "." or "*"
    since: int | None = None  # µs, inclusive
    until: int | None = None  # µs, exclusive
    before_id: int | None = None  # cursor: ids below this


# -- the parts of a transaction ------------------------------------------------


class GovernanceQueries(Protocol):
    """Policies, approvals, alias history by time and the audit log."""

    def get_policy(
        self, namespace_id: int, model_id: int | None, purpose: str
    ) -> StoredPolicy | None: ...

    def policies_of_model(
        self, model_id: int, purpose: str
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]: ...

    def model_policies_of_namespace(
        self, namespace_id: int, purpose: str
    ) -> list[tuple[str, dict[str, Any]]]: ...

    def put_policy(
        self,
        namespace_id: int,
        model_id: int | None,
        purpose: str,
        rules: dict[str, Any],
        actor: str,
    ) -> None: ...

    def delete_policy(self, namespace_id: int, model_id: int | None, purpose: str) -> bool: ...

    def lock_namespace(self, namespace_id: int) -> None: ...

    def insert_approval(
        self,
        *,
        namespace_id: int,
        model_id: int,
        version_id: int,
        action: ApprovalAction,
        alias: str | None,
        alias_from: int | None,
        archive_previous: bool,
        actor: str,
        comment: str,
    ) -> int: ...

    def find_pending(
        self, version_id: int, action: ApprovalAction, alias: str | None
    ) -> int | None: ...

    def load_approvals(
        self, ids: Sequence[int], *, for_update: bool = False
    ) -> list[ApprovalRow]: ...

    def add_vote(self, approval_id: int, actor: str, decision: str, comment: str) -> None: ...

    def set_approval_state(self, approval_id: int, state: ApprovalState, actor: str) -> None: ...

    def list_approval_ids(
        self, namespace_id: int, *, state: str | None, before: int | None, limit: int
    ) -> list[int]: ...

    def alias_move_at(
        self, model_id: int, namespace: str, model: str, alias: str, at: int
    ) -> AliasMove | None: ...

    def last_alias_move(
        self, model_id: int, namespace: str, model: str, alias: str
    ) -> AliasMove | None: ...

    def audit_events(self, q: AuditQuery, limit: int) -> list[dict[str, Any]]: ...


class IdentityQueries(Protocol):
    """Users, API tokens and role bindings."""

    def count_users(self) -> int: ...

    def insert_user(self, name: str, *, actor: str) -> int: ...

    def user_id(self, name: str) -> int | None: ...

    def get_user(self, name: str) -> User | None: ...

    def set_user_state(
        self, user_id: int, *, disabled_at: int | None, deleted_at: int | None = None
    ) -> None: ...

    def revoke_user_tokens(self, user_id: int, at: int) -> list[str]: ...

    def drop_bindings(self, user_id: int) -> None: ...

    def list_users(self) -> list[User]: ...

    def insert_token(
        self,
        *,
        user_id: int,
        public_id: str,
        name: str,
        secret_hash: str,
        actor: str,
        expires_at: int | None,
    ) -> ApiToken: ...

    def get_token(self, public_id: str) -> ApiToken | None: ...

    def list_tokens(self, user: str | None) -> list[ApiToken]: ...

    def revoke_token(self, public_id: str, at: int) -> None: ...

    def token_for_auth(
        self, public_id: str
    ) -> tuple[ApiToken, str, list[tuple[str, str]], bool] | None: ...

    def touch_token(self, public_id: str, at: int, *, not_since: int) -> None: ...

    def grant(self, user_id: int, namespace: str, role: Role, *, actor: str) -> bool: ...

    def revoke(self, user_id: int, namespace: str, role: Role) -> bool: ...

    def list_bindings(
        self, *, user: str | None = None, namespace: str | None = None
    ) -> list[RoleBinding]: ...


class BundleQueries(Protocol):
    """Bundles (issue 14), bound to one transaction."""

    def get(self, namespace: str, name: str) -> BundleRow | None: ...

    def by_ids(self, bundle_ids: Sequence[int]) -> list[BundleRow]: ...

    def in_namespace(self, namespace: str) -> list[BundleRow]: ...

    def insert(self, values: Mapping[str, Any]) -> int: ...

    def update(
        self,
        bundle_id: int,
        *,
        roles: Mapping[str, str],
        edges: Sequence[Mapping[str, Any]],
        description: str,
        at: int,
    ) -> None: ...

    def lock(self, bundle_id: int) -> None: ...

    def set_incompatible(self, bundle_id: int, entries: Sequence[Mapping[str, Any]]) -> None: ...

    def delete(self, bundle_id: int) -> None: ...

    def set_follows(self, bundle_id: int, follows: Mapping[str, FollowedAlias]) -> None: ...

    def following(self, namespace: str, model: str, alias: str) -> dict[int, list[str]]: ...

    def allocate_version(self, bundle_id: int, at: int) -> int: ...

    def insert_version(
        self,
        bundle_id: int,
        number: int,
        members: Mapping[str, int],
        *,
        edges: Sequence[Mapping[str, Any]],
        actor: str,
        at: int,
    ) -> int: ...

    def get_alias(self, bundle_id: int, alias: str) -> int | None: ...

    def aliases(self, bundle_id: int) -> dict[str, int]: ...

    def aliased_members_of_model(
        self, model_id: int
    ) -> list[tuple[str, str, str, int, str, int]]: ...

    def set_alias(
        self,
        bundle_id: int,
        alias: str,
        number: int | None,
        *,
        from_number: int | None,
        actor: str,
        reason: str,
        at: int,
    ) -> None: ...

    def alias_history(self, bundle_id: int, alias: str | None) -> list[BundleAliasMoveRow]: ...

    def version(self, bundle_id: int, number: int | None) -> BundleVersionRow | None: ...

    def pinned_versions(self, version_ids: Sequence[int]) -> list[int]: ...

    def pinning_model(self, model_id: int) -> list[str]: ...

    # -- approval requests for bundle aliases (0029)

    def insert_approval(
        self,
        bundle_id: int,
        number: int,
        alias: str,
        *,
        alias_from: int | None,
        actor: str,
        comment: str,
        at: int,
    ) -> int: ...

    def find_pending_approval(self, bundle_id: int, number: int, alias: str) -> int | None: ...

    def load_approvals(
        self, ids: Sequence[int], *, for_update: bool = False
    ) -> list[tuple[int, BundleApproval]]: ...

    def approval_ids(self, bundle_id: int, *, state: str | None, limit: int) -> list[int]: ...

    def add_approval_vote(
        self, approval_id: int, actor: str, decision: str, comment: str, at: int
    ) -> None: ...

    def set_approval_state(
        self, approval_id: int, state: ApprovalState, actor: str, at: int
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class DeploymentRow:
    """A deployment as stored (its replicas are read separately)."""

    id: int
    environment: str
    reference: str
    namespace: str
    model: str
    alias: str | None
    version: int | None
    replicas: int
    endpoint: str | None
    created_by: str
    created_at: int
    updated_by: str
    updated_at: int
    monitoring: dict[str, Any] | None = None
    deleted_at: int | None = None
    """Set when the deployment was deleted (its row stays for its history)."""


@dataclass(frozen=True, slots=True)
class ReplicaRow:
    """A replica's last heartbeat as stored."""

    deployment_id: int
    replica: str
    status: str
    version: int | None
    endpoint: str | None
    error: str | None
    started_at: int
    heartbeat_at: int
    measures: dict[str, Any] | None = None


class DeploymentQueries(Protocol):
    """Deployments, their replicas and history (issue 12), bound to one transaction."""

    def get(self, environment: str, reference: str) -> DeploymentRow | None: ...

    def find(
        self,
        *,
        environment: str | None = None,
        namespaces: Sequence[str] | None = None,
        model: str | None = None,
        alias: str | None = None,
        version: int | None = None,
        after: tuple[str, str] | None = None,
        limit: int | None = None,
    ) -> list[DeploymentRow]: ...

    def insert(self, values: Mapping[str, Any]) -> DeploymentRow: ...

    def update(self, deployment_id: int, values: Mapping[str, Any]) -> None: ...

    def replicas(self, deployment_ids: Sequence[int]) -> list[ReplicaRow]: ...

    def replica(self, deployment_id: int, replica: str) -> ReplicaRow | None: ...

    def upsert_replica(self, row: ReplicaRow, *, exists: bool) -> None: ...

    def delete_replicas(self, deployment_id: int) -> None: ...

    def add_history(self, deployment_id: int, entry: HistoryEntry) -> int: ...

    def rolled_back_from(self, deployment_id: int, version: int) -> bool: ...

    def history(
        self,
        environment: str,
        *,
        namespaces: Sequence[str] | None = None,
        reference: str | None = None,
        before: int | None = None,
        limit: int = 100,
        kinds: Sequence[str] | None = None,
    ) -> list[HistoryEntry]: ...


class OutboxQueries(Protocol):
    """The outbox's readers: filtered event pages, webhooks, deliveries, attempts,
    cursors. Webhook, delivery and attempt rows are records read by attribute
    (``row.url``, ``row.attempt_count``), as the webhook service maps them."""

    def list_events(
        self,
        *,
        after: int,
        limit: int,
        types: Sequence[str] = (),
        namespace: str | None = None,
        model: str | None = None,
        subject: str | None = None,
        namespaces: Sequence[str] | None = None,
        consumed: Sequence[str] | None = (),
        consumer_types: Sequence[str] = (),
    ) -> list[dict[str, Any]]: ...

    def events_by_id(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]: ...

    def max_event_id(self) -> int: ...

    def lock_cursor(self, name: str) -> int | None: ...

    def set_cursor(self, name: str, value: int, at: int) -> None: ...

    def read_cursor(self, name: str) -> int: ...

    def insert_webhook(self, values: dict[str, Any]) -> int: ...

    def webhook_row(self, webhook_id: int, *, for_update: bool = False) -> Any: ...

    def webhook_rows(self, *, active_only: bool = False) -> list[Any]: ...

    def update_webhook(self, webhook_id: int, values: dict[str, Any]) -> None: ...

    def delete_webhook(self, webhook_id: int) -> None: ...

    def insert_deliveries(self, rows: list[dict[str, Any]]) -> None: ...

    def insert_delivery(self, values: dict[str, Any]) -> int: ...

    def has_due(self, now: int) -> bool: ...

    def claim_due(self, *, now: int, lease_until: int, worker: str, limit: int) -> list[Any]: ...

    def delivery_row(self, delivery_id: int, *, for_update: bool = False) -> Any: ...

    def update_delivery(self, delivery_id: int, values: dict[str, Any]) -> None: ...

    def insert_attempt(self, values: dict[str, Any]) -> None: ...

    def delivery_rows(
        self, webhook_id: int, *, limit: int, before: int | None, status: str | None
    ) -> list[Any]: ...

    def attempt_rows(self, delivery_ids: Sequence[int]) -> dict[int, list[Any]]: ...

    def prune_deliveries(self, *, before: int, limit: int) -> int: ...


class TrackingQueries(Protocol):
    """Experiments, runs (params, metric history, tags, outputs), logged models
    and the artifact index (owner id + relative path -> digest).

    Experiment and run searches take the stages to include and, for runs, the
    parsed clauses of MLflow's run filter (``domain/run_filters.py``); pages
    are offsets into a total order that ends with the id, so they are stable.
    """

    # -- experiments

    def insert_experiment(
        self,
        name: str,
        *,
        namespace: str,
        tags: dict[str, str],
        actor: str,
        experiment_id: int | None = None,
    ) -> int: ...

    def get_experiment(self, experiment_id: int) -> Experiment | None: ...

    def experiment_by_name(self, name: str) -> Experiment | None: ...

    def search_experiment_ids(
        self,
        *,
        stages: Sequence[str],
        clauses: Sequence[Clause],
        order: Sequence[RunOrder],
        limit: int,
        offset: int,
        namespaces: Sequence[str] | None,
    ) -> list[int]: ...

    def load_experiments(self, ids: Sequence[int]) -> list[Experiment]: ...

    def update_experiment(self, experiment_id: int, **values: Any) -> None: ...

    def set_experiment_tags(self, experiment_id: int, tags: dict[str, str]) -> None: ...

    def delete_experiment_tag(self, experiment_id: int, key: str) -> bool: ...

    # -- runs

    def insert_run(self, values: dict[str, Any], tags: dict[str, str]) -> None: ...

    def load_runs(self, ids: Sequence[str]) -> list[Run]: ...

    def update_run(self, run_id: str, **values: Any) -> None: ...

    def delete_experiment_runs(self, experiment_id: int, at: int) -> int: ...

    def restore_experiment_runs(self, experiment_id: int, deleted_at: int) -> int: ...

    def params_of(self, run_id: str, keys: Iterable[str]) -> dict[str, str]: ...

    def insert_params(self, run_id: str, params: dict[str, str]) -> None: ...

    def set_run_tags(self, run_id: str, tags: dict[str, str]) -> None: ...

    def delete_run_tag(self, run_id: str, key: str) -> bool: ...

    def insert_metrics(self, run_id: str, metrics: Sequence[Metric]) -> None: ...

    def metric_history(self, run_id: str, key: str, *, limit: int, offset: int) -> list[Metric]: ...

    def sample_metric_history(
        self, run_id: str, key: str, *, points: int, steps: tuple[int, int] | None
    ) -> list[Metric]: ...

    def add_run_outputs(self, run_id: str, outputs: Sequence[ModelOutput]) -> None: ...

    def insert_artifact_upload(self, values: dict[str, Any]) -> None: ...

    def artifact_upload(self, key: str) -> Any: ...

    def put_upload_part(self, key: str, part_number: int, digest: str, size: int) -> None: ...

    def upload_parts(self, key: str) -> dict[int, tuple[str, int]]: ...

    def delete_artifact_upload(self, key: str) -> None: ...

    def add_run_inputs(
        self,
        run_id: str,
        experiment_id: int,
        datasets: Sequence[DatasetInput],
        model_ids: Sequence[str],
    ) -> None: ...

    def search_run_ids(
        self,
        *,
        experiment_ids: Sequence[int],
        stages: Sequence[str],
        clauses: Sequence[Clause],
        order: Sequence[RunOrder],
        limit: int,
        offset: int,
    ) -> list[str]: ...

    # -- logged models

    def insert_logged_model(
        self, values: dict[str, Any], tags: dict[str, str], params: dict[str, str]
    ) -> None: ...

    def load_logged_models(self, ids: Sequence[str]) -> list[LoggedModel]: ...

    def update_logged_model(self, model_id: str, **values: Any) -> None: ...

    def set_logged_model_tags(self, model_id: str, tags: dict[str, str]) -> None: ...

    def delete_logged_model_tag(self, model_id: str, key: str) -> bool: ...

    def add_logged_model_params(self, model_id: str, params: dict[str, str]) -> None: ...

    def search_logged_model_ids(
        self,
        *,
        experiment_ids: Sequence[int],
        stages: Sequence[str],
        name: str | None,
        source_run_id: str | None,
        limit: int,
        offset: int,
    ) -> list[str]: ...

    # -- artifacts

    def put_artifact(self, owner: str, entry: ArtifactFile, *, actor: str) -> None: ...

    def artifact(self, owner: str, path: str) -> ArtifactFile | None: ...

    def artifacts_under(self, owner: str, prefix: str, *, limit: int) -> list[ArtifactFile]: ...

    def delete_artifacts(self, owner: str, prefix: str) -> int: ...


# -- the transaction -----------------------------------------------------------


class RegistryTx(Protocol):
    """One database transaction, as domain-level operations.

    Filters (``where``, ``node``, ``rule``) are ``domain/filters.py`` nodes;
    the store compiles them with the same compiler its searches use, so a
    point check and a search can never disagree.
    """

    @property
    def governance(self) -> GovernanceQueries: ...

    @property
    def identity(self) -> IdentityQueries: ...

    @property
    def outbox(self) -> OutboxQueries: ...

    @property
    def tracking(self) -> TrackingQueries: ...

    @property
    def bundles(self) -> BundleQueries: ...

    @property
    def deployments(self) -> DeploymentQueries: ...

    # -- namespaces

    def get_namespace(self, name: str) -> Namespace | None: ...

    def list_namespaces(self) -> list[Namespace]: ...

    def insert_namespace(self, name: str, description: str = "") -> Namespace: ...

    # -- models

    def insert_model(
        self,
        namespace_id: int,
        name: str,
        *,
        description: str,
        tags: dict[str, str],
        meta: dict[str, Any],
        actor: str,
    ) -> int: ...

    def find_model_id(
        self, namespace: str, name: str, *, for_update: bool = False
    ) -> int | None: ...

    def load_models(self, ids: Sequence[int]) -> list[Model]: ...

    def update_model(self, model_id: int, **values: Any) -> None: ...

    def replace_model_tags(self, model_id: int, tags: dict[str, str]) -> None: ...

    def replace_model_meta(self, model_id: int, meta: dict[str, Any]) -> None: ...

    def count_versions_in_state(self, model_id: int, state: VersionState) -> int: ...

    def delete_model(self, model_id: int) -> list[str]: ...

    def rename_model(self, model_id: int, new_name: str) -> None: ...

    def model_matches(self, model_id: int, node: Node) -> bool: ...

    # -- versions

    def model_for_write(self, namespace: str, name: str) -> tuple[int, bool] | None: ...

    def allocate_version_number(self, model_id: int) -> int: ...

    def insert_version(self, values: dict[str, Any]) -> int: ...

    def insert_version_items(
        self,
        version_id: int,
        *,
        tags: dict[str, str],
        metrics: dict[str, float],
        params: dict[str, str],
        meta: dict[str, Any],
        files: Sequence[FileEntry],
        created_at: int,
    ) -> None: ...

    def replace_version_tags(
        self, version_id: int, tags: dict[str, str], *, created_at: int
    ) -> None: ...

    def replace_version_meta(
        self, version_id: int, meta: dict[str, Any], *, created_at: int
    ) -> None: ...

    def insert_files(self, version_id: int, entries: Sequence[FileEntry]) -> None: ...

    def update_version(self, version_id: int, **values: Any) -> None: ...

    def find_version_id(
        self, namespace: str, name: str, *, number: int | None = None, alias: str | None = None
    ) -> int | None: ...

    def get_version_by_ref(
        self,
        namespace: str,
        name: str,
        *,
        number: int | None = None,
        alias: str | None = None,
        with_files: bool = False,
    ) -> Version | None: ...

    def get_version_by_id(self, version_id: int, *, with_files: bool = False) -> Version: ...

    def load_versions(self, ids: Sequence[int], *, with_files: bool = False) -> list[Version]: ...

    def version_keys(self, version_id: int) -> VersionKeys: ...

    def family_links(self, root_id: int) -> dict[int, int | None]:
        """Every member of the family rooted at ``root_id`` (the root and each
        version whose original it is), mapped to its parent's id."""
        ...

    def list_version_ids(
        self,
        model_id: int,
        *,
        limit: int,
        before: int | None,
        states: Iterable[str] | None,
        where: Node | None = None,
    ) -> list[int]: ...

    def version_matches(self, version_id: int, node: Node) -> bool: ...

    def versions_matching(self, version_ids: Sequence[int], node: Node) -> set[int]: ...

    def file_of(self, version_id: int, path: str) -> FileEntry | None: ...

    def digest_visible(self, digest: str, node: Node | None) -> bool: ...

    def record_blob_upload(self, digest: str, user: str) -> None: ...

    def blobs_uploaded_by(self, user: str, digests: Sequence[str]) -> set[str]: ...

    def lock_blob_collection(self, *, exclusive: bool) -> None: ...

    def referenced_digests(self, digests: Sequence[str]) -> set[str]: ...

    def blobs_being_deleted(self, digests: Sequence[str]) -> set[str]: ...

    def mark_blobs_deleted(self, sizes: dict[str, int]) -> None: ...

    def pending_blob_deletions(self) -> dict[str, int]: ...

    def clear_blob_deletions(self, digests: Sequence[str]) -> None: ...

    def listed_blobs(self) -> dict[str, set[int]]: ...

    def blob_users(self, digests: Sequence[str]) -> dict[str, list[str]]: ...

    def broken_pointers(self) -> list[dict[str, Any]]: ...

    def add_blob_hold(self, holder: str, ttl_s: float) -> int: ...

    def drop_blob_hold(self, hold_id: int) -> None: ...

    def active_blob_holds(self) -> list[tuple[str, int]]: ...

    def add_blob_verification(
        self, upload_id: str, digest: str, size: int, uploader: str
    ) -> None: ...

    def blob_verification(self, upload_id: str) -> VerificationRow | None: ...

    def claim_blob_verifications(
        self, *, lease_s: float, worker: str, limit: int
    ) -> list[VerificationRow]: ...

    def finish_blob_verification(
        self, upload_id: str, *, worker: str, state: str, detail: str | None
    ) -> bool: ...

    def pending_verification_uploads(self) -> list[str]: ...

    def renew_blob_verification(self, upload_id: str, *, worker: str, lease_s: float) -> bool: ...

    def prune_blob_verifications(self, *, older_than_s: float) -> int: ...

    def add_version_waits(
        self,
        version_id: int,
        files: Sequence[tuple[str, str]],
        *,
        uploader: str | None,
        promote: bool,
    ) -> None: ...

    def version_waits(self, version_ids: Sequence[int]) -> dict[int, list[PendingFile]]: ...

    def versions_waiting_on(self, digest: str, uploader: str) -> list[int]: ...

    def release_version_waits(self, version_id: int, digest: str, uploader: str) -> bool: ...

    def count_version_waits(self, version_id: int) -> int: ...

    def fail_version_waits(
        self, digest: str, uploader: str, detail: str
    ) -> list[tuple[int, str]]: ...

    def pending_uploads_of(
        self, digests: Sequence[str], uploader: str | None
    ) -> dict[str, int]: ...

    def verification_states(
        self, digests: Sequence[str], uploader: str | None
    ) -> dict[str, set[str]]: ...

    def waiting_digests(self) -> set[str]: ...

    def delete_version(self, version_id: int, *, actor: str) -> tuple[list[str], list[str]]: ...

    # -- search (keyset pages of ids)

    def search_versions(
        self,
        *,
        node: Node | None,
        order: OrderBy,
        limit: int,
        cursor: str | None,
        namespace: str | None = None,
    ) -> tuple[list[int], str | None]: ...

    def search_models(
        self,
        *,
        node: Node | None,
        order: OrderBy,
        limit: int,
        cursor: str | None,
        namespace: str | None = None,
    ) -> tuple[list[int], str | None]: ...

    # -- aliases

    def get_alias(self, model_id: int, alias: str) -> int | None: ...

    def alias_target(self, model_id: int, alias: str) -> tuple[int, int] | None: ...

    def model_aliases(self, model_id: int) -> list[tuple[str, int, int]]: ...

    def aliases_of_models(self, model_ids: Sequence[int]) -> list[tuple[int, str, int]]: ...

    def newest_by_state(self, model_ids: Sequence[int], per_state: int) -> list[int]: ...

    def set_alias(
        self,
        model_id: int,
        alias: str,
        version_id: int | None,
        *,
        from_number: int | None,
        to_number: int | None,
        actor: str,
        reason: str,
    ) -> None: ...

    def alias_history(
        self, model_id: int, namespace: str, model: str, alias: str | None
    ) -> list[AliasMove]: ...

    def alias_moves_page(
        self,
        model_id: int,
        namespace: str,
        model: str,
        alias: str | None,
        *,
        before: tuple[int, int] | None,
        limit: int,
        newest_first: bool = True,
    ) -> list[tuple[tuple[int, int], AliasMove]]: ...

    # -- idempotency keys

    def get_idempotent(self, scope: str, key: str) -> tuple[str, int] | None: ...

    def put_idempotent(self, scope: str, key: str, request_hash: str, result_id: int) -> None: ...

    # -- events (the outbox's writer)

    def append_event(
        self, type_: str, *, actor: str, namespace: str, subject: str, payload: dict[str, Any]
    ) -> int: ...

    def data_revision(self) -> int | None:
        """The newest event id this read transaction sees (0 if none): every
        write moves it, so equal revisions mean equal data. None in a
        transaction that writes."""
        ...

    def list_events(
        self, *, after: int = 0, limit: int = 100, namespaces: Iterable[str] | None = None
    ) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What a metadata snapshot (``MetadataStore.snapshot``) holds: the kind of
    database it came from (``sqlite`` or ``postgresql``) and its schema revision."""

    kind: str
    revision: str | None


class MetadataStore(Protocol):
    """Opens transactions on the metadata database."""

    def snapshot(self, dest: Path, *, pg_bin: Path | None = None) -> SnapshotInfo:
        """Write a consistent snapshot of the whole database to ``dest``
        without blocking writers (SQLite's online backup, ``pg_dump``; the
        PostgreSQL client programs from ``pg_bin``, else the PATH)."""
        ...

    def read(self) -> AbstractContextManager[RegistryTx]:
        """A read-only transaction (a consistent snapshot)."""
        ...

    def write(self) -> AbstractContextManager[RegistryTx]:
        """A write transaction (serialized on SQLite)."""
        ...

    def transact(
        self,
        fn: Callable[[RegistryTx], T],
        *,
        attempts: int = 8,
        retry_conflicts: bool = False,
    ) -> T:
        """Run ``fn`` in a write transaction and return its result once committed.

        ``fn`` may run more than once (transient lock failures are retried;
        with ``retry_conflicts``, unique-constraint races too). A conflict left
        after the retries is ``Conflict`` ``CONCURRENT_UPDATE``.
        """
        ...

    def dispose(self) -> None:
        """Stop background work and close pooled connections."""
        ...
