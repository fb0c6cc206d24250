"""Running one Task: claim it under a lease, do the connector work outside any
transaction, then record the outcome, fenced by the lease.

* :func:`claim` takes the oldest runnable task: pending and due, or running
  under a lease that ran out (its worker died). A task under a live lease is
  never taken.
* :func:`run` does the step (export or erase), renewing the lease as it goes,
  and :func:`complete` writes the outcome only if this worker still holds the
  lease. Running a task twice has the effect of running it once: export parts
  are replaced whole, and erasure is idempotent by contract.
* Retryable errors (and unexpected exceptions) are retried with exponential
  backoff up to ``TASK_MAX_ATTEMPTS``; permanent errors fail at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from .. import audit
from ..connector import Capability, Connector, PermanentError, RetryableError, Subject
from ..database import utcnow
from ..models import Request, Task
from ..runtime import Runtime
from . import engine
from .bundle import PartWriter
from .states import Status
from .subjects import add_identifiers, subject_of

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 3600.0


class LeaseLost(Exception):
    """Another worker took the task over; this worker's result is void."""


@dataclass
class Outcome:
    ok: bool
    records: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    retryable: bool = False
    #: identifiers a discovery found: written encrypted, never into ``result``
    identifiers: dict[str, set[str]] = field(default_factory=dict)
    #: how many identifiers the subject had for this run
    seen: int = 0


class Lease:
    """This worker's hold on a task, renewed while the work goes on."""

    def __init__(self, rt: Runtime, task_id: int, owner: str) -> None:
        self.rt, self.task_id, self.owner = rt, task_id, owner
        self.seconds = float(rt.settings["TASK_LEASE_SECONDS"])
        self._renewed = time.monotonic()

    def renew(self) -> None:
        """Extend the lease; raises :class:`LeaseLost` if it is no longer ours."""
        with self.rt.transaction() as session:
            done = session.execute(
                update(Task).where(Task.id == self.task_id, Task.lease_owner == self.owner,
                                   Task.status == "running")
                .values(lease_expires_at=utcnow() + timedelta(seconds=self.seconds)))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise LeaseLost(self.task_id)
        self._renewed = time.monotonic()

    def keep_alive(self) -> None:
        """Renew when a third of the lease has passed (cheap to call often)."""
        if time.monotonic() - self._renewed > self.seconds / 3:
            self.renew()


def claim(rt: Runtime, owner: str) -> int | None:
    """Take the next runnable task under a fresh lease; ``None`` when none."""
    now = utcnow()
    with rt.transaction() as session:
        task = session.execute(
            select(Task).join(Request, Request.id == Task.request_id)
            .where(Request.status == Status.PROCESSING.value,
                   or_((Task.status == "pending") & (Task.not_before <= now),
                       (Task.status == "running") & (Task.lease_expires_at < now)))
            .order_by(Task.not_before, Task.id).limit(1)
            .with_for_update(skip_locked=True, of=Task)
        ).scalar_one_or_none()
        if task is None:
            return None
        task.status, task.lease_owner = "running", owner
        task.lease_expires_at = now + timedelta(seconds=float(rt.settings["TASK_LEASE_SECONDS"]))
        task.attempts += 1
        return task.id


def run(rt: Runtime, task_id: int, owner: str) -> None:
    """Do a claimed task's work and record its outcome."""
    with rt.transaction() as session:
        task = session.get(Task, task_id)
        if task is None or task.lease_owner != owner:
            return
        request = session.get(Request, task.request_id)
        assert request is not None  # noqa: S101 - foreign key
        subject, name, step = subject_of(rt, request), task.connector, task.step
        seen = len(request.identifiers)
    lease = Lease(rt, task_id, owner)
    try:
        outcome = _perform(rt, request.id, name, step, subject, lease)
    except LeaseLost:
        log.warning("task %s: lease lost, result discarded", task_id)
        return
    outcome.seen = seen
    complete(rt, task_id, owner, outcome)


def _perform(rt: Runtime, request_id: str, name: str, step: str, subject: Subject,
             lease: Lease) -> Outcome:
    connector = rt.connectors.get(name)
    if connector is None:
        return Outcome(False, error=f"connector {name!r} is no longer configured")
    wanted = subject.restricted_to(connector.identity_kinds)
    if not wanted.kinds:
        return Outcome(True, result={"skipped": "no identifiers of the kinds it accepts"})
    try:
        if step == engine.STEP_DISCOVER:
            return _discover(connector, wanted)
        if step == engine.STEP_EXPORT:
            return _export(rt, request_id, connector, wanted, lease)
        return _erase(connector, wanted, lease)
    except LeaseLost:
        raise
    except RetryableError as exc:
        return Outcome(False, error=str(exc) or type(exc).__name__, retryable=True)
    except PermanentError as exc:
        return Outcome(False, error=str(exc) or type(exc).__name__)
    except Exception as exc:  # a connector bug: retry, and never log its message (may hold PII)
        log.error("task for connector %s raised %s", name, type(exc).__name__)
        return Outcome(False, error=f"unexpected {type(exc).__name__} in the connector",
                       retryable=True)


def _discover(connector: Connector, subject: Subject) -> Outcome:
    found = {kind: {v for v in values if isinstance(v, str) and v.strip()}
             for kind, values in connector.discover(subject).items()}
    found = {kind: values for kind, values in found.items() if values}
    return Outcome(True, records=sum(len(v) for v in found.values()), identifiers=found)


def _export(rt: Runtime, request_id: str, connector: Connector, subject: Subject,
            lease: Lease) -> Outcome:
    writer = PartWriter(Path(rt.settings["EXPORT_DIR"]), request_id, connector.name)
    try:
        categories: Counter[str] = Counter()
        for record in connector.find(subject):
            writer.add(record)
            categories[record.category] += 1
            lease.keep_alive()
        lease.renew()
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return Outcome(True, records=writer.count, result={"categories": dict(categories)})


def _erase(connector: Connector, subject: Subject, lease: Lease) -> Outcome:
    """Plan, erase, then find again: anything left that no hold keeps fails
    the task (erasure is verified, not assumed)."""
    if Capability.ERASE not in connector.capabilities:
        found = sum(1 for _ in connector.find(subject))
        if found:
            return Outcome(False, error=f"{found} records found but this connector cannot "
                           "erase: erase them by hand, then retry")
        return Outcome(True, result={"plan": {}, "note": "nothing found"})
    plan = connector.plan_erasure(subject)
    lease.keep_alive()
    done = connector.erase(plan)
    lease.renew()
    kept = plan.kept()
    left = Counter(r.collection for r in connector.find(subject) if r.ref not in kept)
    holds = sorted({item.detail for item in plan.items if item.ref in kept})
    result = {"plan": plan.summary(), "deleted": done.deleted, "masked": done.masked,
              "kept": done.kept, "holds": holds}
    if left:
        where = ", ".join(sorted(left))
        return Outcome(False, records=len(plan.items), result=result,
                       error=f"erasure not verified: {sum(left.values())} records remain "
                       f"that no hold keeps (in {where})")
    return Outcome(True, records=len(plan.items), result=result)


def complete(rt: Runtime, task_id: int, owner: str, outcome: Outcome) -> None:
    """Record the outcome if the lease is still ours; end the request when
    this was its last open task."""
    with rt.transaction() as session:
        # Lock order, everywhere: the request row, then its tasks, then the
        # audit head; so finishing tasks of one request never deadlock.
        request_id = session.scalar(select(Task.request_id).where(Task.id == task_id))
        session.execute(select(Request.id).where(Request.id == request_id).with_for_update())
        task = session.execute(select(Task).where(Task.id == task_id)
                               .with_for_update()).scalar_one_or_none()
        if task is None or task.status != "running" or task.lease_owner != owner:
            log.warning("task %s: lease lost before completion, result discarded", task_id)
            return
        task.lease_owner, task.lease_expires_at = None, None
        task.identifiers_seen = outcome.seen
        if outcome.ok and outcome.identifiers:
            outcome.result["added"] = _add_discovered(session, rt, task, outcome.identifiers)
        task.record_count, task.result = outcome.records, json.dumps(outcome.result)
        action = _apply(rt, task, outcome)
        audit.record(session, rt.crypto, action, actor=f"connector:{task.connector}",
                     request_id=task.request_id,
                     details={"task": task.id, "step": task.step, "attempt": task.attempts,
                              "records": outcome.records, "result": outcome.result,
                              **({"error": outcome.error} if outcome.error else {})})
        if task.status in ("succeeded", "failed"):
            if task.step == engine.STEP_DISCOVER:
                engine.after_discovery(session, rt, task.request_id)
            else:
                engine.finalise(session, rt, task.request_id)


def _add_discovered(session: Session, rt: Runtime, task: Task,
                    found: dict[str, set[str]]) -> list[str]:
    """Attach newly discovered identifiers (encrypted), up to the cap;
    returns their digests for the audit trail."""
    request = session.get(Request, task.request_id)
    assert request is not None  # noqa: S101 - foreign key
    room = int(rt.settings["DISCOVERY_MAX_IDENTIFIERS"]) - len(request.identifiers)
    ordered = {kind: sorted(found[kind]) for kind in sorted(found)}
    return add_identifiers(session, rt, request, ordered, source=f"connector:{task.connector}",
                           limit=max(room, 0))


def _apply(rt: Runtime, task: Task, outcome: Outcome) -> str:
    if outcome.ok:
        task.status, task.last_error, task.finished_at = "succeeded", None, utcnow()
        return "task.succeeded"
    task.last_error = outcome.error
    if outcome.retryable and task.attempts < int(rt.settings["TASK_MAX_ATTEMPTS"]):
        delay = min(float(rt.settings["TASK_RETRY_SECONDS"]) * 2 ** (task.attempts - 1),
                    MAX_BACKOFF_SECONDS)
        task.status, task.not_before = "pending", utcnow() + timedelta(seconds=delay)
        return "task.retry_scheduled"
    task.status, task.finished_at = "failed", utcnow()
    return "task.failed"
