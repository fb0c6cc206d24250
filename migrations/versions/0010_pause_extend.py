"""Requests: the one Art. 12(3) extension (when, why) and the paused clock
(since when, the state to resume to, what the requester is asked for).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 21:20:00
"""

import sqlalchemy as sa
from alembic import op

import dsar.database

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("extended_at", dsar.database.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column("extension_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("paused_at", dsar.database.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column("paused_from", sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column("paused_for", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        for column in ("paused_for", "paused_from", "paused_at", "extension_reason",
                       "extended_at"):
            batch_op.drop_column(column)
