"""Console sessions, kept server-side: the cookie carries a random token, the
database its keyed hash. A session ends after ``OFFICER_IDLE_MINUTES``
without use, ``OFFICER_SESSION_HOURS`` after sign-in, at sign-out, and when
the officer's password or role changes or they are disabled. Every sign-in
opens a new session (a new id).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .. import entropy
from ..clock import now_of
from ..models import Officer, OfficerSession, OfficerStatus
from ..runtime import Runtime

#: last use is written at most this often (a page load is not a write each time)
TOUCH_SECONDS = 60


def _digest(rt: Runtime, token: str) -> str:
    return rt.crypto.token_digest(f"officer-session:{token}")


def open_session(session: Session, rt: Runtime, officer: Officer) -> str:
    """A new session for ``officer``; returns the token for the cookie."""
    token = entropy.token_urlsafe(32)
    now = now_of(session)
    session.add(OfficerSession(token_digest=_digest(rt, token), officer_id=officer.id,
                               created_at=now, last_seen_at=now))
    return token


def resolve(session: Session, rt: Runtime, token: str) -> Officer | None:
    """The active officer whose live session ``token`` is; ``None`` when the
    session does not exist, has ended or expired (it is ended then)."""
    row = session.get(OfficerSession, _digest(rt, token))
    if row is None or row.ended_at is not None:
        return None
    now = now_of(session)
    idle = timedelta(minutes=float(rt.settings["OFFICER_IDLE_MINUTES"]))
    longest = timedelta(hours=float(rt.settings["OFFICER_SESSION_HOURS"]))
    officer = session.get(Officer, row.officer_id)
    if (now - row.last_seen_at > idle or now - row.created_at > longest
            or officer is None or officer.status != OfficerStatus.ACTIVE):
        row.ended_at = now
        return None
    if now - row.last_seen_at >= timedelta(seconds=TOUCH_SECONDS):
        row.last_seen_at = now
    return officer


def end(session: Session, rt: Runtime, token: str) -> str | None:
    """End the session (sign-out); the officer id it was, if it was live."""
    row = session.get(OfficerSession, _digest(rt, token))
    if row is None or row.ended_at is not None:
        return None
    row.ended_at = now_of(session)
    return row.officer_id


def end_all(session: Session, officer_id: str) -> None:
    session.execute(update(OfficerSession).where(
        OfficerSession.officer_id == officer_id, OfficerSession.ended_at.is_(None))
        .values(ended_at=now_of(session)))


def live_count(session: Session, officer_id: str) -> int:
    return len(session.scalars(select(OfficerSession.token_digest).where(
        OfficerSession.officer_id == officer_id, OfficerSession.ended_at.is_(None))).all())
