"""Mail out of the transaction: queued with the change, sent by the workers.

* :func:`enqueue` writes an :class:`~dsar.models.OutboxMail` in the caller's
  transaction, so a mail exists exactly when the change it tells about
  commits. It never touches the network and never fails for the mail
  server's sake.
* :func:`deliver_due` is the workers' half: it claims due mails under a short
  lease in one short transaction, hands each to :class:`~dsar.mail.Mailer`
  with no transaction open and no lock held (SMTP may take minutes when the
  server is slow), then records each outcome in a short transaction of its own.

A mail the server did not take is tried again with exponential backoff and
jitter, for ``MAIL_RETRY_WINDOW_HOURS`` from when it was queued; then, or at
once when the server refused the recipient for good (5xx), it is marked
``failed`` and logged by id and kind. Two deliverers never send one mail
twice: a claimed mail is skipped by the others (PostgreSQL ``FOR UPDATE SKIP
LOCKED``; SQLite's ``BEGIN IMMEDIATE`` serialises the claims) until its lease
runs out. Only a deliverer that dies between handing a mail over and
recording it sends it again, once its lease has run out: at least once, as
SMTP allows.

The content (recipient, subject, body) is encrypted at rest and cleared once
the mail is sent or failed. Logs name a mail by id and kind only.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Update, or_, select, update
from sqlalchemy.orm import Session

from .database import is_unavailable
from .mail import MailError
from .models import MailStatus, OutboxMail
from .runtime import Runtime
from .workflow.retry import backoff

log = logging.getLogger(__name__)

#: how long a claimed mail stays a deliverer's: longer than a batch may take
LEASE_SECONDS = 900.0
#: longest one SMTP conversation may take (30 s per step); a mail is sent only
#: while its lease has at least this long left, else handed back unsent
SEND_BUDGET_SECONDS = 300.0
#: the first retry's delay; it doubles each attempt up to MAX_RETRY_SECONDS
FIRST_RETRY_SECONDS = 15.0
MAX_RETRY_SECONDS = 600.0
#: mails claimed by one call of deliver_due, by default
BATCH = 10
#: how long a deliverer waits out an app-database outage to record a sent mail
#: (unrecorded, it would be sent again once its lease runs out)
RECORD_PATIENCE_SECONDS = 120.0

_CONTEXT = "outbox:"  # + recipient, subject, body: a ciphertext binds its column


def enqueue(session: Session, rt: Runtime, to: str, subject: str, body: str, *, kind: str,
            request_id: str | None = None) -> OutboxMail:
    """Queue a plain-text mail to ``to`` in the caller's transaction (which
    commits or rolls it back with the change it tells about); ``kind`` names
    it in logs, ``request_id`` ties it to its request. Marks the session
    (``session.info["dsar_mail"]``) so the commit can wake a worker."""
    crypto = rt.crypto
    mail = OutboxMail(kind=kind, request_id=request_id, status=MailStatus.PENDING, attempts=0,
                      recipient_ct=crypto.encrypt_text(to, _CONTEXT + "recipient"),
                      subject_ct=crypto.encrypt_text(subject, _CONTEXT + "subject"),
                      body_ct=crypto.encrypt_text(body, _CONTEXT + "body"))
    session.add(mail)
    session.flush()
    session.info["dsar_mail"] = True
    return mail


@dataclass(frozen=True)
class _Claimed:
    id: int
    kind: str
    attempts: int
    created_at: datetime
    recipient_ct: bytes
    subject_ct: bytes
    body_ct: bytes


def deliver_due(rt: Runtime, limit: int = BATCH, now: datetime | None = None) -> int:
    """Send up to ``limit`` due mails; returns how many were handed over.

    Call it from the worker loop on every poll, and soon after a commit that
    queued mail. It raises only when the app database cannot be reached
    (:func:`dsar.database.is_unavailable`); mail server errors are recorded
    on the mail (retried later, or failed). Safe to run in any number of
    threads and processes at once. ``now`` is the clock, for tests.
    """
    owner, started = uuid.uuid4().hex, time.monotonic()
    claimed = _claim(rt, owner, limit, now or rt.now())
    sent = 0
    for index, mail in enumerate(claimed):
        if time.monotonic() - started > LEASE_SECONDS - SEND_BUDGET_SECONDS:
            _hand_back(rt, owner, [m.id for m in claimed[index:]])
            break
        try:
            _send(rt, mail)
        except MailError as exc:
            _failed(rt, owner, mail, exc, now or rt.now())
        except Exception as exc:  # e.g. the dev outbox folder not writable: retried alike
            log.error("mail %s (%s) not handed over: %s", mail.id, mail.kind,
                      type(exc).__name__)
            _failed(rt, owner, mail, MailError(type(exc).__name__), now or rt.now())
        else:
            sent += _sent(rt, owner, mail, now or rt.now())
    return sent


def _claim(rt: Runtime, owner: str, limit: int, now: datetime) -> list[_Claimed]:
    """Take due mails nobody holds under a fresh lease, in one short transaction."""
    with rt.transaction() as session:
        mails = session.scalars(
            select(OutboxMail)
            .where(OutboxMail.status == MailStatus.PENDING, OutboxMail.not_before <= now,
                   or_(OutboxMail.lease_expires_at.is_(None),
                       OutboxMail.lease_expires_at < now))
            .order_by(OutboxMail.not_before, OutboxMail.id).limit(limit)
            .with_for_update(skip_locked=True)).all()
        claimed = []
        for mail in mails:
            mail.attempts += 1
            if mail.recipient_ct is None or mail.subject_ct is None or mail.body_ct is None:
                mail.status, mail.last_error = MailStatus.FAILED, "no content"  # edited by hand?
                log.error("mail %s (%s) is pending without its content; failed", mail.id,
                          mail.kind)
                continue
            mail.lease_owner = owner
            mail.lease_expires_at = now + timedelta(seconds=LEASE_SECONDS)
            claimed.append(_Claimed(mail.id, mail.kind, mail.attempts, mail.created_at,
                                    mail.recipient_ct, mail.subject_ct, mail.body_ct))
    return claimed


def _send(rt: Runtime, mail: _Claimed) -> None:
    """The SMTP conversation (or the .eml file): no session, no lock."""
    decrypt = rt.crypto.decrypt_text
    rt.mailer.send(decrypt(mail.recipient_ct, _CONTEXT + "recipient"),
                   decrypt(mail.subject_ct, _CONTEXT + "subject"),
                   decrypt(mail.body_ct, _CONTEXT + "body"),
                   kind=mail.kind, ref=f"outbox mail {mail.id}", date=mail.created_at)


def _ours(mail_id: int, owner: str) -> Update:
    return update(OutboxMail).where(OutboxMail.id == mail_id, OutboxMail.lease_owner == owner,
                                    OutboxMail.status == MailStatus.PENDING)


_CLEARED = {"recipient_ct": None, "subject_ct": None, "body_ct": None,
            "lease_owner": None, "lease_expires_at": None}


def _patiently(mail: _Claimed, record: Callable[[], int]) -> int:
    """``record()``, waiting out an app-database outage for a while; other
    errors, and an outage that lasts, are raised (the lease runs out)."""
    deadline, delay, logged = time.monotonic() + RECORD_PATIENCE_SECONDS, 0.25, False
    while True:
        try:
            return record()
        except Exception as exc:
            if not is_unavailable(exc) or time.monotonic() > deadline:
                log.error("mail %s (%s): outcome not recorded (%s); it may be sent again",
                          mail.id, mail.kind, type(exc).__name__)
                raise
            if not logged:
                log.warning("mail %s (%s): app database unavailable; will record the "
                            "outcome when it returns", mail.id, mail.kind)
                logged = True
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _sent(rt: Runtime, owner: str, mail: _Claimed, now: datetime) -> int:
    def record() -> int:
        with rt.transaction() as session:
            done = session.execute(_ours(mail.id, owner).values(
                status=MailStatus.SENT, sent_at=now, last_error=None, **_CLEARED))
        return int(done.rowcount)  # type: ignore[attr-defined]

    if _patiently(mail, record) != 1:
        log.warning("mail %s (%s) was sent after its lease ran out; another deliverer may "
                    "send it too", mail.id, mail.kind)
        return 0
    return 1


def _failed(rt: Runtime, owner: str, mail: _Claimed, exc: MailError, now: datetime) -> None:
    """Record a refusal: try again later, or give up past the window."""
    window = timedelta(hours=float(rt.settings["MAIL_RETRY_WINDOW_HOURS"]))
    give_up_at = mail.created_at + window
    error = exc.reason[:200]
    if exc.permanent or now >= give_up_at:
        with rt.transaction() as session:
            session.execute(_ours(mail.id, owner).values(status=MailStatus.FAILED, last_error=error,
                                                         **_CLEARED))
        log.warning("mail %s (%s) failed after %d attempts, not sent: %s", mail.id,
                    mail.kind, mail.attempts, error)
        return
    next_try = min(now + timedelta(seconds=retry_delay(mail.attempts)), give_up_at)
    with rt.transaction() as session:
        session.execute(_ours(mail.id, owner).values(
            not_before=next_try, last_error=error, lease_owner=None, lease_expires_at=None))
    log.info("mail %s (%s) not sent (%s); next try in %.0f s", mail.id, mail.kind, error,
             (next_try - now).total_seconds())


def _hand_back(rt: Runtime, owner: str, mail_ids: list[int]) -> None:
    """Mails claimed but not tried (the batch ran long): free for the next call."""
    with rt.transaction() as session:
        for mail_id in mail_ids:
            session.execute(_ours(mail_id, owner).values(
                attempts=OutboxMail.attempts - 1, lease_owner=None, lease_expires_at=None))


def retry_delay(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones, jitter included."""
    return backoff(attempts, FIRST_RETRY_SECONDS, MAX_RETRY_SECONDS)
