"""Issue 16: batches remember `output_expires_after`; file expiry is indexed for the sweep;
OpenAI's Uploads API keeps its uploads and parts; file sizes past 2 GiB fit (BIGINT).

Revision ID: 16_files_uploads
Revises: 0001_baseline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "16_files_uploads"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batch") as batch:
        batch.add_column(sa.Column("output_expires_seconds", sa.Integer(), nullable=True))
    with op.batch_alter_table("file") as file:
        file.create_index("ix_file_expires_at", ["expires_at"])
        file.alter_column("bytes", type_=sa.BigInteger(), existing_nullable=False)
    # Release 0.1.0 stamped `expires_at` on uploads but never deleted anything; the retention
    # sweep now would. Files stored before this upgrade are kept until someone deletes them.
    op.execute("UPDATE file SET expires_at = NULL")
    op.create_table(
        "upload",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("filename", sa.String(), nullable=False),
        sa.Column("purpose", sa.String(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("mime_type", sa.String(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("file_expires_seconds", sa.Integer(), nullable=True),
        sa.Column("file_id", sa.String(), nullable=True),
    )
    op.create_index("ix_upload_tenant", "upload", ["tenant"])
    op.create_table(
        "uploadpart",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("upload_id", sa.String(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
    )
    op.create_index("ix_uploadpart_upload_id", "uploadpart", ["upload_id"])


def downgrade() -> None:
    op.drop_table("uploadpart")
    op.drop_table("upload")
    with op.batch_alter_table("file") as file:
        file.alter_column("bytes", type_=sa.Integer(), existing_nullable=False)
        file.drop_index("ix_file_expires_at")
    with op.batch_alter_table("batch") as batch:
        batch.drop_column("output_expires_seconds")
