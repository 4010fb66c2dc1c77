"""The schema, as SQLAlchemy Core tables. Alembic migrations create exactly this.

Times are integer microseconds since the Unix epoch (UTC): cheap to compare,
index and page on, identical on SQLite and PostgreSQL.

Filterable things (tags, metrics, params, top-level metadata scalars) live in
narrow key/value tables indexed by ``(key, value, owner)``, so a filter on one
key touches only matching rows (see ARCHITECTURE.md, performance notes).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

namespaces = sa.Table(
    "namespaces",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("namespace_id", BigId, sa.ForeignKey("namespaces.id"), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("meta", sa.JSON, nullable=False),
    sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
    # Last allocated version number: bumped with UPDATE ... RETURNING inside the
    # creating transaction, so numbers are 1..N with no gaps or duplicates.
    sa.Column("last_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_by", sa.String(256), nullable=False, server_default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("namespace_id", "name"),
)
# Keyset sort orders of model searches (see store/metadata/search.py).
sa.Index("ix_models_name_id", models.c.name, models.c.id)
sa.Index("ix_models_created_at_id", models.c.created_at, models.c.id)
sa.Index("ix_models_updated_at_id", models.c.updated_at, models.c.id)

model_tags = sa.Table(
    "model_tags",
    metadata,
    sa.Column("model_id", BigId, sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
sa.Index("ix_model_tags_key_value", model_tags.c.key, model_tags.c.value, model_tags.c.model_id)

model_meta = sa.Table(
    "model_meta",
    metadata,
    sa.Column("model_id", BigId, sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=True),
    sa.Column("num", sa.Float, nullable=True),
)
sa.Index("ix_model_meta_key_value", model_meta.c.key, model_meta.c.value, model_meta.c.model_id)
sa.Index("ix_model_meta_key_num", model_meta.c.key, model_meta.c.num, model_meta.c.model_id)

versions = sa.Table(
    "versions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("model_id", BigId, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("framework", sa.String(64), nullable=True),
    sa.Column("format", sa.String(64), nullable=True),
    sa.Column("signature", sa.JSON, nullable=True),
    sa.Column("meta", sa.JSON, nullable=False),
    sa.Column("source_run", sa.String(256), nullable=True),
    sa.Column("code_ref", sa.String(1024), nullable=True),
    sa.Column("datasets", sa.JSON, nullable=False),
    sa.Column("original_id", BigId, sa.ForeignKey("versions.id"), nullable=True),
    sa.Column("parent_id", BigId, sa.ForeignKey("versions.id"), nullable=True),
    sa.Column("relation", sa.String(32), nullable=True),
    sa.Column("file_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("total_size", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("created_by", sa.String(256), nullable=False, server_default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # How the version was made from its parent and how its metrics moved
    # against the parent's (issue 14; migration 0014).
    sa.Column("recipe", sa.JSON, nullable=True),
    sa.Column("metric_delta", sa.JSON, nullable=True),
    # An admin's audited exception letting model servers unpickle this
    # version's pickle files (by, at, reason, digests); NULL when none
    # (issue 12; migration 0030). Its history is in the events.
    sa.Column("pickle_exception", sa.JSON, nullable=True),
    sa.UniqueConstraint("model_id", "number"),
)
sa.Index("ix_versions_created_at_id", versions.c.created_at, versions.c.id)
sa.Index("ix_versions_updated_at_id", versions.c.updated_at, versions.c.id)
sa.Index("ix_versions_number_id", versions.c.number, versions.c.id)
sa.Index("ix_versions_state_id", versions.c.state, versions.c.id)
sa.Index("ix_versions_framework_id", versions.c.framework, versions.c.id)
# A family (original_id = root) and a version's direct variants (parent_id)
# come out of these in the default search order; relation is a filter term.
sa.Index(
    "ix_versions_original_created", versions.c.original_id, versions.c.created_at, versions.c.id
)
sa.Index("ix_versions_parent_created", versions.c.parent_id, versions.c.created_at, versions.c.id)
sa.Index("ix_versions_relation_id", versions.c.relation, versions.c.id)
# A model's newest versions in one state (MLflow's stages: ``newest_by_state``).
sa.Index("ix_versions_model_state_number", versions.c.model_id, versions.c.state, versions.c.number)


def _kv_table(name: str, value_type: sa.types.TypeEngine[Any], *, nullable: bool) -> sa.Table:
    cols: list[sa.Column[Any]] = [
        sa.Column(
            "version_id", BigId, sa.ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", value_type, nullable=nullable),
        # A copy of versions.created_at (which never changes): with it the
        # (key, value, created_at, version_id) index yields the versions that
        # have one tag/param/metric value already in the default sort order,
        # so a search can walk just those instead of every version.
        sa.Column("created_at", sa.BigInteger, nullable=False),
    ]
    if name == "version_meta":
        cols.append(sa.Column("num", sa.Float, nullable=True))
    table = sa.Table(name, metadata, *cols)
    sa.Index(
        f"ix_{name}_key_value",
        table.c.key,
        table.c.value,
        table.c.created_at,
        table.c.version_id,
    )
    if name == "version_meta":
        sa.Index(f"ix_{name}_key_num", table.c.key, table.c.num, table.c.version_id)
    return table


version_tags = _kv_table("version_tags", sa.Text(), nullable=False)
version_metrics = _kv_table("version_metrics", sa.Float(), nullable=False)
version_params = _kv_table("version_params", sa.Text(), nullable=False)
# Top-level scalars of a version's custom metadata, flattened for filtering:
# ``value`` holds the text form, ``num`` the number for numeric comparisons.
version_meta = _kv_table("version_meta", sa.Text(), nullable=True)

files = sa.Table(
    "files",
    metadata,
    sa.Column(
        "version_id", BigId, sa.ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("path", sa.String(1024), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("media_type", sa.String(255), nullable=False),
)
sa.Index("ix_files_digest", files.c.digest)

# Who uploaded which blob (the blob "mount" rule: a manifest may name a digest
# its caller uploaded, or one a version it can read already lists).
blob_uploads = sa.Table(
    "blob_uploads",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("user_name", sa.String(256), primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# Blobs garbage collection is deleting: a version commit naming one is refused
# (service/gc.py). Rows live from the re-check of references to the delete.
blob_deletions = sa.Table(
    "blob_deletions",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# A backup in progress: garbage collection deletes nothing while an unexpired
# row is here (store/metadata/integrity.py, service/backup.py; migration 0021).
blob_holds = sa.Table(
    "blob_holds",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("holder", sa.String(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)

# Direct uploads waiting for (or done with) the background verifier: the
# server reads each one back once, claimed with a lease so that one replica
# does it and a dead one's claim expires (service/blob_verifier.py; 0028).
blob_verifications = sa.Table(
    "blob_verifications",
    metadata,
    sa.Column("upload_id", sa.String(64), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("uploader", sa.String(256), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("worker", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.BigInteger, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Index("ix_blob_verifications_state_lease", "state", "lease_until"),
)

version_blob_waits = sa.Table(
    "version_blob_waits",
    metadata,
    sa.Column(
        "version_id", BigId, sa.ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("path", sa.String(1024), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    # Whose verified upload of the digest releases the file; NULL: anyone's
    # (the version's creator reads every namespace).
    sa.Column("uploader", sa.String(256), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    # Move the version to ready once nothing is pending (False: it was
    # created as a draft on purpose and stays one).
    sa.Column("promote", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index("ix_version_blob_waits_digest", "digest"),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("model_id", BigId, sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column(
        "version_id", BigId, sa.ForeignKey("versions.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("updated_by", sa.String(256), nullable=False, server_default=""),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)
# Loading a version lists its aliases by version id.
sa.Index("ix_aliases_version_id", aliases.c.version_id)

alias_history = sa.Table(
    "alias_history",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("model_id", BigId, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("from_version", sa.Integer, nullable=True),
    sa.Column("to_version", sa.Integer, nullable=True),
    sa.Column("actor", sa.String(256), nullable=False, server_default=""),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("at", sa.BigInteger, nullable=False),
)
sa.Index(
    "ix_alias_history_model_name_at",
    alias_history.c.model_id,
    alias_history.c.name,
    alias_history.c.at,
)
# A model's moves newest first, in keyset pages (migration 0019).
sa.Index(
    "ix_alias_history_model_at",
    alias_history.c.model_id,
    alias_history.c.at,
    alias_history.c.id,
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("scope", sa.String(64), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("result_id", BigId, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# Transactional outbox: one row per mutation, written in the mutation's
# transaction. Audit log, webhooks and the event stream all read this table.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # Byte order on PostgreSQL too (SQLite compares bytes already): the audit
    # log's action-prefix filter is a range on (type, id) under any locale.
    sa.Column(
        "type",
        sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql"),
        nullable=False,
    ),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(256), nullable=False, server_default=""),
    sa.Column("namespace", sa.String(128), nullable=False),
    sa.Column("subject", sa.String(512), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    # ``ns/name`` of the model the subject is about (model, version, alias,
    # model policy), else NULL: the audit log's model filter walks (model_key, id).
    sa.Column("model_key", sa.String(256), nullable=True),
)
sa.Index("ix_events_model_key_id", events.c.model_key, events.c.id)
sa.Index("ix_events_type_id", events.c.type, events.c.id)
sa.Index("ix_events_subject_id", events.c.subject, events.c.id)

# -- identity and access (issue 3): users, API tokens, role bindings -----------

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("created_by", sa.String(256), nullable=False, server_default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    # A disabled or deleted user's tokens stop working; a deleted user's row
    # stays so that the name is not reused while the history names it.
    sa.Column("disabled_at", sa.BigInteger, nullable=True),
    sa.Column("deleted_at", sa.BigInteger, nullable=True),
)

# A token is ``myd_<public_id>_<secret>``; only SHA-256 of the whole token is
# stored. ``public_id`` (unique index) finds the row, the hash is compared in
# constant time. ``last_used_at`` is written at most once a minute per token.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("public_id", sa.String(32), nullable=False, unique=True),
    sa.Column("user_id", BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False, server_default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
    sa.Column("last_used_at", sa.BigInteger, nullable=True),
)
sa.Index("ix_api_tokens_user_id", api_tokens.c.user_id)

# ``namespace`` is a name, or ``*`` for every namespace (admin on ``*`` is the
# instance admin); a name rather than a foreign key because ``*`` is no row.
role_bindings = sa.Table(
    "role_bindings",
    metadata,
    sa.Column("user_id", BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("namespace", sa.String(128), primary_key=True),
    sa.Column("role", sa.String(16), primary_key=True),
    sa.Column("granted_by", sa.String(256), nullable=False, server_default=""),
    sa.Column("granted_at", sa.BigInteger, nullable=False),
)
sa.Index("ix_role_bindings_namespace", role_bindings.c.namespace)
# -- governance (issue 3): policies, approvals, audit indexes -----------------

# One production policy per namespace (model_key = 0) and per model (model_key =
# the model's id). ``model_key`` exists because a UNIQUE constraint treats NULL
# model ids as distinct, which would allow two namespace policies.
policies = sa.Table(
    "policies",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("namespace_id", BigId, sa.ForeignKey("namespaces.id"), nullable=False),
    sa.Column("model_id", BigId, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=True),
    sa.Column("model_key", BigId, nullable=False),
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("rules", sa.JSON, nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=False, server_default=""),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("namespace_id", "model_key", "purpose"),
)

# A requested transition (publish, move of a protected alias) and its decision.
approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("namespace_id", BigId, sa.ForeignKey("namespaces.id"), nullable=False),
    sa.Column("model_id", BigId, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "version_id", BigId, sa.ForeignKey("versions.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("alias", sa.String(64), nullable=True),
    # Where ``alias`` pointed when the request was made: applying it is a
    # compare-and-set against this (NULL: the alias did not exist).
    sa.Column("alias_from", sa.Integer, nullable=True),
    sa.Column("archive_previous", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("requested_by", sa.String(256), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("decided_by", sa.String(256), nullable=True),
    sa.Column("decided_at", sa.BigInteger, nullable=True),
)
sa.Index(
    "ix_approvals_namespace_id_state_id",
    approvals.c.namespace_id,
    approvals.c.state,
    approvals.c.id,
)
sa.Index("ix_approvals_version_id", approvals.c.version_id)
sa.Index("ix_approvals_model_id", approvals.c.model_id)

# One row per reviewer and request: the primary key makes approvals distinct.
approval_votes = sa.Table(
    "approval_votes",
    metadata,
    sa.Column(
        "approval_id", BigId, sa.ForeignKey("approvals.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("actor", sa.String(256), primary_key=True),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, server_default=""),
    sa.Column("at", sa.BigInteger, nullable=False),
)

# The audit log reads ``events`` newest first by id, filtered by actor or time.
sa.Index("ix_events_actor_id", events.c.actor, events.c.id)
sa.Index("ix_events_namespace_id", events.c.namespace, events.c.id)
sa.Index("ix_events_at_id", events.c.at, events.c.id)


# -- Events and webhooks (issue 4) -------------------------------------------
# Subscriptions, their deliveries (one per event and webhook) and every attempt,
# plus the outbox cursors of the dispatcher. Secrets are stored as given
# ("whsec_..."): the server must sign with them, so they cannot be hashed.
webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("event_types", sa.JSON, nullable=False),
    sa.Column("namespace", sa.String(128), nullable=True),
    sa.Column("model", sa.String(128), nullable=True),
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("previous_secret", sa.String(128), nullable=True),
    sa.Column("previous_secret_expires_at", sa.BigInteger, nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("disabled_reason", sa.String(512), nullable=True),
    # Start of the current run of failed attempts (None after a success).
    sa.Column("failing_since", sa.BigInteger, nullable=True),
    # Newest event id when the subscription was created: older events are not sent.
    sa.Column("since_event_id", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("created_by", sa.String(256), nullable=False, server_default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # Made through the MLflow door: {"name", "events"} (MLflow's name and event
    # names); deliveries then use MLflow's body and headers. NULL: REST v1's.
    sa.Column("mlflow", sa.JSON, nullable=True),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "webhook_id", BigId, sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("event_id", BigId, sa.ForeignKey("events.id"), nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    # Which of the MLflow events one modelyard event makes (MLflow sends one
    # webhook per tag key; one ``version.updated`` can change several): 0 else.
    sa.Column("part", sa.Integer, nullable=False, server_default="0"),
    sa.Column("status", sa.String(16), nullable=False),
    # Consecutive failures since creation or the last manual redelivery (backoff input).
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("attempt_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.BigInteger, nullable=True),
    # Lease of the dispatcher delivering it: expired leases are claimable again,
    # so a process killed mid-delivery does not strand the delivery.
    sa.Column("claimed_until", sa.BigInteger, nullable=True),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("webhook_id", "event_id", "part"),
)
sa.Index("ix_deliveries_status_next_attempt_at", deliveries.c.status, deliveries.c.next_attempt_at)
sa.Index("ix_deliveries_webhook_id_id", deliveries.c.webhook_id, deliveries.c.id)
sa.Index("ix_deliveries_updated_at", deliveries.c.updated_at)

delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id",
        BigId,
        sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("latency_us", sa.BigInteger, nullable=False),
    sa.Column("response_code", sa.Integer, nullable=True),
    sa.Column("response_body", sa.Text, nullable=False, server_default=""),
    sa.Column("error", sa.Text, nullable=True),
)
sa.Index(
    "ix_delivery_attempts_delivery_id_id", delivery_attempts.c.delivery_id, delivery_attempts.c.id
)

# Outbox readers' positions (one row per reader; "webhooks" is the fan-out).
event_cursors = sa.Table(
    "event_cursors",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("last_event_id", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)


# -- Experiment tracking (issue 10): experiments, runs, metric history, logged
# models and the artifact index. Run and logged-model ids are text (MLflow's
# 32 hex digits, ``m-`` + 32 hex) because clients name them in URIs. Every
# experiment belongs to one namespace (by name, as role bindings name it).
experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(500), nullable=False, unique=True),
    sa.Column("namespace", sa.String(128), nullable=False),
    sa.Column("artifact_location", sa.String(1024), nullable=False),
    sa.Column("lifecycle_stage", sa.String(16), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False, server_default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)
sa.Index("ix_experiments_lifecycle_stage_id", experiments.c.lifecycle_stage, experiments.c.id)

experiment_tags = sa.Table(
    "experiment_tags",
    metadata,
    sa.Column(
        "experiment_id",
        BigId,
        sa.ForeignKey("experiments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("experiment_id", BigId, sa.ForeignKey("experiments.id"), nullable=False),
    sa.Column("name", sa.String(500), nullable=False, server_default=""),
    sa.Column("user_name", sa.String(256), nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("start_time", sa.BigInteger, nullable=True),
    sa.Column("end_time", sa.BigInteger, nullable=True),
    sa.Column("lifecycle_stage", sa.String(16), nullable=False),
    sa.Column("artifact_uri", sa.String(1024), nullable=False),
    sa.Column("deleted_at", sa.BigInteger, nullable=True),
)
# Run search: one experiment's runs in the default order (start_time DESC, id),
# and by status within an experiment.
sa.Index("ix_runs_experiment_id_start_time_id", runs.c.experiment_id, runs.c.start_time, runs.c.id)
sa.Index("ix_runs_experiment_id_status", runs.c.experiment_id, runs.c.status)


def _run_kv(name: str, value_type: sa.types.TypeEngine[Any]) -> sa.Table:
    table = sa.Table(
        name,
        metadata,
        sa.Column(
            "run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", value_type, nullable=False),
    )
    # Filters ``params.p = 'a'`` / ``tags.t LIKE ...`` walk (key, value).
    sa.Index(f"ix_{name}_key_value", table.c.key, table.c.value, table.c.run_id)
    return table


run_params = _run_kv("run_params", sa.Text())
run_tags = _run_kv("run_tags", sa.Text())

# Every logged metric value (the history). ``is_nan`` because SQLite stores a
# NaN REAL as NULL; the value column then holds 0. Identical points are kept once.
run_metrics = sa.Table(
    "run_metrics",
    metadata,
    sa.Column(
        "run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("step", sa.BigInteger, primary_key=True),
    sa.Column("timestamp", sa.BigInteger, primary_key=True),
    sa.Column("value", sa.Float, primary_key=True),
    sa.Column("is_nan", sa.Boolean, primary_key=True),
    sa.Column("model_id", sa.String(34), nullable=True),
)

# The latest point of each metric (largest step, then timestamp, then value, as
# MLflow decides): what ``metrics.x > 0.5`` filters and orders on.
run_latest_metrics = sa.Table(
    "run_latest_metrics",
    metadata,
    sa.Column(
        "run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("is_nan", sa.Boolean, nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Column("step", sa.BigInteger, nullable=False),
)
sa.Index(
    "ix_run_latest_metrics_key_value",
    run_latest_metrics.c.key,
    run_latest_metrics.c.value,
    run_latest_metrics.c.run_id,
)

logged_models = sa.Table(
    "logged_models",
    metadata,
    sa.Column("id", sa.String(34), primary_key=True),
    sa.Column("experiment_id", BigId, sa.ForeignKey("experiments.id"), nullable=False),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("source_run_id", sa.String(32), nullable=True),
    sa.Column("model_type", sa.String(500), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_message", sa.Text, nullable=False, server_default=""),
    sa.Column("artifact_location", sa.String(1024), nullable=False),
    sa.Column("lifecycle_stage", sa.String(16), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False, server_default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)
sa.Index(
    "ix_logged_models_experiment_id_created_at",
    logged_models.c.experiment_id,
    logged_models.c.created_at,
)
sa.Index("ix_logged_models_source_run_id", logged_models.c.source_run_id)


def _model_kv(name: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column(
            "model_id",
            sa.String(34),
            sa.ForeignKey("logged_models.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


logged_model_tags = _model_kv("logged_model_tags")
logged_model_params = _model_kv("logged_model_params")

# The logged models a run produced (``log_outputs``), at a step.
run_outputs = sa.Table(
    "run_outputs",
    metadata,
    sa.Column(
        "run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("model_id", sa.String(34), primary_key=True),
    sa.Column("step", sa.BigInteger, nullable=False),
)

# Datasets runs read (``log_inputs``, issue 10; migration 0020): one row per
# (experiment, name, digest) as MLflow keeps them, and each run's inputs.
datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("experiment_id", BigId, sa.ForeignKey("experiments.id"), nullable=False),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("digest", sa.String(36), nullable=False),
    sa.Column("source_type", sa.String(36), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("schema", sa.Text, nullable=True),
    sa.Column("profile", sa.Text, nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("experiment_id", "name", "digest"),
)

run_dataset_inputs = sa.Table(
    "run_dataset_inputs",
    metadata,
    sa.Column(
        "run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("dataset_id", BigId, sa.ForeignKey("datasets.id"), primary_key=True),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)
# Which runs read a dataset (lineage, the other way round).
sa.Index("ix_run_dataset_inputs_dataset_id", run_dataset_inputs.c.dataset_id)

run_model_inputs = sa.Table(
    "run_model_inputs",
    metadata,
    sa.Column(
        "run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("model_id", sa.String(34), primary_key=True),
)

# MLflow's multipart artifact uploads in progress (migration 0020): ``id`` is
# the SHA-256 of the upload id handed to the client (the id is the capability
# its part PUTs carry), each part a blob by digest until ``complete`` joins them.
artifact_uploads = sa.Table(
    "artifact_uploads",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(34), nullable=False),
    sa.Column("path", sa.String(1024), nullable=False),
    sa.Column("num_parts", sa.Integer, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)
sa.Index("ix_artifact_uploads_expires_at", artifact_uploads.c.expires_at)

artifact_upload_parts = sa.Table(
    "artifact_upload_parts",
    metadata,
    sa.Column(
        "upload_id",
        sa.String(64),
        sa.ForeignKey("artifact_uploads.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("part_number", sa.Integer, primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
)

# The artifact index: each file of a run's or logged model's artifact tree by
# digest (the bytes are blobs). ``owner`` is the run id or logged model id,
# ``path`` is relative to its artifact root and checked as every file path is.
artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("owner", sa.String(34), primary_key=True),
    sa.Column("path", sa.String(1024), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False, server_default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)
sa.Index("ix_artifacts_digest", artifacts.c.digest)
# -- bundles (issue 14; migration 0014) ---------------------------------------

bundles = sa.Table(
    "bundles",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("namespace_id", BigId, sa.ForeignKey("namespaces.id"), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    # role -> reference text ("ns/model@alias" or "ns/model/3"), and the
    # declared edges ([{"from", "to", "mapping"}]): read and written whole.
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("edges", sa.JSON, nullable=False),
    sa.Column("last_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_by", sa.String(256), nullable=False, server_default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # What flagged alias moves broke since the newest pin (migration 0029):
    # [{"at", "actor", "alias", "ref", "from_version", "roles"}]; NULL: none.
    sa.Column("incompatible", sa.JSON, nullable=True),
    sa.UniqueConstraint("namespace_id", "name"),
)

bundle_versions = sa.Table(
    "bundle_versions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("bundle_id", BigId, sa.ForeignKey("bundles.id", ondelete="CASCADE"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False, server_default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    # The edges this version was checked against (migration 0016): a bundle's
    # edges may be edited, a version never changes. NULL for older versions.
    sa.Column("edges", sa.JSON, nullable=True),
    sa.UniqueConstraint("bundle_id", "number"),
)

# The concrete version each role of a bundle version pinned. No cascade from
# versions: a pinned version's model cannot be deleted (MODEL_IN_BUNDLE), so
# "what exactly ran" keeps its answer.
bundle_members = sa.Table(
    "bundle_members",
    metadata,
    sa.Column(
        "bundle_version_id",
        BigId,
        sa.ForeignKey("bundle_versions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("role", sa.String(64), primary_key=True),
    sa.Column("version_id", BigId, sa.ForeignKey("versions.id"), nullable=False),
)
sa.Index("ix_bundle_members_version_id", bundle_members.c.version_id)

# -- bundle aliases and followed model aliases (issue 14; migration 0016) -----

bundle_aliases = sa.Table(
    "bundle_aliases",
    metadata,
    sa.Column(
        "bundle_id", BigId, sa.ForeignKey("bundles.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column(
        "bundle_version_id",
        BigId,
        sa.ForeignKey("bundle_versions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("updated_by", sa.String(256), nullable=False, server_default=""),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

bundle_alias_history = sa.Table(
    "bundle_alias_history",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("bundle_id", BigId, sa.ForeignKey("bundles.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("from_version", sa.Integer, nullable=True),
    sa.Column("to_version", sa.Integer, nullable=True),
    sa.Column("actor", sa.String(256), nullable=False, server_default=""),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("at", sa.BigInteger, nullable=False),
)
sa.Index(
    "ix_bundle_alias_history_bundle_name_id",
    bundle_alias_history.c.bundle_id,
    bundle_alias_history.c.name,
    bundle_alias_history.c.id,
)

# Requests to move a bundle alias to a bundle version, and their reviews
# (issue 14; migration 0029): the ``approvals`` of model versions, for bundles.
bundle_approvals = sa.Table(
    "bundle_approvals",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("bundle_id", BigId, sa.ForeignKey("bundles.id", ondelete="CASCADE"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("alias", sa.String(64), nullable=False),
    # Where the alias pointed when the request was made: applying it is a
    # compare-and-set against this (NULL: the alias did not exist).
    sa.Column("alias_from", sa.Integer, nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("requested_by", sa.String(256), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("decided_by", sa.String(256), nullable=True),
    sa.Column("decided_at", sa.BigInteger, nullable=True),
)
sa.Index(
    "ix_bundle_approvals_bundle_id_state_id",
    bundle_approvals.c.bundle_id,
    bundle_approvals.c.state,
    bundle_approvals.c.id,
)

bundle_approval_votes = sa.Table(
    "bundle_approval_votes",
    metadata,
    sa.Column(
        "approval_id",
        BigId,
        sa.ForeignKey("bundle_approvals.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("actor", sa.String(256), primary_key=True),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, server_default=""),
    sa.Column("at", sa.BigInteger, nullable=False),
)

# One row per bundle role bound to a model alias, kept with the bundle's
# roles: moving ``det@production`` finds the bundles following it by index.
bundle_follows = sa.Table(
    "bundle_follows",
    metadata,
    sa.Column(
        "bundle_id", BigId, sa.ForeignKey("bundles.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("role", sa.String(64), primary_key=True),
    sa.Column("namespace", sa.String(128), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("alias", sa.String(64), nullable=False),
)
sa.Index(
    "ix_bundle_follows_target",
    bundle_follows.c.namespace,
    bundle_follows.c.model,
    bundle_follows.c.alias,
)

# -- deployments (issue 12; migration 0012) -----------------------------------
# Namespace and model are kept by name, not by foreign key: a deployment and
# its history say what ran where even after the model is deleted.

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("environment", sa.String(64), nullable=False),
    # The reference followed, in canonical form ("ns/model@alias", "ns/model/3").
    sa.Column("reference", sa.String(400), nullable=False),
    sa.Column("namespace", sa.String(128), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("alias", sa.String(128), nullable=True),
    # The version the replicas last reported loading (None until one did).
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("replicas", sa.Integer, nullable=False, server_default="1"),
    sa.Column("endpoint", sa.String(2048), nullable=True),
    sa.Column("created_by", sa.String(256), nullable=False, server_default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=False, server_default=""),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # Monitoring settings: thresholds and the automatic rollback opt-in
    # (domain/monitoring.py MonitorSettings; None: the defaults). Migration 0018.
    sa.Column("monitoring", sa.JSON, nullable=True),
    # Set when deleted (migration 0022): the row stays for its history; reads
    # skip it, and recording the deployment again clears it.
    sa.Column("deleted_at", sa.BigInteger, nullable=True),
    sa.Column("deleted_by", sa.String(256), nullable=True),
    sa.UniqueConstraint("environment", "reference"),
)
# "Which deployments follow this alias / this model".
sa.Index(
    "ix_deployments_model_alias",
    deployments.c.namespace,
    deployments.c.model,
    deployments.c.alias,
)

deployment_replicas = sa.Table(
    "deployment_replicas",
    metadata,
    sa.Column(
        "deployment_id",
        BigId,
        sa.ForeignKey("deployments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("replica", sa.String(128), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("endpoint", sa.String(2048), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("heartbeat_at", sa.BigInteger, nullable=False),
    # The monitoring window as of the last heartbeat (migration 0026): the
    # latest figures, overwritten by each heartbeat; None if none was sent.
    sa.Column("measures", sa.JSON, nullable=True),
)

# Append-only, one row per change; read per environment, newest first.
deployment_history = sa.Table(
    "deployment_history",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "deployment_id",
        BigId,
        sa.ForeignKey("deployments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("environment", sa.String(64), nullable=False),
    sa.Column("reference", sa.String(400), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("previous_version", sa.Integer, nullable=True),
    sa.Column("replica", sa.String(128), nullable=True),
    sa.Column("actor", sa.String(256), nullable=False, server_default=""),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
)
sa.Index(
    "ix_deployment_history_environment_id",
    deployment_history.c.environment,
    deployment_history.c.id,
)
sa.Index("ix_deployment_history_deployment_id", deployment_history.c.deployment_id)
# One deployment's history (its page, its alerts), newest first: migration 0026.
sa.Index(
    "ix_deployment_history_reference_id",
    deployment_history.c.environment,
    deployment_history.c.reference,
    deployment_history.c.id,
)
