"""Officers' mail subscriptions: the weekly summary (asked for, last queued)
and alerts near due dates (how many days before; ``null``: off) on
``officers``; ``officer_due_alerts``, each due date an officer was alerted
about (once per officer, request and due date).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 09:00:00
"""

import sqlalchemy as sa
from alembic import op

import dsar.database

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("officers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("weekly_summary", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column("weekly_summary_sent_at",
                                      dsar.database.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("due_alert_days", sa.Integer(), nullable=True))
    op.create_table(
        "officer_due_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("officer_id", sa.String(length=32), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("due_at", dsar.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", dsar.database.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["officer_id"],
            ["officers.id"],
            name=op.f("fk_officer_due_alerts_officer_id_officers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["requests.id"],
            name=op.f("fk_officer_due_alerts_request_id_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_officer_due_alerts")),
        sa.UniqueConstraint("officer_id", "request_id", "due_at",
                            name=op.f("uq_officer_due_alerts_officer_id")),
    )
    with op.batch_alter_table("officer_due_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_officer_due_alerts_request_id"), ["request_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("officer_due_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_officer_due_alerts_request_id"))
    op.drop_table("officer_due_alerts")
    with op.batch_alter_table("officers", schema=None) as batch_op:
        for column in ("due_alert_days", "weekly_summary_sent_at", "weekly_summary"):
            batch_op.drop_column(column)
