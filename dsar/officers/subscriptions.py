"""Officers' mail subscriptions: a weekly summary of the requests, and an
alert when open requests come within N days of their due date.

An officer chooses on their account page (:func:`change`, from
:mod:`dsar.console.account`); the housekeeper calls :func:`send_due` with its
other chores. Each officer's mails are queued through the outbox
(:func:`dsar.outbox.enqueue`) in one transaction with what records them:
``weekly_summary_sent_at`` for the summary, a row of
:class:`~dsar.models.OfficerDueAlert` per request and due date for an alert.
So a mail is queued exactly when its record commits, and the officer's row,
locked first, keeps two housekeepers from mailing one officer twice.

Only active officers get mail. The summary goes when the last one was queued
:data:`SUMMARY_EVERY` ago or more (or never: the first within a few minutes
of asking). An alert lists the open requests (the queue's open: paused and
partially failed are open) due within the officer's N days or overdue that
no alert has told them about for their current due date; an extension, or a
pause's resumption, moves the due date, and the request is told about again.

The texts are this module's constants: plain text, short, no personal data.
Requests are named by id, kind, status and dates, never by a requester's
address or identifiers; the links go to the console (``BASE_URL``), where
the officer signs in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session

from .. import audit, outbox
from ..database import is_unavailable
from ..models import Officer, OfficerDueAlert, OfficerStatus, Request
from ..models.preview import OPEN_PREDICATE
from ..runtime import Runtime
from ..workflow.states import Status
from .accounts import actor_of, email_of

log = logging.getLogger(__name__)

#: the due alert's choices: days before the due date (the account page's select)
ALERT_DAYS = (1, 3, 7, 14)
#: a summary goes when the last one was queued this long ago, or more
SUMMARY_EVERY = timedelta(days=7)
#: "completed in the last ... days" in the summary
RECENT_DAYS = 7
#: requests listed in one alert at most; the rest are counted (and recorded as told)
MAX_LISTED = 50
#: the console's pages the mails link to, after ``BASE_URL``
DASHBOARD_PATH, QUEUE_PATH, ACCOUNT_PATH = "/console/dashboard", "/console/", "/console/account"
REQUEST_PATH = "/console/requests/{id}"

SUMMARY_KIND, ALERT_KIND = "officer.summary", "officer.due_alert"

SUMMARY_SUBJECT = "dsar weekly summary: {open} open, {overdue} overdue"
SUMMARY_BODY = (
    "Hello,\n\n"
    "Your weekly summary of the requests in dsar, at {when}.\n\n"
    "Open requests: {open}\n"
    "{by_status}\n\n"
    "Due within the next {soon_days} days: {due_soon}\n"
    "Overdue: {overdue}\n"
    "Paused (the clock stopped): {paused}\n"
    "Completed in the last {recent_days} days: {completed}\n\n"
    "The dashboard: {dashboard_url}\n"
    "The queue, nearest due date first: {queue_url}\n\n"
    "You get this mail every 7 days because you asked for it. To stop it,\n"
    "untick it on your account page: {account_url}\n"
)
ALERT_SUBJECT = "dsar due alert: {count} due within {days} or overdue"
ALERT_BODY = (
    "Hello,\n\n"
    "You asked to hear when an open request is within {days} of its due date.\n"
    "{these} due within {days} or overdue:\n\n"
    "{listed}\n"
    "{more}"
    "You hear about a request once per due date: if its due date moves\n"
    "(an extension, a pause), you are told again when the new one comes near.\n\n"
    "The queue, nearest due date first: {queue_url}\n"
    "Change or stop these mails on your account page: {account_url}\n"
)
ALERT_ITEM = "{id}\n  {kind}, {status}: due {due} ({left})\n  {url}\n"
ALERT_MORE = "And {count} more: the queue lists them all.\n\n"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def when(moment: datetime) -> str:
    """A date and time as the console shows them."""
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def days_left(due_at: datetime, now: datetime) -> str:
    """Whole days to the due date, or past it."""
    if due_at >= now:
        left = (due_at - now).days
        return "less than a day left" if left == 0 else f"{plural(left, 'day')} left"
    late = (now - due_at).days
    return "overdue by less than a day" if late == 0 else f"overdue by {plural(late, 'day')}"


# --- the officer's choice --------------------------------------------------------------


def change(session: Session, rt: Runtime, officer: Officer, *, weekly_summary: bool,
           due_alert_days: int | None) -> bool:
    """Save the officer's own choice (``due_alert_days``: one of :data:`ALERT_DAYS`,
    or ``None``: off) in the caller's transaction, with the event
    ``officer.subscriptions_changed`` (the new values, never the address) when
    anything changed. Returns whether it did."""
    if due_alert_days is not None and due_alert_days not in ALERT_DAYS:
        raise ValueError(f"due alerts are {ALERT_DAYS} days before, not {due_alert_days}")
    if (officer.weekly_summary, officer.due_alert_days) == (weekly_summary, due_alert_days):
        return False
    officer.weekly_summary, officer.due_alert_days = weekly_summary, due_alert_days
    audit.record(session, rt.crypto, "officer.subscriptions_changed", actor=actor_of(officer),
                 details={"officer": officer.id, "weekly_summary": weekly_summary,
                          "due_alert_days": due_alert_days})
    return True


# --- sending ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """What the summary counts, at one moment."""

    #: open requests per open state, the queue's order, every open state present
    by_status: dict[str, int]
    due_soon: int
    overdue: int
    completed: int

    @property
    def open(self) -> int:
        return sum(self.by_status.values())

    @property
    def paused(self) -> int:
        return self.by_status.get(Status.PAUSED, 0)


def figures(session: Session, now: datetime) -> Figures:
    """The summary's figures at ``now``: open and overdue as the queue and the
    dashboard count them (:func:`dsar.console.stats.due_counts`)."""
    from ..console import stats  # here: dsar.console's package imports this module
    from ..console.queue import OPEN

    counts = {str(status): int(count) for status, count in session.execute(
        select(Request.status, func.count()).where(OPEN_PREDICATE).group_by(Request.status))}
    due_soon, overdue = stats.due_counts(session, now)
    completed = session.scalar(select(func.count()).where(
        Request.status == Status.COMPLETED.value,
        Request.closed_at >= now - timedelta(days=RECENT_DAYS))) or 0
    return Figures({str(s): counts.get(s, 0) for s in OPEN}, due_soon, overdue,
                   int(completed))


def send_due(rt: Runtime) -> int:
    """Queue the summaries and alerts due now; returns how many mails were queued.

    One short transaction finds the officers with something due, then one
    transaction per such officer locks their row, looks again and queues. An
    officer whose mails fail (other than the database being unavailable,
    raised) is logged by id and skipped until the next call."""
    now = rt.now()
    with rt.transaction() as session:
        subscribed = session.execute(
            select(Officer.id, Officer.weekly_summary, Officer.weekly_summary_sent_at,
                   Officer.due_alert_days)
            .where(Officer.status == OfficerStatus.ACTIVE,
                   or_(Officer.weekly_summary.is_(True), Officer.due_alert_days.is_not(None)))
            .order_by(Officer.id)).all()
        due = [officer_id for officer_id, summary, last, days in subscribed
               if summary and _summary_due(last, now)
               or days is not None and _pending(session, officer_id, days, now, limit=1)]
    cache: list[Figures] = []
    queued = 0
    for officer_id in due:
        try:
            with rt.transaction() as session:
                queued += _send_to(session, rt, officer_id, now, cache)
        except Exception as exc:  # one officer's trouble (their address?) stops no other's
            if is_unavailable(exc):
                raise
            log.error("officer %s: subscription mails not queued (%s); tried again at the "
                      "next chores", officer_id, type(exc).__name__)
    return queued


def _summary_due(last: datetime | None, now: datetime) -> bool:
    return last is None or now - last >= SUMMARY_EVERY


@dataclass(frozen=True)
class _Due:
    id: str
    kind: str
    status: str
    due_at: datetime


def _pending(session: Session, officer_id: str, days: int, now: datetime,
             limit: int | None = None) -> list[_Due]:
    """Open requests due within ``days`` (or overdue) with no alert to the
    officer for their current due date, nearest first."""
    told = exists().where(OfficerDueAlert.officer_id == officer_id,
                          OfficerDueAlert.request_id == Request.id,
                          OfficerDueAlert.due_at == Request.due_at)
    query = (select(Request.id, Request.kind, Request.status, Request.due_at)
             .where(OPEN_PREDICATE, Request.due_at < now + timedelta(days=days), ~told)
             .order_by(Request.due_at, Request.id))
    if limit is not None:
        query = query.limit(limit)
    return [_Due(*row) for row in session.execute(query)]


def _send_to(session: Session, rt: Runtime, officer_id: str, now: datetime,
             cache: list[Figures]) -> int:
    """The officer's mails due at ``now``, queued in ``session`` with their records."""
    officer = session.scalar(select(Officer).where(Officer.id == officer_id).with_for_update())
    if officer is None or officer.status != OfficerStatus.ACTIVE:
        return 0
    queued = 0
    if officer.weekly_summary and _summary_due(officer.weekly_summary_sent_at, now):
        if not cache:
            cache.append(figures(session, now))
        subject, body = summary_mail(rt, cache[0], now)
        outbox.enqueue(session, rt, email_of(rt, officer), subject, body, kind=SUMMARY_KIND)
        officer.weekly_summary_sent_at = now
        queued += 1
    if officer.due_alert_days is not None:
        pending = _pending(session, officer.id, officer.due_alert_days, now)
        if pending:
            subject, body = alert_mail(rt, officer.due_alert_days, pending, now)
            outbox.enqueue(session, rt, email_of(rt, officer), subject, body, kind=ALERT_KIND)
            session.add_all(OfficerDueAlert(officer_id=officer.id, request_id=due.id,
                                            due_at=due.due_at, sent_at=now) for due in pending)
            queued += 1
    if queued:
        log.info("officer %s: %d subscription mails queued", officer.id, queued)
    return queued


# --- the texts -------------------------------------------------------------------------


def _url(rt: Runtime, path: str) -> str:
    return str(rt.settings["BASE_URL"]).rstrip("/") + path


def summary_mail(rt: Runtime, counted: Figures, now: datetime) -> tuple[str, str]:
    """The weekly summary's subject and body."""
    by_status = "\n".join(f"  {status.replace('_', ' ')}: {count}"
                          for status, count in counted.by_status.items())
    subject = SUMMARY_SUBJECT.format(open=counted.open, overdue=counted.overdue)
    body = SUMMARY_BODY.format(
        when=when(now), open=counted.open, by_status=by_status, soon_days=_soon_days(),
        due_soon=counted.due_soon, overdue=counted.overdue, paused=counted.paused,
        recent_days=RECENT_DAYS, completed=counted.completed,
        dashboard_url=_url(rt, DASHBOARD_PATH), queue_url=_url(rt, QUEUE_PATH),
        account_url=_url(rt, ACCOUNT_PATH))
    return subject, body


def _soon_days() -> int:
    from ..console import stats

    return stats.DUE_SOON_DAYS


def alert_mail(rt: Runtime, days: int, pending: list[_Due], now: datetime) -> tuple[str, str]:
    """The due alert's subject and body: the first :data:`MAX_LISTED` of ``pending``."""
    count = len(pending)
    listed = "\n".join(
        ALERT_ITEM.format(id=due.id, kind=due.kind, status=due.status.replace("_", " "),
                          due=when(due.due_at), left=days_left(due.due_at, now),
                          url=_url(rt, REQUEST_PATH.format(id=due.id)))
        for due in pending[:MAX_LISTED])
    more = ALERT_MORE.format(count=count - MAX_LISTED) if count > MAX_LISTED else ""
    these = "This request is" if count == 1 else f"These {count} requests are"
    subject = ALERT_SUBJECT.format(count=plural(count, "request"), days=plural(days, "day"))
    body = ALERT_BODY.format(days=plural(days, "day"), these=these, listed=listed, more=more,
                             queue_url=_url(rt, QUEUE_PATH), account_url=_url(rt, ACCOUNT_PATH))
    return subject, body
