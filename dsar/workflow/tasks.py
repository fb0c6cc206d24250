"""Running one Task: claimed under a lease (:mod:`.lease`), the work done
outside any transaction while a heartbeat keeps the lease, then the outcome
recorded, fenced by the lease.

* :func:`run` does the step (discover, export, erase, or build the bundle)
  under the heartbeat's stop token, and :func:`complete` writes the outcome
  only if this worker still holds the lease. Running a task twice has the
  effect of running it once: each export run writes a part of its own that
  only the recorded result names, and erasure is idempotent by contract.
* A worker that lost its task still records what its erasure did to the
  store (``task.result_discarded``), so the audit trail never undercounts.
* Retryable errors are retried (:mod:`.retry`) for a window of time;
  permanent errors, connector bugs and overdue tasks fail at once.
* Recording waits out a short app-database outage instead of leaving the
  task to its lease; a failure to record hands the task back at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .. import audit, entropy, faults
from ..connector import (
    Connector,
    PermanentError,
    RetryableError,
    Stopped,
    Subject,
    check_stop,
    stop_scope,
)
from ..database import is_unavailable
from ..models import Request, Task
from ..runtime import Runtime
from . import engine, erasure, export_step, lease, retry
from .lease import Heartbeat, LeaseLost, release
from .outcome import Outcome
from .parts import PartWriter
from .subjects import add_identifiers, subject_of
from .task_states import ENDED, Step, TaskStatus, move

log = logging.getLogger(__name__)

#: how long a worker keeps trying to record an outcome while the app database is down
RECORD_PATIENCE_SECONDS = 600.0

__all__ = ["LeaseLost", "Outcome", "complete", "run"]


@dataclass
class _Job:
    """What a claimed task needs, read in one short transaction."""

    request_id: str
    connector: str
    step: str
    subject: Subject
    seen: int
    reclaims: int
    bundle: export_step.BundleJob | None = None


def claim_and_run(rt: Runtime, owner: str, shutdown: threading.Event | None = None) -> bool:
    """Claim the next runnable task (reading what it needs in the same
    transaction) and run it; ``False`` when there was none."""
    loaded: list[_Job] = []
    task_id = lease.claim(rt, owner, then=lambda session, task, request: loaded.append(
        _job_of(session, rt, task, request)))
    if task_id is None:
        return False
    run(rt, task_id, owner, shutdown, job=loaded[0])
    return True


def run(rt: Runtime, task_id: int, owner: str,
        shutdown: threading.Event | None = None, job: _Job | None = None) -> None:
    """Do a claimed task's work and record its outcome. ``shutdown``, once
    set, asks the call to stop; a task stopped that way is handed back, not
    failed (its worker's process is going away). ``job``: what the task
    needs, when the claim already read it."""
    job = job or _load(rt, task_id, owner)
    if job is None:
        return
    if job.reclaims > int(rt.settings["TASK_MAX_RECLAIMS"]):
        _record(rt, task_id, owner, Outcome(False, seen=job.seen, error=(
            f"its worker stopped {job.reclaims} times while running it; check the "
            "workers' logs (memory, crashes) before retrying")), threading.Event())
        return
    overdue = Outcome(False, seen=job.seen, error="ran longer than TASK_MAX_SECONDS and did "
                      "not stop when asked; it may still be running")
    with Heartbeat(rt, task_id, owner, shutdown=shutdown,
                   on_overdue=lambda: _record_quietly(rt, task_id, owner, overdue)) as beat:
        outcome = _perform(rt, job, beat.stop)
        outcome.seen = job.seen
        if beat.shutdown.is_set() and outcome.result.get("stopped") and not beat.lost.is_set():
            _handed_back(rt, task_id, owner, job, outcome)
            return
        if beat.overdue:
            outcome = _overdue(rt, outcome)
        faults.point("task.before_complete")
        recorded = False if beat.lost.is_set() else _record(rt, task_id, owner, outcome,
                                                             beat.lost, job.request_id)
    if recorded is False:
        log.warning("task %s: lease lost, result discarded", task_id)
        _discarded(rt, task_id, job, outcome)
    elif recorded and job.step == Step.BUNDLE and outcome.ok:
        export_step.after_release(rt, job.request_id)
    if recorded and outcome.follow_up is not None:  # the bundle step, ours already
        run(rt, outcome.follow_up, owner, shutdown, job=outcome.follow_up_job)


def _load(rt: Runtime, task_id: int, owner: str) -> _Job | None:
    with rt.transaction() as session:
        task = session.get(Task, task_id)
        if task is None or task.lease_owner != owner:
            return None
        return _job_of(session, rt, task)


def _job_of(session: Session, rt: Runtime, task: Task, request: Request | None = None,
            tasks: list[Task] | None = None) -> _Job:
    """What ``task`` needs to run; ``request`` and its ``tasks`` when the caller has them."""
    request = request or session.get(Request, task.request_id)
    assert request is not None  # noqa: S101 - foreign key
    bundling = task.step == Step.BUNDLE  # the bundle reads the identifiers itself
    job = _Job(request.id, task.connector, task.step,
               Subject({}) if bundling else subject_of(rt, request),
               len(request.identifiers), task.reclaims)
    if bundling:
        job.bundle = export_step.job_for(session, rt, request, tasks)
    return job


def _perform(rt: Runtime, job: _Job, stop: threading.Event) -> Outcome:
    if job.bundle is not None:
        try:
            return export_step.build(rt, job.bundle)
        except Exception as exc:  # a full disk passes (retry); anything else is a bug
            log.error("export bundle of request %s failed: %s", job.request_id,
                      type(exc).__name__)
            return Outcome(False, retryable=isinstance(exc, OSError),
                           error=f"building the export failed ({type(exc).__name__})")
    connector = rt.connectors.get(job.connector)
    if connector is None:
        return Outcome(False, error=f"connector {job.connector!r} is no longer configured")
    wanted = erasure.for_store(connector, job.subject)
    if not wanted.kinds:
        return Outcome(True, result={"skipped": erasure.NO_KINDS})
    try:
        with stop_scope(stop):
            if job.step == Step.DISCOVER:
                return _discover(connector, wanted)
            if job.step == Step.EXPORT:
                return _export(rt, job.request_id, connector, wanted)
            return erasure.run(connector, wanted)
    except Stopped as exc:
        done = exc.done
        result = {} if done is None else {"deleted": done.deleted, "masked": done.masked,
                                          "kept": done.kept}
        return Outcome(False, result={**result, "stopped": True},
                       error="stopped before the end (the task was taken over or overdue)")
    except RetryableError as exc:
        return Outcome(False, error=connector.described(exc), retryable=True)
    except PermanentError as exc:
        return Outcome(False, error=connector.described(exc))
    except Exception as exc:  # a connector bug: retrying will not fix it; never log its message
        log.error("task for connector %s raised %s", job.connector, type(exc).__name__)
        return Outcome(False, error=f"unexpected {type(exc).__name__} in the connector "
                       "(a bug: see the worker's log)")


def _discover(connector: Connector, subject: Subject) -> Outcome:
    found = erasure.discovered(connector, subject)
    return Outcome(True, records=sum(len(v) for v in found.values()), identifiers=found)


def _export(rt: Runtime, request_id: str, connector: Connector, subject: Subject) -> Outcome:
    writer = PartWriter(Path(rt.settings["EXPORT_DIR"]), request_id, connector.name,
                        run=entropy.hex_id(6))
    try:
        categories: Counter[str] = Counter()
        for record in connector.find(subject):
            writer.add(record)
            categories[record.category] += 1
        check_stop()
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return Outcome(True, records=writer.count,
                   result={"categories": dict(categories), "part": writer.name})


def _overdue(rt: Runtime, outcome: Outcome) -> Outcome:
    limit = float(rt.settings["TASK_MAX_SECONDS"])
    outcome.ok, outcome.retryable = False, False
    outcome.error = f"ran longer than TASK_MAX_SECONDS ({limit:.0f} s) and was stopped"
    return outcome


def _record(rt: Runtime, task_id: int, owner: str, outcome: Outcome,
            lost: threading.Event, request_id: str | None = None) -> bool | None:
    """:func:`complete`, waiting out an app-database outage (the heartbeat
    keeps the lease meanwhile). Any other failure hands the task back.
    ``True``: recorded; ``False``: the lease was lost; ``None``: handed back."""
    deadline, delay, logged = time.monotonic() + RECORD_PATIENCE_SECONDS, 0.5, False
    while True:
        try:
            return complete(rt, task_id, owner, outcome, request_id)
        except Exception as exc:
            if not is_unavailable(exc) or lost.is_set() or time.monotonic() > deadline:
                log.error("task %s: outcome not recorded (%s); handing the task back",
                          task_id, type(exc).__name__)
                release(rt, task_id, owner)
                return None
            if not logged:
                log.warning("task %s: app database unavailable; will record the outcome "
                            "when it returns", task_id)
                logged = True
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _record_quietly(rt: Runtime, task_id: int, owner: str, outcome: Outcome) -> None:
    try:
        complete(rt, task_id, owner, outcome)
    except Exception as exc:  # the heartbeat's thread must not die of it
        log.error("task %s: overdue failure not recorded (%s)", task_id, type(exc).__name__)


def complete(rt: Runtime, task_id: int, owner: str, outcome: Outcome,
             request_id: str | None = None) -> bool:
    """Record the outcome if the lease is still ours (``False`` otherwise);
    end the step, or the request, when this was its last open task.
    ``request_id``, when the caller knows it, spares a query."""
    faults.point("task.complete")
    with rt.transaction() as session:
        # Lock order, everywhere: the request row, then its tasks, then the
        # audit head; so finishing tasks of one request never deadlock.
        if request_id is None:
            request_id = session.scalar(select(Task.request_id).where(Task.id == task_id))
        request = session.execute(select(Request).where(Request.id == request_id)
                                  .with_for_update()).scalar_one_or_none()
        tasks = [] if request is None else engine.tasks_of(session, request.id, lock=True)
        task = next((t for t in tasks if t.id == task_id), None)
        if request is None or task is None or task.status != TaskStatus.RUNNING \
                or task.lease_owner != owner:
            log.warning("task %s: lease lost before completion, result discarded", task_id)
            return False
        task.lease_owner, task.lease_expires_at = None, None
        task.identifiers_seen = outcome.seen
        if outcome.ok and outcome.identifiers:
            outcome.result["added"] = _add_discovered(session, rt, task, outcome.identifiers)
        task.record_count, task.result = outcome.records, json.dumps(outcome.result)
        target = _apply(rt, task, request, outcome)
        move(session, rt.crypto, task, target, actor=f"connector:{task.connector}",
             retry=target is TaskStatus.PENDING, details=_details(task, outcome, target))
        if target is TaskStatus.SUCCEEDED:
            _wake_waiting(session, rt, task)
        follow_up = None
        if target in ENDED:
            follow_up = engine.task_ended(session, rt, task, owner, locked=request, tasks=tasks)
        if follow_up is not None:
            outcome.follow_up = follow_up.id
            outcome.follow_up_job = _job_of(session, rt, follow_up, request, tasks)
        return True


def _details(task: Task, outcome: Outcome, target: TaskStatus) -> dict[str, Any]:
    details: dict[str, Any] = {"records": outcome.records, "result": outcome.result}
    if task.reclaims:
        details["reclaims"] = task.reclaims
    if outcome.error:
        details["error"] = outcome.error
    if target is TaskStatus.PENDING:
        details["next_try_at"] = task.not_before.isoformat()
    return details


def _add_discovered(session: Session, rt: Runtime, task: Task,
                    found: dict[str, list[str]]) -> list[str]:
    """Attach newly discovered identifiers (encrypted), up to the cap, in
    :func:`erasure.discovered`'s order; returns their digests for the audit trail."""
    request = session.get(Request, task.request_id)
    assert request is not None  # noqa: S101 - foreign key
    room = int(rt.settings["DISCOVERY_MAX_IDENTIFIERS"]) - len(request.identifiers)
    return add_identifiers(rt, request, found, source=f"connector:{task.connector}",
                           limit=max(room, 0))


def _apply(rt: Runtime, task: Task, request: Request, outcome: Outcome) -> TaskStatus:
    """The outcome's fields on ``task``; returns the status it moves to
    (pending: a retry is scheduled)."""
    now = rt.now()
    if outcome.ok:
        task.last_error, task.finished_at, task.retrying_since = None, now, None
        return TaskStatus.SUCCEEDED
    task.last_error = outcome.error
    at = retry.next_try(rt, task, request.due_at, now) if outcome.retryable else None
    if at is not None:
        task.retrying_since = task.retrying_since or now
        task.not_before = at
        return TaskStatus.PENDING
    if outcome.retryable and task.retrying_since is not None:
        task.last_error = (f"{outcome.error} (retried since "
                           f"{task.retrying_since.isoformat(timespec='seconds')}; gave up)")
    task.finished_at = now
    return TaskStatus.FAILED


#: a store's success wakes its waiting tasks at most this often per runtime
WAKE_WAITING_SECONDS = 5.0


def _wake_waiting(session: Session, rt: Runtime, task: Task) -> None:
    """The store answered: tasks of other requests waiting on it try now
    (at most every few seconds per store: the statement costs a round trip)."""
    now, woken = time.monotonic(), rt.stores_woken_at
    if now - woken.get(task.connector, -WAKE_WAITING_SECONDS) < WAKE_WAITING_SECONDS:
        return
    woken[task.connector] = now
    session.execute(update(Task).where(
        Task.connector == task.connector, Task.status == TaskStatus.PENDING, Task.id != task.id,
        Task.retrying_since.is_not(None), Task.not_before > rt.now(),
    ).values(not_before=rt.now()))


def _handed_back(rt: Runtime, task_id: int, owner: str, job: _Job, outcome: Outcome) -> None:
    """The worker's process stops: the task goes back to pending for another
    worker; what an interrupted erasure already did is recorded."""
    log.info("task %s handed back: its worker is stopping", task_id)
    release(rt, task_id, owner, delay_seconds=0.0)
    _discarded(rt, task_id, job, outcome, note="its worker stopped; these changes were "
               "made to the store before it handed the task back")


def _discarded(rt: Runtime, task_id: int, job: _Job, outcome: Outcome,
               note: str = "this worker lost the task; these changes were made to the "
               "store all the same") -> None:
    """This worker lost the task. What its erasure did to the store is still a
    fact for the audit trail (the next run finds those records already gone)."""
    if not outcome.changed_store:
        return
    try:
        with rt.transaction() as session:
            audit.record(session, rt.crypto, "task.result_discarded",
                         actor=f"connector:{job.connector}", request_id=job.request_id,
                         details={"task": task_id, "step": job.step,
                                  "result": outcome.result, "note": note})
    except Exception as exc:
        log.error("task %s: discarded result not recorded (%s)", task_id, type(exc).__name__)
