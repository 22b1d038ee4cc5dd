"""The vendor batch lane (issue 15): vendor jobs, the batch's opt-in, the item's job, the lane of
an attempt.

Revision ID: 19_vendor_batch
Revises: 13_ingest_lease
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "19_vendor_batch"
down_revision = "13_ingest_lease"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vendorjob",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("batch_id", sa.String(), nullable=False),
        sa.Column("vendor", sa.String(), nullable=False),
        sa.Column("deployment_id", sa.String(), nullable=False),
        sa.Column("endpoint", sa.String(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("vendor_id", sa.String(), nullable=True),
        sa.Column("vendor_status", sa.String(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("submitted_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("next_poll_at", sa.Float(), nullable=False),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.Column("ingested", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_vendorjob_batch_id", "vendorjob", ["batch_id"])
    op.create_index("ix_vendor_job_status", "vendorjob", ["status"])
    with op.batch_alter_table("batch") as batch:
        batch.add_column(
            sa.Column("vendor_batch", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("item") as item:
        item.add_column(sa.Column("vendor_job_id", sa.String(), nullable=True))
        item.create_index("ix_item_vendor_job_id", ["vendor_job_id"])
    with op.batch_alter_table("attempt") as attempt:
        attempt.add_column(sa.Column("lane", sa.String(), nullable=False, server_default="online"))


def downgrade() -> None:
    with op.batch_alter_table("attempt") as attempt:
        attempt.drop_column("lane")
    with op.batch_alter_table("item") as item:
        item.drop_index("ix_item_vendor_job_id")
        item.drop_column("vendor_job_id")
    with op.batch_alter_table("batch") as batch:
        batch.drop_column("vendor_batch")
    op.drop_index("ix_vendor_job_status", "vendorjob")
    op.drop_index("ix_vendorjob_batch_id", "vendorjob")
    op.drop_table("vendorjob")
