"""The audit chain: append-only events and the sealed head.

Written only by :mod:`dsar.audit`. ``prev_hash`` is unique, so two appends can
never continue the same event (the chain cannot fork); ``audit_heads`` holds
one row: the last event's seq and hash, sealed with the audit key.
``audit_checks`` holds each verification of the chain (:mod:`dsar.audit_checks`):
asked for, then its outcome, sealed, so the point an intact check reached cannot
be moved without the audit key.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..database import Base


class AuditEvent(Base):
    __tablename__ = "audit_events"
    # The trail page's filters, newest first (migration 0011)
    __table_args__ = (
        Index("ix_audit_events_actor_seq", "actor", "seq"),
        Index("ix_audit_events_action_seq", "action", "seq"),
        Index("ix_audit_events_request_id_seq", "request_id", "seq"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
    )

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(60))
    request_id: Mapped[str | None] = mapped_column(String(32))
    details: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    mac: Mapped[str] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"<AuditEvent {self.seq} {self.action} {self.hash[:12]}>"


class AuditHead(Base):
    __tablename__ = "audit_heads"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int]
    hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"<AuditHead {self.seq} {self.hash[:12]}>"


class AuditCheck(Base):
    """One verification of the chain: asked for (``finished_at`` empty), then
    its outcome, sealed. ``kind``: ``full`` (from the first event) or
    ``incremental`` (from the point the last intact check reached).
    ``to_seq``/``to_hash``: the last event found intact (0 and the genesis
    hash when none); ``bad_seq``/``problem``: the first fault, if any."""

    __tablename__ = "audit_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    requested_by: Mapped[str] = mapped_column(String(120))
    requested_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None] = mapped_column(index=True)
    from_seq: Mapped[int | None]
    to_seq: Mapped[int | None]
    to_hash: Mapped[str | None] = mapped_column(String(64))
    ok: Mapped[bool | None]
    bad_seq: Mapped[int | None]
    problem: Mapped[str | None] = mapped_column(Text)
    mac: Mapped[str | None] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"<AuditCheck {self.id} {self.kind} ok={self.ok} to={self.to_seq}>"
