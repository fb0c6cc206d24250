"""A mail waiting to go out: written in the transaction of the change it tells
about, sent by a worker after that commit (:mod:`dsar.outbox`).

Recipient, subject and body are encrypted (``*_ct``; a code is in the
subject) and cleared once the mail is sent or has failed: the table is a
queue, not an archive. ``last_error`` names the error's type only. A
deliverer holds a mail under a short lease (``lease_owner``,
``lease_expires_at``) while it sends it, so two never send one mail twice.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import column_now
from ..database import Base


class MailStatus(enum.StrEnum):
    #: waiting for its time, or being sent under a deliverer's lease
    PENDING = "pending"
    SENT = "sent"
    #: given up (past the mail window, or refused for good): an operator's to look at
    FAILED = "failed"


class OutboxMail(Base):
    __tablename__ = "outbox_mails"
    #: what deliverers look for: pending mails by the time they are due
    __table_args__ = (Index("ix_outbox_mails_status_not_before", "status", "not_before"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: what the mail is, for logs: ``verification-code``, ``verification-code-resend``, ...
    kind: Mapped[str] = mapped_column(String(40))
    #: the request it is about, if any (no personal data)
    request_id: Mapped[str | None] = mapped_column(
        ForeignKey("requests.id", ondelete="CASCADE"), index=True)
    #: a :class:`MailStatus`
    status: Mapped[str] = mapped_column(String(10), default=MailStatus.PENDING)
    recipient_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    subject_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    body_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=column_now)
    not_before: Mapped[datetime] = mapped_column(default=column_now)
    #: times a deliverer took the mail to send it
    attempts: Mapped[int] = mapped_column(default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    #: the last failure's error type and SMTP code, never an address or content
    last_error: Mapped[str | None] = mapped_column(String(200))

    def __repr__(self) -> str:
        return f"<OutboxMail {self.id} {self.kind} {self.status} x{self.attempts}>"
