"""Issue 16: batches remember `output_expires_after`; file expiry is indexed for the sweep.

Revision ID: 16_output_expiry
Revises: 0001_baseline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "16_output_expiry"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batch") as batch:
        batch.add_column(sa.Column("output_expires_seconds", sa.Integer(), nullable=True))
    with op.batch_alter_table("file") as file:
        file.create_index("ix_file_expires_at", ["expires_at"])


def downgrade() -> None:
    with op.batch_alter_table("file") as file:
        file.drop_index("ix_file_expires_at")
    with op.batch_alter_table("batch") as batch:
        batch.drop_column("output_expires_seconds")
