"""The in-process executor: worker threads that claim and run Tasks.

Nothing to install or start: the threads run inside ``dsar run`` and
``dsar requests process`` (never inside ``create_app``). Every worker polls
the tasks table; a commit that may have created work wakes them at once. All
state is in rows (:mod:`dsar.workflow.tasks`), so a crash loses nothing: the
lease of a task a dead worker held runs out and another worker takes it up.
A Celery executor over the same task function is planned for scale-out.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import timedelta

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from .database import utcnow
from .models import Request, Task
from .runtime import Runtime
from .workflow import tasks
from .workflow.states import Status

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 60.0


def _note_runnable_tasks(session: Session, _context: object) -> None:
    """Mark a session whose flush made a task runnable, so its commit wakes workers."""
    if any(isinstance(obj, Task) and obj.status == "pending"
           for obj in (*session.new, *session.dirty)):
        session.info["dsar_wake"] = True


class InProcessExecutor:
    """``workers`` threads running tasks until :meth:`stop`."""

    def __init__(self, rt: Runtime, workers: int | None = None, poll_seconds: float = 0.5) -> None:
        self.rt = rt
        self.workers = workers or int(rt.settings["WORKERS"])
        self.poll_seconds = poll_seconds
        self.id = uuid.uuid4().hex[:12]
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._busy_lock = threading.Lock()
        if not event.contains(rt.sessionmaker, "after_flush", _note_runnable_tasks):
            event.listen(rt.sessionmaker, "after_flush", _note_runnable_tasks)
        event.listen(rt.sessionmaker, "after_commit", self._on_commit)

    def _on_commit(self, session: Session) -> None:
        """Wake the workers when a commit made a task runnable."""
        if session.info.pop("dsar_wake", False):
            self._wake.set()

    def start(self) -> InProcessExecutor:
        self._threads = [threading.Thread(target=self._loop, name=f"dsar-worker-{index}",
                                          daemon=True) for index in range(self.workers)]
        for thread in self._threads:
            thread.start()
        log.info("executor %s started with %d workers", self.id, self.workers)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask workers to stop after their current task and wait for them."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        event.remove(self.rt.sessionmaker, "after_commit", self._on_commit)

    def __enter__(self) -> InProcessExecutor:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        owner = f"{self.id}:{threading.current_thread().name}"
        housekeeper = threading.current_thread() is self._threads[0]
        next_sweep = 0.0
        while not self._stop.is_set():
            if housekeeper and time.monotonic() >= next_sweep:
                self.housekeeping()
                next_sweep = time.monotonic() + HOUSEKEEPING_SECONDS
            if not self.run_one(owner):
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def housekeeping(self) -> None:
        """Periodic chores: expire requests never verified in time."""
        from .workflow.requests import expire_unverified

        try:
            with self.rt.transaction() as session:
                expired = expire_unverified(session, self.rt)
            if expired:
                log.info("expired %d unverified requests", expired)
        except Exception:  # never kill the worker over a chore
            log.exception("housekeeping failed")

    def run_one(self, owner: str) -> bool:
        """Claim and run one task; ``False`` when none was runnable."""
        with self._busy_lock:
            self._busy += 1
        try:
            task_id = tasks.claim(self.rt, owner)
            if task_id is None:
                return False
            tasks.run(self.rt, task_id, owner)
            return True
        except Exception:  # keep the worker alive; the task's lease will run out
            log.exception("worker %s failed outside a connector", owner)
            return False
        finally:
            with self._busy_lock:
                self._busy -= 1

    def wait_until_idle(self, timeout: float | None = None) -> bool:
        """Block until no task this executor could run is left: nothing
        pending (waiting out retry delays) and nothing running under our
        leases. ``False`` if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = self._seconds_until_work()
            if wait is None and self._idle():
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if wait == 0.0:
                self._wake.set()
            time.sleep(min(max(wait or 0.0, 0.05), 0.5))

    def _idle(self) -> bool:
        with self._busy_lock:
            return self._busy == 0

    def _seconds_until_work(self) -> float | None:
        """Seconds until the next task of a processing request is ours to run:
        0 when one is due, pending or left behind by a dead worker, or running
        under our own lease; ``None`` when there is none. Tasks under another
        executor's live lease are that executor's business."""
        now = utcnow()
        with self.rt.transaction() as session:
            open_tasks = (select(func.min(Task.not_before))
                          .join(Request, Request.id == Task.request_id)
                          .where(Request.status == Status.PROCESSING.value))
            due = session.scalar(open_tasks.where(
                (Task.status == "pending")
                | ((Task.status == "running") & (Task.lease_expires_at < now))
                | ((Task.status == "running") & Task.lease_owner.startswith(f"{self.id}:"))))
        if due is None:
            return None
        return max((due - now) / timedelta(seconds=1), 0.0)
