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
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .. import audit, entropy, outbox
from ..connector import normalise_identifier
from ..crypto import constant_time_equal
from ..models import Request, RequestToken, SubjectIdentifier, TokenHolder, Verification
from ..models.request import is_request_id
from ..runtime import Runtime
from . import requests as flow
from .deadlines import due_date
from .states import Status, transition
from .subjects import subject_of

#: the longest wait between two codes for one request, however many were sent
MAX_RESEND_SECONDS = 3600.0


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
    """A submission's answer: the request (new, or the pending one it joined)
    and the status token given to this submitter."""

    request: Request
    status_token: str
    joined: bool = False
    #: the due date this submitter is told (see :func:`as_seen`); the request's if ``None``
    due_at: datetime | None = None


def new_code() -> str:
    return entropy.numeric_code(6)


def _code_digest(rt: Runtime, request_id: str, code: str) -> str:
    return rt.crypto.token_digest(f"code:{request_id}:{code}")


def token_digest(rt: Runtime, token: str) -> str:
    return rt.crypto.token_digest(f"status:{token}")


def issue_token(session: Session, rt: Runtime, request: Request, holder: TokenHolder) -> str:
    """A new status token of ``request`` for ``holder``; only its hash is kept."""
    token = entropy.token_urlsafe(32)
    session.add(RequestToken(digest=token_digest(rt, token), request_id=request.id,
                             holder=holder.value, issued_at=rt.now()))
    return token


def start(session: Session, rt: Runtime, texts: dict[str, str], request: Request,
          email: str | None = None) -> Started:
    """Give a received request its submitter's status token and queue the
    first code (sent by the workers: :mod:`dsar.outbox`) to ``email``, or to
    the request's first address when not given."""
    transition(session, rt.crypto, request, Status.VERIFYING, actor="system")
    session.flush()  # a new request is written once, in this state, before rows naming it
    token = issue_token(session, rt, request, TokenHolder.SUBMITTER)
    _queue_code(session, rt, texts, request, first=True, email=email)
    return Started(request, token)


def resend_wait(rt: Runtime, sends: int) -> float:
    """Seconds between code number ``sends`` and the next: the cooldown,
    doubled with each code sent, at most :data:`MAX_RESEND_SECONDS` (so
    nobody can flood an address with codes, and its owner always gets a new
    one within the hour)."""
    base = float(rt.settings["CODE_RESEND_SECONDS"])
    return float(min(base * 2 ** max(sends - 1, 0), max(base, MAX_RESEND_SECONDS)))


@dataclass(frozen=True)
class CodeState:
    """What a holder of a token can do with the request's code now: enter it
    (``locked`` after too many wrong ones), and ask for a new one in
    ``resend_in`` seconds (0: now)."""

    locked: bool
    resend_in: float


def code_state(session: Session, rt: Runtime, request: Request, holder: str) -> CodeState | None:
    """The code's state for ``holder``, or ``None`` when no code is waiting."""
    row = session.get(Verification, request.id)
    if request.status != Status.VERIFYING.value or row is None:
        return None
    attempts = row.mail_attempts if holder == TokenHolder.MAIL.value else row.attempts
    wait = (row.sent_at + timedelta(seconds=resend_wait(rt, row.sends)) - rt.now())
    return CodeState(locked=attempts >= int(rt.settings["CODE_MAX_ATTEMPTS"]),
                     resend_in=max(0.0, wait.total_seconds()))


def resend(session: Session, rt: Runtime, texts: dict[str, str], request: Request) -> None:
    """A new code, after the cooldown; the old one stops working."""
    if request.status != Status.VERIFYING.value:
        raise NotWaiting()
    # locked: resends at the same moment must see each other's sent_at
    current = session.get(Verification, request.id, with_for_update=True)
    if current is not None:
        wait = (current.sent_at + timedelta(seconds=resend_wait(rt, current.sends))
                - rt.now()).total_seconds()
        if wait > 0:
            raise ResendTooSoon(seconds=int(wait) + 1)
    _queue_code(session, rt, texts, request, first=False)


def _queue_code(session: Session, rt: Runtime, texts: dict[str, str], request: Request,
                *, first: bool, email: str | None = None) -> None:
    code, now = new_code(), rt.now()
    ttl = float(rt.settings["CODE_TTL_SECONDS"])
    # a request's first code has no row yet: no query to find that out
    row = None if first else session.get(Verification, request.id)
    if row is None:
        row = Verification(request_id=request.id, sends=0)
        session.add(row)
    row.code_digest = _code_digest(rt, request.id, code)
    row.sent_at, row.expires_at = now, now + timedelta(seconds=ttl)
    row.attempts, row.mail_attempts, row.sends = 0, 0, row.sends + 1
    audit.record(session, rt.crypto, "verification.code_sent", actor="system",
                 request_id=request.id, details={"send": row.sends})
    email = email or sorted(subject_of(rt, request).values("email"))[0]
    link = issue_token(session, rt, request, TokenHolder.MAIL)  # only the mailbox has it
    status_url = f"{rt.settings['BASE_URL'].rstrip('/')}/requests/{request.id}?token={link}"
    values = {"code": code, "minutes": int(ttl // 60), "status_url": status_url,
              "kind_label": texts[f"kind.{request.kind}"]}
    outbox.enqueue(session, rt, email, texts["mail.code.subject"].format(**values),
                   texts["mail.code.body"].format(**values), request_id=request.id,
                   kind="verification-code" if first else "verification-code-resend")


def check(session: Session, rt: Runtime, request: Request, code: str,
          holder: str = TokenHolder.SUBMITTER.value) -> str:
    """Accept ``code`` or raise; on success the request is verified (and
    starts, or waits for review) and the verifier's new status token is
    returned: every token issued before stops working.

    A wrong code counts an attempt: with the code mail's link (``holder``
    ``mail``) apart from the others, so wrong codes entered by anyone who
    merely submitted the address never lock its owner out."""
    # locked: parallel wrong codes must each count (PostgreSQL would lose updates)
    row = session.get(Verification, request.id, with_for_update=True)
    if request.status != Status.VERIFYING.value or row is None:
        raise NotWaiting()
    by_mail = holder == TokenHolder.MAIL.value
    max_attempts = int(rt.settings["CODE_MAX_ATTEMPTS"])
    attempts = row.mail_attempts if by_mail else row.attempts
    if attempts >= max_attempts:
        raise TooManyAttempts()
    if rt.now() >= row.expires_at:
        raise CodeExpired()
    if not constant_time_equal(_code_digest(rt, request.id, code.strip()), row.code_digest):
        attempts += 1
        if by_mail:
            row.mail_attempts = attempts
        else:
            row.attempts = attempts
        audit.record(session, rt.crypto, "verification.failed", actor="requester",
                     request_id=request.id, details={"attempt": attempts, "holder": holder})
        if attempts >= max_attempts:
            raise TooManyAttempts()
        raise WrongCode(left=max_attempts - attempts)
    session.delete(row)
    session.execute(delete(RequestToken).where(RequestToken.request_id == request.id))
    session.expire(request, ["tokens"])
    token = issue_token(session, rt, request, TokenHolder.VERIFIER)
    flow.mark_verified(session, rt, request, actor="requester", method="email-code")
    return token


def receive(session: Session, rt: Runtime, kind: str, email: str, *, name: str | None = None,
            message: str | None = None) -> Started:
    """A requester's submission. While a request of this kind for this
    address waits for its code, the submission joins it: no new request, no
    new mail (the code is in the address's mailbox already; a new one can be
    asked for after the cooldown), only a status token for this submitter.
    Otherwise a new request: recorded, token issued, first code queued (sent
    by a worker once the caller has committed)."""
    address = normalise_identifier("email", email)
    pending = _pending(session, rt, kind, address)
    if pending is not None:
        audit.record(session, rt.crypto, "request.joined", actor="requester",
                     request_id=pending.id)
        return Started(pending, issue_token(session, rt, pending, TokenHolder.SUBMITTER),
                       joined=True, due_at=due_date(rt.now()))
    request = flow.submit(session, rt, kind, {"email": [email]}, name=name, message=message,
                          actor="requester")
    return start(session, rt, rt.texts, request, address)


def _pending(session: Session, rt: Runtime, kind: str, address: str) -> Request | None:
    """The newest request of ``kind`` the requester submitted for ``address``
    that waits for its code, if any."""
    digest = rt.crypto.identifier_digest("email", address)
    return session.scalar(
        select(Request).join(SubjectIdentifier)
        .where(SubjectIdentifier.kind == "email", SubjectIdentifier.digest == digest,
               SubjectIdentifier.source == "requester", Request.kind == kind,
               Request.status == Status.VERIFYING.value)
        .order_by(Request.received_at.desc(), Request.id).limit(1))


def find_token(session: Session, rt: Runtime, request_id: str, token: str) -> RequestToken | None:
    """The token row if ``token`` is one of request ``request_id``'s, else
    ``None`` (the same answer for an unknown id and a wrong token)."""
    if not token or len(token) > 200 or not is_request_id(request_id):
        return None
    found = session.get(RequestToken, token_digest(rt, token))
    if found is None or not constant_time_equal(found.request_id, request_id):
        return None
    return found


def as_seen(held: RequestToken) -> tuple[datetime, datetime]:
    """The received and due dates of the request as the holder of ``held``
    sees them: before verification, those of their own submission (or code
    mail), so that joining a pending request never tells when someone else
    submitted the address; once verified, the request's own."""
    request = held.request
    if request.verified_at is not None:
        return request.received_at, request.due_at
    # an officer's extension (or pause) before verification moves the request's date further
    return (max(request.received_at, held.issued_at),
            max(request.due_at, due_date(held.issued_at)))


def by_token(session: Session, rt: Runtime, request_id: str, token: str) -> Request | None:
    """The request whose id and status token both match, else ``None``."""
    found = find_token(session, rt, request_id, token)
    return None if found is None else found.request
