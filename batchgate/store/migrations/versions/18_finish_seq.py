"""Live results: the finish sequence of items and its per-batch counter (issue 18).

Revision ID: 18_finish_seq
Revises: 14_priority
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "18_finish_seq"
down_revision = "14_priority"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batch") as batch:
        batch.add_column(
            sa.Column("finished_seq", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("item") as item:
        item.add_column(sa.Column("finish_seq", sa.BigInteger(), nullable=True))
        item.create_index("ix_item_batch_finish_seq", ["batch_id", "finish_seq"])


def downgrade() -> None:
    with op.batch_alter_table("item") as item:
        item.drop_index("ix_item_batch_finish_seq")
        item.drop_column("finish_seq")
    with op.batch_alter_table("batch") as batch:
        batch.drop_column("finished_seq")
