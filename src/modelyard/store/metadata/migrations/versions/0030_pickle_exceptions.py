"""versions carry an admin's audited pickle exception (issue 12)

Revision ID: 0030
Revises: 0031
Create Date: 2026-12-01

- ``versions.pickle_exception``: JSON (``by``, ``at``, ``reason``,
  ``digests``: path -> sha256 of each pickle file when recorded), NULL when
  none. Model servers unpickle a version's pickle files only while it is set
  and its digests are the manifest's; recording and revoking it write
  ``version.pickle_exception_recorded`` / ``_revoked`` events (the audit log).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column needs no table rewrite on either database.
    op.add_column("versions", sa.Column("pickle_exception", sa.JSON(), nullable=True))


def downgrade() -> None:
    # SQLite drops a plain column in place (a batch copy of ``versions``
    # would trip the foreign keys that point at it).
    op.drop_column("versions", "pickle_exception")
