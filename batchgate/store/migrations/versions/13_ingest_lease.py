"""Ingest ownership on batches: how often an ingest was started, and until when its owner holds it.

Revision ID: 13_ingest_lease
Revises: 18_finish_seq
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "13_ingest_lease"
down_revision = "18_finish_seq"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batch") as batch:
        batch.add_column(
            sa.Column("ingest_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("ingest_lease_until", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batch") as batch:
        batch.drop_column("ingest_lease_until")
        batch.drop_column("ingest_attempts")
