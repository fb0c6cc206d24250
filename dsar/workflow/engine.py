"""Fan-out and completion: a request in processing becomes one Task per
configured connector, and when the last task ends the request ends (an
access request after one more step, its export bundle: :mod:`.export_step`).

``start_processing`` and ``finalise`` run in the caller's transaction; the
work of each task runs in :mod:`dsar.workflow.tasks`, outside any transaction.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit
from ..clock import now_of
from ..connector import Capability
from ..models import ExportBundle, Request, Task
from ..models.task import BUNDLE_CONNECTOR
from ..runtime import Runtime
from . import export_step, notices
from .states import RequestKind, Status, transition
from .task_states import OPEN, Step, TaskStatus, move

log = logging.getLogger(__name__)



def step_for(request: Request) -> Step:
    return Step.EXPORT if request.kind == RequestKind.ACCESS else Step.ERASE


def start_processing(session: Session, rt: Runtime, request: Request, *, actor: str) -> None:
    """Move the request to processing and create its first tasks: discovery
    on the connectors that can expand the subject's identity, else the work
    itself (export or erase), one task per configured connector."""
    names = sorted(rt.connectors)
    discoverers = [n for n in names if Capability.DISCOVER in rt.connectors[n].capabilities]
    transition(session, rt.crypto, request, Status.PROCESSING, actor=actor,
               details={"step": step_for(request), "connectors": names,
                        "discovery": discoverers})
    if discoverers:
        _ensure_tasks(session, request.id, discoverers, Step.DISCOVER)
    else:
        _ensure_tasks(session, request.id, names, step_for(request))
    if not names:
        finalise(session, rt, request.id)


def _ensure_tasks(session: Session, request_id: str, names: list[str], step: Step) -> None:
    """One task per connector for ``step``; existing ones are left alone."""
    existing = set(session.scalars(select(Task.connector).where(
        Task.request_id == request_id, Task.step == step)))
    for name in names:
        if name not in existing:
            session.add(Task(request_id=request_id, connector=name, step=step.value,
                             not_before=now_of(session)))
    session.flush()


def after_discovery(session: Session, rt: Runtime, request_id: str,
                    locked: Request | None = None, tasks: list[Task] | None = None) -> None:
    """Called when a discovery task ends. Until a fixed point is reached
    (every discoverer has seen every identifier), run another round; then
    create the work tasks, and rerun any that ran before the subject grew
    (an officer's retry after a late discovery)."""
    request = locked or _locked(session, request_id)
    if request.status != Status.PROCESSING.value:
        return
    if tasks is None:
        tasks = tasks_of(session, request_id)
    discovery = [t for t in tasks if t.step == Step.DISCOVER]
    if any(t.status in OPEN for t in discovery):
        return
    known = len(request.identifiers)
    stale = [t for t in discovery
             if t.status == TaskStatus.SUCCEEDED and t.identifiers_seen < known]
    if stale:
        for task in stale:
            reset_task(session, rt, task)
        audit.record(session, rt.crypto, "discovery.round", actor="system",
                     request_id=request_id, details={"identifiers": known,
                                                     "connectors": sorted(t.connector
                                                                          for t in stale)})
        return
    step = step_for(request)
    _ensure_tasks(session, request_id, sorted(rt.connectors), step)
    for task in tasks:
        if task.step == step and task.status == TaskStatus.SUCCEEDED \
                and task.identifiers_seen < known:
            reset_task(session, rt, task)
    sources = Counter(i.source for i in request.identifiers)
    audit.record(session, rt.crypto, "discovery.completed", actor="system",
                 request_id=request_id, details={"identifiers": known,
                                                 "sources": dict(sorted(sources.items()))})


def task_ended(session: Session, rt: Runtime, task: Task, owner: str | None = None,
               locked: Request | None = None, tasks: list[Task] | None = None) -> Task | None:
    """A task succeeded or failed for good: move its request on. Returns a
    follow-up task claimed for ``owner`` (the bundle step), if any.
    ``locked``: the request, when the caller holds its row lock already;
    ``tasks``: all its tasks, when the caller read them (ordered by connector)."""
    if task.step == Step.DISCOVER:
        after_discovery(session, rt, task.request_id, locked=locked, tasks=tasks)
        return None
    return finalise(session, rt, task.request_id, owner=owner, locked=locked, tasks=tasks)


def tasks_of(session: Session, request_id: str, *, lock: bool = False) -> list[Task]:
    """A request's tasks, ordered by connector; ``lock``: row-locked too (take
    the request's lock first: the order everywhere is request, tasks, audit head)."""
    query = select(Task).where(Task.request_id == request_id).order_by(Task.connector)
    return list(session.scalars(query.with_for_update() if lock else query))


def _locked(session: Session, request_id: str) -> Request:
    return session.execute(select(Request).where(Request.id == request_id)
                           .with_for_update()).scalar_one()


def reset_task(session: Session, rt: Runtime, task: Task) -> None:
    """Make an ended task runnable again from a fresh count of attempts."""
    move(session, rt.crypto, task, TaskStatus.PENDING)
    task.attempts, task.not_before = 0, rt.now()
    task.record_count, task.result, task.reclaims, task.retrying_since = 0, None, 0, None
    task.lease_owner = task.lease_expires_at = task.last_error = task.finished_at = None


def finalise(session: Session, rt: Runtime, request_id: str, *, owner: str | None = None,
             locked: Request | None = None, tasks: list[Task] | None = None) -> Task | None:
    """End the request if all its tasks have ended.

    Locks the request row so two workers finishing at once finalise once.
    Any failed task: ``partially_failed`` (an officer may retry). Erasure:
    completed. Access: the first time, the bundle step is added (built by a
    worker outside this transaction: the one that recorded the last export,
    when ``owner`` names it, claims it at once and it is returned); once
    it succeeded, the bundle is released and the request completed. A
    completed request's notice is queued here (:mod:`.notices`).
    """
    request = locked or _locked(session, request_id)
    if request.status != Status.PROCESSING.value:
        return None
    if tasks is None:
        tasks = tasks_of(session, request_id)
    if any(t.status in OPEN for t in tasks):
        return None
    failed = sorted(t.connector for t in tasks if t.status == TaskStatus.FAILED)
    if failed:
        transition(session, rt.crypto, request, Status.PARTIALLY_FAILED, actor="system",
                   details={"failed": failed})
        return None
    work = [t for t in tasks if t.step != Step.BUNDLE]
    details: dict[str, object] = {"records": sum(t.record_count for t in work)}
    bundle: ExportBundle | None = None
    if request.kind == RequestKind.ACCESS:
        built = next((t for t in tasks if t.step == Step.BUNDLE), None)
        if built is None:
            return _add_bundle_step(session, rt, request_id, owner)
        bundle, released = export_step.release(session, rt, request, built)
        details.update(released)
    transition(session, rt.crypto, request, Status.COMPLETED, actor="system", details=details)
    if bundle is not None:
        notices.access_ready(session, rt, request, bundle)
    else:
        notices.erased(session, rt, request, tasks)
    return None


def _add_bundle_step(session: Session, rt: Runtime, request_id: str,
                     owner: str | None) -> Task | None:
    """The bundle task: claimed for ``owner`` (who runs it next, sparing a
    claim and a wake-up), or pending for any worker."""
    if owner is None:
        _ensure_tasks(session, request_id, [BUNDLE_CONNECTOR], Step.BUNDLE)
        return None
    now = rt.now()
    task = Task(request_id=request_id, connector=BUNDLE_CONNECTOR, step=Step.BUNDLE.value,
                status=TaskStatus.RUNNING.value, attempts=1, not_before=now, lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=float(rt.settings["TASK_LEASE_SECONDS"])))
    session.add(task)
    session.flush()
    return task
