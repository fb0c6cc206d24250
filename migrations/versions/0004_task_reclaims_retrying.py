"""Tasks count take-overs after a crash apart from retries, and remember since
when they have been waiting for their store.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 11:00:00
"""

import sqlalchemy as sa
from alembic import op

import dsar.database

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reclaims", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("retrying_since", dsar.database.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_tasks_retrying_since", ["retrying_since"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_retrying_since")
        batch_op.drop_column("retrying_since")
        batch_op.drop_column("reclaims")
