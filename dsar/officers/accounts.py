"""Officer accounts: created with a one-time set-up link, set up with a
password and a TOTP app (which also yields ten recovery codes), given another
role or disabled. Each change is an audit event naming officers by id; a
role change or a disabling ends every session of that officer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .. import audit, entropy
from ..clock import now_of
from ..connector import normalise_identifier
from ..models import Officer, OfficerRecoveryCode, OfficerRole, OfficerStatus
from ..runtime import Runtime
from . import factors, sessions


class OfficerError(ValueError):
    """An officer action refused; the message says why, for the person acting."""


@dataclass(frozen=True)
class Invitation:
    officer_id: str
    url: str
    expires_at: datetime


def actor_of(officer: Officer) -> str:
    """How the audit trail names an officer: by id, never by address."""
    return f"officer:{officer.id}"


def email_digest(rt: Runtime, email: str) -> str:
    return rt.crypto.token_digest(f"officer-email:{normalise_identifier('email', email)}")


def email_of(rt: Runtime, officer: Officer) -> str:
    return rt.crypto.decrypt_text(officer.email_ct, f"officer-email:{officer.id}")


def find(session: Session, rt: Runtime, email: str) -> Officer | None:
    return session.scalar(select(Officer).where(Officer.email_digest == email_digest(rt, email)))


def everyone(session: Session) -> list[Officer]:
    return list(session.scalars(select(Officer).order_by(Officer.created_at, Officer.id)))


def role_of(raw: str) -> OfficerRole:
    try:
        return OfficerRole(raw)
    except ValueError:
        raise OfficerError(f"unknown role {raw!r}: use admin, reviewer or auditor") from None


def _valid_email(email: str) -> str:
    email = email.strip()
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in email):
        raise OfficerError("not an email address")
    return email


def create(session: Session, rt: Runtime, email: str, role: OfficerRole | str,
           actor: str) -> Invitation:
    """A new officer, invited: returns the one-time set-up link."""
    email, role = _valid_email(email), role_of(role)
    if find(session, rt, email) is not None:
        raise OfficerError("an officer with this email address exists already")
    officer_id = entropy.hex_id(8)
    officer = Officer(id=officer_id, email_digest=email_digest(rt, email),
                      email_ct=rt.crypto.encrypt_text(email, f"officer-email:{officer_id}"),
                      role=role, status=OfficerStatus.INVITED)
    session.add(officer)
    invitation = _invite(rt, officer, now_of(session))
    audit.record(session, rt.crypto, "officer.created", actor=actor,
                 details={"officer": officer_id, "role": str(role)})
    return invitation


def invite_again(session: Session, rt: Runtime, officer: Officer, actor: str) -> Invitation:
    """A fresh set-up link for an officer not set up yet (the old one stops working)."""
    if officer.status != OfficerStatus.INVITED:
        raise OfficerError("this officer has set up their account already")
    invitation = _invite(rt, officer, now_of(session))
    audit.record(session, rt.crypto, "officer.invited_again", actor=actor,
                 details={"officer": officer.id})
    return invitation


def _invite(rt: Runtime, officer: Officer, now: datetime) -> Invitation:
    token = entropy.token_urlsafe(32)
    officer.setup_digest = _setup_digest(rt, token)
    officer.setup_expires_at = now + timedelta(hours=float(rt.settings["OFFICER_SETUP_HOURS"]))
    url = f"{str(rt.settings['BASE_URL']).rstrip('/')}/console/setup/{token}"
    return Invitation(officer.id, url, officer.setup_expires_at)


def _setup_digest(rt: Runtime, token: str) -> str:
    return rt.crypto.token_digest(f"officer-setup:{token}")


def by_setup_link(session: Session, rt: Runtime, token: str) -> Officer | None:
    """The invited officer a set-up link is for, while it is valid."""
    officer = session.scalar(select(Officer).where(
        Officer.setup_digest == _setup_digest(rt, token),
        Officer.status == OfficerStatus.INVITED))
    if officer is None or officer.setup_expires_at is None:
        return None
    return officer if now_of(session) <= officer.setup_expires_at else None


def set_up(session: Session, rt: Runtime, officer: Officer, password: str, secret: str,
           code: str) -> list[str]:
    """Enrol both factors: the password and the TOTP app shown ``secret``
    (proved by ``code``). Returns the ten recovery codes, shown once."""
    problem = factors.password_problem(password, email_of(rt, officer))
    if problem:
        raise OfficerError(problem)
    step = factors.totp_step(secret, code, now_of(session), None)
    if step is None:
        raise OfficerError("The code from your authenticator app is not right. "
                           "Check the app shows dsar and try the newest code.")
    officer.password_hash = factors.hash_password(rt.password_hasher, password)
    officer.totp_secret_ct = rt.crypto.encrypt_text(secret, f"officer-totp:{officer.id}")
    officer.totp_last_step = step
    officer.status = OfficerStatus.ACTIVE
    officer.setup_digest = officer.setup_expires_at = None
    codes = _new_recovery_codes(session, rt, officer)
    audit.record(session, rt.crypto, "officer.enrolled", actor=actor_of(officer),
                 details={"officer": officer.id, "factors": ["password", "totp"],
                          "recovery_codes": len(codes)})
    return codes


def _new_recovery_codes(session: Session, rt: Runtime, officer: Officer) -> list[str]:
    """Ten new codes, the old ones gone."""
    session.execute(delete(OfficerRecoveryCode).where(
        OfficerRecoveryCode.officer_id == officer.id))
    codes = factors.new_recovery_codes()
    session.add_all(OfficerRecoveryCode(
        code_digest=factors.recovery_digest(rt.crypto, officer.id, code), officer_id=officer.id)
        for code in codes)
    return codes


def _check_password(rt: Runtime, officer: Officer, password: str) -> None:
    if not factors.password_matches(rt.password_hasher, officer.password_hash, password):
        raise OfficerError("That is not your current password.")


def change_password(session: Session, rt: Runtime, officer: Officer, current: str,
                    new: str) -> None:
    """The officer's own change: every session of theirs ends (this one too)."""
    _check_password(rt, officer, current)
    problem = factors.password_problem(new, email_of(rt, officer))
    if problem:
        raise OfficerError(problem)
    officer.password_hash = factors.hash_password(rt.password_hasher, new)
    sessions.end_all(session, officer.id)
    audit.record(session, rt.crypto, "officer.password_changed", actor=actor_of(officer),
                 details={"officer": officer.id})


def renew_recovery_codes(session: Session, rt: Runtime, officer: Officer,
                         password: str) -> list[str]:
    """Ten new recovery codes (the password proves it is the officer); shown once."""
    _check_password(rt, officer, password)
    codes = _new_recovery_codes(session, rt, officer)
    audit.record(session, rt.crypto, "officer.recovery_codes_renewed", actor=actor_of(officer),
                 details={"officer": officer.id, "recovery_codes": len(codes)})
    return codes


def reset(session: Session, rt: Runtime, officer: Officer, actor: str) -> Invitation:
    """Take both factors away (a lost phone and lost codes): the officer is
    invited again, with a new set-up link; their sessions end."""
    if officer.status != OfficerStatus.ACTIVE:
        raise OfficerError("only an active officer can be reset")
    officer.status = OfficerStatus.INVITED
    officer.password_hash = officer.totp_secret_ct = officer.totp_last_step = None
    session.execute(delete(OfficerRecoveryCode).where(
        OfficerRecoveryCode.officer_id == officer.id))
    sessions.end_all(session, officer.id)
    invitation = _invite(rt, officer, now_of(session))
    audit.record(session, rt.crypto, "officer.reset", actor=actor,
                 details={"officer": officer.id})
    return invitation


def set_role(session: Session, rt: Runtime, officer: Officer, role: OfficerRole | str,
             actor: str) -> None:
    role = role_of(role)
    if officer.role == role:
        return
    _keep_an_admin(session, officer)
    before, officer.role = officer.role, role
    sessions.end_all(session, officer.id)
    audit.record(session, rt.crypto, "officer.role_changed", actor=actor,
                 details={"officer": officer.id, "from": before, "to": str(role)})


def disable(session: Session, rt: Runtime, officer: Officer, actor: str) -> None:
    if officer.status == OfficerStatus.DISABLED:
        return
    _keep_an_admin(session, officer)
    officer.status = OfficerStatus.DISABLED
    officer.setup_digest = officer.setup_expires_at = None
    sessions.end_all(session, officer.id)
    audit.record(session, rt.crypto, "officer.disabled", actor=actor,
                 details={"officer": officer.id})


def _keep_an_admin(session: Session, leaving: Officer) -> None:
    """Refuse to take the last active admin away (nobody could manage officers
    from the console any more)."""
    if leaving.role != OfficerRole.ADMIN or leaving.status != OfficerStatus.ACTIVE:
        return
    others = session.scalars(select(Officer.id).where(
        Officer.role == OfficerRole.ADMIN, Officer.status == OfficerStatus.ACTIVE,
        Officer.id != leaving.id).limit(1)).first()
    if others is None:
        raise OfficerError("this is the last active admin: make another officer admin first")


def acting_officer(session: Session, rt: Runtime, email: str,
                   roles: frozenset[OfficerRole]) -> Officer:
    """The active officer ``email`` if their role is one of ``roles`` (the
    CLI's ``--as``); :class:`OfficerError` otherwise."""
    officer = find(session, rt, email)
    if officer is None or officer.status != OfficerStatus.ACTIVE:
        raise OfficerError("no active officer with this email address")
    if officer.role not in roles:
        needed = " or ".join(sorted(roles))
        raise OfficerError(f"this needs the role {needed}; the officer is {officer.role}")
    return officer
