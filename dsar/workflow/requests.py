"""Intake and officer decisions: submit, verify, approve, deny, cancel, retry,
extend the deadline, pause the clock and resume it.

Each function changes one request inside the caller's transaction and records
its audit event there (through :func:`states.transition`), with the
requester's notice where the law expects one (:mod:`.notices`: denied,
cancelled, extended, paused, resumed); the caller commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit
from ..models import ErasurePreview, Request, Task
from ..models.request import new_request_id
from ..runtime import Runtime
from . import engine, export_step, notices
from . import extensions as clock
from .deadlines import due_date
from .extensions import Refused, WaitingFor
from .states import IllegalTransition, RequestKind, Status, transition
from .subjects import add_identifiers
from .task_states import OPEN, Step, TaskStatus, move


class UnknownRequest(LookupError):
    """No request has this id."""


def submit(session: Session, rt: Runtime, kind: str, identifiers: Mapping[str, Iterable[str]],
           *, name: str | None = None, message: str | None = None,
           actor: str = "requester") -> Request:
    """Create a request in ``received`` with its subject's identifiers
    encrypted, and record ``request.received``. Returns the request, added to
    the session with its id (written when the session flushes: one INSERT
    with the state the caller leaves it in)."""
    if kind not in tuple(RequestKind):
        raise ValueError(f"unknown request kind {kind!r}")
    now = rt.now()
    review = kind == RequestKind.ERASURE and bool(rt.settings["ERASURE_REVIEW"])
    request = Request(id=new_request_id(), kind=kind, status=Status.RECEIVED.value,
                      received_at=now, due_at=due_date(now), is_review_required=review)
    if name or message:
        details = json.dumps({"name": name, "message": message})
        request.details_ct = rt.crypto.encrypt_text(details, "request:details")
    session.add(request)
    digests = add_identifiers(rt, request, identifiers, source="requester")
    if not digests:
        raise ValueError("a request needs at least one identifier")
    audit.record(session, rt.crypto, "request.received", actor=actor, request_id=request.id,
                 details={"kind": kind, "identifiers": digests,
                          "due_at": request.due_at.isoformat()})
    return request


def get(session: Session, request_id: str, *, lock: bool = False) -> Request:
    stmt = select(Request).where(Request.id == request_id)
    if lock:
        stmt = stmt.with_for_update()
    found = session.execute(stmt).scalar_one_or_none()
    if found is None:
        raise UnknownRequest(request_id)
    return found


def mark_verified(session: Session, rt: Runtime, request: Request, *, actor: str,
                  method: str) -> None:
    """The requester proved control of the identifiers (``method`` says how).
    Erasure under review waits for an officer; everything else starts."""
    transition(session, rt.crypto, request, Status.VERIFIED, actor=actor,
               details={"method": method})
    if request.is_review_required:
        transition(session, rt.crypto, request, Status.AWAITING_REVIEW, actor="system")
    else:
        engine.start_processing(session, rt, request, actor="system")


class PreviewFailed(ValueError):
    """The erasure's stored preview failed for these stores: approving needs a reason."""

    def __init__(self, stores: list[str]) -> None:
        super().__init__(f"the erasure preview failed for {', '.join(stores)}: approving "
                         "anyway needs a reason")
        self.stores = stores


def failed_preview_stores(session: Session, request: Request) -> list[str]:
    """The stores for which the request's stored erasure preview failed
    (an ``error`` entry), sorted. No preview, or none computed yet: none
    failed (a store that takes none of the subject's identifiers has a
    ``note``: not a failure)."""
    stored = session.scalar(select(ErasurePreview.stores)
                            .where(ErasurePreview.request_id == request.id))
    if not stored:
        return []
    entries: list[dict[str, Any]] = json.loads(stored)
    return sorted(str(entry["connector"]) for entry in entries if "error" in entry)


def approve(session: Session, rt: Runtime, request: Request, *, actor: str,
            reason: str | None = None) -> None:
    """An officer approves an erasure; processing starts. While its stored
    preview failed for a store, only with a ``reason`` (:class:`PreviewFailed`
    otherwise), kept on the request and in the event with the stores."""
    reason = (reason or "").strip() or None
    failed = failed_preview_stores(session, request)
    if failed and reason is None:
        raise PreviewFailed(failed)
    transition(session, rt.crypto, request, Status.APPROVED, actor=actor, reason=reason,
               details={"preview_failed": failed} if failed else None)
    engine.start_processing(session, rt, request, actor="system")


def deny(session: Session, rt: Runtime, request: Request, *, actor: str, reason: str) -> None:
    """An officer denies an erasure, with the reason given to the requester."""
    if not reason.strip():
        raise ValueError("a denial needs a reason")
    transition(session, rt.crypto, request, Status.DENIED, actor=actor, reason=reason.strip())
    notices.denied(session, rt, request)


def cancel(session: Session, rt: Runtime, request: Request, *, actor: str, reason: str) -> None:
    """Stop a request that is not final; pending tasks are cancelled."""
    transition(session, rt.crypto, request, Status.CANCELLED, actor=actor, reason=reason)
    for task in session.scalars(select(Task).where(Task.request_id == request.id,
                                                   Task.status.in_(OPEN))):
        move(session, rt.crypto, task, TaskStatus.CANCELLED, actor=actor)
        task.lease_owner = None
    notices.cancelled(session, rt, request)


def retry(session: Session, rt: Runtime, request: Request, *, actor: str) -> int:
    """Run the failed tasks of a partially failed request again; returns how many.

    A bundle found incomplete runs the stores it names again and is built
    anew once they have succeeded."""
    if request.status != Status.PARTIALLY_FAILED.value:
        raise IllegalTransition(request.status, Status.PROCESSING.value)
    tasks = engine.tasks_of(session, request.id)
    failed = [t for t in tasks if t.status == TaskStatus.FAILED]
    rerun = {name for t in failed if t.step == Step.BUNDLE
             for name in export_step.mismatched(t)}
    details: dict[str, object] = {"retried_tasks": len(failed)}
    if rerun:
        details["rerun"] = sorted(rerun)
    transition(session, rt.crypto, request, Status.PROCESSING, actor=actor, details=details)
    for task in failed:
        if task.step == Step.BUNDLE and rerun:
            session.delete(task)  # added again by finalise once the stores have run
        else:
            engine.reset_task(session, rt, task)
    for task in tasks:
        if task.step == Step.EXPORT and task.connector in rerun:
            engine.reset_task(session, rt, task)
    return len(failed)


def extend(session: Session, rt: Runtime, request: Request, *, actor: str, months: int,
           reason: str) -> None:
    """Extend the deadline by ``months`` (1 or 2: :class:`ValueError`) further
    months (Art. 12(3)): once, and only while the first month runs
    (:class:`Refused` otherwise), with the reason the requester is told.
    Records ``request.extended``."""
    reason = reason.strip()
    if not reason:
        raise ValueError("an extension needs a reason")
    now = rt.now()
    refusal = clock.extension_refusal(request.status, request.extended_at, request.due_at, now)
    if refusal is not None:
        raise Refused(refusal)
    before = request.due_at
    request.due_at = clock.extended_due(request.received_at, before, months)
    request.extended_at, request.extension_reason = now, reason
    audit.record(session, rt.crypto, "request.extended", actor=actor, request_id=request.id,
                 details={"months": months, "reason": reason, "due_at_before": before.isoformat(),
                          "due_at": request.due_at.isoformat()})
    notices.extended(session, rt, request)


def pause(session: Session, rt: Runtime, request: Request, *, actor: str, waiting_for: str,
          note: str | None = None) -> None:
    """Stop the clock while waiting for the requester's identity or a
    clarification (UK GDPR Art. 12A): the request becomes ``paused`` and
    remembers the state it left. ``note`` (optional, officers' words) is kept
    as the status reason."""
    if waiting_for not in tuple(WaitingFor):
        raise ValueError(f"a pause waits for {' or '.join(WaitingFor)}, not {waiting_for!r}")
    current = request.status
    transition(session, rt.crypto, request, Status.PAUSED, actor=actor,
               reason=(note or "").strip() or None,
               details={"waiting_for": waiting_for, "due_at": request.due_at.isoformat()})
    request.paused_at, request.paused_from, request.paused_for = rt.now(), current, waiting_for
    notices.paused(session, rt, request)


def resume(session: Session, rt: Runtime, request: Request, *, actor: str) -> None:
    """Start the clock again: back to the state the request was paused in,
    the due date moved by the time paused. Records ``request.resumed``."""
    if request.status != Status.PAUSED or request.paused_at is None \
            or request.paused_from is None:
        raise IllegalTransition(request.status, "resumed")
    now = rt.now()
    due = clock.resumed_due(request.due_at, request.paused_at, now)
    transition(session, rt.crypto, request, Status(request.paused_from), actor=actor,
               event="request.resumed",
               details={"to": request.paused_from, "waited_for": request.paused_for,
                        "paused_seconds": clock.paused_for(request.paused_at, now)
                        .total_seconds(), "due_at": due.isoformat()})
    request.due_at = due
    request.paused_at = request.paused_from = request.paused_for = None
    request.status_reason = None
    notices.resumed(session, rt, request)


def expire_unverified(session: Session, rt: Runtime) -> int:
    """Requests never verified within ``UNVERIFIED_EXPIRY_DAYS`` become
    ``expired`` (their one final state). Returns how many."""
    cutoff = rt.now() - timedelta(days=int(rt.settings["UNVERIFIED_EXPIRY_DAYS"]))
    stale = session.scalars(select(Request).where(
        Request.status.in_((Status.RECEIVED.value, Status.VERIFYING.value)),
        Request.received_at < cutoff).with_for_update(skip_locked=True)).all()
    for request in stale:
        transition(session, rt.crypto, request, Status.EXPIRED, actor="system",
                   details={"after_days": int(rt.settings["UNVERIFIED_EXPIRY_DAYS"])})
    return len(stale)
