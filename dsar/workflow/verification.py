"""Proving control of the email address: a 6-digit code by mail.

Codes are stored only as a keyed hash bound to the request, valid for
``CODE_TTL_SECONDS``, with ``CODE_MAX_ATTEMPTS`` wrong entries before a new
code is needed and ``CODE_RESEND_SECONDS`` between two codes. Nothing here
looks the address up in any store, so the answer and its timing are the same
whether or not the person is known.

Every function works in the caller's transaction; a wrong code's attempt is
counted in it too, so the caller commits on :class:`WrongCode` as well. The
code mail is queued in the outbox in that transaction and sent by a worker
after the commit (:mod:`dsar.outbox`): a mail server that is down or slow
delays the code, never the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from .. import audit, entropy, outbox
from ..connector import normalise_identifier
from ..crypto import constant_time_equal
from ..models import Request, Verification
from ..models.request import is_request_id
from ..runtime import Runtime
from . import requests as flow
from .states import Status, transition
from .subjects import subject_of


class VerificationError(Exception):
    """The code was not accepted; ``key`` names the text to show."""

    key = "verify.not_waiting"

    def __init__(self, **params: object) -> None:
        super().__init__(self.key)
        self.params = params


class NotWaiting(VerificationError):
    key = "verify.not_waiting"


class WrongCode(VerificationError):
    key = "verify.wrong_code"


class CodeExpired(VerificationError):
    key = "verify.expired"


class TooManyAttempts(VerificationError):
    key = "verify.too_many"


class ResendTooSoon(VerificationError):
    key = "resend.cooldown"


@dataclass(frozen=True)
class Started:
    request: Request
    status_token: str


def new_code() -> str:
    return entropy.numeric_code(6)


def _code_digest(rt: Runtime, request_id: str, code: str) -> str:
    return rt.crypto.token_digest(f"code:{request_id}:{code}")


def token_digest(rt: Runtime, token: str) -> str:
    return rt.crypto.token_digest(f"status:{token}")


def start(session: Session, rt: Runtime, texts: dict[str, str], request: Request,
          email: str | None = None) -> Started:
    """Give a received request its status token and queue the first code
    (sent by the workers: :mod:`dsar.outbox`) to ``email``, or to the
    request's first address when not given."""
    token = entropy.token_urlsafe(32)
    request.status_token_digest = token_digest(rt, token)
    transition(session, rt.crypto, request, Status.VERIFYING, actor="system")
    session.flush()  # a new request is written once, in this state, before rows naming it
    _queue_code(session, rt, texts, request, token, first=True, email=email)
    return Started(request, token)


def resend(session: Session, rt: Runtime, texts: dict[str, str], request: Request,
           status_token: str) -> None:
    """A new code, after the cooldown; the old one stops working."""
    if request.status != Status.VERIFYING.value:
        raise NotWaiting()
    # locked: resends at the same moment must see each other's sent_at
    current = session.get(Verification, request.id, with_for_update=True)
    if current is not None:
        wait = (current.sent_at + timedelta(seconds=rt.settings["CODE_RESEND_SECONDS"])
                - rt.now()).total_seconds()
        if wait > 0:
            raise ResendTooSoon(seconds=int(wait) + 1)
    _queue_code(session, rt, texts, request, status_token, first=False)


def _queue_code(session: Session, rt: Runtime, texts: dict[str, str], request: Request,
                status_token: str, *, first: bool, email: str | None = None) -> None:
    code, now = new_code(), rt.now()
    ttl = float(rt.settings["CODE_TTL_SECONDS"])
    # a request's first code has no row yet: no query to find that out
    row = None if first else session.get(Verification, request.id)
    if row is None:
        row = Verification(request_id=request.id, sends=0)
        session.add(row)
    row.code_digest = _code_digest(rt, request.id, code)
    row.sent_at, row.expires_at = now, now + timedelta(seconds=ttl)
    row.attempts, row.sends = 0, row.sends + 1
    audit.record(session, rt.crypto, "verification.code_sent", actor="system",
                 request_id=request.id, details={"send": row.sends})
    email = email or sorted(subject_of(rt, request).values("email"))[0]
    status_url = f"{rt.settings['BASE_URL'].rstrip('/')}/requests/{request.id}?token={status_token}"
    values = {"code": code, "minutes": int(ttl // 60), "status_url": status_url,
              "kind_label": texts[f"kind.{request.kind}"]}
    outbox.enqueue(session, rt, email, texts["mail.code.subject"].format(**values),
                   texts["mail.code.body"].format(**values), request_id=request.id,
                   kind="verification-code" if first else "verification-code-resend")


def check(session: Session, rt: Runtime, request: Request, code: str) -> None:
    """Accept ``code`` or raise; on success the request is verified (and
    starts, or waits for review). A wrong code counts an attempt."""
    # locked: parallel wrong codes must each count (PostgreSQL would lose updates)
    row = session.get(Verification, request.id, with_for_update=True)
    if request.status != Status.VERIFYING.value or row is None:
        raise NotWaiting()
    max_attempts = int(rt.settings["CODE_MAX_ATTEMPTS"])
    if row.attempts >= max_attempts:
        raise TooManyAttempts()
    if rt.now() >= row.expires_at:
        raise CodeExpired()
    if not constant_time_equal(_code_digest(rt, request.id, code.strip()), row.code_digest):
        row.attempts += 1
        audit.record(session, rt.crypto, "verification.failed", actor="requester",
                     request_id=request.id, details={"attempt": row.attempts})
        if row.attempts >= max_attempts:
            raise TooManyAttempts()
        raise WrongCode(left=max_attempts - row.attempts)
    session.delete(row)
    flow.mark_verified(session, rt, request, actor="requester", method="email-code")


def receive(session: Session, rt: Runtime, kind: str, email: str, *, name: str | None = None,
            message: str | None = None) -> Started:
    """A requester's new request: recorded, token issued, first code queued
    (sent by a worker once the caller has committed)."""
    request = flow.submit(session, rt, kind, {"email": [email]}, name=name, message=message,
                          actor="requester")
    return start(session, rt, rt.texts, request, normalise_identifier("email", email))


def by_token(session: Session, rt: Runtime, request_id: str, token: str) -> Request | None:
    """The request whose id and status token both match, else ``None``
    (the same answer for an unknown id and a wrong token)."""
    if not token or len(token) > 200:
        return None
    request = session.get(Request, request_id) if is_request_id(request_id) else None
    expected = request.status_token_digest if request is not None else None
    if expected is None or not constant_time_equal(token_digest(rt, token), expected):
        return None
    return request
