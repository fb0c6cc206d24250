"""A data-subject request and the identifiers of its subject.

Identifiers are kept encrypted (``value_ct``) and found through a keyed hash
(``digest``); free text from the requester (name, message) is encrypted in
``details_ct``. Nothing here holds personal data in clear.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

if TYPE_CHECKING:
    from .task import Task

from .. import entropy
from ..clock import column_now
from ..database import Base


def new_request_id() -> str:
    return entropy.uuid4_hex()


#: what :func:`new_request_id` makes (32 lower-case hex digits)
_REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def is_request_id(value: str) -> bool:
    """Could ``value`` be a request id? Anything else is never looked up (a
    NUL, for one, is an error on PostgreSQL rather than a row not found)."""
    return _REQUEST_ID.fullmatch(value) is not None


class Request(Base):
    __tablename__ = "requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_request_id)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(24), index=True)
    received_at: Mapped[datetime] = mapped_column(default=column_now)
    due_at: Mapped[datetime] = mapped_column(index=True)
    verified_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    is_review_required: Mapped[bool] = mapped_column(default=True)
    details_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    status_reason: Mapped[str | None] = mapped_column(Text)
    #: the one Art. 12(3) extension: when, and why (told to the requester, like status_reason)
    extended_at: Mapped[datetime | None]
    extension_reason: Mapped[str | None] = mapped_column(Text)
    #: while paused: since when, the state to resume to, what the requester is asked for
    paused_at: Mapped[datetime | None]
    paused_from: Mapped[str | None] = mapped_column(String(24))
    paused_for: Mapped[str | None] = mapped_column(String(20))
    identifiers: Mapped[list[SubjectIdentifier]] = relationship(
        back_populates="request", cascade="all, delete-orphan", order_by="SubjectIdentifier.id"
    )
    tasks: Mapped[list[Task]] = relationship(order_by="Task.id", viewonly=True)
    tokens: Mapped[list[RequestToken]] = relationship(
        back_populates="request", cascade="all, delete-orphan", passive_deletes=True)

    def __repr__(self) -> str:
        return f"<Request {self.id} {self.kind} {self.status}>"


class SubjectIdentifier(Base):
    """One identifier of a request's subject: where it came from, encrypted."""

    __tablename__ = "subject_identifiers"
    __table_args__ = (UniqueConstraint("request_id", "kind", "digest"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    digest: Mapped[str] = mapped_column(String(64), index=True)
    value_ct: Mapped[bytes] = mapped_column(LargeBinary)
    source: Mapped[str] = mapped_column(String(120), default="requester")
    added_at: Mapped[datetime] = mapped_column(default=column_now)

    request: Mapped[Request] = relationship(back_populates="identifiers")

    def __repr__(self) -> str:
        return f"<SubjectIdentifier {self.kind} {self.digest[:12]} from {self.source}>"


class TokenHolder(enum.StrEnum):
    """Whom a status token was given to: it decides what the token may do.

    Before verification a request has ``submitter`` tokens (each submission
    of the form or the API, the first and any that joined it) and ``mail``
    tokens (the link in each code mail: only the mailbox's owner has one).
    At verification they all stop working and the verifier gets a
    ``verifier`` token; each notice mail carries a ``notice`` token.
    """

    SUBMITTER = "submitter"
    MAIL = "mail"
    VERIFIER = "verifier"
    NOTICE = "notice"


class RequestToken(Base):
    """One status token of a request: only its keyed hash is stored."""

    __tablename__ = "request_tokens"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"),
                                            index=True)
    holder: Mapped[str] = mapped_column(String(12))
    issued_at: Mapped[datetime] = mapped_column(default=column_now)

    request: Mapped[Request] = relationship(back_populates="tokens")

    def __repr__(self) -> str:
        return f"<RequestToken {self.holder} of {self.request_id}>"
