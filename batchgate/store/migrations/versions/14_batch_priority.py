"""Batch priority: orders a tenant's batches within its fair share of a vendor.

Revision ID: 14_priority
Revises: 17_validate_output
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "14_priority"
down_revision = "17_validate_output"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batch") as batch_op:
        batch_op.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("batch") as batch_op:
        batch_op.drop_column("priority")
