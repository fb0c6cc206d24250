"""Signing in to the console: an email address, the password and a TOTP code
(or a recovery code), checked together so a failure never says which was wrong.

Failures are throttled per account and per client address with growing
delays: the first :data:`FREE_FAILURES` cost nothing, then each doubles the
wait, up to :data:`ACCOUNT_CAP` for an account (so a stranger who knows an
officer's address can keep them out for a minute at most) and
:data:`ADDRESS_CAP` for an address (which is what slows a guesser). A
throttled attempt is refused before anything is read or written: a flood of
failures cannot flood the audit trail. Throttle keys are keyed hashes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .. import audit
from ..clock import now_of
from ..models import Officer, OfficerRecoveryCode, OfficerStatus, SignInThrottle
from ..runtime import Runtime
from . import factors, sessions
from .accounts import actor_of, email_digest

FREE_FAILURES = 3
ACCOUNT_CAP = timedelta(minutes=1)
ADDRESS_CAP = timedelta(hours=1)


class Outcome(enum.StrEnum):
    SIGNED_IN = "signed_in"
    REFUSED = "refused"
    THROTTLED = "throttled"


@dataclass(frozen=True)
class SignIn:
    outcome: Outcome
    #: the console session's token (signed in)
    token: str | None = None
    officer_id: str | None = None
    #: seconds until another try is taken (throttled)
    retry_after: int = 0
    #: recovery codes left, when one was used
    recovery_left: int | None = None


def _keys(rt: Runtime, email: str, address: str) -> tuple[str, str]:
    return (rt.crypto.token_digest(f"sign-in-account:{email_digest(rt, email)}"),
            rt.crypto.token_digest(f"sign-in-address:{address}"))


def delay_after(failures: int, cap: timedelta) -> timedelta:
    """How long a key waits after its ``failures``-th failure in a row."""
    if failures <= FREE_FAILURES:
        return timedelta(0)
    return min(timedelta(seconds=2 ** (failures - FREE_FAILURES - 1)), cap)


def sign_in(rt: Runtime, email: str, password: str, code: str, address: str) -> SignIn:
    with rt.transaction() as session:
        now = now_of(session)
        keys = _keys(rt, email, address)
        blocked = [t.blocked_until for t in session.scalars(select(SignInThrottle).where(
            SignInThrottle.key.in_(keys))) if t.blocked_until and t.blocked_until > now]
        if blocked:
            wait = max(blocked) - now
            return SignIn(Outcome.THROTTLED, retry_after=max(int(wait.total_seconds() + 0.999), 1))
        officer = session.scalar(select(Officer).where(
            Officer.email_digest == email_digest(rt, email)))
        stored = officer.password_hash if officer is not None else None
        password_ok = factors.password_matches(rt.password_hasher, stored, password)
        if officer is None or officer.status != OfficerStatus.ACTIVE or not password_ok:
            return _failed(session, rt, keys, now, officer)
        factor, left = _second_factor(session, rt, officer, code, now)
        if factor is None:
            return _failed(session, rt, keys, now, officer)
        session.execute(delete(SignInThrottle).where(SignInThrottle.key.in_(keys)))
        token = sessions.open_session(session, rt, officer)
        audit.record(session, rt.crypto, "officer.signed_in", actor=actor_of(officer),
                     details={"officer": officer.id, "factor": factor})
        if left is not None:
            audit.record(session, rt.crypto, "officer.recovery_code_used",
                         actor=actor_of(officer), details={"officer": officer.id, "left": left})
        return SignIn(Outcome.SIGNED_IN, token=token, officer_id=officer.id, recovery_left=left)


def _second_factor(session: Session, rt: Runtime, officer: Officer, code: str,
                   now: datetime) -> tuple[str | None, int | None]:
    """``("totp", None)`` or ``("recovery", codes left)``; ``(None, None)`` when wrong."""
    secret = factors.totp_secret(rt.crypto, officer)
    if secret is not None:
        step = factors.totp_step(secret, code, now, officer.totp_last_step)
        if step is not None:
            officer.totp_last_step = step
            return "totp", None
    row = session.get(OfficerRecoveryCode, factors.recovery_digest(rt.crypto, officer.id, code))
    if row is None or row.officer_id != officer.id or row.used_at is not None:
        return None, None
    row.used_at = now
    left = session.scalars(select(OfficerRecoveryCode.code_digest).where(
        OfficerRecoveryCode.officer_id == officer.id,
        OfficerRecoveryCode.used_at.is_(None))).all()
    return "recovery", len(left)


def _failed(session: Session, rt: Runtime, keys: tuple[str, str], now: datetime,
            officer: Officer | None) -> SignIn:
    for key, cap in zip(keys, (ACCOUNT_CAP, ADDRESS_CAP), strict=True):
        throttle = session.get(SignInThrottle, key)
        if throttle is None:
            throttle = SignInThrottle(key=key, failures=0)
            session.add(throttle)
        throttle.failures += 1
        wait = delay_after(throttle.failures, cap)
        throttle.blocked_until = now + wait if wait else None
    details: dict[str, str] = {"account": keys[0][:16]}
    if officer is not None:
        details["officer"] = officer.id
    audit.record(session, rt.crypto, "officer.sign_in_failed", actor="anonymous",
                 details=details)
    return SignIn(Outcome.REFUSED)
