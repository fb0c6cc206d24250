"""The audit trail page and its checks: indexes for the trail's filters (by
actor, action or request, newest first; by time) and ``audit_checks``, each
verification of the chain, sealed.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 08:00:00
"""

import sqlalchemy as sa
from alembic import op

import dsar.database

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_action"))
        batch_op.drop_index(batch_op.f("ix_audit_events_request_id"))
        batch_op.create_index("ix_audit_events_actor_seq", ["actor", "seq"], unique=False)
        batch_op.create_index("ix_audit_events_action_seq", ["action", "seq"], unique=False)
        batch_op.create_index("ix_audit_events_request_id_seq", ["request_id", "seq"],
                              unique=False)
        batch_op.create_index("ix_audit_events_occurred_at", ["occurred_at"], unique=False)
    op.create_table(
        "audit_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("requested_by", sa.String(length=120), nullable=False),
        sa.Column("requested_at", dsar.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", dsar.database.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", dsar.database.UTCDateTime(timezone=True), nullable=True),
        sa.Column("from_seq", sa.Integer(), nullable=True),
        sa.Column("to_seq", sa.Integer(), nullable=True),
        sa.Column("to_hash", sa.String(length=64), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("bad_seq", sa.Integer(), nullable=True),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.Column("mac", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checks")),
    )
    with op.batch_alter_table("audit_checks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_checks_finished_at"), ["finished_at"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_checks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_checks_finished_at"))
    op.drop_table("audit_checks")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        for name in ("ix_audit_events_occurred_at", "ix_audit_events_request_id_seq",
                     "ix_audit_events_action_seq", "ix_audit_events_actor_seq"):
            batch_op.drop_index(name)
        batch_op.create_index(batch_op.f("ix_audit_events_request_id"), ["request_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_action"), ["action"], unique=False)
