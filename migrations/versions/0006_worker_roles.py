"""Roles exactly one worker process plays at a time (housekeeping).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 11:20:00
"""

import sqlalchemy as sa
from alembic import op

import dsar.database

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_roles",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("expires_at", dsar.database.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_worker_roles")),
    )
    op.bulk_insert(sa.table("worker_roles", sa.column("name", sa.String)),
                   [{"name": "housekeeping"}])


def downgrade() -> None:
    op.drop_table("worker_roles")
