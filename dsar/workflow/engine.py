"""Fan-out and completion: a request in processing becomes one Task per
configured connector, and when the last task ends the request ends.

``start_processing`` and ``finalise`` run in the caller's transaction; the
work of each task runs in :mod:`dsar.workflow.tasks`, outside any transaction.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..database import utcnow
from ..models import ExportBundle, Request, Task
from ..runtime import Runtime
from . import bundle
from .states import Status, transition
from .subjects import identifier_sources

log = logging.getLogger(__name__)

STEP_EXPORT = "export"
STEP_ERASE = "erase"
OPEN_TASK_STATES = ("pending", "running")


def step_for(request: Request) -> str:
    return STEP_EXPORT if request.kind == "access" else STEP_ERASE


def start_processing(session: Session, rt: Runtime, request: Request, *, actor: str) -> None:
    """Move the request to processing and create its tasks, one per
    configured connector. Idempotent per (request, connector, step)."""
    step = step_for(request)
    names = sorted(rt.connectors)
    transition(session, rt.crypto, request, Status.PROCESSING, actor=actor,
               details={"step": step, "connectors": names})
    existing = set(session.scalars(select(Task.connector).where(
        Task.request_id == request.id, Task.step == step)))
    for name in names:
        if name not in existing:
            session.add(Task(request_id=request.id, connector=name, step=step,
                             not_before=utcnow()))
    session.flush()
    if not names:
        finalise(session, rt, request.id)


def reset_task(task: Task) -> None:
    """Make a failed task runnable again from a fresh count of attempts."""
    task.status, task.attempts, task.not_before = "pending", 0, utcnow()
    task.lease_owner = task.lease_expires_at = task.last_error = task.finished_at = None


def finalise(session: Session, rt: Runtime, request_id: str) -> None:
    """End the request if all its tasks have ended.

    Locks the request row so two workers finishing at once finalise once.
    Access: the export bundle is assembled; erasure: nothing more to do.
    Any failed task: ``partially_failed`` (an officer may retry).
    """
    request = session.execute(select(Request).where(Request.id == request_id)
                              .with_for_update()).scalar_one()
    if request.status != Status.PROCESSING.value:
        return
    tasks = list(session.scalars(select(Task).where(Task.request_id == request_id)
                                 .order_by(Task.connector)))
    if any(t.status in OPEN_TASK_STATES for t in tasks):
        return
    failed = sorted(t.connector for t in tasks if t.status == "failed")
    if failed:
        transition(session, rt.crypto, request, Status.PARTIALLY_FAILED, actor="system",
                   details={"failed": failed})
        return
    details: dict[str, object] = {"records": sum(t.record_count for t in tasks)}
    if request.kind == "access":
        made = _make_bundle(session, rt, request, tasks)
        details.update(bundle_sha256=made.sha256, bundle_size=made.size)
    transition(session, rt.crypto, request, Status.COMPLETED, actor="system", details=details)


def _make_bundle(session: Session, rt: Runtime, request: Request,
                 tasks: list[Task]) -> ExportBundle:
    export_dir = Path(rt.settings["EXPORT_DIR"])
    path, size, sha256 = bundle.build(
        export_dir, request, [t.connector for t in tasks], identifier_sources(rt, request))
    made = session.get(ExportBundle, request.id)
    if made is None:
        made = ExportBundle(request_id=request.id, download_count=0)
        session.add(made)
    made.filename, made.size, made.sha256, made.created_at = path.name, size, sha256, utcnow()
    made.expires_at = utcnow() + timedelta(days=int(rt.settings["EXPORT_LINK_DAYS"]))
    session.flush()
    log.info("export bundle ready for request %s (%d bytes)", request.id, size)
    return made
