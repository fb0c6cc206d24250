"""The Celery executor: Celery carries task ids; the task rows stay the truth.

``DSAR_EXECUTOR=celery`` with ``DSAR_BROKER_URL`` (Redis or RabbitMQ). Run the
workers with ``dsar worker`` (a Celery worker with a thread pool of
``--workers`` / ``DSAR_WORKERS`` threads) or ``celery -A dsar.celery_executor
worker -Q <DSAR_CELERY_QUEUE>`` (any pool; prefork works too). Both need the same
``DSAR_*`` environment as the web processes.

* **Publishing.** :func:`install_publisher` (called by ``create_app`` when the
  executor is celery, so gunicorn processes and workers alike publish) listens
  to :mod:`dsar.wakeup`: after each commit that made tasks runnable, one message
  per task id goes out, with the task's ``not_before`` as countdown when it is
  in the future (retries). A task due more than :data:`ETA_HORIZON_SECONDS`
  ahead is not published: the sweeper publishes it once due. A publish that
  fails (broker down) is logged and left to the sweeper; the commit stands.
* **Running.** :func:`run_task`, the only Celery task, takes the named row with
  :func:`dsar.workflow.lease.claim_task` (pending and due, or running under an
  expired lease: a reclaim) and calls :func:`dsar.workflow.tasks.run`, exactly
  what the in-process executor calls: heartbeat, stop token, recording and
  retries are all there. A message for a task that is not runnable (done, not
  due, held under a live lease) is acknowledged and dropped, so duplicate
  messages are harmless.
* **Delivery.** ``task_acks_late`` and ``task_reject_on_worker_lost``: a message
  is acknowledged after the run, and a worker that dies hands it back (RabbitMQ
  at once; Redis after the visibility timeout). ``worker_prefetch_multiplier=1``:
  a worker holds one message per free thread. No result backend.
* **Visibility timeout (Redis).** Redis redelivers a message not acknowledged
  within ``visibility_timeout`` (:data:`VISIBILITY_TIMEOUT_SECONDS`, an hour).
  A task may run longer (``TASK_MAX_SECONDS``): the second delivery then finds
  the row under a live lease and is dropped, so the row lease, not the broker,
  decides who runs a task. The timeout is longer than the ETA horizon, so a
  message waiting for its countdown is not delivered twice. A dead worker's
  task does not wait for it either: the sweeper republishes it once its lease
  ran out.
* **Mail.** A commit that queued mail publishes ``dsar.deliver_mail``
  (:func:`dsar.outbox.deliver_due` in a worker); the sweeper thread of every
  worker process also delivers every ``MAIL_POLL_SECONDS`` (retries, and mail
  queued in a commit that also made tasks runnable).
* **The sweeper.** One thread per worker process tries to hold the
  ``housekeeping`` role (:func:`dsar.workflow.lease.hold_role`); the one
  holder, in one process of the deployment, republishes rows a lost message
  left behind (pending and due for longer than a lease, or running under an
  expired lease), each at most once per growing interval, and runs
  :func:`dsar.executor.housekeeping_chores` every ``HOUSEKEEPING_SECONDS``. No
  Celery beat is needed, and housekeeping runs once, not once per worker.

Limits: RabbitMQ closes a channel whose delivery stays unacknowledged past its
``consumer_timeout`` (30 minutes by default): raise it above
``TASK_MAX_SECONDS`` on the server for long tasks (the task still completes
once: the redelivery finds the row under a live lease).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from celery import Celery, bootsteps, signals
from sqlalchemy import or_, select

from . import outbox, wakeup
from .database import is_unavailable
from .executor import HOUSEKEEPING_SECONDS, MAIL_POLL_SECONDS, housekeeping_chores
from .models import Request, Task
from .runtime import Runtime
from .workflow import lease, tasks
from .workflow.states import Status
from .workflow.task_states import TaskStatus

log = logging.getLogger(__name__)

TASK_NAME = "dsar.run_task"
MAIL_TASK_NAME = "dsar.deliver_mail"
#: tasks due further ahead are published by the sweeper once due, not held by a worker
ETA_HORIZON_SECONDS = 600.0
#: Redis: redelivery of a message not acknowledged within this (see the docstring)
VISIBILITY_TIMEOUT_SECONDS = 3600.0
#: longest pause before the sweeper republishes the same task again
MAX_REPUBLISH_SECONDS = 600.0
#: seconds a stopping worker's running tasks may take before they are handed back
GRACE_SECONDS = 30.0


def celery_config(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Celery settings from dsar's (``BROKER_URL``, ``CELERY_QUEUE``)."""
    return {
        "broker_url": settings.get("BROKER_URL"),
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 4.0,
        "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS},
        "task_default_queue": settings.get("CELERY_QUEUE") or "dsar",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_ignore_result": True,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0.2,
                                      "interval_step": 0.5, "interval_max": 1.0},
        "worker_prefetch_multiplier": 1,
        "worker_enable_remote_control": False,
        "worker_send_task_events": False,
        "result_backend": None,
    }


class _Tick(bootsteps.StartStopStep):
    """Wake the worker's event loop every second: with only far timers (AMQP)
    it sleeps up to 10 s, and a warm shutdown waited for it."""

    requires = {"celery.worker.components:Hub"}

    def start(self, worker: Any) -> None:
        if getattr(worker, "hub", None) is not None:
            worker.hub.call_repeatedly(1.0, _noop)


def _noop() -> None:
    pass


def make_celery(settings: Mapping[str, Any]) -> Celery:
    app = Celery("dsar", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.steps["worker"].add(_Tick)
    return app


#: the worker's app (``celery -A dsar.celery_executor worker``), from DSAR_* variables
celery_app = make_celery({"BROKER_URL": os.environ.get("DSAR_BROKER_URL"),
                          "CELERY_QUEUE": os.environ.get("DSAR_CELERY_QUEUE")})


# --- publishing -------------------------------------------------------------------------

class Publisher:
    """Publishes one message per runnable task id (a :mod:`dsar.wakeup` callback)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.app = make_celery(rt.settings)
        self.queue = str(rt.settings.get("CELERY_QUEUE") or "dsar")
        self._failing = False

    def __call__(self, task_ids: frozenset[int], mail: bool = False) -> None:
        try:
            if mail:  # a commit that queued mail
                self.app.send_task(MAIL_TASK_NAME, queue=self.queue, ignore_result=True)
            if not task_ids:
                return
            with self.rt.sessionmaker() as session:
                rows = session.execute(select(Task.id, Task.not_before)
                                       .where(Task.id.in_(sorted(task_ids)))).all()
            for task_id, not_before in rows:
                self.publish(task_id, not_before)
        except Exception as exc:  # the commit stands; the sweeper republishes
            self.failed(exc)

    def publish(self, task_id: int, not_before: datetime | None) -> bool:
        """Send ``task_id``; ``False`` when it is due beyond the horizon."""
        wait = 0.0 if not_before is None else (not_before - self.rt.now()).total_seconds()
        if wait > ETA_HORIZON_SECONDS:
            return False
        # a little late rather than early: a message before not_before is dropped
        countdown = wait + 0.05 if wait > 0 else None
        self.app.send_task(TASK_NAME, args=[task_id], queue=self.queue, countdown=countdown,
                           ignore_result=True)
        if self._failing:
            self._failing = False
            log.info("publishing tasks to the broker again")
        return True

    def failed(self, exc: BaseException) -> None:
        if not self._failing:
            self._failing = True
            log.warning("tasks not published (%s); the sweeper will publish them",
                        type(exc).__name__)

    def close(self) -> None:
        self.app.close()


_publishers: weakref.WeakKeyDictionary[Runtime, Publisher] = weakref.WeakKeyDictionary()


def install_publisher(rt: Runtime) -> Publisher:
    """Publish ``rt``'s runnable tasks from now on (idempotent)."""
    publisher = _publishers.get(rt)
    if publisher is None:
        publisher = _publishers[rt] = Publisher(rt)
        wakeup.listen(rt, publisher)
    return publisher


def uninstall_publisher(rt: Runtime) -> None:
    publisher = _publishers.pop(rt, None)
    if publisher is not None:
        wakeup.unlisten(rt, publisher)
        publisher.close()


# --- running ----------------------------------------------------------------------------

_state_lock = threading.Lock()
_runtime: Runtime | None = None
_inherited: list[Runtime] = []  # a forked child keeps its parent's, unused and unclosed
#: set when a stopping worker's grace ran out: running calls are asked to stop
_shutdown = threading.Event()


def use_runtime(rt: Runtime) -> None:
    """The runtime this process's Celery tasks use (``dsar worker`` passes its own)."""
    global _runtime
    with _state_lock:
        _runtime = rt


def worker_runtime() -> Runtime:
    """This process's runtime, built from the DSAR_* environment on first use."""
    global _runtime
    with _state_lock:
        if _runtime is None:
            from . import create_app

            _runtime = create_app(load_connectors=True).extensions["dsar"]
        return _runtime


def _after_fork_in_child() -> None:
    """A prefork child must not share its parent's database connections."""
    global _runtime
    if _runtime is not None:
        _runtime.engine.dispose(close=False)
        _inherited.append(_runtime)
        _runtime = None


os.register_at_fork(after_in_child=_after_fork_in_child)


@celery_app.task(name=TASK_NAME, ignore_result=True, acks_late=True,
                 reject_on_worker_lost=True)
def run_task(task_id: int) -> str:
    """Run task row ``task_id`` if it is runnable; the outcome is in the row."""
    rt = worker_runtime()
    owner = f"celery-{uuid.uuid4().hex[:12]}:{threading.current_thread().name}"
    try:
        if not lease.claim_task(rt, task_id, owner):
            return "not runnable"
        tasks.run(rt, task_id, owner, _shutdown)
    except Exception as exc:  # the lease runs out; the sweeper republishes it
        if is_unavailable(exc):
            log.warning("task %s: app database unavailable", task_id)
        else:
            log.exception("task %s failed outside a connector", task_id)
        return "error"
    return "ran"


@celery_app.task(name=MAIL_TASK_NAME, ignore_result=True, acks_late=True)
def deliver_mail() -> int:
    """Send the outbox's due mail now (a commit queued some); the sweeper
    thread of every worker process also sends it every MAIL_POLL_SECONDS."""
    return _deliver_mail(worker_runtime())


def _deliver_mail(rt: Runtime) -> int:
    try:
        return outbox.deliver_due(rt)
    except Exception as exc:  # the mail waits in the outbox
        if not is_unavailable(exc):
            log.exception("mail delivery failed")
        return 0


# --- the sweeper ------------------------------------------------------------------------

class Sweeper:
    """A thread that, while it holds the ``housekeeping`` role, republishes
    what lost messages left behind and runs the housekeeping chores."""

    def __init__(self, rt: Runtime, publisher: Publisher) -> None:
        self.rt, self.publisher = rt, publisher
        self.holder = f"celery-{uuid.uuid4().hex[:12]}:sweeper"
        self.lease = lease.lease_seconds(rt)
        self.role_seconds = max(3 * self.lease, 5.0)
        self.tick = max(min(self.role_seconds / 6, self.lease / 2, MAIL_POLL_SECONDS), 0.25)
        self._next_try: dict[int, tuple[float, float]] = {}  # id: (monotonic, backoff)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dsar-sweeper", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        held, next_chores, next_mail = False, 0.0, 0.0
        while True:
            if time.monotonic() >= next_mail:  # in every process: retries, missed wake-ups
                _deliver_mail(self.rt)
                next_mail = time.monotonic() + MAIL_POLL_SECONDS
            try:
                held = lease.hold_role(self.rt, "housekeeping", self.holder, self.role_seconds)
                if held:
                    self.sweep()
                    if time.monotonic() >= next_chores:
                        housekeeping_chores(self.rt)
                        next_chores = time.monotonic() + HOUSEKEEPING_SECONDS
            except Exception as exc:  # never kill the sweeper; next tick
                if not is_unavailable(exc):
                    log.exception("sweeper failed")
            if self._stop.wait(self.tick):
                break
        if held:
            try:
                lease.drop_role(self.rt, "housekeeping", self.holder)
            except Exception as exc:  # it runs out on its own
                log.warning("housekeeping role not given up (%s)", type(exc).__name__)

    def sweep(self) -> int:
        """Republish runnable rows whose message was lost; returns how many."""
        now, clock = self.rt.now(), time.monotonic()
        with self.rt.transaction() as session:
            rows = session.execute(
                select(Task.id, Task.not_before).join(Request, Request.id == Task.request_id)
                .where(Request.status == Status.PROCESSING,
                       or_((Task.status == TaskStatus.PENDING)
                           & (Task.not_before <= now - timedelta(seconds=self.lease)),
                           (Task.status == TaskStatus.RUNNING) & (Task.lease_expires_at < now)))
                .order_by(Task.not_before, Task.id).limit(1000)).all()
        self._next_try = {i: v for i, v in self._next_try.items() if i in {r[0] for r in rows}}
        sent = 0
        for task_id, _not_before in rows:
            at, backoff = self._next_try.get(task_id, (0.0, self.lease))
            if clock < at:
                continue
            try:
                self.publisher.publish(task_id, None)
            except Exception as exc:
                self.publisher.failed(exc)
                break
            self._next_try[task_id] = (clock + backoff, min(backoff * 2, MAX_REPUBLISH_SECONDS))
            sent += 1
        if sent:
            log.info("republished %d task(s) whose message was lost", sent)
        return sent


_sweeper: Sweeper | None = None


@signals.worker_ready.connect
def _start_sweeper(sender: Any = None, **_kwargs: Any) -> None:
    global _sweeper
    if getattr(sender, "app", None) is not celery_app or _sweeper is not None:
        return
    rt = worker_runtime()
    _sweeper = Sweeper(rt, install_publisher(rt)).start()


@signals.worker_shutting_down.connect
def _on_shutting_down(**_kwargs: Any) -> None:
    """Warm shutdown: running tasks get GRACE_SECONDS, then are handed back."""
    timer = threading.Timer(GRACE_SECONDS, _shutdown.set)
    timer.daemon = True
    timer.start()


@signals.worker_shutdown.connect
def _stop_sweeper(**_kwargs: Any) -> None:
    global _sweeper
    sweeper, _sweeper = _sweeper, None
    if sweeper is not None:
        sweeper.stop()


def run_worker(rt: Runtime, threads: int, grace: float, loglevel: str = "INFO") -> None:
    """``dsar worker`` with ``DSAR_EXECUTOR=celery``: a Celery worker in this
    process (a thread pool), its sweeper, until SIGTERM (warm shutdown)."""
    global GRACE_SECONDS
    GRACE_SECONDS = grace
    celery_app.conf.update(celery_config(rt.settings))
    use_runtime(rt)
    install_publisher(rt)
    celery_app.worker_main(["worker", "--pool=threads", f"--concurrency={threads}",
                            "-Q", str(rt.settings["CELERY_QUEUE"]), f"--loglevel={loglevel}",
                            "--without-gossip", "--without-mingle", "--without-heartbeat"])
