"""The in-process executor: worker threads that claim and run Tasks.

Nothing to install or start: the threads run inside ``dsar worker`` (the
production worker process), ``dsar run`` (development) and ``dsar requests
process`` (never inside ``create_app``). Every worker polls the tasks table;
a commit that made work runnable wakes them at once, in this process and, on
PostgreSQL, in every other (:mod:`dsar.wakeup`). All state is in rows
(:mod:`dsar.workflow.tasks`), so a crash loses nothing: the short lease of a
task a dead worker held runs out and another worker takes it up
(:mod:`dsar.workflow.lease`). Housekeeping runs in exactly one process at a
time (the ``housekeeping`` role, held under a lease). While the app database
is unreachable the workers log one line, back off, and log one more when it
is back.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from . import audit_checks, outbox, wakeup
from .database import Outage, is_unavailable
from .models import Request, Task
from .runtime import Runtime
from .workflow import export_step, lease, tasks
from .workflow.states import Status
from .workflow.task_states import TaskStatus

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 60.0
#: how often mail is looked for without a wake-up (retries falling due)
MAIL_POLL_SECONDS = 2.0
#: longest pause between two polls while the app database is unreachable
MAX_OUTAGE_BACKOFF_SECONDS = 10.0


def _outage_pause(outage: Outage, normal: float) -> float:
    """The pause between two polls: growing while the app database is away."""
    if not outage.ongoing:
        return normal
    return float(min(normal * 2 ** min(outage.failures, 10), MAX_OUTAGE_BACKOFF_SECONDS))


def housekeeping_chores(rt: Runtime) -> None:
    """Periodic chores, run by the one holder of the ``housekeeping`` role
    (whichever executor): expire requests never verified in time, remove
    export parts no request needs, compute the erasure previews officers wait
    for, check the audit chain when asked or due, mail officers the summaries
    and due alerts they subscribed to. Raises what the database raises."""
    from .officers import subscriptions
    from .workflow import preview
    from .workflow.requests import expire_unverified

    def expire() -> int:
        with rt.transaction() as session:
            return expire_unverified(session, rt)

    chores: tuple[tuple[Callable[[], int], str], ...] = (
        (expire, "expired %d unverified requests"),
        (lambda: export_step.sweep(rt), "removed %d leftover export parts"),
        (lambda: preview.refresh(rt), "computed %d erasure previews"),
        (lambda: audit_checks.run_asked(rt), "ran %d audit chain checks"),
        (lambda: subscriptions.send_due(rt), "queued %d officers' subscription mails"),
    )
    for chore, done in chores:
        count = chore()
        if count:
            log.info(done, count)


@dataclass(frozen=True)
class HeldTask:
    """A task running under another worker's lease."""

    request_id: str
    connector: str
    step: str
    lease_expires_at: datetime


class InProcessExecutor:
    """``workers`` threads running tasks until :meth:`stop`."""

    def __init__(self, rt: Runtime, workers: int | None = None, poll_seconds: float = 0.5) -> None:
        self.rt = rt
        self.workers = workers or int(rt.settings["WORKERS"])
        self.poll_seconds = poll_seconds
        self.id = uuid.uuid4().hex[:12]
        self._wake = threading.Event()
        self._mail_wake = threading.Event()
        self._stop = threading.Event()
        #: set when stopping past the grace period: running calls are asked to stop
        self._shutdown = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._outage = Outage(log, "workers back off until it returns")
        self._listener = wakeup.Listener(rt, self._woken_from_afar)

    def _on_work(self, task_ids: frozenset[int], mail: bool) -> None:
        if task_ids:
            self._wake.set()
        if mail:
            self._mail_wake.set()

    @property
    def listening(self) -> threading.Event:
        """Set while this executor hears other processes' commits (PostgreSQL)."""
        return self._listener.listening

    def _woken_from_afar(self, tasks: bool, mail: bool) -> None:
        """A notification from another process (:class:`wakeup.Listener`)."""
        if tasks:
            self._wake.set()
        if mail:
            self._mail_wake.set()

    def start(self) -> InProcessExecutor:
        wakeup.listen(self.rt, self._on_work)
        self._listener.start()
        self._threads = [threading.Thread(target=self._loop, name=f"dsar-worker-{index}",
                                          daemon=True) for index in range(self.workers)]
        self._threads += [threading.Thread(target=self._housekeeper, daemon=True,
                                           name="dsar-housekeeper"),
                          threading.Thread(target=self._mailer, daemon=True, name="dsar-mailer")]
        for thread in self._threads:
            thread.start()
        log.info("executor %s started with %d workers", self.id, self.workers)
        return self

    def stop(self, grace: float = 30.0) -> None:
        """Stop claiming; let running tasks finish for ``grace`` seconds, then
        ask their connector calls to stop and hand the tasks back."""
        self._stop.set()
        self._wake.set()
        self._mail_wake.set()
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        if any(thread.is_alive() for thread in self._threads):
            log.info("executor %s: tasks still running after %.0f s; handing them back",
                     self.id, grace)
            self._shutdown.set()
            for thread in self._threads:
                thread.join(lease.lease_seconds(self.rt))
        self._threads.clear()
        self._listener.stop()
        wakeup.unlisten(self.rt, self._on_work)

    def __enter__(self) -> InProcessExecutor:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        owner = f"{self.id}:{threading.current_thread().name}"
        while not self._stop.is_set():
            if not self.run_one(owner):
                self._wake.wait(_outage_pause(self._outage, self.poll_seconds))
                self._wake.clear()

    def _housekeeper(self) -> None:
        """Hold the ``housekeeping`` role (one process at a time) and do the
        chores every ``HOUSEKEEPING_SECONDS`` while holding it."""
        holder, held, next_chores = f"{self.id}:housekeeper", False, 0.0
        seconds = max(3 * lease.lease_seconds(self.rt), 5.0)
        while True:  # at least once, even in a process that stops at once
            try:
                held = lease.hold_role(self.rt, "housekeeping", holder, seconds)
            except Exception as exc:
                held = False
                if not is_unavailable(exc):
                    log.exception("housekeeping role not taken")
            if held and time.monotonic() >= next_chores:
                self.housekeeping()
                next_chores = time.monotonic() + HOUSEKEEPING_SECONDS
            if self._stop.wait(seconds / 6):
                break
        if held:
            try:
                lease.drop_role(self.rt, "housekeeping", holder)
            except Exception as exc:  # it runs out on its own
                log.warning("housekeeping role not given up (%s)", type(exc).__name__)

    def _mailer(self) -> None:
        """Send queued mail (:mod:`dsar.outbox`): after a commit that queued
        some, every ``MAIL_POLL_SECONDS`` for retries, and once more on stop."""
        while True:
            stopping = self._stop.is_set()
            if self.deliver_mail() >= outbox.BATCH and not stopping:
                continue
            if stopping:
                return
            self._mail_wake.wait(MAIL_POLL_SECONDS)
            self._mail_wake.clear()

    def deliver_mail(self) -> int:
        """One batch of due mail; the count sent (0 while the database is away)."""
        try:
            sent = outbox.deliver_due(self.rt)
        except Exception as exc:
            if is_unavailable(exc):
                self._outage.failed(exc)
            else:
                log.exception("mail delivery failed")
            return 0
        self._outage.ended()
        return sent

    def housekeeping(self) -> None:
        """:func:`housekeeping_chores`, never killing the worker over one."""
        try:
            housekeeping_chores(self.rt)
        except Exception as exc:  # never kill the worker over a chore
            if is_unavailable(exc):
                self._outage.failed(exc)
            else:
                log.exception("housekeeping failed")

    def run_one(self, owner: str) -> bool:
        """Claim and run one task; ``False`` when none was runnable."""
        with self._busy_lock:
            self._busy += 1
        try:
            ran = tasks.claim_and_run(self.rt, owner, self._shutdown)
            self._outage.ended()
            return ran
        except Exception as exc:  # keep the worker alive; the task's lease will run out
            if is_unavailable(exc):
                self._outage.failed(exc)
            else:
                log.exception("worker %s failed outside a connector", owner)
            return False
        finally:
            with self._busy_lock:
                self._busy -= 1

    def wait_until_idle(self, timeout: float | None = None) -> bool:
        """Block until no work of a processing request is left: nothing
        pending (retry delays are waited out), nothing running, whether under
        our leases or another worker's (it ends, or its lease runs out and we
        take it up). ``False`` if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                now = self.rt.now()  # one instant for both looks: a lease cannot slip between
                wait, held = self._seconds_until_work(now), len(self.held_elsewhere(now))
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                self._outage.failed(exc)
                wait, held = 0.5, 0
            if wait is None and not held and self._idle():
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if wait == 0.0:
                self._wake.set()
            time.sleep(min(max(wait or 0.0, 0.05), 0.5))

    def _idle(self) -> bool:
        with self._busy_lock:
            return self._busy == 0

    def _seconds_until_work(self, now: datetime) -> float | None:
        """Seconds from ``now`` until the next task of a processing request is
        ours to run: 0 when one is due, pending or left behind by a dead
        worker, or running under our own lease; ``None`` when there is none."""
        with self.rt.transaction() as session:
            open_tasks = (select(func.min(Task.not_before))
                          .join(Request, Request.id == Task.request_id)
                          .where(Request.status == Status.PROCESSING))
            running = Task.status == TaskStatus.RUNNING
            due = session.scalar(open_tasks.where(
                (Task.status == TaskStatus.PENDING)
                | (running & (Task.lease_expires_at < now))
                | (running & Task.lease_owner.startswith(f"{self.id}:"))))
        if due is None:
            return None
        return max((due - now) / timedelta(seconds=1), 0.0)

    def held_elsewhere(self, now: datetime | None = None) -> list[HeldTask]:
        """Tasks of processing requests running under another worker's lease,
        live at ``now`` (default: the current time)."""
        now = now or self.rt.now()
        with self.rt.transaction() as session:
            rows = session.execute(
                select(Task.request_id, Task.connector, Task.step, Task.lease_expires_at)
                .join(Request, Request.id == Task.request_id)
                .where(Request.status == Status.PROCESSING, Task.status == TaskStatus.RUNNING,
                       Task.lease_expires_at >= now,
                       ~Task.lease_owner.startswith(f"{self.id}:"))
                .order_by(Task.id)).all()
        return [HeldTask(r, c, s, at) for r, c, s, at in rows if at is not None]
