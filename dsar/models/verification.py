"""The email code a requester must enter: only its keyed hash is stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ..database import Base


class Verification(Base):
    __tablename__ = "verifications"

    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"),
                                            primary_key=True)
    code_digest: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    #: wrong codes entered with a submitter's token (all of them together)
    attempts: Mapped[int] = mapped_column(default=0)
    #: wrong codes entered with the code mail's link: only the mailbox's owner
    #: has it, so a stranger's wrong codes never lock the owner out
    mail_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    sends: Mapped[int] = mapped_column(default=1)

    def __repr__(self) -> str:
        return f"<Verification {self.request_id} attempts={self.attempts} sends={self.sends}>"
