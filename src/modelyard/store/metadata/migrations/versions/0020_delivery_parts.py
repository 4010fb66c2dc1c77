"""deliveries: one event may make several deliveries to one webhook (its parts);
versions: an index for a model's newest versions per state; run inputs;
multipart artifact uploads

Revision ID: 0020
Revises: 0018
Create Date: 2026-11-30

MLflow sends one ``model_version_tag.set`` / ``.deleted`` webhook per tag
key, while one modelyard ``version.updated`` event can change several keys.
A delivery is therefore (webhook, event, part): ``part`` numbers the MLflow
events one modelyard event translates to (0 for every other delivery), and
the unique key widens from (webhook, event) to (webhook, event, part).

``datasets``, ``run_dataset_inputs`` and ``run_model_inputs`` hold what
MLflow's ``log_inputs`` records: datasets per (experiment, name, digest) and
the datasets and logged models each run read.

``artifact_uploads`` / ``artifact_upload_parts`` hold MLflow multipart
artifact uploads in progress (the upload, by the hash of its id, and each
part's blob digest).

``ix_versions_model_state_number`` lets MLflow's stage summaries fetch each
model's newest versions in each state with one short index probe apiece.

SQLite cannot drop a table's unique constraint, so there both delivery tables
are rebuilt by hand, in an order that keeps every attempt: Alembic's batch
mode would drop ``deliveries`` while ``delivery_attempts`` still points at
it, and with foreign keys on that drop deletes every attempt (ON DELETE
CASCADE). Built here explicitly, the new tables' DDL is also the same on
every run (batch mode emits constraints in no fixed order).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0018"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_DELIVERY_INDEXES = (
    ("ix_deliveries_status_next_attempt_at", ["status", "next_attempt_at"]),
    ("ix_deliveries_webhook_id_id", ["webhook_id", "id"]),
    ("ix_deliveries_updated_at", ["updated_at"]),
)
_DELIVERY_COLUMNS = (
    "id, webhook_id, event_id, event_type, status, failures, attempt_count, "
    "next_attempt_at, claimed_until, claimed_by, created_at, updated_at"
)
_ATTEMPT_COLUMNS = (
    "id, delivery_id, attempt, at, status, latency_us, response_code, response_body, error"
)


def _deliveries(name: str, *, parts: bool) -> None:
    unique = ["webhook_id", "event_id", "part"] if parts else ["webhook_id", "event_id"]
    extra = [sa.Column("part", sa.Integer(), server_default="0", nullable=False)] if parts else []
    op.create_table(
        name,
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("webhook_id", _ID, nullable=False),
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("attempt_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=True),
        sa.Column("claimed_until", sa.BigInteger(), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        *extra,
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name="fk_deliveries_event_id_events"),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name="fk_deliveries_webhook_id_webhooks",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(*unique, name="uq_deliveries_" + "_".join(unique)),
    )


def _attempts(name: str, deliveries: str) -> None:
    op.create_table(
        name,
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("delivery_id", _ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("latency_us", sa.BigInteger(), nullable=False),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), server_default="", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_attempts"),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            [f"{deliveries}.id"],
            name="fk_delivery_attempts_delivery_id_deliveries",
            ondelete="CASCADE",
        ),
    )


def _rebuild_sqlite(make_deliveries: Callable[[str], None]) -> None:
    """Swap in new delivery tables, attempts first out and last in, so no
    cascade ever reaches a row that is kept."""
    make_deliveries("deliveries_new")
    op.execute(
        f"INSERT INTO deliveries_new ({_DELIVERY_COLUMNS}) "
        f"SELECT {_DELIVERY_COLUMNS} FROM deliveries"
    )
    _attempts("delivery_attempts_new", "deliveries_new")
    op.execute(
        f"INSERT INTO delivery_attempts_new ({_ATTEMPT_COLUMNS}) "
        f"SELECT {_ATTEMPT_COLUMNS} FROM delivery_attempts"
    )
    op.drop_table("delivery_attempts")
    op.drop_table("deliveries")
    # Renaming rewrites the attempts' reference to the new name as well.
    op.rename_table("deliveries_new", "deliveries")
    op.rename_table("delivery_attempts_new", "delivery_attempts")
    for index, columns in _DELIVERY_INDEXES:
        op.create_index(index, "deliveries", columns)
    op.create_index(
        "ix_delivery_attempts_delivery_id_id", "delivery_attempts", ["delivery_id", "id"]
    )


def _create_input_tables() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("experiment_id", _ID, nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("digest", sa.String(length=36), nullable=False),
        sa.Column("source_type", sa.String(length=36), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("schema", sa.Text(), nullable=True),
        sa.Column("profile", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.ForeignKeyConstraint(
            ["experiment_id"], ["experiments.id"], name="fk_datasets_experiment_id_experiments"
        ),
        sa.UniqueConstraint(
            "experiment_id", "name", "digest", name="uq_datasets_experiment_id_name_digest"
        ),
    )
    op.create_table(
        "run_dataset_inputs",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("dataset_id", _ID, nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "dataset_id", name="pk_run_dataset_inputs"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_run_dataset_inputs_run_id_runs", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name="fk_run_dataset_inputs_dataset_id_datasets"
        ),
    )
    op.create_index("ix_run_dataset_inputs_dataset_id", "run_dataset_inputs", ["dataset_id"])
    op.create_table(
        "run_model_inputs",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("model_id", sa.String(length=34), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "model_id", name="pk_run_model_inputs"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_run_model_inputs_run_id_runs", ondelete="CASCADE"
        ),
    )


def _create_upload_tables() -> None:
    op.create_table(
        "artifact_uploads",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=34), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("num_parts", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_artifact_uploads"),
    )
    op.create_index("ix_artifact_uploads_expires_at", "artifact_uploads", ["expires_at"])
    op.create_table(
        "artifact_upload_parts",
        sa.Column("upload_id", sa.String(length=64), nullable=False),
        sa.Column("part_number", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("upload_id", "part_number", name="pk_artifact_upload_parts"),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["artifact_uploads.id"],
            name="fk_artifact_upload_parts_upload_id_artifact_uploads",
            ondelete="CASCADE",
        ),
    )


def upgrade() -> None:
    _create_input_tables()
    _create_upload_tables()
    op.create_index("ix_versions_model_state_number", "versions", ["model_id", "state", "number"])
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(lambda name: _deliveries(name, parts=True))
        return
    op.add_column("deliveries", sa.Column("part", sa.Integer(), server_default="0", nullable=False))
    op.drop_constraint("uq_deliveries_webhook_id_event_id", "deliveries", type_="unique")
    op.create_unique_constraint(
        "uq_deliveries_webhook_id_event_id_part", "deliveries", ["webhook_id", "event_id", "part"]
    )


def downgrade() -> None:
    op.drop_table("artifact_upload_parts")
    op.drop_index("ix_artifact_uploads_expires_at", table_name="artifact_uploads")
    op.drop_table("artifact_uploads")
    op.drop_table("run_model_inputs")
    op.drop_index("ix_run_dataset_inputs_dataset_id", table_name="run_dataset_inputs")
    op.drop_table("run_dataset_inputs")
    op.drop_table("datasets")
    op.drop_index("ix_versions_model_state_number", table_name="versions")
    # Parts beyond the first cannot live under the narrower key: they go.
    op.execute(sa.text("DELETE FROM deliveries WHERE part <> 0"))
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(lambda name: _deliveries(name, parts=False))
        return
    op.drop_constraint("uq_deliveries_webhook_id_event_id_part", "deliveries", type_="unique")
    op.create_unique_constraint(
        "uq_deliveries_webhook_id_event_id", "deliveries", ["webhook_id", "event_id"]
    )
    op.drop_column("deliveries", "part")
