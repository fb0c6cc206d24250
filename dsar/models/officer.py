"""Compliance officers: their accounts, recovery codes, console sessions and
sign-in throttles (:mod:`dsar.officers`).

An officer is named in the audit trail by ``id`` (``officer:<id>``), never by
address: the chain cannot be edited later, an address can change. The
address is stored encrypted (``email_ct``) and as a keyed hash
(``email_digest``) to find the account; the password as an argon2 hash; the
TOTP secret encrypted. Set-up links, recovery codes and session ids are
stored as keyed hashes only. An officer's mail subscriptions (the weekly
summary, alerts near due dates: :mod:`dsar.officers.subscriptions`) are
columns of the row; the due dates alerted about, :class:`OfficerDueAlert`.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import column_now
from ..database import Base


class OfficerRole(enum.StrEnum):
    #: reads requests and the audit trail; no actions
    AUDITOR = "auditor"
    #: also works the queue: approve, deny, extend, pause, retry, cancel
    REVIEWER = "reviewer"
    #: also manages officers and sees the connectors' status
    ADMIN = "admin"


class OfficerStatus(enum.StrEnum):
    #: a set-up link was issued; no password or second factor yet
    INVITED = "invited"
    ACTIVE = "active"
    DISABLED = "disabled"


class Officer(Base):
    __tablename__ = "officers"

    #: stable, never reused: what the audit trail names
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email_digest: Mapped[str] = mapped_column(String(64), unique=True)
    email_ct: Mapped[bytes] = mapped_column(LargeBinary)
    role: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), default=OfficerStatus.INVITED)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    totp_secret_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: the TOTP time step of the last code accepted: a code is good once
    totp_last_step: Mapped[int | None]
    setup_digest: Mapped[str | None] = mapped_column(String(64), unique=True)
    setup_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=column_now)
    #: mail me a summary every 7 days; when the last one was queued
    weekly_summary: Mapped[bool] = mapped_column(default=False, server_default=false())
    weekly_summary_sent_at: Mapped[datetime | None]
    #: mail me when open requests come within this many days of their due date (None: off)
    due_alert_days: Mapped[int | None]

    def __repr__(self) -> str:
        return f"<Officer {self.id} {self.role} {self.status}>"


class OfficerRecoveryCode(Base):
    __tablename__ = "officer_recovery_codes"

    code_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    officer_id: Mapped[str] = mapped_column(
        ForeignKey("officers.id", ondelete="CASCADE"), index=True)
    used_at: Mapped[datetime | None]


class OfficerSession(Base):
    """A console session: the cookie holds a token, the row its keyed hash."""

    __tablename__ = "officer_sessions"

    token_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    officer_id: Mapped[str] = mapped_column(
        ForeignKey("officers.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=column_now)
    last_seen_at: Mapped[datetime] = mapped_column(default=column_now)
    ended_at: Mapped[datetime | None]


class SignInThrottle(Base):
    """Failed sign-ins per account or per address (``key`` a keyed hash)."""

    __tablename__ = "sign_in_throttles"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    blocked_until: Mapped[datetime | None]


class OfficerDueAlert(Base):
    """An officer was mailed about a request coming due at ``due_at``: once per
    due date (an extension or a pause moves it, and the officer hears again)."""

    __tablename__ = "officer_due_alerts"
    __table_args__ = (UniqueConstraint("officer_id", "request_id", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    officer_id: Mapped[str] = mapped_column(ForeignKey("officers.id", ondelete="CASCADE"))
    request_id: Mapped[str] = mapped_column(
        ForeignKey("requests.id", ondelete="CASCADE"), index=True)
    due_at: Mapped[datetime]
    sent_at: Mapped[datetime] = mapped_column(default=column_now)
