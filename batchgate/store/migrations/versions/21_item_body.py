"""An item's response body in its own column (issue 19): output lines splice it in as stored.

Existing rows keep their body inside `result_json` (NULL here); readers fall back to it.

Revision ID: 21_item_body
Revises: 20_response_cache
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "21_item_body"
down_revision = "20_response_cache"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("item") as item:
        item.add_column(sa.Column("response_body", sa.Text(), nullable=True))


def downgrade() -> None:
    # The older code reads the body from `result_json`: put it back there first.
    if op.get_bind().dialect.name == "postgresql":
        merged = "(result_json::jsonb || jsonb_build_object('body', response_body::jsonb))::text"
    else:
        merged = "json_set(result_json, '$.body', json(response_body))"
    op.execute(
        f"UPDATE item SET result_json = {merged} "
        "WHERE response_body IS NOT NULL AND result_json IS NOT NULL"
    )
    with op.batch_alter_table("item") as item:
        item.drop_column("response_body")
