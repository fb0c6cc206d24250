"""Status tokens move to ``request_tokens``: a request may have several (each
submission that joined it, each code mail's link, the verifier's, each
notice's), all those issued before verification end at verification, and
each says whom it was given to. ``verifications.mail_attempts`` counts the
wrong codes entered through the code mail's link apart from the others.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 10:40:00
"""

import sqlalchemy as sa
from alembic import op

import dsar.database

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "request_tokens",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=12), nullable=False),
        sa.Column("issued_at", dsar.database.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["requests.id"],
            name=op.f("fk_request_tokens_request_id_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_request_tokens")),
    )
    with op.batch_alter_table("request_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_request_tokens_request_id"), ["request_id"],
                              unique=False)
    # the one token each request had: the verifier's once verified
    op.execute(
        "INSERT INTO request_tokens (digest, request_id, holder, issued_at) "
        "SELECT status_token_digest, id, "
        "CASE WHEN verified_at IS NULL THEN 'submitter' ELSE 'verifier' END, received_at "
        "FROM requests WHERE status_token_digest IS NOT NULL")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_requests_status_token_digest"), type_="unique")
        batch_op.drop_column("status_token_digest")
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mail_attempts", sa.Integer(), nullable=False,
                                      server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.drop_column("mail_attempts")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_token_digest", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_requests_status_token_digest"), ["status_token_digest"]
        )
    # one token per request survives: the newest (the others stop working)
    op.execute(
        "UPDATE requests SET status_token_digest = (SELECT t.digest FROM request_tokens t "
        "WHERE t.request_id = requests.id ORDER BY t.issued_at DESC, t.digest LIMIT 1)")
    with op.batch_alter_table("request_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_request_tokens_request_id"))
    op.drop_table("request_tokens")
