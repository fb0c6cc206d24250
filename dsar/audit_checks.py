"""Checks of the audit chain that keep their own sealed record: the state the
trail page shows, "check now", and the scheduled full check.

A check is asked for (:func:`ask`: a row with no outcome yet) and run by the
housekeeper (:func:`run_asked`, among the housekeeping chores), so a page never
waits for a walk over a million events. An *incremental* check starts where
the last check ended when that one was intact: the point it reached (seq and
hash) is sealed with the audit key in its row, so it cannot be moved forward
past an edit without the key (a point whose seal fails is refused, and the next
check is full). An incremental check cannot see an edit to events already
checked; a *full* one walks from the first event, every
``AUDIT_FULL_CHECK_HOURS`` on its own (:func:`ask_due_full`). After a broken
check, every check is full: no point after a break is trusted.

Each outcome is also an ``audit.checked`` event in the chain itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import exists, literal, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.selectable import Exists

from . import audit
from .clock import now_of
from .crypto import Crypto, constant_time_equal
from .models import AuditCheck, AuditEvent, Request
from .runtime import Runtime

log = logging.getLogger(__name__)

FULL, INCREMENTAL = "full", "incremental"
KINDS = (INCREMENTAL, FULL)


def _seal_message(check: AuditCheck) -> str:
    finished = check.finished_at.astimezone(UTC).isoformat() if check.finished_at else ""
    return (f"check:{check.id}:{check.kind}:{check.from_seq}:{check.to_seq}:{check.to_hash}:"
            f"{check.ok}:{check.bad_seq}:{finished}")


def sealed(crypto: Crypto, check: AuditCheck) -> bool:
    """Whether a finished check's row is as it was written."""
    return check.mac is not None and constant_time_equal(
        crypto.audit_mac(_seal_message(check)), check.mac)


@dataclass(frozen=True)
class State:
    """What the trail page shows: the last finished check, the last intact
    full one, and a check asked for and not finished."""

    last: AuditCheck | None
    last_full: AuditCheck | None
    waiting: AuditCheck | None
    seal_ok: bool


def state(session: Session, crypto: Crypto) -> State:
    last = _last_finished(session)
    return State(last, _last_finished(session, FULL), _waiting(session),
                 last is None or sealed(crypto, last))


def _last_finished(session: Session, kind: str | None = None) -> AuditCheck | None:
    query = select(AuditCheck).where(AuditCheck.finished_at.is_not(None))
    if kind is not None:
        query = query.where(AuditCheck.kind == kind)
    return session.scalars(query.order_by(AuditCheck.id.desc()).limit(1)).first()


def _waiting(session: Session) -> AuditCheck | None:
    """The oldest check asked for and not finished."""
    return session.scalars(select(AuditCheck).where(AuditCheck.finished_at.is_(None))
                           .order_by(AuditCheck.id).limit(1)).first()


def ask(session: Session, kind: str, *, actor: str) -> AuditCheck:
    """Ask for a check (``incremental`` or ``full``) for the housekeeper to
    run; one asked for and not finished yet is that one (of any kind: a full
    one covers an incremental one). The outcome's ``audit.checked`` event
    names who asked."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of check {kind!r}")
    waiting = _waiting(session)
    if waiting is not None:
        if kind == FULL and waiting.kind != FULL:
            waiting.kind = FULL
        return waiting
    check = AuditCheck(kind=kind, requested_by=actor, requested_at=now_of(session))
    session.add(check)
    session.flush()
    return check


def ask_due_full(session: Session, hours: float, *, now: datetime) -> AuditCheck | None:
    """Ask for a full check when none was asked for in the last ``hours``
    (0: never on its own)."""
    if hours <= 0:
        return None
    last = session.scalars(select(AuditCheck).where(AuditCheck.kind == FULL)
                           .order_by(AuditCheck.id.desc()).limit(1)).first()
    if last is not None and last.requested_at > now - timedelta(hours=hours):
        return None
    return ask(session, FULL, actor="system")


def _start_point(session: Session, crypto: Crypto, check: AuditCheck
                 ) -> tuple[int, str] | str | None:
    """Where ``check`` starts: after the point the last check reached when it
    was intact and its seal holds; ``None`` for the first event; a problem
    (refused) when that point's seal fails."""
    if check.kind == FULL:
        return None
    last = _last_finished(session)
    if last is None:
        return None
    if not sealed(crypto, last):
        return (f"the point check {last.id} reached does not match its seal: it was moved or "
                "forged; the next check walks the whole chain")
    if not last.ok or last.to_seq is None or last.to_hash is None:
        return None
    return last.to_seq, last.to_hash


def run(rt: Runtime, check_id: int) -> AuditCheck:
    """Run one asked-for check and record its sealed outcome (and the
    ``audit.checked`` event). The walk reads one snapshot (:meth:`Runtime.reading`),
    holding no writer back."""
    with rt.transaction() as session:
        check = session.get_one(AuditCheck, check_id)
        check.started_at = now_of(session)
        start = _start_point(session, rt.crypto, check)
        if start is None:
            check.kind = FULL  # nothing to start from: the whole chain
    if isinstance(start, str):
        result, from_seq = audit.Verification(False, 0, None, start), None
    else:
        with rt.reading() as session:  # a snapshot: writers go on meanwhile
            result = audit.verify(session, rt.crypto, after=start)
        from_seq = (start[0] if start else 0) + 1
    with rt.transaction() as session:
        check = session.get_one(AuditCheck, check_id)
        check.from_seq, check.ok = from_seq, result.ok
        check.to_seq, check.to_hash = result.last_seq, result.last_hash
        check.bad_seq, check.problem = result.bad_seq, result.problem or None
        check.finished_at = now_of(session)
        session.flush()
        check.mac = rt.crypto.audit_mac(_seal_message(check))
        audit.record(session, rt.crypto, "audit.checked", actor=check.requested_by,
                     details={"check": check.id, "kind": check.kind, "from": from_seq,
                              "to": result.last_seq, "intact": result.ok,
                              "bad_seq": result.bad_seq})
        session.flush()
        session.expunge(check)
    if not result.ok:
        log.error("audit check %d found the chain broken at %s: %s", check_id,
                  result.bad_seq or "the head", result.problem)
    return check


def run_asked(rt: Runtime) -> int:
    """Housekeeping: ask for the scheduled full check when it is due, then run
    every check asked for, oldest first; the count run."""
    with rt.transaction() as session:
        ask_due_full(session, float(rt.settings["AUDIT_FULL_CHECK_HOURS"]), now=rt.now())
        asked = session.scalars(select(AuditCheck.id).where(AuditCheck.finished_at.is_(None))
                                .order_by(AuditCheck.id)).all()
    for check_id in asked:
        run(rt, check_id)
    return len(asked)


@dataclass(frozen=True)
class Unrecorded:
    """A request row its events do not account for."""

    request_id: str
    status: str
    missing: str


def unrecorded_requests(session: Session) -> Iterator[Unrecorded]:
    """Every request whose row the chain does not account for: no events at
    all, no ``request.received``, or no ``request.<status>`` for the state it
    is in (each state is entered by :func:`~dsar.workflow.states.transition`,
    which records that event; a resumed request returns to a state it had
    entered before). Two index lookups per request, streamed."""
    def has(action: ColumnElement[str]) -> Exists:
        return exists().where(AuditEvent.request_id == Request.id, AuditEvent.action == action)

    any_event = exists().where(AuditEvent.request_id == Request.id)
    received, entered = has(literal("request.received")), has("request." + Request.status)
    rows = session.execute(
        select(Request.id, Request.status, any_event, received, entered)
        .where(or_(~received, (Request.status != "received") & ~entered))
        .order_by(Request.received_at).execution_options(yield_per=500))
    for request_id, status, some, was_received, _entered in rows:
        if not some:
            missing = "no events at all"
        elif not was_received:
            missing = "no request.received event"
        else:
            missing = f"no request.{status} event for the state it is in"
        yield Unrecorded(request_id, status, missing)
