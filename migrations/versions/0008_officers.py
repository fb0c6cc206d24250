"""Compliance officers: accounts, recovery codes, console sessions, sign-in
throttles.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 21:45:00
"""

import sqlalchemy as sa
from alembic import op

import dsar.database

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "officers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("email_digest", sa.String(length=64), nullable=False),
        sa.Column("email_ct", sa.LargeBinary(), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("totp_secret_ct", sa.LargeBinary(), nullable=True),
        sa.Column("totp_last_step", sa.Integer(), nullable=True),
        sa.Column("setup_digest", sa.String(length=64), nullable=True),
        sa.Column("setup_expires_at", dsar.database.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", dsar.database.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_officers")),
        sa.UniqueConstraint("email_digest", name=op.f("uq_officers_email_digest")),
        sa.UniqueConstraint("setup_digest", name=op.f("uq_officers_setup_digest")),
    )
    op.create_table(
        "sign_in_throttles",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("blocked_until", dsar.database.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sign_in_throttles")),
    )
    op.create_table(
        "officer_recovery_codes",
        sa.Column("code_digest", sa.String(length=64), nullable=False),
        sa.Column("officer_id", sa.String(length=32), nullable=False),
        sa.Column("used_at", dsar.database.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["officer_id"],
            ["officers.id"],
            name=op.f("fk_officer_recovery_codes_officer_id_officers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("code_digest", name=op.f("pk_officer_recovery_codes")),
    )
    with op.batch_alter_table("officer_recovery_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_officer_recovery_codes_officer_id"), ["officer_id"], unique=False
        )

    op.create_table(
        "officer_sessions",
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("officer_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", dsar.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", dsar.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", dsar.database.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["officer_id"],
            ["officers.id"],
            name=op.f("fk_officer_sessions_officer_id_officers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_digest", name=op.f("pk_officer_sessions")),
    )
    with op.batch_alter_table("officer_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_officer_sessions_officer_id"), ["officer_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("officer_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_officer_sessions_officer_id"))

    op.drop_table("officer_sessions")
    with op.batch_alter_table("officer_recovery_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_officer_recovery_codes_officer_id"))

    op.drop_table("officer_recovery_codes")
    op.drop_table("sign_in_throttles")
    op.drop_table("officers")
