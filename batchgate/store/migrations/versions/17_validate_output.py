"""Batches say whether answers to JSON lines are validated (issue 17, structured outputs).

Existing batches keep the default, validation on.

Revision ID: 17_validate_output
Revises: 16_files_uploads
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "17_validate_output"
down_revision = "16_files_uploads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batch") as batch:
        batch.add_column(
            sa.Column("validate_output", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("batch") as batch:
        batch.drop_column("validate_output")
