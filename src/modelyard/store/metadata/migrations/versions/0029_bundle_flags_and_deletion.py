"""bundles keep the incompatibilities a flagged alias move recorded (issue 14)

Revision ID: 0029
Revises: 0022
Create Date: 2026-11-30

- ``bundles.incompatible``: JSON list, NULL when none. A model alias move
  that breaks a bundle whose namespace policy says ``bundle_breaks: flag``
  applies and appends what it broke here; pinning the next bundle version
  (which checks that the bundle fits together again) clears it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bundles") as batch_op:
        batch_op.add_column(sa.Column("incompatible", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bundles") as batch_op:
        batch_op.drop_column("incompatible")
