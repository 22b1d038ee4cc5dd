"""The response cache (issue 15): its table, the batch's opt-in, and each line's cache outcome.

Existing batches do not cache; existing lines were not served from the cache.

Revision ID: 20_response_cache
Revises: 19_vendor_batch
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20_response_cache"
down_revision = "19_vendor_batch"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "response_cache",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("endpoint", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("result_json", sa.Text(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_response_cache_tenant", "response_cache", ["tenant"])
    op.create_index("ix_response_cache_created_at", "response_cache", ["created_at"])
    with op.batch_alter_table("batch") as batch:
        batch.add_column(
            sa.Column("cache", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("item") as item:
        item.add_column(
            sa.Column("cached", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        item.add_column(
            sa.Column("cache_saved_pusd", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("item") as item:
        item.drop_column("cache_saved_pusd")
        item.drop_column("cached")
    with op.batch_alter_table("batch") as batch:
        batch.drop_column("cache")
    op.drop_index("ix_response_cache_created_at", table_name="response_cache")
    op.drop_index("ix_response_cache_tenant", table_name="response_cache")
    op.drop_table("response_cache")
