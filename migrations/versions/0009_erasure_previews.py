"""Erasure previews stored per request (computed by a worker, read by the
console), and the console queue's indexes: the open requests by due date
(partial), and status, due date, id.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 21:05:00
"""

import sqlalchemy as sa
from alembic import op

import dsar.database

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erasure_previews",
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("requested_at", dsar.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(length=120), nullable=False),
        sa.Column("computed_at", dsar.database.UTCDateTime(timezone=True), nullable=True),
        sa.Column("identifiers", sa.Integer(), nullable=False),
        sa.Column("stores", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["requests.id"],
            name=op.f("fk_erasure_previews_request_id_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_erasure_previews")),
    )
    open_only = sa.text("status NOT IN ('cancelled', 'completed', 'denied', 'expired')")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.create_index("ix_requests_status_due_at", ["status", "due_at", "id"],
                              unique=False)
        batch_op.create_index("ix_requests_open_due_at", ["due_at", "id"], unique=False,
                              postgresql_where=open_only, sqlite_where=open_only)


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index("ix_requests_open_due_at")
        batch_op.drop_index("ix_requests_status_due_at")

    op.drop_table("erasure_previews")
