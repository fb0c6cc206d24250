"""A worker's hold on a task: claimed under a short lease, kept alive by a
heartbeat while the work runs, taken back from a worker that died.

* :func:`claim` takes the oldest runnable task: pending and due, or running
  under a lease that ran out (its worker died: a *reclaim*, counted apart from
  attempts so crashes never use up a task's retries, and logged; the audit
  event of the task's outcome carries the count, so a claim never takes the
  audit lock); :func:`claim_task` takes one named task by the same rules
  (the Celery executor's messages).
* :class:`Heartbeat` renews the lease from a thread of its own every quarter
  of ``TASK_LEASE_SECONDS``, also while one long connector call runs, so a
  live worker never loses its task and a dead one's task is free again within
  one lease. It owns the call's stop token: set when the lease was lost or the
  task ran past ``TASK_MAX_SECONDS``.
* :func:`release` hands a task back at once when its outcome could not be
  recorded, instead of letting it wait out the lease.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from ..database import is_unavailable
from ..models import Request, Task, WorkerRole
from ..runtime import Runtime
from .states import Status
from .task_states import TaskStatus, move

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another worker took the task over, or it ended; this worker's result is void."""


def lease_seconds(rt: Runtime) -> float:
    return float(rt.settings["TASK_LEASE_SECONDS"])


def claim(rt: Runtime, owner: str,
          then: Callable[[Session, Task, Request], None] | None = None) -> int | None:
    """Take the next runnable task under a fresh lease; ``None`` when none.
    ``then(session, task, request)`` runs in the claiming transaction (to
    read what the work needs without another round trip).

    A task whose lease ran out is a reclaim: ``reclaims`` grows (the
    outcome's audit event says by how much), ``attempts`` does not."""
    return _claim(rt, owner, None, then)


def claim_task(rt: Runtime, task_id: int, owner: str) -> bool:
    """Take the task ``task_id`` under a fresh lease if it is runnable, by the
    rules of :func:`claim` (pending and due, or running under a lease that ran
    out: a reclaim, counted and logged); ``False`` otherwise: done, not due
    yet, held under a live lease, its request not processing, or locked by a
    worker claiming it right now. A transport's message names a task; this
    decides whether it still is one to run (a duplicate message is harmless)."""
    return _claim(rt, owner, task_id) is not None


def _claim(rt: Runtime, owner: str, task_id: int | None,
           then: Callable[[Session, Task, Request], None] | None = None) -> int | None:
    now = rt.now()
    runnable = select(Task, Request).join(Request, Request.id == Task.request_id).where(
        Request.status == Status.PROCESSING,
        or_((Task.status == TaskStatus.PENDING) & (Task.not_before <= now),
            (Task.status == TaskStatus.RUNNING) & (Task.lease_expires_at < now)))
    if task_id is None:
        runnable = runnable.order_by(Task.not_before, Task.id).limit(1)
    else:
        runnable = runnable.where(Task.id == task_id)
    with rt.transaction() as session:
        row = session.execute(runnable.with_for_update(skip_locked=True, of=Task)).first()
        if row is None:
            return None
        task, request = row
        if task.status == TaskStatus.RUNNING:
            task.reclaims += 1
            log.warning("task %s taken over from a worker that stopped renewing its lease",
                        task.id)
        else:
            task.attempts += 1
        move(session, rt.crypto, task, TaskStatus.RUNNING)  # not an outcome: no audit event
        task.lease_owner = owner
        task.lease_expires_at = now + timedelta(seconds=lease_seconds(rt))
        if then is not None:
            then(session, task, request)
        return task.id


def renew(rt: Runtime, task_id: int, owner: str) -> None:
    """Extend the lease; raises :class:`LeaseLost` if it is no longer ours."""
    with rt.transaction() as session:
        done = session.execute(
            update(Task).where(Task.id == task_id, Task.lease_owner == owner,
                               Task.status == TaskStatus.RUNNING)
            .values(lease_expires_at=rt.now() + timedelta(seconds=lease_seconds(rt))))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLost(task_id)


def release(rt: Runtime, task_id: int, owner: str, delay_seconds: float = 1.0) -> None:
    """Give a task back (pending again shortly) if it is still ours; best effort."""
    try:
        with rt.transaction() as session:
            task = session.execute(select(Task).where(
                Task.id == task_id, Task.lease_owner == owner,
                Task.status == TaskStatus.RUNNING).with_for_update()).scalar_one_or_none()
            if task is not None:
                move(session, rt.crypto, task, TaskStatus.PENDING)  # a hand-back: no event
                task.lease_owner, task.lease_expires_at = None, None
                task.not_before = rt.now() + timedelta(seconds=delay_seconds)
    except Exception as exc:  # the lease runs out on its own
        log.warning("task %s: could not release its lease (%s)", task_id, type(exc).__name__)


def hold_role(rt: Runtime, name: str, holder: str, seconds: float) -> bool:
    """Take or keep the role ``name`` (e.g. ``housekeeping``) for ``holder``
    for ``seconds``; ``False`` while another live holder has it."""
    now = rt.now()
    with rt.transaction() as session:
        done = session.execute(
            update(WorkerRole).where(WorkerRole.name == name,
                                     or_(WorkerRole.holder == holder,
                                         WorkerRole.holder.is_(None),
                                         WorkerRole.expires_at < now))
            .values(holder=holder, expires_at=now + timedelta(seconds=seconds)))
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def drop_role(rt: Runtime, name: str, holder: str) -> None:
    """Give the role up (a graceful stop), so another process takes it at once."""
    with rt.transaction() as session:
        session.execute(update(WorkerRole).where(WorkerRole.name == name,
                                                 WorkerRole.holder == holder)
                        .values(holder=None, expires_at=None))


class Heartbeat:
    """Keeps ``task_id``'s lease alive while the block runs (a context manager).

    ``stop`` is the running call's stop token. ``lost`` is set when the lease
    is no longer ours; ``overdue`` once the task ran past ``TASK_MAX_SECONDS``
    (the call is asked to stop; if it has not within one lease, ``on_overdue``
    is called from the heartbeat's thread to fail the task without it).
    """

    def __init__(self, rt: Runtime, task_id: int, owner: str,
                 on_overdue: Callable[[], None] | None = None,
                 shutdown: threading.Event | None = None) -> None:
        self.rt, self.task_id, self.owner = rt, task_id, owner
        self.interval = lease_seconds(rt) / 4
        self.max_seconds = float(rt.settings["TASK_MAX_SECONDS"])
        self.stop = threading.Event()
        self.lost = threading.Event()
        self.overdue = False
        self._on_overdue = on_overdue
        #: set by the worker's process when it stops: the call is asked to stop too
        self.shutdown = shutdown or threading.Event()
        self._done = threading.Event()
        self._started = self._renewed = self.rt.clock.monotonic()
        self._down_since: float | None = None
        self._thread = threading.Thread(target=self._beat, daemon=True,
                                        name=f"dsar-heartbeat-{task_id}")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._done.wait(min(self.interval, 0.5)):
            if self.shutdown.is_set():
                self.stop.set()
            if not self._due():
                continue
            if self._past_deadline():
                return
            # the renewal counts from now, however long writing it takes
            beat_at = self.rt.clock.monotonic()
            try:
                renew(self.rt, self.task_id, self.owner)
            except LeaseLost:
                log.warning("task %s: lease lost; asking its connector to stop", self.task_id)
                self.lost.set()
                self.stop.set()
                return
            except Exception as exc:
                self._renewal_failed(exc)
            else:
                self._down_since = None
                self._renewed = beat_at

    def _due(self) -> bool:
        """Renew every ``interval``; the loop itself wakes more often, to pass
        a shutdown on to the call without delay."""
        return self.rt.clock.monotonic() - self._renewed >= self.interval

    def _past_deadline(self) -> bool:
        """Ask the call to stop past the maximum; give up on it a lease later."""
        running = self.rt.clock.monotonic() - self._started
        if running <= self.max_seconds:
            return False
        if not self.overdue:
            self.overdue = True
            self.stop.set()
            log.warning("task %s ran past TASK_MAX_SECONDS; asking its connector to stop",
                        self.task_id)
            return False
        if running <= self.max_seconds + lease_seconds(self.rt) or self._on_overdue is None:
            return False
        self.lost.set()
        self._on_overdue()
        return True

    def _renewal_failed(self, exc: Exception) -> None:
        """One line per outage, not one per beat; the lease may run out meanwhile."""
        if self._down_since is None:
            self._down_since = self.rt.clock.monotonic()
            what = "app database unavailable" if is_unavailable(exc) else type(exc).__name__
            log.warning("task %s: lease not renewed (%s); retrying", self.task_id, what)
